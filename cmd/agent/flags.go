package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/hastack/hastack/internal/api"
	"github.com/hastack/hastack/internal/config"
)

// errHelp: --help was asked for and printed.
var errHelp = errors.New("help")

// newFlags makes a subcommand's flag set whose --help prints the synopsis and the flags.
func newFlags(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: agent %s\n\nFlags:\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
}

func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return errHelp
		}
		return errUsage
	}
	return nil
}

// clientFlags are the flags of the commands that talk to a running agent.
type clientFlags struct {
	addr   string
	config string
}

func (c *clientFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.addr, "addr", os.Getenv("HASTACK_AGENT_ADDR"), "the agent's address (default: listen of --config, else 127.0.0.1:9700; env HASTACK_AGENT_ADDR)")
	fs.StringVar(&c.config, "config", os.Getenv("HASTACK_AGENT_CONFIG"), "the agent's configuration file, for its address and API token (env HASTACK_AGENT_CONFIG)")
}

// resolve returns the base URL and API token to use: the token of the configuration
// (api.token_file, HASTACK_AGENT_API_TOKEN(_FILE)), else the one the agent made in its state
// directory.
func (c *clientFlags) resolve() (baseURL, token string, err error) {
	cfg, err := config.Load(c.config)
	if err != nil {
		if c.config != "" {
			return "", "", err
		}
		cfg = config.Default() // no configuration at all: the defaults, and --addr
	}
	token = cfg.API.Token
	if token == "" {
		token, _ = api.ReadToken(api.DefaultTokenFile(cfg.StateDir)) // none: the agent says 401 and where to look
	}
	addr := c.addr
	if addr == "" {
		addr = cfg.Listen
	}
	return "http://" + addr, token, nil
}

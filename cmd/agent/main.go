// Command agent keeps a Docker host's Compose stack in the state a git commit describes: it
// follows a repository, deploys each new commit health-gated with rollback, and reports.
//
//	agent run     the daemon
//	agent status  what the running agent sees (table, or --json)
//	agent sync    ask the running agent to sync now
//	agent diff    which services a commit would recreate, without applying it
//	agent backup, backups, restore, drill: the database's backups in S3
//	agent db      the database pair: status, switchover, failover, watch
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/hastack/hastack/internal/config"
)

// Exit codes.
const (
	exitOK     = 0
	exitError  = 1 // the operation failed
	exitUsage  = 2 // bad command line
	exitConfig = 3 // the configuration is invalid
)

const usage = `agent: GitOps agent for a Docker Compose stack

Usage:
  agent init   --repo DIR --ref BRANCH    write the agent's configuration for the stack in DIR (from its
                                          .env and secrets: what scripts/up runs)
  agent run    [--config FILE]            run the daemon: follow the repository, deploy, watch for drift
  agent status [--addr ADDR] [--json]     show the running agent's source, commit, services, drift, history
  agent sync   [--addr ADDR] [--redeploy] ask the running agent to fetch and deploy now (--redeploy: even
                                          the applied commit, e.g. to bring back a removed stack)
  agent wait   [--addr ADDR] [--commit C] wait until the agent has deployed C (default: the source's
                                          head) and every service is ready, showing the progress
  agent diff   [--addr ADDR] [COMMIT]     show which services COMMIT (default: the source's) would change
  agent backup [--config FILE] [--json]   back the database up to S3 now (dump on the replica, zstd, manifest)
  agent backups [--config FILE] [--json]  list the backups in S3, complete or not
  agent restore [flags] [ID|latest]       verify a backup, then restore it (safety backup first; --dry-run, --target;
                                          --at TIME or --to-gtid GTID: replay the binlog archive up to that point)
  agent archive [--config FILE]           run the binlog archive in the foreground (agent run does with
                                          backup.archive.enabled)
  agent drill   [--config FILE] [ID]      restore a backup into a throw-away container and compare it with its manifest
  agent db     status|switchover|failover|reseed|watch  the database pair's roles and failover (agent db --help)
  agent help                              this text

Every command takes --help. Configuration: a YAML file (--config) plus HASTACK_AGENT_*
environment variables; secrets from files (*_FILE). See docs/agent.md.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	var err error
	switch args[0] {
	case "init":
		err = cmdInit(ctx, args[1:], stdout, stderr)
	case "run":
		err = cmdRun(ctx, args[1:], stdout, stderr)
	case "status":
		err = cmdStatus(ctx, args[1:], stdout, stderr)
	case "sync":
		err = cmdSync(ctx, args[1:], stdout, stderr)
	case "wait":
		err = cmdWait(ctx, args[1:], stdout, stderr)
	case "diff":
		err = cmdDiff(ctx, args[1:], stdout, stderr)
	case "backup":
		err = cmdBackup(ctx, args[1:], stdout, stderr)
	case "backups":
		err = cmdBackups(ctx, args[1:], stdout, stderr)
	case "restore":
		err = cmdRestore(ctx, args[1:], stdout, stderr)
	case "drill":
		err = cmdDrill(ctx, args[1:], stdout, stderr)
	case "archive":
		err = cmdArchive(ctx, args[1:], stdout, stderr)
	case "db":
		err = cmdDB(ctx, args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return exitOK
	default:
		fmt.Fprintf(stderr, "agent: unknown command %q\n\n%s", args[0], usage)
		return exitUsage
	}
	return exitCode(err, stderr)
}

// errUsage marks a command-line mistake; flag's own errors are reported by the flag set.
var errUsage = errors.New("usage")

// usageError is a command-line mistake with a message of its own: errors.Is(err, errUsage).
type usageError struct{ msg string }

func (e usageError) Error() string        { return e.msg }
func (e usageError) Is(target error) bool { return target == errUsage }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

func exitCode(err error, stderr io.Writer) int {
	var fe *config.FieldError
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, errHelp):
		return exitOK
	case errors.Is(err, errUsage):
		if err != errUsage { // a command's own message; flag errors are printed by the flag set
			fmt.Fprintln(stderr, "agent:", err)
		}
		return exitUsage
	case errors.As(err, &fe):
		fmt.Fprintln(stderr, "agent:", err)
		return exitConfig
	default:
		fmt.Fprintln(stderr, "agent:", err)
		return exitError
	}
}

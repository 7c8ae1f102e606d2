package dockerproxy

import (
	"net/http"
	"net/url"
	"path"
	"regexp"
	"strings"
)

// The calls cAdvisor's docker provider makes (github.com/google/cadvisor v0.60.6,
// container/docker, through github.com/moby/moby/client v0.4.0), and nothing else:
//
//	HEAD|GET /_ping                 docker.go APIVersionString: client.Ping (NegotiateAPIVersion),
//	                                and the client's own version negotiation before its first call
//	                                (client.go checkVersion); HEAD first, GET as the fallback
//	GET /v1.NN/version              docker.go VersionString: client.ServerVersion (Register's
//	                                ValidateInfo fallback, StatusFromDockerInfo)
//	GET /v1.NN/info                 docker.go Info and StatusWithContext: client.Info (plugin.go
//	                                InitializeFSContext, factory.go Register and RootDir)
//	GET /v1.NN/containers/{id}/json factory.go CanHandleAndAccept, handler.go newContainerHandler,
//	                                GetStats (health status) and GetExitCode: client.ContainerInspect
//	                                (no query: cAdvisor never asks for size=1)
//
// GET /containers/json (a list) is not called by cAdvisor; it is allowed as a harmless read
// for tools and our own checks. docker.go Images (GET /images/json) is called only by
// cAdvisor's REST API and web UI, which tools/cadvisor does not build: refused. Nor does the
// provider watch /events: new containers are found through the raw cgroup watcher.
var endpoints = []endpoint{
	{name: "ping", path: "/_ping"},
	{name: "version", path: "/version"},
	{name: "info", path: "/info"},
	{name: "list", path: "/containers/json", query: map[string]*regexp.Regexp{
		"all": boolValue, "size": boolValue, "limit": regexp.MustCompile(`^-?[0-9]{1,6}$`),
		// A JSON object of filters: Docker parses it; printable ASCII only, bounded.
		"filters": regexp.MustCompile(`^[\x20-\x7e]{0,1000}$`),
	}},
	{name: "inspect", path: "/containers/{id}/json", query: map[string]*regexp.Regexp{"size": boolValue}, stripEnv: true},
}

// endpoint is one call the proxy forwards.
type endpoint struct {
	name string
	// path without the version prefix; a segment "{id}" stands for a container's id or name.
	path string
	// query: the parameters allowed, each at most once, and what their values must look like.
	query map[string]*regexp.Regexp
	// stripEnv: remove Config.Env from the answer (environment variables carry secrets).
	stripEnv bool
}

var (
	// Docker's charset for container names and ids (daemon/names: RestrictedNameChars).
	idSegment = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,254}$`)
	// The API version prefix the client puts before every call but /_ping.
	versionPrefix = regexp.MustCompile(`^/v1\.[0-9]{1,3}/`)
	// Characters a path may contain at all: no percent-encoding, no ';', no '%', no '\'.
	pathChars = regexp.MustCompile(`^[a-zA-Z0-9_./-]+$`)
	boolValue = regexp.MustCompile(`^(0|1|true|false)$`)
)

// forward is an allowed request as it goes to the engine.
type forward struct {
	endpoint *endpoint
	path     string // the cleaned path, equal to the request's own
	query    string // the query re-encoded from its parsed, checked values
}

// refusal is why a request was refused; its text is sent to the client.
type refusal string

func (r refusal) Error() string { return string(r) }

// allow decides whether a request may pass: method and target (the raw request-target of the
// request line, as in http.Request.RequestURI). Only GET and HEAD of the endpoints above, with
// a path that is its own cleaned form, written without percent-encoding, and a query of the
// endpoint's own parameters.
func allow(method, target string) (forward, error) {
	if method != http.MethodGet && method != http.MethodHead {
		return forward{}, refusal("method " + method + " is not allowed: this proxy is read-only")
	}
	rawPath, rawQuery, _ := strings.Cut(target, "?")
	if !strings.HasPrefix(rawPath, "/") || !pathChars.MatchString(rawPath) || strings.Contains(rawQuery, "#") {
		return forward{}, refusal("malformed path")
	}
	if path.Clean(rawPath) != rawPath {
		return forward{}, refusal("path is not in its clean form")
	}
	rest := rawPath
	if loc := versionPrefix.FindStringIndex(rest); loc != nil {
		rest = rest[loc[1]-1:]
	}
	ep := match(rest)
	if ep == nil {
		return forward{}, refusal("endpoint not allowed by the proxy")
	}
	query, err := checkQuery(ep, rawQuery)
	if err != nil {
		return forward{}, err
	}
	return forward{endpoint: ep, path: rawPath, query: query}, nil
}

// match finds the endpoint for a clean, unversioned path.
func match(p string) *endpoint {
	got := strings.Split(p, "/")
	for i := range endpoints {
		want := strings.Split(endpoints[i].path, "/")
		if len(got) != len(want) {
			continue
		}
		ok := true
		for j := range want {
			if want[j] == "{id}" {
				ok = ok && idSegment.MatchString(got[j])
			} else {
				ok = ok && got[j] == want[j]
			}
		}
		if ok {
			return &endpoints[i]
		}
	}
	return nil
}

var errQuery = refusal("query parameter not allowed by the proxy")

// checkQuery parses the raw query strictly and returns it re-encoded.
func checkQuery(ep *endpoint, raw string) (string, error) {
	if raw == "" {
		return "", nil
	}
	values, err := url.ParseQuery(raw)
	if err != nil {
		return "", refusal("malformed query")
	}
	for k, vs := range values {
		re, ok := ep.query[k]
		if !ok || len(vs) != 1 || !re.MatchString(vs[0]) {
			return "", errQuery
		}
	}
	return values.Encode(), nil
}

package dockerproxy

import (
	"net/url"
	"path"
	"regexp"
	"strings"
	"testing"
)

// allowlist restates the allowed paths independently of allow's own matching.
var allowlist = regexp.MustCompile(`^(/v1\.[0-9]{1,3})?(/_ping|/version|/info|/containers/json|/containers/[a-zA-Z0-9][a-zA-Z0-9_.-]*/json)$`)

// FuzzAllowed checks that whatever allow lets through is a GET or HEAD of a path that is its
// own cleaned form, equal to the request's, on the allowlist, with a query of the endpoint's
// own parameters. Seeds: testdata/fuzz/FuzzAllowed.
func FuzzAllowed(f *testing.F) {
	f.Fuzz(func(t *testing.T, method, target string) {
		fwd, err := allow(method, target)
		if err != nil {
			if _, ok := err.(refusal); !ok {
				t.Fatalf("allow(%q, %q): error %T is not a refusal", method, target, err)
			}
			return
		}
		if method != "GET" && method != "HEAD" {
			t.Fatalf("allowed method %q", method)
		}
		rawPath, _, _ := strings.Cut(target, "?")
		if fwd.path != rawPath || path.Clean(fwd.path) != fwd.path {
			t.Fatalf("allow(%q): forwards %q, not the request's own cleaned path", target, fwd.path)
		}
		if !allowlist.MatchString(fwd.path) {
			t.Fatalf("allow(%q): %q is not on the allowlist", target, fwd.path)
		}
		if strings.ContainsAny(fwd.path, "%\\;") {
			t.Fatalf("allow(%q): encoded path %q", target, fwd.path)
		}
		q, err := url.ParseQuery(fwd.query)
		if err != nil {
			t.Fatalf("allow(%q): forwarded query %q does not parse: %v", target, fwd.query, err)
		}
		for k, vs := range q {
			if _, ok := fwd.endpoint.query[k]; !ok || len(vs) != 1 {
				t.Fatalf("allow(%q): forwards query parameter %q (%d times) to %s", target, k, len(vs), fwd.endpoint.name)
			}
		}
		if u := (&url.URL{Path: fwd.path, RawQuery: fwd.query}).RequestURI(); strings.ContainsAny(u, " \r\n#") {
			t.Fatalf("allow(%q): forwards %q", target, u)
		}
	})
}

func TestAllowEndpoints(t *testing.T) {
	for target, want := range map[string]string{
		"/_ping":                                "ping",
		"/v1.41/_ping":                          "ping",
		"/v1.9/version":                         "version",
		"/v1.123/info":                          "info",
		"/containers/json":                      "list",
		"/v1.41/containers/json?all=true":       "list",
		"/v1.41/containers/0123abcdef/json":     "inspect",
		"/v1.41/containers/hastack-db_1.x/json": "inspect",
		"/v1.41/containers/json/json":           "inspect", // a container may be called "json"
	} {
		fwd, err := allow("GET", target)
		if err != nil || fwd.endpoint.name != want {
			t.Errorf("allow(GET %q) = %v, %v; want %s", target, fwd.endpoint, err, want)
		}
	}
}

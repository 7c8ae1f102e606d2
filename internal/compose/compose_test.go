package compose

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

func TestHashTree(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a"), []byte("1"), 0o644)
	os.MkdirAll(filepath.Join(dir, "sub"), 0o755)
	os.WriteFile(filepath.Join(dir, "sub", "b"), []byte("2"), 0o644)
	h1, err := HashTree(dir)
	if err != nil {
		t.Fatal(err)
	}
	if h2, _ := HashTree(dir); h2 != h1 {
		t.Fatal("not stable")
	}
	os.WriteFile(filepath.Join(dir, "sub", "b"), []byte("3"), 0o644)
	if h3, _ := HashTree(dir); h3 == h1 {
		t.Fatal("content change not seen")
	}
	os.Chmod(filepath.Join(dir, "a"), 0o755)
	h4, _ := HashTree(dir)
	os.Chmod(filepath.Join(dir, "a"), 0o644)
	if h5, _ := HashTree(dir); h4 == h5 {
		t.Fatal("mode change not seen")
	}
	if _, err := HashTree(filepath.Join(dir, "missing")); err != nil {
		t.Fatalf("a missing path digests as empty: %v", err)
	}
}

func TestWriteDigestOverride(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "web"), 0o755)
	os.WriteFile(filepath.Join(dir, "web", "index.php"), []byte("v1"), 0o644)
	services := []Service{
		{Name: "web", BuildContext: "/current/web", BindSources: []string{"/current/secrets/web", "/proc"}},
		{Name: "db"},
	}
	resolve := func(p string) string {
		if strings.HasPrefix(p, "/current/web") {
			return filepath.Join(dir, strings.TrimPrefix(p, "/current/"))
		}
		return "" // secrets and host paths are not part of the release
	}
	out := filepath.Join(dir, "override.yml")
	read := func() string {
		if err := WriteDigestOverride(out, services, resolve); err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(out)
		return string(b)
	}
	first := read()
	if !strings.Contains(first, "  web:\n    labels:\n      "+DigestLabel+": ") || !strings.Contains(first, "  db:\n") {
		t.Fatalf("override:\n%s", first)
	}
	if read() != first {
		t.Fatal("not deterministic")
	}
	os.WriteFile(filepath.Join(dir, "web", "index.php"), []byte("v2"), 0o644)
	second := read()
	if second == first {
		t.Fatal("a changed build context file did not change the digest")
	}
	// db's digest (nothing of the release) stays.
	digestOf := func(doc, svc string) string {
		var o struct {
			Services map[string]struct {
				Labels map[string]string `yaml:"labels"`
			} `yaml:"services"`
		}
		if err := yaml.Unmarshal([]byte(doc), &o); err != nil {
			t.Fatal(err)
		}
		return o.Services[svc].Labels[DigestLabel]
	}
	if digestOf(first, "db") != digestOf(second, "db") || digestOf(first, "db") == "" {
		t.Fatal("db's digest changed")
	}
}

// A build with its own <Dockerfile>.dockerignore (context the repository root, as for
// Alertmanager) is digested by that file, as Docker sends it: a file it admits counts, a file
// only the root's .dockerignore would admit does not.
func TestHashContextFollowsTheDockerfilesOwnIgnoreFile(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "stack", "alertmanager"), 0o755)
	os.MkdirAll(filepath.Join(dir, "cmd"), 0o755)
	os.WriteFile(filepath.Join(dir, ".dockerignore"), []byte("*\n!cmd/\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "stack", "alertmanager", "Dockerfile.dockerignore"), []byte("*\n!stack/alertmanager/\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "stack", "alertmanager", "tmpl.yml"), []byte("v1"), 0o644)
	os.WriteFile(filepath.Join(dir, "cmd", "main.go"), []byte("v1"), 0o644)
	base, err := HashContext(dir, "stack/alertmanager/Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "cmd", "main.go"), []byte("v2"), 0o644)
	if h, _ := HashContext(dir, "stack/alertmanager/Dockerfile"); h != base {
		t.Error("a file the Dockerfile's own ignore file leaves out changed the digest")
	}
	os.WriteFile(filepath.Join(dir, "stack", "alertmanager", "tmpl.yml"), []byte("v2"), 0o644)
	if h, _ := HashContext(dir, "stack/alertmanager/Dockerfile"); h == base {
		t.Error("a file the Dockerfile's own ignore file admits did not change the digest")
	}
	// The Dockerfile counts although its ignore file leaves it out of the context.
	withTmpl, _ := HashContext(dir, "stack/alertmanager/Dockerfile")
	os.WriteFile(filepath.Join(dir, "stack", "alertmanager", "Dockerfile"), []byte("FROM debian:trixie-slim\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "stack", "alertmanager", "Dockerfile.dockerignore"), []byte("*\n!stack/alertmanager/\nstack/alertmanager/Dockerfile*\n"), 0o644)
	before, _ := HashContext(dir, "stack/alertmanager/Dockerfile")
	os.WriteFile(filepath.Join(dir, "stack", "alertmanager", "Dockerfile"), []byte("FROM debian:trixie-slim\nRUN true\n"), 0o644)
	if h, _ := HashContext(dir, "stack/alertmanager/Dockerfile"); h == before || before == withTmpl {
		t.Error("a change to the Dockerfile, left out of the context by its ignore file, did not change the digest")
	}
}

// TestRunEnvironment: the compose CLI gets what it needs from the agent's environment and
// none of the agent's secrets.
func TestRunEnvironment(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "docker")
	// A stand-in for the docker CLI that prints its environment.
	if err := os.WriteFile(bin, []byte("#!/bin/sh\nexec env\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HASTACK_AGENT_GIT_TOKEN", "ghp_leak")
	t.Setenv("HASTACK_AGENT_WEBHOOK_SECRET", "hook_leak")
	t.Setenv("HASTACK_AGENT_API_TOKEN", "api_leak")
	t.Setenv("HASTACK_AGENT_SLACK_WEBHOOK_URL", "https://hooks.slack.com/services/slack_leak")
	t.Setenv("HASTACK_AGENT_SMTP_PASSWORD", "smtp_leak")
	t.Setenv("HASTACK_AGENT_S3_SECRET_ACCESS_KEY", "s3_leak")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "aws_leak")
	t.Setenv("DOCKER_HOST", "unix:///run/test-docker.sock")
	t.Setenv("HOME", "/home/test")

	p := Project{Name: "test", Dir: dir, Binary: bin}
	out, err := p.run(t.Context(), "version")
	if err != nil {
		t.Fatal(err)
	}
	env := string(out)
	for _, want := range []string{"DOCKER_HOST=unix:///run/test-docker.sock\n", "HOME=/home/test\n", "PATH=" + os.Getenv("PATH") + "\n"} {
		if !strings.Contains(env, want) {
			t.Errorf("the CLI's environment lacks %q:\n%s", want, env)
		}
	}
	if strings.Contains(env, "_leak") || strings.Contains(env, "HASTACK_AGENT_") {
		t.Errorf("a secret reaches the CLI:\n%s", env)
	}
}

// TestRunOutput: stdout is returned as printed, and a failure's error holds what the CLI
// printed on both streams, which it writes at the same time (a data race under -race once).
func TestRunOutput(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "docker")
	script := `#!/bin/sh
i=0
while [ $i -lt 200 ]; do echo "out $i"; echo "err $i" >&2; i=$((i+1)); done &
while [ $i -lt 200 ]; do echo "out2 $i"; echo "err2 $i" >&2; i=$((i+1)); done
wait
for last; do :; done
[ "$last" != fail ] || { echo "last words" >&2; exit 3; }
`
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	var progress strings.Builder
	p := Project{Name: "test", Dir: dir, Binary: bin, Output: &progress}
	out, err := p.run(t.Context(), "ok")
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(out), "\n"); n != 400 || strings.Contains(string(out), "err") {
		t.Errorf("stdout has %d lines, or stderr in it:\n%s", n, out)
	}
	if n := strings.Count(progress.String(), "\n"); n != 400 || strings.Contains(progress.String(), "out") {
		t.Errorf("Output has %d lines, or stdout in it", n)
	}

	_, err = p.run(t.Context(), "fail")
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("error %v, want an *Error", err)
	}
	if n := strings.Count(ce.Output, "\n"); n != 801 {
		t.Errorf("the error's output has %d lines, want both streams' 801", n)
	}
	// The two pipes are read apart: what was printed last on one may come before the other's.
	if !strings.Contains(ce.Output, "last words\n") {
		t.Errorf("the error's output lacks the CLI's last line:\n%s", ce.Output)
	}
}

// A build context's digest follows what Docker sends: files its .dockerignore leaves out do
// not change it, files it keeps and the .dockerignore itself do.
func TestHashContextFollowsDockerignore(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(".dockerignore", "*\n!go.mod\n!internal/\ninternal/**/*_test.go\n")
	write("go.mod", "module x\n")
	write("internal/a/a.go", "package a\n")
	write("internal/a/a_test.go", "package a\n")
	write("stack/web/html/index.php", "v1")
	base, err := HashContext(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	for name, changes := range map[string]bool{
		"stack/web/html/index.php": false, "internal/a/a_test.go": false,
		"internal/a/a.go": true, "go.mod": true, ".dockerignore": true,
	} {
		b, _ := os.ReadFile(filepath.Join(dir, name))
		write(name, string(b)+"\n# changed")
		got, err := HashContext(dir, "")
		if err != nil {
			t.Fatal(err)
		}
		if (got != base) != changes {
			t.Errorf("changing %s: digest changed %v, want %v", name, got != base, changes)
		}
		write(name, string(b))
	}
	// Without a .dockerignore every file counts.
	other := t.TempDir()
	os.WriteFile(filepath.Join(other, "f"), []byte("1"), 0o644)
	h1, _ := HashContext(other, "")
	os.WriteFile(filepath.Join(other, "f"), []byte("2"), 0o644)
	if h2, _ := HashContext(other, ""); h1 == h2 {
		t.Error("without a .dockerignore a changed file did not change the digest")
	}
}

// A cancelled command (the agent stopping) gets SIGTERM, and its time to finish: a stand-in
// CLI that traps TERM writes a mark on its way out, which SIGKILL would never let it do.
func TestRunCancelledGetsSIGTERM(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "docker")
	mark := filepath.Join(dir, "terminated")
	script := "#!/bin/sh\ntrap 'echo term > " + mark + "; exit 143' TERM\necho started > " + mark + ".started\nwhile :; do sleep 0.1; done\n"
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		_, err := Project{Name: "test", Dir: dir, Binary: bin}.run(ctx, "up")
		done <- err
	}()
	for i := 0; i < 500 && !fileExists(mark+".started"); i++ {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err == nil {
		t.Fatal("a cancelled command succeeded")
	}
	if b, err := os.ReadFile(mark); err != nil || strings.TrimSpace(string(b)) != "term" {
		t.Fatalf("the CLI did not get SIGTERM and time to exit: %q %v", b, err)
	}
}

//go:build e2e

package e2e

import (
	"context"
	"crypto/tls"
	"database/sql"
	"net"
	"net/http"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// probe runs a TCP connect from inside container to host:port with a 2 s bound and reports
// whether it connected.
func probe(ctx context.Context, container, host, port string) bool {
	err := exec.CommandContext(ctx, "docker", "exec", container, "timeout", "2", "bash", "-c",
		"exec 3<>/dev/tcp/"+host+"/"+port).Run()
	return err == nil
}

// addresses lists a container's addresses on every network it is on.
func addresses(ctx context.Context, container string) []string {
	out, _ := exec.CommandContext(ctx, "docker", "inspect", "--format",
		"{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", container).Output()
	return strings.Fields(string(out))
}

// From inside web1 (a web server an attacker may have taken): the databases and nginx answer;
// Alertmanager, Prometheus, every exporter, cAdvisor, Grafana and the backup store neither
// resolve nor answer on any of their addresses.
func testWebReachesOnlyWhatItNeeds(t *testing.T, ctx context.Context) {
	web := c("web1")
	for _, target := range []struct{ service, port string }{
		{"db_master", "3306"}, {"db_slave", "3306"}, {"nginx", "443"},
	} {
		if !probe(ctx, web, target.service, target.port) {
			t.Errorf("web1 cannot reach %s:%s, which it needs", target.service, target.port)
		}
	}
	for _, target := range []struct{ service, port string }{
		{"alertmanager", "9093"}, {"prometheus", "9090"}, {"mysql_exporter", "9104"},
		{"node_exporter", "9100"}, {"nginx_exporter", "9113"}, {"cadvisor", "8080"},
		{"objectstore", "7070"}, {"grafana", "3000"},
	} {
		// Bounded, should a name the network does not know ever wait on the host's resolvers.
		if out, err := exec.CommandContext(ctx, "docker", "exec", web, "timeout", "3", "getent", "hosts", target.service).CombinedOutput(); err == nil {
			t.Errorf("web1 resolves %s: %s", target.service, out)
		}
		for _, ip := range addresses(ctx, c(target.service)) {
			if probe(ctx, web, ip, target.port) {
				t.Errorf("web1 reaches %s at %s:%s", target.service, ip, target.port)
			}
		}
	}
}

// Each database account can do what it is for and no more: nobody but root reads mysql.*
// (password hashes) and only app writes the application's tables.
func testAccountsHaveLeastPrivilege(t *testing.T, ctx context.Context) {
	denied := regexp.MustCompile(`(?i)denied`)
	for _, tc := range []struct {
		user, secret, sql string
		allowed           bool
	}{
		{"exporter", "db/exporter_password", "SHOW GLOBAL STATUS LIKE 'Uptime'", true},
		{"exporter", "db/exporter_password", "SELECT COUNT(*) FROM performance_schema.setup_instruments", true},
		{"exporter", "db/exporter_password", "SELECT COUNT(*) FROM mysql.global_priv", false},
		{"exporter", "db/exporter_password", "SELECT COUNT(*) FROM app.visits", false},
		{"repl", "db/repl_password", "SELECT COUNT(*) FROM app.visits", true}, // a new replica's seed
		{"repl", "db/repl_password", "SELECT COUNT(*) FROM mysql.global_priv", false},
		{"repl", "db/repl_password", "INSERT INTO app.visits (server) VALUES ('x')", false},
		{"app", "db/app_password", "SELECT COUNT(*) FROM app.visits", true},
		{"app", "db/app_password", "SELECT COUNT(*) FROM mysql.global_priv", false},
		{"app", "db/app_password", "CREATE TABLE app.x (i INT)", false},
		{"app", "db/app_password", "DROP TABLE app.visits", false},
	} {
		out, err := st.sql(ctx, "db_master", tc.user, st.secret(t, tc.secret), tc.sql)
		switch {
		case tc.allowed && err != nil:
			t.Errorf("%s: %s: %v %s, want allowed", tc.user, tc.sql, err, out)
		case !tc.allowed && (err == nil || !denied.MatchString(out)):
			t.Errorf("%s: %s: %v %s, want access denied", tc.user, tc.sql, err, out)
		}
	}
	// The agent's account administers replication from the host (the data network's gateway)
	// and reads no data; from anywhere else (here: inside the container) it does not exist.
	agentPW := st.secret(t, "db/agent_password")
	if out, err := st.sql(ctx, "db_master", "agent", agentPW, "SELECT 1"); err == nil || !denied.MatchString(out) {
		t.Errorf("agent from inside db_master: %v %s, want access denied (the account is for the host's address only)", err, out)
	}
	cfg := mysql.NewConfig()
	cfg.User, cfg.Passwd, cfg.Net, cfg.Addr, cfg.Timeout = "agent", agentPW, "tcp", dataNetPrefix+".21:3306", 5*time.Second
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(connector)
	defer db.Close()
	for _, tc := range []struct {
		sql     string
		allowed bool
	}{
		{"SHOW SLAVE STATUS", true},
		{"SELECT @@gtid_binlog_state", true},
		{"SELECT COUNT(*) FROM app.visits", false},
		{"SELECT COUNT(*) FROM mysql.global_priv", false},
		{"INSERT INTO app.visits (server) VALUES ('x')", false},
		{"CREATE USER 'x'@'%'", false},
	} {
		rows, err := db.QueryContext(ctx, tc.sql)
		if err == nil {
			rows.Close()
		}
		switch {
		case tc.allowed && err != nil:
			t.Errorf("agent: %s: %v, want allowed", tc.sql, err)
		case !tc.allowed && (err == nil || !denied.MatchString(err.Error())):
			t.Errorf("agent: %s: %v, want access denied", tc.sql, err)
		}
	}
}

// TLS 1.2 offers ECDHE key exchange with AEAD ciphers only (Mozilla intermediate); every
// answer carries the security headers; Grafana's port is TLS and plain HTTP there redirects.
func testTLSProfileAndHeaders(t *testing.T, ctx context.Context) {
	dial := func(suites ...uint16) error {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", "127.0.0.1:"+httpsPort,
			&tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS12, CipherSuites: suites})
		if err == nil {
			conn.Close()
		}
		return err
	}
	for name, suite := range map[string]uint16{
		"static RSA, AES-CBC, SHA-1": tls.TLS_RSA_WITH_AES_128_CBC_SHA,
		"static RSA, AES-GCM":        tls.TLS_RSA_WITH_AES_128_GCM_SHA256,
		"ECDHE, AES-CBC, SHA-1":      tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA,
		"ECDHE, AES-CBC, SHA-256":    tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256,
	} {
		if err := dial(suite); err == nil {
			t.Errorf("TLS 1.2 with %s: accepted, want refused", name)
		}
	}
	if err := dial(tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256); err != nil {
		t.Errorf("TLS 1.2 with ECDHE-RSA-AES128-GCM-SHA256: %v", err)
	}
	// The same with an independent client: openssl's s_client, as the issue reproduced it.
	cmd := exec.CommandContext(ctx, "openssl", "s_client", "-connect", "127.0.0.1:"+httpsPort, "-tls1_2", "-cipher", "AES128-SHA")
	cmd.Stdin = strings.NewReader("")
	if out, err := cmd.CombinedOutput(); err == nil {
		t.Errorf("openssl s_client -tls1_2 -cipher AES128-SHA connected:\n%s", tail(string(out), 10))
	}

	resp, err := httpsClient(10 * time.Second).Get(siteURL("/"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for header, want := range map[string]string{
		"Strict-Transport-Security": "max-age=", "X-Content-Type-Options": "nosniff",
		"Referrer-Policy": "strict-origin-when-cross-origin", "Content-Security-Policy": "frame-ancestors 'self'",
	} {
		if got := resp.Header.Get(header); !strings.Contains(got, want) {
			t.Errorf("%s = %q, want %q", header, got, want)
		}
	}

	// Grafana's port: TLS (whether Grafana runs here or not), and http:// redirects to https://.
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", "127.0.0.1:"+grafanaPort, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("Grafana's port does not speak TLS: %v", err)
	}
	conn.Close()
	plain := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err = plain.Get("http://127.0.0.1:" + grafanaPort + "/login")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if want := "https://127.0.0.1:" + grafanaPort + "/login"; resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != want {
		t.Errorf("http:// to Grafana's port: %d Location %q, want 301 to %s", resp.StatusCode, resp.Header.Get("Location"), want)
	}
}

// pageErrorsAreGeneric fails the test if a page error carries more than which part failed.
func pageErrorsAreGeneric(t *testing.T, errs []string) {
	t.Helper()
	for _, e := range errs {
		if !regexp.MustCompile(`^(primary|replica|read): unavailable$`).MatchString(e) {
			t.Errorf("the page shows the database's error text: %q", e)
		}
	}
}

// privileges is how a container runs: its processes' users, capabilities and root filesystem.
type privileges struct {
	rootProcesses []string // commands running as uid 0
	capAdd        []string
	dropsAll      bool
	readOnly      bool
	noNewPrivs    bool
}

func privilegesOf(t *testing.T, ctx context.Context, container string) privileges {
	t.Helper()
	var p privileges
	out, err := exec.CommandContext(ctx, "docker", "inspect", "--format",
		"{{json .HostConfig.CapAdd}}|{{json .HostConfig.CapDrop}}|{{.HostConfig.ReadonlyRootfs}}|{{json .HostConfig.SecurityOpt}}", container).Output()
	if err != nil {
		t.Fatalf("inspect %s: %v", container, err)
	}
	f := strings.Split(strings.TrimSpace(string(out)), "|")
	if f[0] != "null" {
		p.capAdd = strings.Split(strings.Trim(f[0], `[]"`), `","`)
	}
	p.dropsAll = strings.Contains(f[1], `"ALL"`)
	p.readOnly = f[2] == "true"
	p.noNewPrivs = strings.Contains(f[3], "no-new-privileges")
	// docker top runs ps on the host: uid is the host's (no user namespaces here).
	// (docker top needs the pid column.)
	out, err = exec.CommandContext(ctx, "docker", "top", container, "-eo", "pid,uid,args").Output()
	if err != nil {
		t.Fatalf("docker top %s: %v", container, err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n")[1:] {
		if fields := strings.Fields(line); len(fields) > 2 && fields[1] == "0" {
			p.rootProcesses = append(p.rootProcesses, strings.Join(fields[2:], " "))
		}
	}
	return p
}

// Every long-running container: no process as root, no capability, no privilege gained
// through setuid binaries, a read-only root filesystem. The exceptions are the ones
// docs/security.md lists, each with what it keeps.
func testContainersRunUnprivileged(t *testing.T, ctx context.Context) {
	for _, svc := range longRunning {
		p := privilegesOf(t, ctx, c(svc))
		if !p.noNewPrivs {
			t.Errorf("%s: no-new-privileges is not set", svc)
		}
		if !p.dropsAll {
			t.Errorf("%s: does not drop all capabilities", svc)
		}
		if !p.readOnly {
			t.Errorf("%s: its root filesystem is writable", svc)
		}
		switch svc {
		case "alertmanager", "nginx":
			// Their entrypoints start as root (Alertmanager's renders its configuration, nginx's
			// reads the TLS key), then run the server as its user with no capability left.
			if len(p.rootProcesses) > 0 {
				t.Errorf("%s: processes as root: %q", svc, p.rootProcesses)
			}
			want := map[string][]string{"alertmanager": {"CHOWN", "DAC_OVERRIDE", "FOWNER", "SETUID", "SETGID"},
				"nginx": {"SETUID", "SETGID", "DAC_READ_SEARCH"}}[svc]
			if !slices.Equal(p.capAdd, want) {
				t.Errorf("%s: capabilities %q, want %q", svc, p.capAdd, want)
			}
			out, _ := exec.CommandContext(ctx, "docker", "exec", c(svc), "grep", "CapEff", "/proc/1/status").Output()
			if !strings.Contains(string(out), "0000000000000000") {
				t.Errorf("%s: its server keeps capabilities: %s", svc, out)
			}
		case "cadvisor", "docker-proxy":
			// uid 0 without any capability: cAdvisor reads the host's /proc and cgroups (root's
			// files), docker-proxy connects to the socket (root's); neither can do more than
			// those files' owner may. Docker's API reaches cAdvisor only through docker-proxy.
			if len(p.capAdd) > 0 {
				t.Errorf("%s: capabilities %q, want none", svc, p.capAdd)
			}
			out, _ := exec.CommandContext(ctx, "docker", "inspect", "--format", "{{range .Mounts}}{{.Source}} {{end}}", c(svc)).Output()
			for _, m := range strings.Fields(string(out)) {
				if m == "/" || m == "/var/run" || m == "/run" || m == "/var/lib/docker" || (m == "/var/run/docker.sock" && svc == "cadvisor") {
					t.Errorf("%s mounts %s", svc, m)
				}
			}
		default:
			if len(p.rootProcesses) > 0 {
				t.Errorf("%s: processes as root: %q", svc, p.rootProcesses)
			}
			if len(p.capAdd) > 0 {
				t.Errorf("%s: capabilities %q, want none", svc, p.capAdd)
			}
		}
	}
}

package alerts

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"strings"
	"sync"
	"testing"
)

// fakeAlertmanager records the alerts posted to /api/v2/alerts and answers with status.
type fakeAlertmanager struct {
	*httptest.Server
	mu     sync.Mutex
	posts  [][]Alert
	status int
	during func() // called once, while a post is in flight (before it is taken)
}

func newFakeAlertmanager(t *testing.T) *fakeAlertmanager {
	t.Helper()
	f := &fakeAlertmanager{status: http.StatusOK}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/api/v2/alerts" {
			http.Error(w, "not found", http.StatusNotFound)
			return
		}
		if ct := r.Header.Get("Content-Type"); ct != "application/json" {
			http.Error(w, "content type "+ct, http.StatusBadRequest)
			return
		}
		var alerts []Alert
		if err := json.NewDecoder(r.Body).Decode(&alerts); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		f.mu.Lock()
		during := f.during
		f.during = nil
		f.mu.Unlock()
		if during != nil {
			during()
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.status != http.StatusOK {
			http.Error(w, `{"code":500,"message":"storage full"}`, f.status)
			return
		}
		f.posts = append(f.posts, alerts)
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeAlertmanager) setStatus(code int) {
	f.mu.Lock()
	f.status = code
	f.mu.Unlock()
}

// taken returns every post it accepted.
func (f *fakeAlertmanager) taken() [][]Alert {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([][]Alert(nil), f.posts...)
}

// last returns the last accepted post.
func (f *fakeAlertmanager) last(t *testing.T) []Alert {
	t.Helper()
	p := f.taken()
	if len(p) == 0 {
		t.Fatal("Alertmanager received nothing")
	}
	return p[len(p)-1]
}

// fakeSlack records the messages posted to its incoming webhook (any path).
type fakeSlack struct {
	*httptest.Server
	mu     sync.Mutex
	texts  []string
	paths  []string
	status int
}

func newFakeSlack(t *testing.T) *fakeSlack {
	t.Helper()
	f := &fakeSlack{status: http.StatusOK}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m slackMessage
		if err := json.NewDecoder(r.Body).Decode(&m); err != nil || m.Text == "" {
			http.Error(w, "invalid_payload", http.StatusBadRequest)
			return
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.status != http.StatusOK {
			http.Error(w, "no_service", f.status)
			return
		}
		f.texts = append(f.texts, m.Text)
		f.paths = append(f.paths, r.URL.Path)
		io.WriteString(w, "ok")
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeSlack) setStatus(code int) {
	f.mu.Lock()
	f.status = code
	f.mu.Unlock()
}

func (f *fakeSlack) messages() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.texts...)
}

// fakeSMTP is an SMTP server that records messages. With tlsConfig it offers STARTTLS; it
// always offers AUTH PLAIN and records the credentials.
type fakeSMTP struct {
	ln        net.Listener
	tlsConfig *tls.Config
	mu        sync.Mutex
	msgs      []smtpMessage
}

type smtpMessage struct {
	from       string
	to         []string
	data       string
	tls        bool
	user, pass string
}

func newFakeSMTP(t *testing.T, tlsConfig *tls.Config) *fakeSMTP {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeSMTP{ln: ln, tlsConfig: tlsConfig}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go f.serve(c)
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return f
}

func (f *fakeSMTP) addr() string { return f.ln.Addr().String() }

func (f *fakeSMTP) messages() []smtpMessage {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]smtpMessage(nil), f.msgs...)
}

func (f *fakeSMTP) serve(conn net.Conn) {
	defer func() { conn.Close() }()
	tp := textproto.NewConn(conn)
	tp.PrintfLine("220 fake ESMTP")
	var m smtpMessage
	for {
		line, err := tp.ReadLine()
		if err != nil {
			return
		}
		verb, arg, _ := strings.Cut(line, " ")
		switch strings.ToUpper(verb) {
		case "EHLO", "HELO":
			ext := []string{"fake"}
			if f.tlsConfig != nil && !m.tls {
				ext = append(ext, "STARTTLS")
			}
			ext = append(ext, "AUTH PLAIN", "8BITMIME")
			for i, e := range ext {
				sep := "-"
				if i == len(ext)-1 {
					sep = " "
				}
				tp.PrintfLine("250%s%s", sep, e)
			}
		case "STARTTLS":
			tp.PrintfLine("220 go ahead")
			tc := tls.Server(conn, f.tlsConfig)
			if err := tc.Handshake(); err != nil {
				return
			}
			conn, tp, m.tls = tc, textproto.NewConn(tc), true
		case "AUTH":
			_, ir, _ := strings.Cut(arg, " ")
			b, _ := base64.StdEncoding.DecodeString(ir)
			parts := strings.Split(string(b), "\x00")
			if len(parts) == 3 {
				m.user, m.pass = parts[1], parts[2]
			}
			tp.PrintfLine("235 2.7.0 accepted")
		case "MAIL":
			m.from = arg
			tp.PrintfLine("250 ok")
		case "RCPT":
			m.to = append(m.to, arg)
			tp.PrintfLine("250 ok")
		case "DATA":
			tp.PrintfLine("354 go ahead")
			data, err := tp.ReadDotBytes()
			if err != nil {
				return
			}
			m.data = string(data)
			f.mu.Lock()
			f.msgs = append(f.msgs, m)
			f.mu.Unlock()
			tp.PrintfLine("250 queued")
		case "QUIT":
			tp.PrintfLine("221 bye")
			return
		default:
			tp.PrintfLine("250 ok")
		}
	}
}

// testTLS returns a server certificate for 127.0.0.1 and a client configuration trusting it.
func testTLS(t *testing.T) (server, client *tls.Config) {
	t.Helper()
	ts := httptest.NewTLSServer(http.NotFoundHandler()) // its certificate covers 127.0.0.1
	defer ts.Close()
	pool := x509.NewCertPool()
	pool.AddCert(ts.Certificate())
	return &tls.Config{Certificates: ts.TLS.Certificates}, &tls.Config{RootCAs: pool}
}

// logBuffer is a JSON logger whose output the test reads.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func newLogBuffer() (*logBuffer, *slog.Logger) {
	b := &logBuffer{}
	return b, slog.New(slog.NewJSONHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

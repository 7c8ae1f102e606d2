package alerts

import (
	"context"
	"io"
	"mime"
	"mime/quotedprintable"
	"net/http"
	"net/mail"
	"strings"
	"testing"
	"time"
)

func testNotification() Notification {
	a := newAlert("BackupFailed", nil, "backup failed: dump of db_slave: exit status 2", "host1", "",
		time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC))
	return Notification{Alert: a, Reason: "Alertmanager did not take the alert (connection refused)"}
}

// readMessage parses a received message: its headers, decoded subject and decoded body.
func readMessage(t *testing.T, data string) (mail.Header, string, string) {
	t.Helper()
	m, err := mail.ReadMessage(strings.NewReader(data))
	if err != nil {
		t.Fatalf("not a message: %v\n%s", err, data)
	}
	subject, err := new(mime.WordDecoder).DecodeHeader(m.Header.Get("Subject"))
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(quotedprintable.NewReader(m.Body))
	if err != nil {
		t.Fatal(err)
	}
	return m.Header, subject, string(body)
}

func TestEmailStartTLSAndAuth(t *testing.T) {
	serverTLS, clientTLS := testTLS(t)
	srv := newFakeSMTP(t, serverTLS)
	e, err := NewEmail(EmailOptions{
		Smarthost: srv.addr(), From: "hastack <alerts@example.com>", To: []string{"ops@example.com", "Night <night@example.com>"},
		Username: "alerts@example.com", Password: "smtp-secret", RequireTLS: true, TLSConfig: clientTLS, Hello: "host1",
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Notify(context.Background(), testNotification()); err != nil {
		t.Fatal(err)
	}
	msgs := srv.messages()
	if len(msgs) != 1 {
		t.Fatalf("%d messages, want 1", len(msgs))
	}
	m := msgs[0]
	if !m.tls || m.user != "alerts@example.com" || m.pass != "smtp-secret" {
		t.Errorf("tls %v, auth %q/%q: want STARTTLS then PLAIN with the credentials", m.tls, m.user, m.pass)
	}
	if !strings.HasPrefix(m.from, "FROM:<alerts@example.com>") || len(m.to) != 2 || m.to[1] != "TO:<night@example.com>" {
		t.Errorf("envelope from %q to %q", m.from, m.to)
	}
	h, subject, body := readMessage(t, m.data)
	if subject != "[FIRING] BackupFailed (critical): A scheduled backup failed (host1)" {
		t.Errorf("subject %q", subject)
	}
	for _, name := range []string{"From", "To", "Date", "Message-Id"} {
		if h.Get(name) == "" {
			t.Errorf("no %s header", name)
		}
	}
	if _, err := h.Date(); err != nil {
		t.Errorf("Date: %v", err)
	}
	if to, err := h.AddressList("To"); err != nil || len(to) != 2 {
		t.Errorf("To: %v %v", to, err)
	}
	for _, want := range []string{"[FIRING] BackupFailed (critical)", "A scheduled backup failed (host1)",
		"exit status 2", "Check first:", "Host:   host1", "connection refused"} {
		if !strings.Contains(body, want) {
			t.Errorf("body lacks %q:\n%s", want, body)
		}
	}
}

func TestEmailRequiresTLS(t *testing.T) {
	srv := newFakeSMTP(t, nil) // no STARTTLS
	e, err := NewEmail(EmailOptions{Smarthost: srv.addr(), From: "alerts@example.com", To: []string{"ops@example.com"}, RequireTLS: true})
	if err != nil {
		t.Fatal(err)
	}
	err = e.Notify(context.Background(), testNotification())
	if err == nil || !strings.Contains(err.Error(), "STARTTLS") {
		t.Errorf("error %v, want a refusal naming STARTTLS", err)
	}
	if len(srv.messages()) != 0 {
		t.Error("sent over a plain connection")
	}

	e.opts.RequireTLS = false // a local relay
	n := testNotification()
	n.Resolved, n.Alert.EndsAt = true, n.Alert.StartsAt.Add(time.Hour)
	if err := e.Notify(context.Background(), n); err != nil {
		t.Fatal(err)
	}
	_, subject, body := readMessage(t, srv.messages()[0].data)
	if !strings.HasPrefix(subject, "[RESOLVED] BackupFailed") || !strings.Contains(body, "Ended:  2025-03-04 06:06:07 UTC") {
		t.Errorf("subject %q body:\n%s", subject, body)
	}
}

func TestEmailOptionsChecked(t *testing.T) {
	for _, o := range []EmailOptions{
		{Smarthost: "smtp.example.com", From: "a@example.com", To: []string{"b@example.com"}},
		{Smarthost: "smtp.example.com:25", From: "not an address", To: []string{"b@example.com"}},
		{Smarthost: "smtp.example.com:25", From: "a@example.com"},
	} {
		if _, err := NewEmail(o); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
}

func TestSlackMessageAndErrors(t *testing.T) {
	f := newFakeSlack(t)
	s, err := NewSlack(f.URL+"/services/"+slackSecret, "#alerts", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Notify(context.Background(), testNotification()); err != nil {
		t.Fatal(err)
	}
	text := f.messages()[0]
	for _, want := range []string{"*[FIRING] BackupFailed (critical)*", "A scheduled backup failed (host1)", "exit status 2", "Host:   host1"} {
		if !strings.Contains(text, want) {
			t.Errorf("text lacks %q:\n%s", want, text)
		}
	}
	if f.paths[0] != "/services/"+slackSecret {
		t.Errorf("posted to %q", f.paths[0])
	}

	f.setStatus(http.StatusForbidden)
	err = s.Notify(context.Background(), testNotification())
	if err == nil || !strings.Contains(err.Error(), "403") {
		t.Errorf("error %v, want the status", err)
	}
	f.Close()
	err = s.Notify(context.Background(), testNotification())
	if err == nil {
		t.Fatal("no error from a closed server")
	}
	for _, e := range []string{err.Error()} {
		if strings.Contains(e, "SECRET") || !strings.Contains(e, s.Host()) {
			t.Errorf("error %q: want the host, not the URL", e)
		}
	}
	if _, err := NewSlack("hooks.slack.com/services/"+slackSecret, "", nil); err == nil || strings.Contains(err.Error(), "SECRET") {
		t.Errorf("a URL without a scheme: %v", err)
	}
}

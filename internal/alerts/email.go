package alerts

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"net/smtp"
	"strings"
	"time"
)

// EmailOptions is the SMTP server and the addresses of e-mail notifications.
type EmailOptions struct {
	Smarthost string   // host:port; port 465 speaks TLS from the start, others STARTTLS
	From      string   // "hastack <alerts@example.com>"
	To        []string // one or more addresses
	Username  string   // PLAIN authentication when set
	Password  string
	// RequireTLS refuses a server on a plain connection that does not offer STARTTLS.
	RequireTLS bool
	// TLSConfig verifies the server (nil: the system's roots, the smarthost's name).
	TLSConfig *tls.Config
	Hello     string        // the name given in EHLO (default: the host name)
	Timeout   time.Duration // for the whole conversation (default 30 s)
}

// Email sends notifications by SMTP with net/smtp.
type Email struct {
	opts EmailOptions
	host string // the smarthost's host name
	from *mail.Address
	to   []*mail.Address
}

// NewEmail checks the addresses and the smarthost.
func NewEmail(opts EmailOptions) (*Email, error) {
	host, _, err := net.SplitHostPort(opts.Smarthost)
	if err != nil || host == "" {
		return nil, fmt.Errorf("email: smarthost %q is not host:port", opts.Smarthost)
	}
	from, err := mail.ParseAddress(opts.From)
	if err != nil {
		return nil, fmt.Errorf("email: from %q: %w", opts.From, err)
	}
	if len(opts.To) == 0 {
		return nil, errors.New("email: no recipient")
	}
	e := &Email{opts: opts, host: host, from: from}
	for _, t := range opts.To {
		a, err := mail.ParseAddress(t)
		if err != nil {
			return nil, fmt.Errorf("email: to %q: %w", t, err)
		}
		e.to = append(e.to, a)
	}
	if e.opts.Hello == "" {
		e.opts.Hello = hostname()
	}
	if e.opts.Timeout <= 0 {
		e.opts.Timeout = 30 * time.Second
	}
	return e, nil
}

// Notify sends n as a plain-text message: STARTTLS when offered (required unless RequireTLS is
// false), PLAIN authentication when a username is set.
func (e *Email) Notify(ctx context.Context, n Notification) error {
	if err := e.send(ctx, e.message(n, time.Now())); err != nil {
		return fmt.Errorf("email (%s): %w", e.opts.Smarthost, err)
	}
	return nil
}

func (e *Email) tlsConfig() *tls.Config {
	if e.opts.TLSConfig != nil {
		c := e.opts.TLSConfig.Clone()
		if c.ServerName == "" {
			c.ServerName = e.host
		}
		return c
	}
	return &tls.Config{ServerName: e.host, MinVersion: tls.VersionTLS12}
}

func (e *Email) send(ctx context.Context, msg []byte) error {
	ctx, cancel := context.WithTimeout(ctx, e.opts.Timeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", e.opts.Smarthost)
	if err != nil {
		return err
	}
	defer conn.Close()
	if deadline, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(deadline)
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() }) // cancelled: unblock any read
	defer stop()
	_, port, _ := net.SplitHostPort(e.opts.Smarthost)
	implicitTLS := port == "465"
	if implicitTLS {
		tc := tls.Client(conn, e.tlsConfig())
		if err := tc.HandshakeContext(ctx); err != nil {
			return fmt.Errorf("tls: %w", err)
		}
		conn = tc
	}
	c, err := smtp.NewClient(conn, e.host)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Hello(e.opts.Hello); err != nil {
		return fmt.Errorf("ehlo: %w", err)
	}
	if !implicitTLS {
		if ok, _ := c.Extension("STARTTLS"); ok {
			if err := c.StartTLS(e.tlsConfig()); err != nil {
				return fmt.Errorf("starttls: %w", err)
			}
		} else if e.opts.RequireTLS {
			return errors.New("the server does not offer STARTTLS and TLS is required " +
				"(alerts.email.require_tls: false allows a plain connection to a local relay)")
		}
	}
	if e.opts.Username != "" {
		if ok, _ := c.Extension("AUTH"); !ok {
			return errors.New("the server offers no authentication but alerts.email.username is set")
		}
		if err := c.Auth(smtp.PlainAuth("", e.opts.Username, e.opts.Password, e.host)); err != nil {
			return fmt.Errorf("auth as %s: %w", e.opts.Username, err)
		}
	}
	if err := c.Mail(e.from.Address); err != nil {
		return fmt.Errorf("mail from: %w", err)
	}
	for _, to := range e.to {
		if err := c.Rcpt(to.Address); err != nil {
			return fmt.Errorf("rcpt to %s: %w", to.Address, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("data: %w", err)
	}
	if _, err := w.Write(msg); err != nil {
		return fmt.Errorf("data: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("data: %w", err)
	}
	return c.Quit()
}

// message is the whole RFC 5322 message: headers, then the text body in quoted-printable.
func (e *Email) message(n Notification, now time.Time) []byte {
	var b bytes.Buffer
	header := func(name, value string) {
		b.WriteString(name + ": " + oneLine(value) + "\r\n")
	}
	to := make([]string, len(e.to))
	for i, a := range e.to {
		to[i] = a.String()
	}
	header("From", e.from.String())
	header("To", strings.Join(to, ", "))
	header("Subject", mime.QEncoding.Encode("utf-8", n.Subject()))
	header("Date", now.Format(time.RFC1123Z))
	header("Message-ID", "<"+messageID(now)+"@"+e.opts.Hello+">")
	header("MIME-Version", "1.0")
	header("Content-Type", "text/plain; charset=utf-8")
	header("Content-Transfer-Encoding", "quoted-printable")
	header("Auto-Submitted", "auto-generated")
	header("X-Hastack-Alert", n.Alert.Name())
	b.WriteString("\r\n")
	qp := quotedprintable.NewWriter(&b)
	_, _ = qp.Write([]byte(n.Title() + "\n\n" + n.Text())) // line breaks become CRLF
	_ = qp.Close()
	return b.Bytes()
}

func messageID(now time.Time) string {
	var r [8]byte
	_, _ = rand.Read(r[:])
	return fmt.Sprintf("%d.%s.hastack-agent", now.UnixNano(), hex.EncodeToString(r[:]))
}

package alerts

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Slack posts notifications to a Slack incoming webhook. The webhook's URL is a secret: only
// its host appears in errors and logs.
type Slack struct {
	url     string
	host    string
	channel string
	client  *http.Client
}

// NewSlack returns a notifier for the incoming webhook at webhookURL, posting to channel ("":
// the webhook's own). client nil: a client with a 15 s timeout. The error never repeats the URL.
func NewSlack(webhookURL, channel string, client *http.Client) (*Slack, error) {
	u, err := url.Parse(webhookURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errors.New("slack: the webhook URL is not an http(s) URL")
	}
	if client == nil {
		client = &http.Client{Timeout: 15 * time.Second}
	}
	return &Slack{url: webhookURL, host: u.Host, channel: channel, client: client}, nil
}

// Host is the webhook's host, the part of its URL that may be shown.
func (s *Slack) Host() string { return s.host }

// slackMessage is what an incoming webhook takes: mrkdwn text.
type slackMessage struct {
	Channel string `json:"channel,omitempty"`
	Text    string `json:"text"`
}

// Notify posts {"text": ...}: the title in bold, then the body. Both are escaped
// (slackEscape): they carry labels and error text, which must not reach Slack as markup.
func (s *Slack) Notify(ctx context.Context, n Notification) error {
	msg := slackMessage{Channel: s.channel, Text: "*" + slackEscape(n.Title()) + "*\n" + slackEscape(n.Text())}
	if err := postJSON(ctx, s.client, s.url, msg); err != nil {
		return fmt.Errorf("slack (%s): %w", s.host, err)
	}
	return nil
}

// slackEscaper replaces the three characters Slack's mrkdwn gives a meaning to beyond
// formatting, as Slack's documentation asks: with them, a text could mention everyone
// (<!channel>, <!here>), a user (<@U123>) or link anywhere under any label (<https://...|text>).
var slackEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")

// slackEscape makes s show in Slack as it is written.
func slackEscape(s string) string { return slackEscaper.Replace(s) }

package alerts

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
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

// Notify posts {"text": ...}: the title in bold, then the body.
func (s *Slack) Notify(ctx context.Context, n Notification) error {
	body, err := json.Marshal(slackMessage{Channel: s.channel, Text: "*" + n.Title() + "*\n" + n.Text()})
	if err != nil {
		return fmt.Errorf("slack: encode: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("slack (%s): build request: %w", s.host, withoutURL(err))
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return fmt.Errorf("slack (%s): %w", s.host, withoutURL(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("slack (%s): %s%s", s.host, resp.Status, bodyExcerpt(resp.Body))
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	return nil
}

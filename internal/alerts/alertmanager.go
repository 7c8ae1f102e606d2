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
	"strings"
)

// alertmanager posts alerts to Alertmanager's API v2 (POST /api/v2/alerts).
type alertmanager struct {
	endpoint string // <base>/api/v2/alerts
	host     string // for logs and messages: the URL may carry a password
	client   *http.Client
}

func newAlertmanager(base string, client *http.Client) (*alertmanager, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errors.New("alertmanager URL: want http(s)://host:port")
	}
	host := u.Host
	u.Path = strings.TrimSuffix(u.Path, "/") + "/api/v2/alerts"
	return &alertmanager{endpoint: u.String(), host: host, client: client}, nil
}

// post sends alerts in one request. Any answer but 2xx is an error, with what Alertmanager said.
func (a *alertmanager) post(ctx context.Context, alerts []Alert) error {
	if err := postJSON(ctx, a.client, a.endpoint, alerts); err != nil {
		return fmt.Errorf("post to Alertmanager at %s: %w", a.host, err)
	}
	return nil
}

// postJSON posts v as JSON to url. Any answer but 2xx is an error, with the start of what the
// server said; no error carries the URL (see withoutURL).
func postJSON(ctx context.Context, client *http.Client, url string, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("build request: %w", withoutURL(err))
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return withoutURL(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s%s", resp.Status, bodyExcerpt(resp.Body))
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	return nil
}

// withoutURL drops the request's URL from an HTTP client error: a Slack webhook URL is a
// secret, and an Alertmanager URL may hold a password.
func withoutURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// bodyExcerpt returns ": " and the start of an error answer's body, on one line, or "".
func bodyExcerpt(r io.Reader) string {
	b, _ := io.ReadAll(io.LimitReader(r, 300))
	s := strings.Join(strings.Fields(string(b)), " ")
	if s == "" {
		return ""
	}
	return ": " + s
}

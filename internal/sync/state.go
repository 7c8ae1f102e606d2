package sync

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// Outcomes of a deploy.
const (
	OutcomeDeployed       = "deployed"
	OutcomeFailed         = "failed"          // nothing was changed (invalid commit, build failed)
	OutcomeRolledBack     = "rolled-back"     // the commit was applied, failed, and the last good one restored
	OutcomeRollbackFailed = "rollback-failed" // and restoring the last good one failed too
)

// Deploy is one attempt to bring the host to a commit.
type Deploy struct {
	Commit    string    `json:"commit"`
	Subject   string    `json:"subject,omitempty"`
	Trigger   string    `json:"trigger"`
	Started   time.Time `json:"started"`
	Finished  time.Time `json:"finished"`
	Outcome   string    `json:"outcome"`
	Reason    string    `json:"reason,omitempty"`
	Recreated []string  `json:"recreated,omitempty"`
	Reloaded  []string  `json:"reloaded,omitempty"`  // reloaded in place (live paths)
	Restarted []string  `json:"restarted,omitempty"` // restarted for a change outside git
	// Outside are the paths outside git whose change this deploy applies (trigger "outside",
	// or found changed when a deploy of a commit started).
	Outside []string `json:"outside,omitempty"`

	started map[string]string // the outside digests as the deploy started
}

// State is what the agent remembers across restarts.
type State struct {
	// Applied is the commit whose release the host runs (or is being moved to, see InProgress).
	Applied string `json:"applied,omitempty"`
	// LastGood is the newest commit that was deployed and passed the health gate.
	LastGood string `json:"last_good,omitempty"`
	// Bad is a commit that failed; polling does not retry it until a newer commit arrives.
	Bad       string `json:"bad,omitempty"`
	BadReason string `json:"bad_reason,omitempty"`
	// InProgress is set, and saved, before a deploy touches a container and cleared when it
	// ends: found set at start-up, it says a deploy was interrupted (kill -9, power loss).
	InProgress string   `json:"in_progress,omitempty"`
	History    []Deploy `json:"history,omitempty"`
	// Outside are the digests of the files outside git (outside.go) as the last successful
	// deploy applied them.
	Outside map[string]string `json:"outside,omitempty"`
}

// Record appends a deploy to the history, keeping the newest max entries.
func (s *State) Record(d Deploy, max int) {
	s.History = append(s.History, d)
	if max > 0 && len(s.History) > max {
		s.History = s.History[len(s.History)-max:]
	}
}

// Store keeps the state in one JSON file, replaced atomically.
type Store struct {
	path string
}

// NewStore keeps state in dir/state.json.
func NewStore(dir string) *Store { return &Store{path: filepath.Join(dir, "state.json")} }

// Load reads the state; a missing file is an empty state.
func (st *Store) Load() (State, error) {
	var s State
	b, err := os.ReadFile(st.path)
	if errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return s, fmt.Errorf("read state: %w", err)
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("parse state %s: %w (move it away to start from scratch)", st.path, err)
	}
	return s, nil
}

// Save writes the state to a temporary file, syncs it and renames it over the old one, so a
// crash leaves either the old or the new state, never a torn one.
func (st *Store) Save(s State) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("encode state: %w", err)
	}
	dir := filepath.Dir(st.path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	f, err := os.CreateTemp(dir, ".state-*.json")
	if err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("save state: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("save state: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	if err := os.Rename(f.Name(), st.path); err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

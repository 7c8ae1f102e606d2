// Package setting holds the one error type of an invalid setting. Every package that validates
// a setting of the agent's configuration (config, and gitsource for the source's) returns it,
// so a bad configuration is the same error wherever it is found: `agent` exits 3 for it.
package setting

// Error is one invalid setting. Field is the setting's YAML path ("source.url") or the
// environment variable that set it.
type Error struct {
	Field   string
	Problem string
}

func (e *Error) Error() string { return "config: " + e.Field + ": " + e.Problem }

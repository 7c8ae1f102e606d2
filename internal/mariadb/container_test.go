package mariadb

import "testing"

func TestUnescapeBatch(t *testing.T) {
	for in, want := range map[string]string{
		"plain":          "plain",
		`shop.archive`:   "shop.archive",
		`a\tb`:           "a\tb",
		`line\nbreak`:    "line\nbreak",
		`back\\slash`:    `back\slash`,
		`nul\0`:          "nul\x00",
		`\\t is not tab`: `\t is not tab`,
		`trailing\`:      `trailing\`,
		"we`ird":         "we`ird",
	} {
		if got := unescapeBatch(in); got != want {
			t.Errorf("unescapeBatch(%q) = %q, want %q", in, got, want)
		}
	}
}

package gitsource

import (
	"context"
	"testing"
)

// TestFetchLocalRunsNoProgram: a local source is read in process. With nothing on PATH, go-git's
// default file transport (git-upload-pack, with the agent's environment) could not run at all.
func TestFetchLocalRunsNoProgram(t *testing.T) {
	f := newFixture(t)
	c5 := commitFiles(t, f.work, "work tree only", map[string]fileSpec{"stack/new.txt": {content: "new\n"}})
	t.Setenv("PATH", t.TempDir()) // after the fixture, which the git CLI makes
	tests := []struct {
		name, url, ref, want string
	}{
		{"bare repository, file URL", f.fileURL(), "main", f.c4},
		{"bare repository, path", f.bare, "feature", f.c3},
		{"work tree", f.work, "main", c5},
		{"work tree, file URL", "file://" + f.work, "v1.0", f.c1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSource(t, tt.url, tt.ref)
			rev, err := s.Fetch(context.Background())
			if err != nil || rev.Commit != tt.want {
				t.Fatalf("Fetch() = %+v, %v; want commit %s", rev, err, tt.want)
			}
			files, err := s.Files(context.Background(), rev.Commit, "stack")
			if err != nil || string(files["compose.yaml"]) == "" {
				t.Fatalf("Files() = %v, %v", files, err)
			}
		})
	}
}

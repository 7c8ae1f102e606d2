package sync

import (
	"reflect"
	"testing"

	"github.com/hastack/hastack/internal/compose"
	"github.com/hastack/hastack/internal/docker"
)

func TestMakePlan(t *testing.T) {
	svcs := []compose.Service{
		{Name: "db", ConfigHash: "d1"},
		{Name: "init", ConfigHash: "i1", Restart: "no"},
		{Name: "lb", ConfigHash: "l1", DependsOn: []string{"proxy"}},
		{Name: "proxy", ConfigHash: "p1", DependsOn: []string{"web2"}},
		{Name: "web1", ConfigHash: "w1", RollingGroup: "web", ContextHash: "ctx2"},
		{Name: "web2", ConfigHash: "w1", RollingGroup: "web", ContextHash: "ctx2"},
	}
	healthy := func(svc, hash string) docker.Container {
		return docker.Container{Service: svc, ConfigHash: hash, State: "running", Health: "healthy"}
	}
	tests := []struct {
		name    string
		running []docker.Container
		applied map[string]string
		want    []Change
	}{
		{"nothing runs", nil, nil, []Change{{"db", ReasonMissing}, {"init", ReasonMissing}, {"lb", ReasonMissing}, {"proxy", ReasonMissing}, {"web1", ReasonMissing}, {"web2", ReasonMissing}}},
		{"in sync, one-shot exited 0", []docker.Container{healthy("db", "d1"), healthy("lb", "l1"), healthy("proxy", "p1"), {Service: "init", ConfigHash: "i1", State: "exited", Restart: "no"},
			healthy("web1", "w1"), healthy("web2", "w1")}, map[string]string{"web1": "ctx2", "web2": "ctx2"}, nil},
		{"configuration changed", []docker.Container{healthy("db", "d0"), healthy("lb", "l1"), healthy("proxy", "p1"), {Service: "init", ConfigHash: "i1", State: "exited", Restart: "no"},
			healthy("web1", "w1"), healthy("web2", "w1")}, nil, []Change{{"db", ReasonConfig}}},
		{"build context changed", []docker.Container{healthy("db", "d1"), healthy("lb", "l1"), healthy("proxy", "p1"), {Service: "init", ConfigHash: "i1", State: "exited", Restart: "no"},
			healthy("web1", "w1"), healthy("web2", "w1")}, map[string]string{"web1": "ctx1", "web2": "ctx1"},
			[]Change{{"web1", ReasonBuild}, {"web2", ReasonBuild}}},
		{"stopped by hand, unhealthy, failed one-shot, orphan", []docker.Container{
			{Service: "db", ConfigHash: "d1", State: "running", Health: "unhealthy"},
			healthy("lb", "l1"), healthy("proxy", "p1"),
			{Service: "init", ConfigHash: "i1", State: "exited", ExitCode: 1, Restart: "no"},
			{Service: "web1", ConfigHash: "w1", State: "exited", Restart: "unless-stopped"},
			healthy("web2", "w1"), healthy("old", "o1")}, nil,
			[]Change{{"db", ReasonStopped}, {"init", ReasonStopped}, {"old", ReasonOrphan}, {"web1", ReasonStopped}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := MakePlan(svcs, tt.running, tt.applied)
			if !reflect.DeepEqual(p.Changes, tt.want) {
				t.Errorf("changes %v, want %v", p.Changes, tt.want)
			}
			// lb depends on a rolling member through proxy: it goes last.
			if want := [][]string{{"db", "init"}, {"web1"}, {"web2"}, {"lb", "proxy"}}; !reflect.DeepEqual(p.Steps, want) {
				t.Errorf("steps %v, want %v", p.Steps, want)
			}
		})
	}
}

package sync

import (
	"sort"

	"github.com/hastack/hastack/internal/compose"
	"github.com/hastack/hastack/internal/docker"
)

// Why a service is in a plan.
const (
	ReasonMissing = "missing"       // no container yet
	ReasonStopped = "not running"   // stopped, exited or unhealthy
	ReasonConfig  = "configuration" // its compose configuration changed
	ReasonFiles   = "files"         // files it is built from or bind-mounts changed
	ReasonOrphan  = "orphan"        // the project no longer defines it: removed
)

// Change is one service a deploy will touch.
type Change struct {
	Service string `json:"service"`
	Reason  string `json:"reason"`
}

// Plan says what applying a release changes. It is computed from the release's services, the
// containers that run now and the build-context digests of the release that is applied.
type Plan struct {
	Changes []Change `json:"changes"`
	// Steps is the order of application, of changed services only: first those outside rolling
	// groups that do not depend on a rolling member (one compose up: Compose orders them by
	// dependency), then each rolling group's members one at a time, then the services that
	// depend on rolling members (a load balancer). Compose brings up a service's dependencies
	// with it, so listing such a dependent earlier would recreate a whole rolling group at once.
	Steps [][]string `json:"steps"`
	// Reloads are the running services that apply a change to a live path in place (a diff's
	// plan: the reason names the path).
	Reloads []Change `json:"reloads,omitempty"`
}

// Empty reports whether the plan changes nothing.
func (p Plan) Empty() bool { return len(p.Changes) == 0 && len(p.Reloads) == 0 }

// Services lists the services the plan changes.
func (p Plan) Services() []string {
	var out []string
	for _, c := range p.Changes {
		out = append(out, c.Service)
	}
	return out
}

// MakePlan compares the services of a release with the running containers.
func MakePlan(services []compose.Service, running []docker.Container) Plan {
	byService := map[string][]docker.Container{}
	for _, c := range running {
		byService[c.Service] = append(byService[c.Service], c)
	}
	var p Plan
	defined := map[string]bool{}
	groups := map[string][]string{}
	onRolling := dependsOnRolling(services)
	var base, dependents []string
	for _, s := range services {
		defined[s.Name] = true
		switch {
		case s.RollingGroup != "":
			groups[s.RollingGroup] = append(groups[s.RollingGroup], s.Name)
		case onRolling[s.Name]:
			dependents = append(dependents, s.Name)
		default:
			base = append(base, s.Name)
		}
		if reason := changeReason(s, byService[s.Name]); reason != "" {
			p.Changes = append(p.Changes, Change{Service: s.Name, Reason: reason})
		}
	}
	for name := range byService {
		if !defined[name] {
			p.Changes = append(p.Changes, Change{Service: name, Reason: ReasonOrphan})
		}
	}
	sort.Slice(p.Changes, func(i, j int) bool { return p.Changes[i].Service < p.Changes[j].Service })

	// Only changed services are brought up: Compose recreates the dependents of a recreated
	// service that are in scope, so naming an unchanged load balancer would restart it.
	changed := map[string]bool{}
	orphans := false
	for _, c := range p.Changes {
		changed[c.Service] = c.Reason != ReasonOrphan
		orphans = orphans || c.Reason == ReasonOrphan
	}
	only := func(names []string) []string {
		var out []string
		for _, n := range names {
			if changed[n] {
				out = append(out, n)
			}
		}
		sort.Strings(out)
		return out
	}
	first := only(base)
	if len(first) == 0 && orphans {
		// Removing orphans takes a compose up; base services do not depend on rolling ones,
		// so bringing them up changes nothing else.
		first = append(first, base...)
		sort.Strings(first)
	}
	if len(first) > 0 {
		p.Steps = append(p.Steps, first)
	}
	names := make([]string, 0, len(groups))
	for g := range groups {
		names = append(names, g)
	}
	sort.Strings(names)
	for _, g := range names {
		for _, m := range only(groups[g]) {
			p.Steps = append(p.Steps, []string{m})
		}
	}
	if last := only(dependents); len(last) > 0 {
		p.Steps = append(p.Steps, last)
	}
	return p
}

// dependsOnRolling finds the services outside rolling groups that depend, directly or through
// other services, on a member of a rolling group.
func dependsOnRolling(services []compose.Service) map[string]bool {
	byName := map[string]compose.Service{}
	for _, s := range services {
		byName[s.Name] = s
	}
	memo := map[string]bool{}
	var visit func(name string, seen map[string]bool) bool
	visit = func(name string, seen map[string]bool) bool {
		if v, ok := memo[name]; ok {
			return v
		}
		if seen[name] {
			return false // a cycle: Compose rejects it anyway
		}
		seen[name] = true
		result := false
		for _, dep := range byName[name].DependsOn {
			if byName[dep].RollingGroup != "" || visit(dep, seen) {
				result = true
				break
			}
		}
		memo[name] = result
		return result
	}
	out := map[string]bool{}
	for _, s := range services {
		if s.RollingGroup == "" && visit(s.Name, map[string]bool{}) {
			out[s.Name] = true
		}
	}
	return out
}

func changeReason(s compose.Service, cs []docker.Container) string {
	if len(cs) == 0 {
		return ReasonMissing
	}
	for _, c := range cs {
		if c.ConfigHash != s.ConfigHash {
			if c.Digest != s.Digest {
				return ReasonFiles
			}
			return ReasonConfig
		}
	}
	for _, c := range cs {
		if !c.Ready() {
			return ReasonStopped
		}
	}
	return ""
}

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
	ReasonBuild   = "build context" // the files its image is built from changed
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
	// Steps is the order of application: first every service outside a rolling group (in one
	// compose up: Compose orders them by dependency), then each rolling group's members one at
	// a time.
	Steps [][]string `json:"steps"`
}

// Empty reports whether the plan changes nothing.
func (p Plan) Empty() bool { return len(p.Changes) == 0 }

// Services lists the services the plan changes.
func (p Plan) Services() []string {
	var out []string
	for _, c := range p.Changes {
		out = append(out, c.Service)
	}
	return out
}

// MakePlan compares the services of a release with the running containers. appliedHashes are
// the build-context digests recorded for the release now applied (nil when none is known, in
// which case a build context counts as unchanged: Compose still recreates a service whose
// rebuilt image differs).
func MakePlan(services []compose.Service, running []docker.Container, appliedHashes map[string]string) Plan {
	byService := map[string][]docker.Container{}
	for _, c := range running {
		byService[c.Service] = append(byService[c.Service], c)
	}
	var p Plan
	defined := map[string]bool{}
	groups := map[string][]string{}
	var plain []string
	for _, s := range services {
		defined[s.Name] = true
		if s.RollingGroup != "" {
			groups[s.RollingGroup] = append(groups[s.RollingGroup], s.Name)
		} else {
			plain = append(plain, s.Name)
		}
		if reason := changeReason(s, byService[s.Name], appliedHashes); reason != "" {
			p.Changes = append(p.Changes, Change{Service: s.Name, Reason: reason})
		}
	}
	for name := range byService {
		if !defined[name] {
			p.Changes = append(p.Changes, Change{Service: name, Reason: ReasonOrphan})
		}
	}
	sort.Slice(p.Changes, func(i, j int) bool { return p.Changes[i].Service < p.Changes[j].Service })

	sort.Strings(plain)
	p.Steps = append(p.Steps, plain)
	names := make([]string, 0, len(groups))
	for g := range groups {
		names = append(names, g)
	}
	sort.Strings(names)
	for _, g := range names {
		members := groups[g]
		sort.Strings(members)
		for _, m := range members {
			p.Steps = append(p.Steps, []string{m})
		}
	}
	return p
}

func changeReason(s compose.Service, cs []docker.Container, appliedHashes map[string]string) string {
	if len(cs) == 0 {
		return ReasonMissing
	}
	for _, c := range cs {
		if c.ConfigHash != s.ConfigHash {
			return ReasonConfig
		}
	}
	if old, ok := appliedHashes[s.Name]; ok && s.ContextHash != "" && old != s.ContextHash {
		return ReasonBuild
	}
	for _, c := range cs {
		if !c.Ready() {
			return ReasonStopped
		}
	}
	return ""
}

package catchuptest

import (
	"fmt"

	"github.com/annalsdb/annals/projection"
	"github.com/annalsdb/annals/supervisor"
)

// Mode is a configuration of the runner that the catch-up benchmarks compare; Check tells
// whether a Status taken at the end of a catch-up shows the configuration in force.
type Mode struct {
	Name  string
	Opts  *projection.RunnerOptions
	Check func(projection.Status) error
}

// Modes are the configurations every catch-up benchmark runs: "lease" under the default
// supervision (the target's lease, checked in every Update, and compare-and-set
// checkpoints), "no-lease" with Supervision.NoLease (compare-and-set checkpoints only).
// docs/BENCHMARKS.md replaces them, in an older tree, by one mode "before".
var Modes = []Mode{
	{"lease", nil, func(st projection.Status) error {
		if st.Supervisor.Lease.Token == 0 {
			return fmt.Errorf("ran without a lease: %+v", st.Supervisor)
		}
		return nil
	}},
	{"no-lease", &projection.RunnerOptions{Supervision: supervisor.Policy{NoLease: true}}, func(st projection.Status) error {
		if st.Supervisor.Lease.Token != 0 {
			return fmt.Errorf("ran under a lease: %+v", st.Supervisor)
		}
		return nil
	}},
}

package wire

import (
	"fmt"
	"time"

	annalsv1 "github.com/annalsdb/annals/internal/gen/annals/v1"
	"github.com/annalsdb/annals/lease"
	"google.golang.org/protobuf/types/known/durationpb"
)

// LeaseToProto returns the message form of l.
func LeaseToProto(l lease.Lease) *annalsv1.Lease {
	return &annalsv1.Lease{
		Name: l.Name, Holder: l.Holder, Token: l.Token, Ttl: durationpb.New(l.TTL),
		Expires: TimeToProto(l.Expires), Acquired: TimeToProto(l.Acquired),
	}
}

// LeaseFromProto returns the lease of m. It returns an error matching [lease.ErrInvalid] for
// a missing lease, or a time to live or time that cannot be; it does not check the name and
// holder ([lease.Validate] does).
func LeaseFromProto(m *annalsv1.Lease) (lease.Lease, error) {
	if m == nil {
		return lease.Lease{}, fmt.Errorf("%w: no lease", lease.ErrInvalid)
	}
	ttl, err := TTLFromProto(m.Ttl)
	if err != nil {
		return lease.Lease{}, err
	}
	l := lease.Lease{Name: m.Name, Holder: m.Holder, Token: m.Token, TTL: ttl}
	if l.Expires, err = TimeFromProto(m.Expires); err == nil {
		l.Acquired, err = TimeFromProto(m.Acquired)
	}
	if err != nil {
		return lease.Lease{}, fmt.Errorf("%w: lease %q: %w", lease.ErrInvalid, m.Name, err)
	}
	return l, nil
}

// TTLFromProto returns a lease's time to live (0 when d is nil). It returns an error matching
// [lease.ErrInvalid] for a duration that cannot be or does not fit a time.Duration; the
// range of times to live is [lease.Validate]'s to check.
func TTLFromProto(d *durationpb.Duration) (time.Duration, error) {
	if d == nil {
		return 0, nil
	}
	if err := d.CheckValid(); err != nil {
		return 0, fmt.Errorf("%w: ttl: %w", lease.ErrInvalid, err)
	}
	return d.AsDuration(), nil
}

// CheckLeasePrefix checks the prefix of a listing of leases: "" (every lease), or what a
// lease's name may be. Errors match [lease.ErrInvalid].
func CheckLeasePrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	if err := lease.ValidateName(prefix); err != nil {
		return fmt.Errorf("prefix: %w", err)
	}
	return nil
}

// Package lease decides which replica of a service does a piece of work: a lease on a name
// (a projection, a process manager, a relay) is held by one holder at a time, for a time to
// live that the holder renews; a holder that stops renewing (it died, it hangs, the network
// is cut) loses the lease when that time is up, and another holder takes it.
//
// # Fencing
//
// A lease alone does not stop a holder that paused past its lease (a long GC, a stopped VM)
// from writing once it wakes up, after another holder took over. Every acquisition of a name
// therefore gets a fencing token, larger than every token given for that name before. A
// holder passes its lease with every write (see [NewContext]), and the store that takes the
// write checks, in the same transaction, that the token is still the current one and the
// lease has not run out ([Check]). A holder that lost its lease can then not commit anything,
// however long it slept.
//
// # Keepers
//
// A [Keeper] keeps the leases. [Memory] keeps them in the process (for the embedded stores
// and for the server); pgstore keeps them in a table of the database, so that they survive
// restarts and every service on the database shares them; the client asks `annals serve`,
// which keeps them for all its clients. All of them apply the rules of this package
// ([Grant], [Check]), so they agree.
//
// Times are the keeper's: a lease expires when the keeper's clock passes Expires. A holder
// must count its own time to live from before it asked (see [Lease.Deadline]), so that it
// stops working no later than the keeper lets another holder start.
package lease

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"time"
	"unicode/utf8"
)

// Limits of names, holders and times to live.
const (
	// MaxNameLength bounds a lease's name and holder, in bytes.
	MaxNameLength = 256
	// MinTTL and MaxTTL bound a lease's time to live.
	MinTTL = 10 * time.Millisecond
	MaxTTL = time.Hour
	// DefaultTTL is the time to live the runners ask for when they are given none: a holder
	// that dies is replaced within about this long.
	DefaultTTL = 10 * time.Second
)

// Lease is a held lease.
type Lease struct {
	// Name is what the lease is on, Holder who holds it.
	Name, Holder string
	// Token is the fencing token of this acquisition: larger than every token given for
	// Name before. Renewing keeps it; every new acquisition (by any holder, after an expiry
	// or a release) gets a new one.
	Token uint64
	// TTL is the time to live the holder asked for, and Expires the keeper's time at which
	// the lease runs out unless it is renewed.
	TTL     time.Duration
	Expires time.Time
	// Acquired is the keeper's time of the acquisition (kept by renewals).
	Acquired time.Time
}

// Deadline returns the time, on the holder's clock, until which the holder may take the lease
// as its own: asked, the time the holder asked for it or renewed it (taken before the
// request), plus the time to live, less a tenth of it for clocks that run at different rates.
func (l Lease) Deadline(asked time.Time) time.Time {
	return asked.Add(l.TTL - l.TTL/10)
}

// Keeper keeps leases. Implementations are safe for concurrent use and apply [Grant] and
// [Check] to decide.
type Keeper interface {
	// Acquire gives the lease on name to holder for ttl when nobody holds it, it expired, or
	// holder already holds it (then it is renewed and keeps its token). Otherwise it returns a
	// [*HeldError] matching [ErrHeld] that names the holder. Bad input (an empty name or
	// holder, a ttl outside [MinTTL, MaxTTL]) is an error matching [ErrInvalid].
	Acquire(ctx context.Context, name, holder string, ttl time.Duration) (Lease, error)
	// Renew extends l by its TTL from now. It returns an error matching [ErrLost] when l is
	// not the current lease on its name (released, or expired and taken by another holder);
	// a lease that expired but that nobody took is renewed.
	Renew(ctx context.Context, l Lease) (Lease, error)
	// Release gives l up, so that another holder may take it at once. Releasing a lease that
	// is no longer current does nothing.
	Release(ctx context.Context, l Lease) error
	// Leases returns the leases held now (not expired) whose name starts with prefix, by
	// name.
	Leases(ctx context.Context, prefix string) ([]Lease, error)
}

// Errors of the package. Check them with errors.Is.
var (
	// ErrHeld: another holder holds the lease (a [*HeldError]).
	ErrHeld = errors.New("lease: held by another holder")
	// ErrLost: the lease is no longer the holder's: it expired and another holder took it,
	// or it was released. A holder that gets it must stop working on the name at once.
	ErrLost = errors.New("lease: lost")
	// ErrInvalid: a name, holder or time to live that cannot be.
	ErrInvalid = errors.New("lease: invalid")
)

// HeldError is the refusal of an Acquire while another holder holds the lease.
type HeldError struct {
	// Lease is the current lease (its holder and expiry).
	Lease Lease
}

func (e *HeldError) Error() string {
	return fmt.Sprintf("lease %q: held by %s until %s", e.Lease.Name, e.Lease.Holder, e.Lease.Expires.Format(time.RFC3339Nano))
}

// Is makes errors.Is(err, ErrHeld) true.
func (e *HeldError) Is(target error) bool { return target == ErrHeld }

// Validate checks the input of Acquire: a name, a holder and a time to live. Errors match
// [ErrInvalid] and name the field.
func Validate(name, holder string, ttl time.Duration) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	if err := text("holder", holder); err != nil {
		return err
	}
	if ttl < MinTTL || ttl > MaxTTL {
		return fmt.Errorf("%w: ttl %v is outside [%v, %v]", ErrInvalid, ttl, MinTTL, MaxTTL)
	}
	return nil
}

// ValidateName checks a lease's name, or a prefix of names. Errors match [ErrInvalid].
func ValidateName(name string) error { return text("name", name) }

// ValidateHeld checks a lease given back to a keeper (by Renew, Release, a fenced write): its
// name and its holder. Errors match [ErrInvalid] and name the field.
func ValidateHeld(l Lease) error {
	if err := ValidateName(l.Name); err != nil {
		return err
	}
	return text("holder", l.Holder)
}

func text(what, s string) error {
	switch {
	case s == "":
		return fmt.Errorf("%w: empty %s", ErrInvalid, what)
	case len(s) > MaxNameLength:
		return fmt.Errorf("%w: %s of %d bytes is longer than %d", ErrInvalid, what, len(s), MaxNameLength)
	case !utf8.ValidString(s):
		return fmt.Errorf("%w: %s is not valid UTF-8", ErrInvalid, what)
	}
	for i := 0; i < len(s); i++ {
		if s[i] == 0 {
			return fmt.Errorf("%w: %s %q holds a NUL byte", ErrInvalid, what, s)
		}
	}
	return nil
}

// Grant is the rule of Acquire, for keepers to apply atomically with their write: cur is the
// current lease on name (held false when there is none), now the keeper's time, and next the
// token to give a new acquisition (larger than cur.Token). It returns the lease to store and
// hand back, or a [*HeldError].
func Grant(cur Lease, held bool, name, holder string, ttl time.Duration, now time.Time, next uint64) (Lease, error) {
	if held && now.Before(cur.Expires) {
		if cur.Holder != holder {
			return Lease{}, &HeldError{Lease: cur}
		}
		cur.TTL, cur.Expires = ttl, now.Add(ttl)
		return cur, nil
	}
	return Lease{Name: name, Holder: holder, Token: next, TTL: ttl, Expires: now.Add(ttl), Acquired: now}, nil
}

// Check is the rule of a fenced write and of Renew: cur is the current lease on l.Name
// (held false when there is none) and now the keeper's time. It returns nil when l is the
// current lease and (unless renewing) has not expired, and an error matching [ErrLost]
// otherwise.
func Check(cur Lease, held bool, l Lease, now time.Time, renewing bool) error {
	switch {
	case !held || cur.Token != l.Token || cur.Holder != l.Holder:
		return fmt.Errorf("%w: lease %q token %d of %s is no longer current", ErrLost, l.Name, l.Token, l.Holder)
	case !renewing && !now.Before(cur.Expires):
		return fmt.Errorf("%w: lease %q token %d of %s expired at %s", ErrLost, l.Name, l.Token, l.Holder, cur.Expires.Format(time.RFC3339Nano))
	}
	return nil
}

type contextKey struct{}

// NewContext returns a context that carries l: a store that keeps leases checks it, with
// [Check], in the transaction of every write made with this context, and refuses the write
// with an error matching [ErrLost] when l is no longer current.
func NewContext(ctx context.Context, l Lease) context.Context {
	return context.WithValue(ctx, contextKey{}, l)
}

// FromContext returns the lease ctx carries, if any.
func FromContext(ctx context.Context) (Lease, bool) {
	l, ok := ctx.Value(contextKey{}).(Lease)
	return l, ok
}

// NewHolder returns a holder name unique to this process and call: the host name, the
// process id and a random suffix.
func NewHolder() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "host"
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}

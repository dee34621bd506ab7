package client

import (
	"context"
	"errors"
	"fmt"
	"time"

	"connectrpc.com/connect"
	"github.com/annalsdb/annals"
	annalsv1 "github.com/annalsdb/annals/internal/gen/annals/v1"
	"github.com/annalsdb/annals/internal/wire"
	"github.com/annalsdb/annals/lease"
	"google.golang.org/protobuf/types/known/durationpb"
)

// A Client is a [lease.Keeper] over the server's LeaseService: the leases are the server's
// (kept by its store when the store keeps leases, else in the server's memory), shared by
// every client of the server. Times (Expires, Acquired) are the server's; count a lease's
// time to live from before the call (see [lease.Lease.Deadline]).
//
// Errors: [*lease.HeldError] (matching [lease.ErrHeld], with the current lease) when another
// holder holds the lease, an error matching [lease.ErrLost] when a renewed lease is no longer
// current, and bad input an error matching both [lease.ErrInvalid] and
// [annals.ErrInvalidArgument], checked before anything else. The rest is as for the store's
// methods (see the package's documentation).
var _ lease.Keeper = (*Client)(nil)

// Acquire implements [lease.Keeper.Acquire] with one Acquire call.
func (c *Client) Acquire(ctx context.Context, name, holder string, ttl time.Duration) (lease.Lease, error) {
	if err := lease.Validate(name, holder, ttl); err != nil {
		return lease.Lease{}, badLease(err)
	}
	cctx, done, err := c.begin(ctx)
	if err != nil {
		return lease.Lease{}, err
	}
	defer done()
	res, err := c.lease.Acquire(cctx, connect.NewRequest(&annalsv1.AcquireRequest{Name: name, Holder: holder, Ttl: durationpb.New(ttl)}))
	if err != nil {
		return lease.Lease{}, c.leaseFail(ctx, err)
	}
	return leaseFromServer(res.Msg.Lease)
}

// Renew implements [lease.Keeper.Renew] with one Renew call.
func (c *Client) Renew(ctx context.Context, l lease.Lease) (lease.Lease, error) {
	if err := lease.ValidateHeld(l); err != nil {
		return lease.Lease{}, badLease(err)
	}
	cctx, done, err := c.begin(ctx)
	if err != nil {
		return lease.Lease{}, err
	}
	defer done()
	res, err := c.lease.Renew(cctx, connect.NewRequest(&annalsv1.RenewRequest{Lease: wire.LeaseToProto(l)}))
	if err != nil {
		return lease.Lease{}, c.leaseFail(ctx, err)
	}
	return leaseFromServer(res.Msg.Lease)
}

// Release implements [lease.Keeper.Release] with one Release call.
func (c *Client) Release(ctx context.Context, l lease.Lease) error {
	if err := lease.ValidateHeld(l); err != nil {
		return badLease(err)
	}
	cctx, done, err := c.begin(ctx)
	if err != nil {
		return err
	}
	defer done()
	if _, err := c.lease.Release(cctx, connect.NewRequest(&annalsv1.ReleaseRequest{Lease: wire.LeaseToProto(l)})); err != nil {
		return c.leaseFail(ctx, err)
	}
	return nil
}

// Leases implements [lease.Keeper.Leases] with one ListLeases call.
func (c *Client) Leases(ctx context.Context, prefix string) ([]lease.Lease, error) {
	if err := wire.CheckLeasePrefix(prefix); err != nil {
		return nil, badLease(err)
	}
	cctx, done, err := c.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	res, err := c.lease.ListLeases(cctx, connect.NewRequest(&annalsv1.ListLeasesRequest{Prefix: prefix}))
	if err != nil {
		return nil, c.leaseFail(ctx, err)
	}
	out := make([]lease.Lease, 0, len(res.Msg.Leases))
	for _, m := range res.Msg.Leases {
		l, err := leaseFromServer(m)
		if err != nil {
			return nil, err
		}
		out = append(out, l)
	}
	return out, nil
}

// leaseFromServer returns the lease of a server's answer.
func leaseFromServer(m *annalsv1.Lease) (lease.Lease, error) {
	l, err := wire.LeaseFromProto(m)
	if err != nil {
		return lease.Lease{}, fmt.Errorf("annals client: lease from the server: %w", err)
	}
	return l, nil
}

// leaseFail is [Client.fail] for the lease methods: the server's InvalidArgument matches
// lease.ErrInvalid too.
func (c *Client) leaseFail(ctx context.Context, err error) error {
	err = c.fail(ctx, err)
	if re, ok := errors.AsType[*remoteError](err); ok && re.sentinel == annals.ErrInvalidArgument {
		return &remoteError{sentinel: errors.Join(annals.ErrInvalidArgument, lease.ErrInvalid), err: re.err}
	}
	return err
}

// badLease returns err, bad lease input the client found itself (matching lease.ErrInvalid),
// matching annals.ErrInvalidArgument too, as the server's refusal of it does.
func badLease(err error) error {
	return fmt.Errorf("%w (%w)", err, annals.ErrInvalidArgument)
}

// Fenced runs write. It checks nothing itself: every append c makes with a context that
// carries a lease (see [lease.NewContext]) sends it, and the server runs the append under the
// check of its keeper, refusing it with an error matching [lease.ErrLost] when the lease is
// no longer current; so the appends write makes through c with ctx are fenced. It lets
// projection.Checkpoints over a client rely on the server's check.
func (c *Client) Fenced(ctx context.Context, write func() error) error { return write() }

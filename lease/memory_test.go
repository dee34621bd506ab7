package lease_test

import (
	"context"
	"testing"

	"github.com/annalsdb/annals/lease"
	"github.com/annalsdb/annals/lease/leasetest"
)

func TestMemory(t *testing.T) {
	var m *lease.Memory
	leasetest.Run(t, func(t *testing.T) lease.Keeper {
		m = lease.NewMemory(nil)
		return m
	}, &leasetest.Options{Fenced: func(ctx context.Context, write func() error) error {
		return m.Fenced(ctx, write)
	}})
}

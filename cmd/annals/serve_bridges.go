package main

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/ingest"
	"github.com/annalsdb/annals/lease"
	"github.com/annalsdb/annals/relay"
	"github.com/annalsdb/annals/server"
	"github.com/annalsdb/annals/supervisor"
	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"
)

// The keys of "annals serve"'s config file that list relays and ingests: each item holds the
// settings of one, with the keys of the flags of "annals relay" and "annals ingest".
const (
	relaysKey  = "relays"
	ingestsKey = "ingests"
)

// serveBridges are the relays and ingests "annals serve" runs in its process, over its own
// store, with the server's lease keeper: so that several servers over one store (PostgreSQL)
// share them out, one replica running each. Its methods are safe for concurrent use once
// start returned.
type serveBridges struct {
	relays  []*relayPlan
	ingests []*ingestPlan

	// Set by start.
	relayWorkers  []*bridgeWorker
	ingestWorkers []*bridgeWorker
	cancel        context.CancelFunc
	wg            sync.WaitGroup
}

// parseServeBridges checks the relays: and ingests: lists of the config file at path (nil
// nodes when the file has none).
func parseServeBridges(path string, relays, ingests *yaml.Node) (*serveBridges, error) {
	b := &serveBridges{}
	each := func(key string, n *yaml.Node, register func(*pflag.FlagSet) func(fs *pflag.FlagSet, where string) error, settings []string) error {
		if n == nil {
			return nil
		}
		if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
			return nil
		}
		if n.Kind != yaml.SequenceNode {
			return fmt.Errorf("config file %s: line %d: %s: want a list, one item (a mapping of settings) per %s", path, n.Line, key, key[:len(key)-1])
		}
		for i, item := range n.Content {
			where := fmt.Sprintf("config file %s: %s[%d]", path, key, i)
			fs := pflag.NewFlagSet(key, pflag.ContinueOnError)
			build := register(fs)
			if err := applyYAMLSettings(fs, item, settings, nil, where); err != nil {
				return err
			}
			if err := build(fs, where); err != nil {
				return err
			}
		}
		return nil
	}
	seen := map[string]bool{}
	err := each(relaysKey, relays, func(fs *pflag.FlagSet) func(*pflag.FlagSet, string) error {
		spec := &relaySpec{}
		spec.register(fs)
		return func(fs *pflag.FlagSet, where string) error {
			p, err := spec.build(fs.Changed, keySetter)
			if err != nil {
				return fmt.Errorf("%s: %s", where, trimSentinels(err.Error()))
			}
			if seen["relay "+p.name] {
				return fmt.Errorf("%s: a relay named %s is configured twice", where, p.name)
			}
			seen["relay "+p.name] = true
			b.relays = append(b.relays, p)
			return nil
		}
	}, relaySettings)
	if err != nil {
		return nil, err
	}
	err = each(ingestsKey, ingests, func(fs *pflag.FlagSet) func(*pflag.FlagSet, string) error {
		spec := &ingestSpec{}
		spec.register(fs)
		return func(fs *pflag.FlagSet, where string) error {
			p, err := spec.build(fs.Changed, keySetter)
			if err != nil {
				return fmt.Errorf("%s: %s", where, trimSentinels(err.Error()))
			}
			if seen["ingest "+p.name] {
				return fmt.Errorf("%s: an ingest named %s is configured twice", where, p.name)
			}
			seen["ingest "+p.name] = true
			b.ingests = append(b.ingests, p)
			return nil
		}
	}, ingestSettings)
	if err != nil {
		return nil, err
	}
	return b, nil
}

// empty reports whether there is nothing to run.
func (b *serveBridges) empty() bool { return b == nil || len(b.relays)+len(b.ingests) == 0 }

// start runs every relay and ingest over store, with the leases of keeper, each in its own
// goroutine, until stop. A relay or ingest whose broker cannot be reached is tried again with
// backoff; one that stops on a permanent error is logged and shown as failed by statuses.
func (b *serveBridges) start(ctx context.Context, store annals.Store, keeper lease.Keeper, log *slog.Logger) {
	ctx, b.cancel = context.WithCancel(ctx)
	policy := supervisor.Policy{Keeper: keeper}
	for _, p := range b.relays {
		b.relayWorkers = append(b.relayWorkers, relayWorker(p, store, policy, log))
	}
	for _, p := range b.ingests {
		b.ingestWorkers = append(b.ingestWorkers, ingestWorker(p, store, policy, log))
	}
	for _, w := range append(append([]*bridgeWorker{}, b.relayWorkers...), b.ingestWorkers...) {
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			if err := w.run(ctx, true); err != nil {
				log.Error(w.kind+" stopped on an error; the server goes on without it", slog.String(w.kind, w.name), slog.String("error", trimSentinels(err.Error())))
			}
		}()
	}
}

// stop ends the relays and ingests and waits for them (each writes the checkpoint of what
// its broker acknowledged, or commits what it appended). It does nothing before start.
func (b *serveBridges) stop() {
	if b == nil || b.cancel == nil {
		return
	}
	b.cancel()
	b.wg.Wait()
}

// statuses returns the statuses of the relays and ingests, for the server's Options.Bridges.
func (b *serveBridges) statuses() server.BridgeStatuses {
	var out server.BridgeStatuses
	for i, w := range b.relayWorkers {
		out.Relays = append(out.Relays, relayStatus(w, b.relays[i]))
	}
	for i, w := range b.ingestWorkers {
		out.Ingests = append(out.Ingests, ingestStatus(w, b.ingests[i]))
	}
	if out.Relays == nil {
		out.Relays = []relay.Status{}
	}
	if out.Ingests == nil {
		out.Ingests = []ingest.Status{}
	}
	return out
}

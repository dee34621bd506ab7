package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/groups"
	"github.com/annalsdb/annals/lease"
	"github.com/annalsdb/annals/supervisor"
	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"
)

// The relays and ingests ("bridges" to Kafka and NATS) share how they are configured and run:
// the settings of one are the flags of its command ("annals relay", "annals ingest"), the keys
// of that command's --config file, and the keys of one item of the relays: and ingests: lists
// of "annals serve"'s config file, the same names everywhere (relay_spec.go, ingest_spec.go).
// A bridgeWorker runs one of them: it connects to the broker, then runs the relay or ingest
// under its supervisor until its context ends.

// setter names the settings in error messages: "--topic" on the command line, "topic" in a
// YAML item.
type setter func(name string) string

func flagSetter(name string) string { return "--" + name }
func keySetter(name string) string  { return name }

// isList reports whether f takes a list (a repeatable, comma-separated flag).
func isList(f *pflag.Flag) bool {
	_, ok := f.Value.(pflag.SliceValue)
	return ok
}

// applyYAMLSettings sets the flags of fs named by the keys of the mapping node n: a scalar
// for any flag, a sequence of scalars for a list flag. Only the names in allowed are settings;
// skip (may be nil) leaves out flags set elsewhere (on the command line). where names the
// place in errors ("config file relay.yaml", "config file annals.yaml: relays[1]").
func applyYAMLSettings(fs *pflag.FlagSet, n *yaml.Node, allowed []string, skip func(string) bool, where string) error {
	if n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		n = n.Content[0]
	}
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("%s: line %d: want a mapping of settings (name: value)", where, n.Line)
	}
	seen := make(map[string]bool, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		name := k.Value
		if !slices.Contains(allowed, name) {
			return fmt.Errorf("%s: line %d: unknown setting %q (the settings are: %s)", where, k.Line, name, strings.Join(allowed, ", "))
		}
		if seen[name] {
			return fmt.Errorf("%s: line %d: %s is set twice", where, k.Line, name)
		}
		seen[name] = true
		if skip != nil && skip(name) {
			continue
		}
		f := fs.Lookup(name)
		if f == nil {
			return fmt.Errorf("%s: line %d: unknown setting %q", where, k.Line, name)
		}
		var values []string
		switch {
		case v.Kind == yaml.ScalarNode && v.Tag == "!!null":
			return fmt.Errorf("%s: line %d: %s: want a value", where, v.Line, name)
		case v.Kind == yaml.ScalarNode:
			values = []string{v.Value}
		case v.Kind == yaml.SequenceNode && isList(f):
			for _, it := range v.Content {
				if it.Kind != yaml.ScalarNode || it.Tag == "!!null" {
					return fmt.Errorf("%s: line %d: %s: want a list of values", where, it.Line, name)
				}
				values = append(values, it.Value)
			}
			if len(values) == 0 {
				if err := f.Value.(pflag.SliceValue).Replace(nil); err != nil {
					return fmt.Errorf("%s: line %d: %s: %w", where, v.Line, name, err)
				}
				f.Changed = true
			}
		case v.Kind == yaml.SequenceNode:
			return fmt.Errorf("%s: line %d: %s: want a single value, not a list", where, v.Line, name)
		default:
			return fmt.Errorf("%s: line %d: %s: want a value", where, v.Line, name)
		}
		for _, val := range values {
			if err := fs.Set(name, val); err != nil {
				return fmt.Errorf("%s: line %d: %s %q: %w", where, v.Line, name, val, err)
			}
		}
	}
	return nil
}

// badSetting returns an error matching annals.ErrInvalidArgument.
func badSetting(format string, args ...any) error {
	return fmt.Errorf("%w: %s", annals.ErrInvalidArgument, fmt.Sprintf(format, args...))
}

// bridgeBasics are the settings relays and ingests share, checked by [bridgeBasics.check].
type bridgeBasics struct {
	kind     string // "relay" or "ingest"
	name     string
	kafka    []string
	nats     string
	holder   string
	leaseTTL time.Duration
}

// check checks the name (kept names what the store keeps under it), that exactly one broker
// is named (missing says how, when none is), with no empty Kafka broker address, and the
// lease's time to live and this replica's holder name. It reports whether the broker is Kafka.
func (b bridgeBasics) check(kept, missing string, set setter) (isKafka bool, err error) {
	if b.name == "" {
		return false, badSetting("%s is required: the %s's name, under which its %s and lease are kept", set("name"), b.kind, kept)
	}
	if err := groups.ValidateName(b.kind, b.name); err != nil {
		return false, badSetting("%s: %s", set("name"), trimSentinels(err.Error()))
	}
	kafka, nats := len(b.kafka) > 0, b.nats != ""
	switch {
	case kafka && nats:
		return false, badSetting("%s and %s both name a broker: name one (run two %ss for two)", set("kafka"), set("nats"), b.kind)
	case !kafka && !nats:
		return false, badSetting("%s", missing)
	case slices.ContainsFunc(b.kafka, func(a string) bool { return strings.TrimSpace(a) == "" }):
		return false, badSetting("%s: an empty broker address in %q", set("kafka"), strings.Join(b.kafka, ","))
	case b.leaseTTL != 0 && (b.leaseTTL < lease.MinTTL || b.leaseTTL > lease.MaxTTL):
		return false, badSetting("%s %v: want a duration from %v to %v, or 0 for the default (%v)", set("lease-ttl"), b.leaseTTL, lease.MinTTL, lease.MaxTTL, lease.DefaultTTL)
	}
	if b.holder != "" {
		if err := lease.Validate(b.kind+"/"+b.name, b.holder, lease.DefaultTTL); err != nil {
			return false, badSetting("%s: %s", set("holder"), trimSentinels(err.Error()))
		}
	}
	return kafka, nil
}

// bridgeRunner is a relay or an ingest connected to its broker.
type bridgeRunner interface {
	// Run runs until ctx ends (nil) or a permanent error.
	Run(ctx context.Context) error
}

// bridgeWorker runs one relay or ingest: connect opens its broker connection and builds it
// (returning the runner and what closes the connection), then the runner runs. Its methods
// are safe for concurrent use.
type bridgeWorker struct {
	kind, name string
	log        *slog.Logger
	// hints say what to check when a peer cannot be reached ("is Kafka running at …?").
	hints   hints
	connect func(ctx context.Context) (bridgeRunner, func(context.Context) error, error)
	// watch, when set, runs beside the runner until it returns (to log a stalled broker).
	watch func(ctx context.Context, runner bridgeRunner)

	mu struct {
		sync.Mutex
		runner  bridgeRunner
		err     error // the last failure to connect, while not connected
		errTime time.Time
		// failed is set when the failure to connect is for good: it is not tried again.
		failed bool
	}
}

// Connection retry bounds of a worker that retries (one in a server).
const (
	connectMinBackoff = 200 * time.Millisecond
	connectMaxBackoff = 30 * time.Second
	// closeTimeout bounds the wait for the broker's answers to what was still in flight when
	// the relay stopped. Its final checkpoint is written by then, so later answers move
	// nothing: the wait only lets the broker take what it was given.
	closeTimeout = 2 * time.Second
	// stallAfter is how long a relay with events in flight waits without any acknowledgement
	// of the broker before it logs that the broker does not answer.
	stallAfter = 10 * time.Second
)

// run connects and runs the bridge until ctx ends (nil) or it stops on a permanent error.
// With retry, a failure to connect is logged and tried again with capped exponential backoff
// (a server keeps serving while a broker is down); without, it is returned.
func (w *bridgeWorker) run(ctx context.Context, retry bool) error {
	runner, closeConn, err := w.connectLoop(ctx, retry)
	if err != nil || runner == nil {
		return err
	}
	wctx, stopWatch := context.WithCancel(ctx)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		if w.watch != nil {
			w.watch(wctx, runner)
		}
	}()
	err = runner.Run(ctx)
	stopWatch()
	<-watched
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), closeTimeout)
	defer cancel()
	if cerr := closeConn(cctx); cerr != nil {
		if err == nil && ctx.Err() == nil {
			err = fmt.Errorf("close the broker connection: %w", cerr)
		} else {
			w.log.Warn(w.kind+" "+w.name+": close the broker connection", slog.Any("error", cerr))
		}
	}
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("%s %s stopped: %w", w.kind, w.name, err)
	}
	return nil
}

// connectLoop connects, retrying when retry is set; it returns a nil runner when ctx ended
// first.
func (w *bridgeWorker) connectLoop(ctx context.Context, retry bool) (bridgeRunner, func(context.Context) error, error) {
	backoff := connectMinBackoff
	for {
		runner, closeConn, err := w.connect(ctx)
		if err == nil {
			w.mu.Lock()
			w.mu.runner, w.mu.err = runner, nil
			w.mu.Unlock()
			return runner, closeConn, nil
		}
		if ctx.Err() != nil {
			return nil, nil, nil
		}
		if hint := w.hints.forError(err); hint != "" {
			err = fmt.Errorf("%s %s: %w (%s)", w.kind, w.name, err, hint)
		} else {
			err = fmt.Errorf("%s %s: %w", w.kind, w.name, err)
		}
		// Settings the broker's client or the relay refuse do not get better by waiting.
		permanent := errors.Is(err, annals.ErrInvalidArgument) || errors.Is(err, lease.ErrInvalid)
		w.mu.Lock()
		w.mu.err, w.mu.errTime, w.mu.failed = err, time.Now().UTC(), permanent
		w.mu.Unlock()
		if !retry || permanent {
			return nil, nil, err
		}
		w.log.Warn("cannot connect to the broker; trying again", slog.String(w.kind, w.name), slog.Any("error", err), slog.Duration("in", backoff))
		t := time.NewTimer(backoff/2 + rand.N(backoff/2+1))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, nil, nil
		case <-t.C:
		}
		backoff = min(2*backoff, connectMaxBackoff)
	}
}

// current returns the runner once connected, else the last failure to connect and its time.
func (w *bridgeWorker) current() (bridgeRunner, time.Time, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.mu.runner, w.mu.errTime, w.mu.err
}

// notConnectedState is the state a status shows while w has no runner: "failed" when its
// failure to connect is for good, else "connecting".
func (w *bridgeWorker) notConnectedState() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.mu.failed {
		return "failed"
	}
	return "connecting"
}

// statusLogger returns a supervisor.Policy.OnChange that logs the changes of state of the
// relay or ingest (its state, its error, the other holder). An error that looks like a peer
// out of reach gets what to check: h.store when it names h.storeHost (the annals server of
// --server), else h.broker.
func statusLogger(log *slog.Logger, kind, name string, h hints) func(supervisor.Status) {
	var mu sync.Mutex
	var last string
	return func(st supervisor.Status) {
		errText := ""
		if st.Err != nil {
			errText = st.Err.Error()
		}
		key := fmt.Sprintf("%s|%s", st.State, st.Other.Holder)
		if st.State != supervisor.Running {
			key += "|" + errText
		}
		mu.Lock()
		changed := key != last
		last = key
		mu.Unlock()
		if !changed {
			return
		}
		attrs := []any{slog.String(kind, name), slog.String("holder", st.Holder)}
		switch {
		case st.State == supervisor.Running:
			log.Info(kind+" running", append(attrs, slog.Uint64("token", st.Lease.Token))...)
		case st.State == supervisor.StandingBy && st.Other.Holder == "" && st.Err != nil:
			msg := errText
			if hint := h.forError(st.Err); hint != "" {
				msg += " (" + hint + ")"
			}
			log.Warn(kind+" lost its lease; standing by", append(attrs, slog.String("error", msg))...)
		case st.State == supervisor.StandingBy:
			log.Info(kind+" standing by: another replica holds the lease", append(attrs, slog.String("other", st.Other.Holder))...)
		case st.State == supervisor.Retrying:
			msg := errText
			if hint := h.forError(st.Err); hint != "" {
				msg += " (" + hint + ")"
			}
			log.Warn(kind+" failed; retrying", append(attrs, slog.String("error", msg), slog.Int("attempt", st.Attempts), slog.Time("at", st.RetryAt))...)
		case st.State == supervisor.Failed:
			log.Error(kind+" stopped", append(attrs, slog.String("error", errText))...)
		case st.State == supervisor.Stopped:
			log.Info(kind+" stopped", attrs...)
		}
	}
}

// hints say what to check when a relay or ingest cannot reach a peer.
type hints struct {
	// broker is about the broker ("is Kafka running at …?").
	broker string
	// storeHost and store are about the annals server of --server: an error that names
	// storeHost gets store.
	storeHost, store string
}

// forError returns what to check for err, "" when err does not look like a peer out of reach.
func (h hints) forError(err error) string {
	switch {
	case !unreachable(err):
		return ""
	case h.storeHost != "" && strings.Contains(err.Error(), h.storeHost):
		return h.store
	}
	return h.broker
}

// unreachable reports whether err looks like a peer out of reach: refused or timed-out
// connections, names that do not resolve.
func unreachable(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	if _, ok := errors.AsType[net.Error](err); ok {
		return true
	}
	msg := strings.ToLower(err.Error())
	for _, s := range []string{"connection refused", "no such host", "i/o timeout", "unable to dial", "no servers available", "dial tcp", "timed out"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

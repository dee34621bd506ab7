package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// shopConfig says what a [shop] starts.
type shopConfig struct {
	// Annals is the server's binary (cmd/annals); Shop is this program's binary, run once per
	// service with the service's subcommand.
	Annals, Shop string
	// Data is the server's data directory.
	Data string
	// Carts are the addresses of the cart replicas, one each ("127.0.0.1:0": any free port).
	Carts []string
	// Replicas is how many replicas of each consuming service run.
	Replicas int
	// Stock, when not empty, is the inventory's --stock.
	Stock string
	// Out receives every child's output, each line prefixed with the child's name.
	Out io.Writer
	// Bus is where the services of onBus take their events: "groups" (or "") their consumer
	// groups of the server; "kafka" or "nats" a broker the shop runs in its own process, which
	// a relay of the server fills.
	Bus string
	// BusDir holds the broker's files (NATS's JetStream store, the server's relay
	// configuration); required with a broker.
	BusDir string
}

// shop is the shop's processes: the server, then the services, each a child process. Its
// methods are safe for concurrent use.
type shop struct {
	cfg shopConfig
	out *prefixer
	// died receives a child that exited though nobody stopped or killed it.
	died      chan *child
	serverURL string
	cartURLs  []string
	broker    *broker // nil on the server's consumer groups
	mu        struct {
		sync.Mutex
		server   *child
		services []*child // in the order they were started
	}
}

// consumers are the consuming services, in the order they start and stop.
var consumers = []string{"inventory", "fulfillment", "notification"}

// startShop starts the server and waits until it serves, then every service, and waits until
// the cart replicas serve and the consumers joined their groups. On error it stops what it
// started.
func startShop(ctx context.Context, cfg shopConfig) (_ *shop, err error) {
	s := &shop{cfg: cfg, out: &prefixer{w: cfg.Out}, died: make(chan *child, 64)}
	defer func() {
		if err != nil {
			s.stop()
		}
	}()
	serve := []string{"serve", "--data", cfg.Data, "--listen", "127.0.0.1:0"}
	if cfg.Bus != "" && cfg.Bus != busGroups {
		if cfg.BusDir == "" {
			return nil, fmt.Errorf("--bus %s: no directory for the broker", cfg.Bus)
		}
		if s.broker, err = startBroker(ctx, cfg.Bus, cfg.BusDir); err != nil {
			return nil, err
		}
		fmt.Fprintf(cfg.Out, "%s runs in this process at %s; the server relays %s to it\n", cfg.Bus, s.broker.addr, strings.Join(relayTypes(), ", "))
		conf, err := s.broker.writeServeConfig(cfg.BusDir)
		if err != nil {
			return nil, err
		}
		serve = append(serve, "--config", conf)
	}
	srv, err := s.start(ctx, "annals", cfg.Annals, serve, "msg=serving ")
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.mu.server = srv
	s.mu.Unlock()
	if s.serverURL, err = srv.ready(ctx); err != nil {
		return nil, err
	}
	var started []*child
	for i, addr := range cfg.Carts {
		c, err := s.startService(ctx, "cart", fmt.Sprintf("cart-%d", i+1), "--addr", addr)
		if err != nil {
			return nil, err
		}
		started = append(started, c)
	}
	for _, name := range consumers {
		for i := range cfg.Replicas {
			c, err := s.startService(ctx, name, fmt.Sprintf("%s-%d", name, i+1))
			if err != nil {
				return nil, err
			}
			started = append(started, c)
		}
	}
	for _, c := range started {
		url, err := c.ready(ctx)
		if err != nil {
			return nil, err
		}
		if strings.HasPrefix(c.name, "cart-") {
			s.cartURLs = append(s.cartURLs, url)
		}
	}
	return s, nil
}

// startService starts a replica of service, named replica, with the extra args.
func (s *shop) startService(ctx context.Context, service, replica string, extra ...string) (*child, error) {
	args := append([]string{service, "--server", s.serverURL, "--replica", replica}, extra...)
	ready := `msg="joined consumer group"`
	switch service {
	case "cart":
		ready = `msg="cart API"`
	case "inventory":
		if s.cfg.Stock != "" {
			args = append(args, "--stock", s.cfg.Stock)
		}
	}
	if s.broker != nil && slices.Contains(onBus, service) {
		args = append(args, s.broker.serviceArgs()...)
	}
	c, err := s.start(ctx, replica, s.cfg.Shop, args, ready)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.mu.services = append(s.mu.services, c)
	s.mu.Unlock()
	return c, nil
}

// start starts a child process; its output goes to s.out, and its first line holding ready
// makes it ready.
func (s *shop) start(_ context.Context, name, bin string, args []string, ready string) (*child, error) {
	c := &child{name: name, bin: bin, args: args, done: make(chan struct{}), url: make(chan string, 1)}
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	c.cmd = exec.Command(bin, args...)
	c.cmd.Stdout, c.cmd.Stderr = pw, pw
	c.cmd.SysProcAttr = childAttr()
	err = c.cmd.Start()
	pw.Close()
	if err != nil {
		pr.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	logged := make(chan struct{})
	go func() { // owned by the child: ends when its output does, which Wait below waits for
		defer close(logged)
		defer pr.Close()
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		found := false
		for sc.Scan() {
			line := sc.Text()
			if !found && strings.Contains(line, ready) {
				found = true
				c.url <- urlField(line)
			}
			s.out.line(name, line)
		}
	}()
	go func() {
		err := c.cmd.Wait()
		<-logged
		c.err = err
		close(c.done)
		if !c.stopped.Load() {
			select {
			case s.died <- c:
			default:
			}
		}
	}()
	return c, nil
}

var urlRE = regexp.MustCompile(`url=(\S+)`)

// urlField returns the value of the field url= of a log line, or "".
func urlField(line string) string {
	if m := urlRE.FindStringSubmatch(line); m != nil {
		return m[1]
	}
	return ""
}

// restart starts again a replica that exited, with the same arguments, and waits until it is
// ready.
func (s *shop) restart(ctx context.Context, c *child) (*child, error) {
	<-c.done
	ready := `msg="joined consumer group"`
	if strings.HasPrefix(c.name, "cart-") {
		ready = `msg="cart API"`
	}
	n, err := s.start(ctx, c.name, c.bin, c.args, ready)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.mu.services = append(s.mu.services, n)
	s.mu.Unlock()
	_, err = n.ready(ctx)
	return n, err
}

// replicas returns the running replicas whose names start with prefix.
func (s *shop) replicas(prefix string) []*child {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*child
	for _, c := range s.mu.services {
		if strings.HasPrefix(c.name, prefix) && !c.exited() {
			out = append(out, c)
		}
	}
	return out
}

// stop stops the services gracefully, the cart replicas first (no new orders), then the
// consumers (each finishes and acks what it handles), then the server, each with SIGTERM and
// SIGKILL after 15 s, and last the broker; it returns how the first that failed ended.
func (s *shop) stop() error {
	s.mu.Lock()
	services, server := s.mu.services, s.mu.server
	s.mu.Unlock()
	var errs []error
	stopAll := func(cs []*child) {
		for _, c := range cs {
			c.signal(syscall.SIGTERM)
		}
		for _, c := range cs {
			if err := c.wait(15 * time.Second); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", c.name, err))
			}
		}
	}
	var carts, others []*child
	for _, c := range services {
		if strings.HasPrefix(c.name, "cart-") {
			carts = append(carts, c)
		} else {
			others = append(others, c)
		}
	}
	stopAll(carts)
	stopAll(others)
	if server != nil {
		stopAll([]*child{server})
	}
	if s.broker != nil {
		s.broker.close()
	}
	return errors.Join(errs...)
}

// child is a child process.
type child struct {
	name string
	bin  string
	args []string
	cmd  *exec.Cmd
	url  chan string   // the url of the line that made it ready ("" when none)
	done chan struct{} // closed when it exited and its output is written
	err  error         // how it exited, once done is closed
	// stopped is set when the child is told to stop or killed: its end is expected.
	stopped atomic.Bool
}

// ready waits until the child printed its ready line and returns the url of that line.
func (c *child) ready(ctx context.Context) (string, error) {
	select {
	case u := <-c.url:
		return u, nil
	case <-c.done:
		return "", fmt.Errorf("%s exited before it was ready: %v", c.name, c.err)
	case <-ctx.Done():
		return "", fmt.Errorf("%s: not ready: %w", c.name, ctx.Err())
	case <-time.After(2 * time.Minute):
		return "", fmt.Errorf("%s: not ready after 2 minutes", c.name)
	}
}

func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// signal sends sig to the child unless it exited; the child's end is then on purpose.
func (c *child) signal(sig syscall.Signal) {
	c.stopped.Store(true)
	if !c.exited() {
		c.cmd.Process.Signal(sig)
	}
}

// kill kills the child with SIGKILL and waits until it exited.
func (c *child) kill() {
	c.signal(syscall.SIGKILL)
	<-c.done
}

// wait waits up to timeout for the child to exit, then kills it. It returns nil when the child
// exited by itself with status 0 (or was killed earlier by [child.kill]).
func (c *child) wait(timeout time.Duration) error {
	select {
	case <-c.done:
	case <-time.After(timeout):
		c.kill()
		return fmt.Errorf("did not stop within %v: killed", timeout)
	}
	if ee, ok := errors.AsType[*exec.ExitError](c.err); ok && !ee.Exited() {
		return nil // killed by a signal before, on purpose
	}
	return c.err
}

// prefixer writes lines prefixed with their child's name, one whole line at a time.
type prefixer struct {
	mu sync.Mutex
	w  io.Writer
}

func (p *prefixer) line(name, line string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, "%-14s | %s\n", name, line)
}

// buildAnnals builds the server (cmd/annals of this module) into dir and returns the binary.
func buildAnnals(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "annals")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/annalsdb/annals/cmd/annals")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build the server (run from the annals module, or pass --annals BINARY): %w\n%s", err, out)
	}
	return bin, nil
}

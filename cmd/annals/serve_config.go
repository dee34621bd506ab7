package main

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/annalsdb/annals/server"
	"github.com/spf13/pflag"
)

// serveConfig is the configuration of "annals serve", one field per flag.
type serveConfig struct {
	listen     string
	authFile   string
	tokenKey   string
	tokenTTL   time.Duration
	tlsCert    string
	tlsKey     string
	dev        bool
	logFormat  string
	logLevel   string
	maxRequest int
	// maxInFlight is the budget of request bytes in flight; 0 until parse sets the default.
	maxInFlight int64
	maxHeader   int
	maxStreams  uint32
	timeouts    struct {
		readHeader, read, write, idle, shutdown time.Duration
	}
}

// Defaults of "annals serve".
const (
	defaultPort        = "2113"
	defaultMaxStreams  = 250
	defaultMaxHeader   = 64 << 10
	devCertDir         = "dev-tls"
	servingLogMessage  = "serving"
	shutdownLogMessage = "stopped"
)

// flags defines the flags of the command, one per field of its configuration.
func (c *serveCommand) flags(f *pflag.FlagSet) {
	conf := &c.config
	f.StringVar(&c.configPath, "config", "", "YAML config file: a key per flag, e.g. listen: \":2113\" (env ANNALS_CONFIG)")
	f.StringVar(&conf.listen, "listen", "", "address to listen on (default :"+defaultPort+" with --auth, 127.0.0.1:"+defaultPort+" without)")
	f.StringVar(&conf.authFile, "auth", "", "auth file (YAML): roles, users and API tokens; without it there is no authentication")
	f.StringVar(&conf.tokenKey, "token-key", "", "secret of at least 32 bytes that signs login tokens (default: random at each start, so tokens die with the process)")
	f.DurationVar(&conf.tokenTTL, "token-ttl", server.DefaultTokenTTL, "how long a login token is valid")
	f.StringVar(&conf.tlsCert, "tls-cert", "", "TLS certificate (PEM; with --tls-key)")
	f.StringVar(&conf.tlsKey, "tls-key", "", "TLS private key (PEM; with --tls-cert)")
	f.BoolVar(&conf.dev, "dev", false, "TLS with a self-signed certificate for localhost, made once in DATA/"+devCertDir)
	f.StringVar(&conf.logFormat, "log-format", "text", "log format: text or json")
	f.StringVar(&conf.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	f.IntVar(&conf.maxRequest, "max-request-bytes", server.DefaultMaxRequestBytes, "largest request message, in bytes")
	f.Int64Var(&conf.maxInFlight, "max-request-bytes-in-flight", 0, "request bytes all requests may hold at once; beyond it requests wait (HTTP/1 only), then get 429 (default: a sixteenth of the memory of the machine or its cgroup, at least twice --max-request-bytes)")
	f.IntVar(&conf.maxHeader, "max-header-bytes", defaultMaxHeader, "largest request header, in bytes")
	f.Uint32Var(&conf.maxStreams, "max-streams", defaultMaxStreams, "concurrent requests (HTTP/2 streams) per connection")
	f.DurationVar(&conf.timeouts.readHeader, "read-header-timeout", 10*time.Second, "time to read a request's header")
	f.DurationVar(&conf.timeouts.read, "read-timeout", 30*time.Second, "time to read a whole request")
	f.DurationVar(&conf.timeouts.write, "write-timeout", 60*time.Second, "time to answer a request (not for subscriptions and streaming reads)")
	f.DurationVar(&conf.timeouts.idle, "idle-timeout", 2*time.Minute, "time an idle connection is kept open")
	f.DurationVar(&conf.timeouts.shutdown, "shutdown-timeout", 30*time.Second, "time in-flight requests get to finish at shutdown")
}

// secretFlags are masked in the logged configuration.
var secretFlags = []string{"token-key"}

// newLogger returns the logger of the flags, writing to w.
func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, usageError{msg: fmt.Sprintf("--log-level %q: want debug, info, warn or error", level)}
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, usageError{msg: fmt.Sprintf("--log-format %q: want text or json", format)}
}

// defaultMaxInFlight is the default of --max-request-bytes-in-flight: a sixteenth of the
// memory of the machine (or of its cgroup, when that is less), at least twice the largest
// request; the server package's default when the memory is unknown. A request costs several
// times its body (the body read whole, the decoded message, base64 decoded for JSON, the
// store's copy, and the garbage collector's headroom), so a sixteenth keeps requests within
// half the memory.
func defaultMaxInFlight(maxRequest int) int64 {
	mem := memoryLimit()
	if mem <= 0 {
		return max(server.DefaultMaxRequestBytesInFlight, 2*int64(maxRequest))
	}
	return max(mem/16, 2*int64(maxRequest))
}

// memoryLimit returns the memory available to the process in bytes: the smaller of the
// machine's (MemTotal of /proc/meminfo) and its cgroup's limit (cgroup v2 memory.max); 0 when
// neither is known (not Linux).
func memoryLimit() int64 {
	var mem int64
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for l := range strings.Lines(string(b)) {
			if rest, ok := strings.CutPrefix(l, "MemTotal:"); ok {
				if kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64); err == nil {
					mem = kb << 10
				}
			}
		}
	}
	if b, err := os.ReadFile("/sys/fs/cgroup/memory.max"); err == nil {
		if n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil && n > 0 && (mem == 0 || n < mem) {
			mem = n
		}
	}
	return mem
}

// defaultListen is the address to listen on when --listen is not set: every interface with
// auth, localhost only without.
func defaultListen(authFile string) string {
	if authFile == "" {
		return "127.0.0.1:" + defaultPort
	}
	return ":" + defaultPort
}

// portOf returns the port of a listen address.
func portOf(addr string) string {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return defaultPort
	}
	return port
}

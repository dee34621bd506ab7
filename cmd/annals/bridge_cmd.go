package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/server"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"
)

// bridgeCommon are the flags "annals relay" and "annals ingest" share besides their spec.
type bridgeCommon struct {
	configPath    string
	metricsListen string
	logFormat     string
	logLevel      string
}

// commonSettings are the settings of bridgeCommon a config file may hold; storeSettings the
// global flags it may hold (where the store is).
var (
	commonSettings = []string{"metrics-listen", "log-format", "log-level"}
	storeSettings  = []string{"data", "server", "token", "tls-ca", "postgres", "postgres-schema"}
)

func (b *bridgeCommon) register(fs *pflag.FlagSet, kind string) {
	fs.StringVar(&b.configPath, "config", "", "YAML config file: a key per flag (name, kafka, topic, …, and data, server, postgres), e.g. name: orders; a flag beats the file")
	fs.StringVar(&b.metricsListen, "metrics-listen", "", "serve Prometheus metrics of the "+kind+" on this address (GET /metrics; e.g. 127.0.0.1:9464); off by default")
	fs.StringVar(&b.logFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&b.logLevel, "log-level", "info", "log level: debug, info, warn or error")
}

// applyBridgeConfig sets the flags of cmd that the command line left out from the YAML
// config file at path: its own settings, bridgeCommon's and the store's. A store setting
// whose environment variable is set (ANNALS_SERVER, …) keeps the environment's value.
func (m *Main) applyBridgeConfig(cmd *cobra.Command, path string, settings []string) error {
	if path == "" {
		return nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil
		}
		return usageError{msg: fmt.Sprintf("config file %s: %v", path, err), err: err}
	}
	var more yaml.Node
	if err := dec.Decode(&more); !errors.Is(err, io.EOF) {
		msg := fmt.Sprintf("config file %s: line %d: more than one YAML document (a --- line): put every setting in one", path, more.Line)
		if err != nil {
			msg = fmt.Sprintf("config file %s: %v", path, err)
		}
		return usageError{msg: msg, err: errors.New(msg)}
	}
	allowed := slices.Concat(settings, commonSettings, storeSettings)
	fs := cmd.Flags()
	skip := func(name string) bool {
		f := fs.Lookup(name)
		return f == nil || f.Changed || (slices.Contains(storeSettings, name) && m.getenv(envName(name)) != "")
	}
	if err := applyYAMLSettings(fs, &doc, allowed, skip, "config file "+path); err != nil {
		return usageError{msg: err.Error(), err: err}
	}
	return nil
}

// runBridge runs the worker that start builds over the store the flags name, until ctx ends
// (nil, after the worker wrote its checkpoint) or it stops on an error. It logs to Stderr and,
// with --metrics-listen, serves the metrics of status meanwhile.
func (m *Main) runBridge(ctx context.Context, b *bridgeCommon, kind string, mustExist bool,
	start func(store annals.Store, log *slog.Logger) (*bridgeWorker, func() server.BridgeStatuses)) error {
	log, err := newLogger(m.Stderr, b.logFormat, b.logLevel)
	if err != nil {
		return err
	}
	return m.withStore(ctx, mustExist, func(store annals.Store) error {
		w, status := start(store, log)
		if b.metricsListen != "" {
			stop, err := serveBridgeMetrics(b.metricsListen, status, log)
			if err != nil {
				return err
			}
			defer stop()
		}
		log.Info(kind+" starting", slog.String(kind, w.name), slog.String("store", m.storeName()))
		return w.run(ctx, false)
	})
}

// storeHints returns h with what to check when the --server cannot be reached.
func (m *Main) storeHints(h hints) hints {
	if m.remote.server == "" {
		return h
	}
	if u, err := url.Parse(m.remote.server); err == nil && u.Host != "" {
		h.storeHost = u.Host
		h.store = "is the annals server running at " + m.remote.server + "?"
	}
	return h
}

// storeName describes where the store is, for the log.
func (m *Main) storeName() string {
	switch {
	case m.remote.server != "":
		return m.remote.server
	case m.postgres.url != "":
		return "postgres schema " + m.postgres.schema
	}
	return m.dataDir
}

// serveBridgeMetrics serves GET /metrics on addr: the figures of status, the Go runtime's
// and the process's. stop ends it and waits for it.
func serveBridgeMetrics(addr string, status func() server.BridgeStatuses, log *slog.Logger) (stop func(), err error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(server.NewBridgesCollector(status), collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics-listen: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Warn("metrics listener stopped", slog.Any("error", err))
		}
	}()
	log.Info("serving metrics", slog.String("url", "http://"+ln.Addr().String()+"/metrics"))
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := hs.Shutdown(ctx); err != nil {
			hs.Close()
		}
		<-done
	}, nil
}

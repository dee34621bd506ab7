package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestBridgeUsage: the settings of annals relay and annals ingest are checked before anything
// is opened; a mistake is a usage error (exit status 2) that names the setting and says what
// to do.
func TestBridgeUsage(t *testing.T) {
	e := newEnv(t)
	conf := filepath.Join(t.TempDir(), "relay.yaml")
	cases := []struct {
		name string
		file string // the --config file, when not ""
		args []string
		want string
	}{
		{"relay without a name", "", []string{"relay", "--kafka", "k:9092"}, "--name is required"},
		{"relay without a broker", "", []string{"relay", "--name", "r"}, "say where to publish: --kafka BROKERS or --nats URL"},
		{"relay to both", "", []string{"relay", "--name", "r", "--kafka", "k:9092", "--nats", "nats://n:4222"}, "--kafka and --nats both name a broker"},
		{"topic with nats", "", []string{"relay", "--name", "r", "--nats", "nats://n:4222", "--topic", "x"}, "--topic is for Kafka"},
		{"subject with kafka", "", []string{"relay", "--name", "r", "--kafka", "k:9092", "--subject", "x"}, "--subject and --nats-stream are for NATS"},
		{"bad format", "", []string{"relay", "--name", "r", "--kafka", "k:9092", "--format", "xml"}, "--format"},
		{"bad template", "", []string{"relay", "--name", "r", "--kafka", "k:9092", "--topic", "{nope}"}, "--topic"},
		{"bad name", "", []string{"relay", "--name", "a/b", "--kafka", "k:9092"}, "--name"},
		{"empty filter", "", []string{"relay", "--name", "r", "--kafka", "k:9092", "--category", "a,,b"}, "--category"},
		{"negative in-flight", "", []string{"relay", "--name", "r", "--kafka", "k:9092", "--max-in-flight", "-1"}, "--max-in-flight -1"},
		{"empty broker", "", []string{"relay", "--name", "r", "--kafka", "k:9092,"}, "empty broker"},
		{"arguments", "", []string{"relay", "x"}, "too many arguments"},
		{"unknown key in the file", "name: r\nkafka: k:9092\ntopics: x\n", []string{"relay"}, `unknown setting "topics"`},
		{"the file is applied", "name: r\nnats: nats://n:4222\ntopic: x\n", []string{"relay"}, "--topic is for Kafka"},
		{"a list for a single value", "name: [a, b]\n", []string{"relay"}, "name: want a single value"},
		{"a key twice", "name: a\nname: b\n", []string{"relay"}, "name"},
		{"ingest without topics", "", []string{"ingest", "--name", "i", "--kafka", "k:9092"}, "--kafka needs --topic"},
		{"ingest nats without stream", "", []string{"ingest", "--name", "i", "--nats", "nats://n:4222"}, "--nats needs --nats-stream"},
		{"ingest group with nats", "", []string{"ingest", "--name", "i", "--nats", "nats://n:4222", "--nats-stream", "S", "--group", "g"}, "--topic and --group are for Kafka"},
		{"ingest bad stream template", "", []string{"ingest", "--name", "i", "--kafka", "k:9092", "--topic", "t", "--stream", "{"}, "--stream"},
		{"ingest negative batch", "", []string{"ingest", "--name", "i", "--kafka", "k:9092", "--topic", "t", "--batch", "-5"}, "--batch -5"},
		{"template with an ingest's placeholder", "", []string{"relay", "--name", "r", "--kafka", "k:9092", "--topic", "ev.{key}"}, "--topic"},
		{"NATS subject with an empty token", "", []string{"relay", "--name", "r", "--nats", "nats://n:4222", "--subject", "events..{stream}"}, "--subject"},
		{"NATS subject with a wildcard", "", []string{"relay", "--name", "r", "--nats", "nats://n:4222", "--subject", "events.*.{stream}"}, "--subject"},
		{"ingest empty topic", "", []string{"ingest", "--name", "i", "--kafka", "k:9092", "--topic", "a,,b"}, "--topic: an empty topic"},
		{"ingest empty filter subject", "", []string{"ingest", "--name", "i", "--nats", "nats://n:4222", "--nats-stream", "S", "--filter-subject", "a.>,"}, "--filter-subject: an empty subject"},
		{"ingest empty broker", "", []string{"ingest", "--name", "i", "--kafka", ",k:9092", "--topic", "t"}, "--kafka: an empty broker address"},
		{"ingest to both", "", []string{"ingest", "--name", "i", "--kafka", "k:9092", "--nats", "nats://n:4222"}, "--kafka and --nats both name a broker"},
		{"relay negative lease-ttl", "", []string{"relay", "--name", "r", "--nats", "nats://n:4222", "--lease-ttl", "-1s"}, "--lease-ttl -1s"},
		{"relay lease-ttl below the least", "", []string{"relay", "--name", "r", "--nats", "nats://n:4222", "--lease-ttl", "1ms"}, "--lease-ttl 1ms: want a duration from 10ms to 1h0m0s"},
		{"ingest lease-ttl above the most", "", []string{"ingest", "--name", "i", "--nats", "nats://n:4222", "--nats-stream", "S", "--lease-ttl", "2h"}, "--lease-ttl 2h0m0s"},
		{"holder too long", "", []string{"relay", "--name", "r", "--nats", "nats://n:4222", "--holder", strings.Repeat("h", 300)}, "--holder"},
		{"source without CloudEvents", "", []string{"relay", "--name", "r", "--nats", "nats://n:4222", "--source", "https://shop"}, "--source is the CloudEvents source"},
		{"a second YAML document", "name: r\nkafka: k:9092\n---\nformat: xml\n", []string{"relay"}, "more than one YAML document"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			args := c.args
			if c.file != "" {
				if err := os.WriteFile(conf, []byte(c.file), 0o600); err != nil {
					t.Fatal(err)
				}
				args = append(args, "--config", conf)
			}
			// A case that is wrongly accepted would run the relay until the context ends.
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			r := e.run(ctx, "", args...)
			if r.code != 2 || !strings.Contains(r.line, c.want) {
				t.Errorf("annals %s: exit %d, %q; want exit 2 and %q", strings.Join(args, " "), r.code, r.line, c.want)
			}
		})
	}
	// A flag beats the file: the file's nats is left out for the flag's kafka, and its topic
	// is then fine.
	if err := os.WriteFile(conf, []byte("name: r\nkafka: k:9092\nformat: xml\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := e.run(context.Background(), "", "relay", "--config", conf, "--format", "yaml")
	if !strings.Contains(r.line, `--format: unknown format "yaml"`) && !strings.Contains(r.line, `"yaml"`) {
		t.Errorf("flag over file: %q, want the flag's value named", r.line)
	}
}

// TestServeBridgesConfig: the relays: and ingests: lists of serve's config file are decoded
// strictly: an unknown key, a wrong shape or a bad value stops serve before it opens the
// store, with an error naming the file, the item and the key.
func TestServeBridgesConfig(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "annals.yaml")
	cases := []struct {
		name, file, want string
	}{
		{"unknown key", "relays:\n  - name: r\n    kafka: k:9092\n    topc: x\n", `relays[0]: line 4: unknown setting "topc"`},
		{"not a list", "relays:\n  name: r\n", "relays: want a list"},
		{"item not a mapping", "relays:\n  - r\n", "relays[0]: line 2: want a mapping"},
		{"invalid relay", "relays:\n  - name: r\n", "relays[0]: say where to publish: kafka BROKERS or nats URL"},
		{"twice the same name", "relays:\n  - {name: r, kafka: k:9092}\n  - {name: r, nats: nats://n:4222}\n", "relays[1]: a relay named r is configured twice"},
		{"invalid ingest", "ingests:\n  - name: i\n    nats: nats://n:4222\n", "ingests[0]: nats needs nats-stream"},
		{"unknown top key", "relay:\n  - name: r\n", `unknown setting "relay"`},
		{"store key in an item", "relays:\n  - {name: r, kafka: k:9092, server: http://x}\n", `unknown setting "server"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := os.WriteFile(conf, []byte(c.file), 0o600); err != nil {
				t.Fatal(err)
			}
			m := &Main{Args: []string{"--data", filepath.Join(dir, "data"), "serve", "--config", conf, "--listen", "127.0.0.1:0"}, Getenv: func(string) string { return "" }}
			err := m.Run(context.Background())
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), conf) {
				t.Errorf("config %q: %v, want an error naming %s and %q", c.file, err, conf, c.want)
			}
		})
	}
}

package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"
)

// The configuration of "annals serve" comes, for each setting, from (first wins) its flag,
// its environment variable (ANNALS_ and the flag's name in capitals with _ for -), the
// config file (--config; YAML, the flag's name as the key), or the flag's default. One
// name per setting, the same in all three places.

// envName is the environment variable of a flag: --tls-cert is ANNALS_TLS_CERT.
func envName(flag string) string {
	return "ANNALS_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// configFlags are the flags of cmd that the config file and the environment can set: its
// own and --data.
func configFlags(cmd *cobra.Command) []*pflag.Flag {
	var fs []*pflag.Flag
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if f.Name == "config" || f.Name == "help" {
			return
		}
		if cmd.LocalNonPersistentFlags().Lookup(f.Name) != nil || f.Name == "data" {
			fs = append(fs, f)
		}
	})
	return fs
}

// readConfigFile reads a YAML config file: a mapping of flag names to scalar values, and of
// the names in blocks (lists of settings: relays, ingests) to any node, which it stores there.
func readConfigFile(path string, known []*pflag.Flag, blocks map[string]*yaml.Node) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config file: %w", err)
	}
	var raw map[string]yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&raw); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}
	names := make([]string, 0, len(known))
	for _, f := range known {
		names = append(names, f.Name)
	}
	out := make(map[string]string, len(raw))
	for k := range blocks {
		names = append(names, k)
	}
	for k, n := range raw {
		if _, ok := blocks[k]; ok {
			blocks[k] = &n
			continue
		}
		if !slices.Contains(names, k) {
			return nil, fmt.Errorf("config file %s: line %d: unknown setting %q (the settings are the flags of 'annals serve': %s)", path, n.Line, k, strings.Join(names, ", "))
		}
		if n.Kind != yaml.ScalarNode {
			return nil, fmt.Errorf("config file %s: line %d: %s: want a single value", path, n.Line, k)
		}
		out[k] = n.Value
	}
	return out, nil
}

// applyConfig sets each of cmd's config flags not given on the command line from the
// environment, else from the config file (--config, or ANNALS_CONFIG). It returns where each
// value came from ("flag", "env", "file" or "default"), by flag name. The file's keys named in
// blocks are not flags: their nodes are stored there (see readConfigFile).
func (m *Main) applyConfig(cmd *cobra.Command, configPath string, blocks map[string]*yaml.Node) (map[string]string, error) {
	flags := configFlags(cmd)
	file := map[string]string{}
	if configPath == "" {
		configPath = m.getenv("ANNALS_CONFIG")
	}
	if configPath != "" {
		var err error
		if file, err = readConfigFile(configPath, flags, blocks); err != nil {
			return nil, err
		}
	}
	source := make(map[string]string, len(flags))
	for _, f := range flags {
		env := envName(f.Name)
		switch {
		case f.Changed:
			source[f.Name] = "flag"
		case f.Name == "data" && m.getenv(env) != "":
			source[f.Name] = "env" // already the flag's default
		case m.getenv(env) != "":
			if err := f.Value.Set(m.getenv(env)); err != nil {
				return nil, usageError{msg: fmt.Sprintf("$%s=%q: %v", env, m.getenv(env), err), err: err}
			}
			source[f.Name] = "env"
		case file[f.Name] != "":
			if err := f.Value.Set(file[f.Name]); err != nil {
				return nil, usageError{msg: fmt.Sprintf("config file %s: %s %q: %v", configPath, f.Name, file[f.Name], err), err: err}
			}
			source[f.Name] = "file"
		default:
			source[f.Name] = "default"
		}
	}
	return source, nil
}

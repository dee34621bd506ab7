package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/annalsdb/annals/server"
	"go.yaml.in/yaml/v3"
)

// authFile is the YAML of an auth file (annals serve --auth FILE):
//
//	roles:                          # name: grants, each "op" (every stream) or "op:prefix"
//	  shop: ["read:cart-", "write:cart-", "read:order-"]
//	  reader: ["read", "metaRead"]
//	  scraper: ["metrics"]
//	users:                          # log in with POST /v1/login
//	  - name: alice
//	    passwordHash: "$2a$10$..."  # annals passwd
//	    roles: [admin]              # admin is built in: everything
//	tokens:                         # static bearer tokens, for programs
//	  - name: prometheus
//	    sha256: "9f86d0..."         # of the token: annals passwd --token
//	    roles: [scraper]
//
// The ops are read, write, delete, metaRead, metaWrite, * (all five), admin and metrics.
type authFile struct {
	Roles map[string][]string `yaml:"roles"`
	Users []struct {
		Name         string   `yaml:"name"`
		PasswordHash string   `yaml:"passwordHash"`
		Roles        []string `yaml:"roles"`
	} `yaml:"users"`
	Tokens []struct {
		Name   string   `yaml:"name"`
		SHA256 string   `yaml:"sha256"`
		Roles  []string `yaml:"roles"`
	} `yaml:"tokens"`
}

// readAuthFile reads an auth file into the options of server.NewAuth, which checks them.
func readAuthFile(path string) (*server.AuthOptions, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("auth file: %w", err)
	}
	var f authFile
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("auth file %s: %w", path, err)
	}
	opts := &server.AuthOptions{Roles: make(map[string][]server.Grant, len(f.Roles))}
	for name, grants := range f.Roles {
		opts.Roles[name] = []server.Grant{}
		for _, g := range grants {
			gr, err := server.ParseGrant(g)
			if err != nil {
				return nil, fmt.Errorf("auth file %s: role %q: %s", path, name, trimSentinels(err.Error()))
			}
			opts.Roles[name] = append(opts.Roles[name], gr)
		}
	}
	for _, u := range f.Users {
		opts.Users = append(opts.Users, server.User{Name: u.Name, PasswordHash: u.PasswordHash, Roles: u.Roles})
	}
	for _, t := range f.Tokens {
		opts.Tokens = append(opts.Tokens, server.APIToken{Name: t.Name, SHA256: t.SHA256, Roles: t.Roles})
	}
	return opts, nil
}

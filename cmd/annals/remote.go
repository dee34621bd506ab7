package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/client"
	"github.com/spf13/cobra"
)

// openRemote returns a client of the --server, with --token and --tls-ca. The client checks
// that the server answers (and accepts the token) before it is returned.
func (m *Main) openRemote(ctx context.Context) (annals.Store, error) {
	opts := &client.Options{Token: m.remote.token}
	if m.remote.tlsCA != "" {
		pem, err := os.ReadFile(m.remote.tlsCA)
		if err != nil {
			return nil, fmt.Errorf("--tls-ca: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--tls-ca %s: no PEM certificate in it", m.remote.tlsCA)
		}
		var p http.Protocols
		p.SetHTTP2(true)
		opts.HTTPClient = &http.Client{Transport: &http.Transport{
			Protocols:           &p,
			TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
			TLSHandshakeTimeout: 10 * time.Second,
			HTTP2:               &http.HTTP2Config{SendPingTimeout: 15 * time.Second, PingTimeout: 15 * time.Second},
		}}
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	c, err := client.Open(ctx, m.remote.server, opts)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// localOnly refuses --server (or $ANNALS_SERVER) for a command that works on the files of a
// data directory.
func (m *Main) localOnly(cmd *cobra.Command) error {
	if m.remote.server != "" {
		return usageErrorf(cmd, "%s works on a data directory, not over the network: leave out --server (and unset ANNALS_SERVER)", cmd.Name())
	}
	return nil
}

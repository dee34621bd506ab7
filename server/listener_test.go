package server_test

import (
	"bytes"
	"io"
	"net"
	"testing"

	"github.com/annalsdb/annals/server"
)

// TestBufferedListener: bytes written to a connection of the listener arrive whole and in
// order, however the writer splits them.
func TestBufferedListener(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := server.BufferedListener(raw)
	defer ln.Close()
	want := bytes.Repeat([]byte("0123456789abcdef"), 5000)
	go func() {
		c, err := net.Dial("tcp", raw.Addr().String())
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Close()
		for b := want; len(b) > 0; {
			n := min(len(b), 7+len(b)%1000)
			if _, err := c.Write(b[:n]); err != nil {
				t.Error(err)
				return
			}
			b = b[n:]
		}
	}()
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("read %d bytes, want the %d written", len(got), len(want))
	}
	if _, ok := c.(interface{ CloseWrite() error }); !ok {
		t.Error("the connection lost CloseWrite")
	}
}

package server_test

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"

	"github.com/annalsdb/annals/server"
)

// TestBufferedListener: bytes written to a connection of the listener arrive whole and in
// order, however the writer splits them, and CloseWrite reaches the TCP connection (the peer
// reads EOF).
func TestBufferedListener(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := server.BufferedListener(raw)
	defer ln.Close()
	want := bytes.Repeat([]byte("0123456789abcdef"), 5000)
	peerDone := make(chan error, 1)
	go func() {
		c, err := net.Dial("tcp", raw.Addr().String())
		if err != nil {
			peerDone <- err
			return
		}
		defer c.Close()
		for b := want; len(b) > 0; {
			n := min(len(b), 7+len(b)%1000)
			if _, err := c.Write(b[:n]); err != nil {
				peerDone <- err
				return
			}
			b = b[n:]
		}
		c.(*net.TCPConn).CloseWrite()
		// The listener's side half-closes in turn: reading here ends with EOF.
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err = io.Copy(io.Discard, c)
		peerDone <- err
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
	cw, ok := c.(interface{ CloseWrite() error })
	if !ok {
		t.Fatal("the connection lost CloseWrite")
	}
	if err := cw.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if err := <-peerDone; err != nil {
		t.Errorf("the peer, after the listener's side half-closed: %v", err)
	}
}

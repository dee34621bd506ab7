package transportbench

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"

	"github.com/annalsdb/annals"
	annalsv1 "github.com/annalsdb/annals/internal/gen/annals/v1"
	"google.golang.org/protobuf/proto"
)

// The framed transport: after the HTTP/1.1 upgrade (or at once on a port of its own), each
// side writes frames of a 4-byte big-endian length and that many bytes of one protobuf
// message, BatchAppendRequest from the client and BatchAppendResponse from the server.

// upgradePath is where the HTTP server upgrades a request to the framed transport, and
// upgradeProtocol the token of its Upgrade header.
const (
	upgradePath     = "/annals.v1.Framed/BatchAppend"
	upgradeProtocol = "annals-batch-append"
)

// maxFrame bounds one frame's message, as server.DefaultMaxRequestBytes bounds a request.
const maxFrame = 2 * annals.DefaultMaxAppendSize

// framedBuffer is the size of each side's read and write buffers.
const framedBuffer = 64 << 10

// framedConn reads and writes frames through buffers; one goroutine reads and one writes.
type framedConn struct {
	c    net.Conn
	r    *bufio.Reader
	w    *bufio.Writer
	rbuf []byte
	wbuf []byte
}

func newFramedConn(c net.Conn, r *bufio.Reader) *framedConn {
	return &framedConn{c: c, r: bufio.NewReaderSize(r, framedBuffer), w: bufio.NewWriterSize(c, framedBuffer)}
}

// read reads one frame into m; it returns io.EOF at a clean end between frames.
func (f *framedConn) read(m proto.Message) error {
	var n [4]byte
	if _, err := io.ReadFull(f.r, n[:]); err != nil {
		return err
	}
	size := binary.BigEndian.Uint32(n[:])
	if size > maxFrame {
		return fmt.Errorf("frame of %d bytes: over the limit of %d", size, maxFrame)
	}
	if cap(f.rbuf) < int(size) {
		f.rbuf = make([]byte, size)
	}
	f.rbuf = f.rbuf[:size]
	if _, err := io.ReadFull(f.r, f.rbuf); err != nil {
		return fmt.Errorf("frame: %w", io.ErrUnexpectedEOF)
	}
	return proto.Unmarshal(f.rbuf, m) // copies what it keeps: the buffer is reused
}

// write buffers one frame holding m; flush sends what is buffered.
func (f *framedConn) write(m proto.Message) error {
	b, err := proto.MarshalOptions{}.MarshalAppend(append(f.wbuf[:0], 0, 0, 0, 0), m)
	if err != nil {
		return err
	}
	f.wbuf = b
	binary.BigEndian.PutUint32(b, uint32(len(b)-4))
	_, err = f.w.Write(b)
	return err
}

func (f *framedConn) flush() error { return f.w.Flush() }

type framedServerStream struct{ *framedConn }

func (s framedServerStream) Recv() (*annalsv1.BatchAppendRequest, error) {
	m := new(annalsv1.BatchAppendRequest)
	return m, s.read(m)
}

func (s framedServerStream) Send(m *annalsv1.BatchAppendResponse) error { return s.write(m) }
func (s framedServerStream) Flush() error                               { return s.flush() }

type framedClientStream struct{ *framedConn }

func (s framedClientStream) Send(m *annalsv1.BatchAppendRequest) error { return s.write(m) }
func (s framedClientStream) Flush() error                              { return s.flush() }
func (s framedClientStream) Close() error                              { return s.c.Close() }

func (s framedClientStream) Recv() (*annalsv1.BatchAppendResponse, error) {
	m := new(annalsv1.BatchAppendResponse)
	return m, s.read(m)
}

// upgradeHandler switches a request with "Upgrade: annals-batch-append" to the framed
// transport on its connection and serves BatchAppend on it until the client closes it.
func upgradeHandler(st annals.Store) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != upgradeProtocol {
			w.Header().Set("Upgrade", upgradeProtocol)
			http.Error(w, "want Upgrade: "+upgradeProtocol, http.StatusUpgradeRequired)
			return
		}
		c, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		defer c.Close()
		fmt.Fprintf(rw, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: %s\r\n\r\n", upgradeProtocol)
		if rw.Flush() != nil {
			return
		}
		serve(r.Context(), st, framedServerStream{newFramedConn(c, rw.Reader)})
	})
}

// serveFramed serves BatchAppend in frames on every connection ln accepts, with no upgrade,
// until ln is closed.
func serveFramed(ln net.Listener, st annals.Store) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			serve(context.Background(), st, framedServerStream{newFramedConn(c, bufio.NewReader(c))})
		}()
	}
}

// dialFramed opens a framed BatchAppend stream on a connection of its own to addr: through an
// HTTP/1.1 upgrade when upgrade is set, else directly (the port of serveFramed).
func dialFramed(addr string, upgrade bool) (*client, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	r := bufio.NewReaderSize(c, framedBuffer)
	if upgrade {
		if err := upgradeConn(c, r, addr); err != nil {
			c.Close()
			return nil, err
		}
	}
	return newClient(framedClientStream{newFramedConn(c, r)}), nil
}

// upgradeConn asks the HTTP server on c to switch to the framed transport.
func upgradeConn(c net.Conn, r *bufio.Reader, host string) error {
	req, err := http.NewRequest(http.MethodGet, "http://"+host+upgradePath, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", upgradeProtocol)
	if err := req.Write(c); err != nil {
		return err
	}
	resp, err := http.ReadResponse(r, req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		return errors.New("upgrade: " + resp.Status)
	}
	return nil
}

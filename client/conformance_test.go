package client_test

import (
	"testing"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/client"
	"github.com/annalsdb/annals/memstore"
	"github.com/annalsdb/annals/server"
	"github.com/annalsdb/annals/storetest"
)

func TestConformanceMemstore(t *testing.T) { storetest.Run(t, openMem) }

func TestRandomizedMemstore(t *testing.T) { storetest.RunRandomized(t, openMem) }

func TestConformanceFilestore(t *testing.T) { storetest.Run(t, openFile) }

func TestRandomizedFilestore(t *testing.T) { storetest.RunRandomized(t, openFile) }

// openProc returns a client of a fresh server process over a memstore.
func openProc(t *testing.T) annals.Store {
	return dial(t, startProc(t, "memstore", "").url, nil)
}

func TestConformanceProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server process per group of tests")
	}
	storetest.Run(t, openProc)
}

func TestRandomizedProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server process")
	}
	storetest.RunRandomized(t, openProc)
}

// openMemUnary is openMem with every append a unary call.
func openMemUnary(t *testing.T) annals.Store {
	st := memstore.New(nil)
	t.Cleanup(func() { st.Close() })
	url, _ := serve(t, st, &server.Options{Backend: "memstore"})
	return dial(t, url, &client.Options{UnaryAppends: true})
}

// TestConformanceMemstoreUnary runs the suite once more through the unary Append.
func TestConformanceMemstoreUnary(t *testing.T) { storetest.Run(t, openMemUnary) }

package memstore_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/memstore"
	"github.com/annalsdb/annals/storetest"
)

func open(t *testing.T) annals.Store {
	s := memstore.New(nil)
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, open)
}

func TestRandomized(t *testing.T) {
	storetest.RunRandomized(t, open)
}

func Example() {
	ctx := context.Background()
	s := memstore.New(nil)
	defer s.Close()

	res, err := s.Append(ctx, "cart-42", annals.NoStream,
		annals.Event{Type: "ItemAdded", Data: []byte(`{"sku":"apple","qty":2}`)},
		annals.Event{Type: "ItemAdded", Data: []byte(`{"sku":"pear","qty":1}`)},
	)
	if err != nil {
		panic(err)
	}
	fmt.Printf("appended up to revision %d, position %d\n", res.Revision, res.Position)

	// The next append expects the stream to be where the last one left it.
	if _, err := s.Append(ctx, "cart-42", annals.Exact(res.Revision), annals.Event{Type: "CheckedOut"}); err != nil {
		panic(err)
	}
	for e, err := range s.ReadStream(ctx, "cart-42", nil) {
		if err != nil {
			panic(err)
		}
		fmt.Println(e.Revision, e.Type, string(e.Data))
	}
	// Output:
	// appended up to revision 1, position 2
	// 0 ItemAdded {"sku":"apple","qty":2}
	// 1 ItemAdded {"sku":"pear","qty":1}
	// 2 CheckedOut
}

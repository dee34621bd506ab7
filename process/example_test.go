package process_test

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/codec"
	"github.com/annalsdb/annals/decider"
	"github.com/annalsdb/annals/memstore"
	"github.com/annalsdb/annals/process"
)

// Registered is an event of a user's stream "user-<id>"; Welcomed one of a mailbox's
// "mailbox-<id>", written by the command Welcome.
type (
	Registered struct{ Email string }
	Welcomed   struct{ Email string }
	Welcome    struct{ Email string }
)

// A process manager that welcomes each registered user, over a decider that handles Welcome.
func Example() {
	ctx := context.Background()
	store := memstore.New(nil)
	defer store.Close()
	reg := codec.New(nil)
	if err := errors.Join(codec.Register[Registered](reg, "Registered", nil), codec.Register[Welcomed](reg, "Welcomed", nil)); err != nil {
		fmt.Println(err)
		return
	}

	mailboxes, err := decider.NewHandler(store, reg, decider.Decider[bool, Welcome, Welcomed]{
		Initial: func() bool { return false },
		Decide: func(welcomed bool, c Welcome) ([]Welcomed, error) {
			if welcomed {
				return nil, nil
			}
			return []Welcomed{{Email: c.Email}}, nil
		},
		Evolve: func(bool, Welcomed) bool { return true },
	}, &decider.Options[Welcome]{Validate: func(c Welcome) error {
		if !strings.Contains(c.Email, "@") {
			return fmt.Errorf("no address in %q", c.Email) // a refusal: the process is told
		}
		return nil
	}})
	if err != nil {
		fmt.Println(err)
		return
	}
	send, err := process.HandlerSender(process.To("mailbox", mailboxes))
	if err != nil {
		fmt.Println(err)
		return
	}
	welcome := process.Manager[int, Registered]{
		Name:   "welcome",
		Filter: &annals.Filter{Categories: []string{"user"}, EventTypes: []string{"Registered"}},
		Decode: process.Decoder[Registered](reg),
		Instance: func(_ Registered, rec annals.RecordedEvent) (string, bool) {
			return strings.CutPrefix(rec.Stream, "user-")
		},
		Initial: func() int { return 0 },
		React: func(id string, _ int, in process.Input[Registered]) []process.Action {
			if in.Recorded == nil {
				return nil // a refusal: nothing to compensate here
			}
			return []process.Action{process.Send{Stream: "mailbox-" + id, Command: Welcome{Email: in.Event.Email}}}
		},
		Evolve: func(n int, _ process.Input[Registered]) int { return n + 1 },
	}
	runner, err := process.NewRunner(store, welcome, send, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- runner.Run(ctx) }()

	var last uint64
	for id, email := range map[string]string{"ann": "ann@example.com", "bob": "bob"} {
		ev, err := reg.Encode(Registered{Email: email}, codec.Metadata{})
		if err != nil {
			fmt.Println(err)
			return
		}
		res, err := store.Append(ctx, "user-"+id, annals.NoStream, ev)
		if err != nil {
			fmt.Println(err)
			return
		}
		last = max(last, res.Position)
	}
	if err := runner.WaitFor(ctx, last); err != nil {
		fmt.Println(err)
		return
	}
	stop()
	<-done

	for _, id := range []string{"ann", "bob"} {
		for in, err := range runner.Journal(context.Background(), id) {
			switch {
			case err != nil:
				fmt.Println(err)
			case in.Refusal != nil:
				fmt.Printf("%s: refused: %s\n", id, in.Refusal.Error)
			default:
				fmt.Printf("%s: %s %+v\n", id, in.Recorded.Type, in.Event)
			}
		}
	}
	for ev, err := range store.ReadStream(context.Background(), "mailbox-ann", nil) {
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("%s: %s %s\n", ev.Stream, ev.Type, ev.Data)
	}
	// Output:
	// ann: Registered {Email:ann@example.com}
	// bob: Registered {Email:bob}
	// bob: refused: decider: invalid command: no address in "bob"
	// mailbox-ann: Welcomed {"Email":"ann@example.com"}
}

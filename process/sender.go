package process

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/decider"
)

// ErrNoHandler: a [HandlerSender] was given a command it cannot hand to a handler: no route
// for its stream's category, or a command that is not of the routed handler's command type.
// It is not a refusal: the runner stops, as for any mistake of the application.
var ErrNoHandler = errors.New("process: no handler for the command")

// Route hands the commands for the streams of one category to a [decider.Handler]. Make one
// with [To]; the zero Route is invalid.
type Route struct {
	category string
	handle   func(ctx context.Context, cmd Command) error
}

// To routes the commands for the streams of category (the part of a stream id before its
// first "-": "cart" for "cart-42") to h, for [HandlerSender].
func To[S, C, E any](category string, h *decider.Handler[S, C, E]) Route {
	r := Route{category: category}
	if h == nil {
		return r // HandlerSender refuses it
	}
	r.handle = func(ctx context.Context, cmd Command) error {
		c, ok := cmd.Command.(C)
		if !ok {
			return fmt.Errorf("%w: %T for %q: the handler of category %q takes %s",
				ErrNoHandler, cmd.Command, cmd.Stream, category, reflect.TypeFor[C]())
		}
		_, err := h.Handle(ctx, cmd.Stream, c, &decider.CommandOptions{
			IdempotencyKey: cmd.IdempotencyKey,
			CorrelationID:  cmd.CorrelationID,
			CausationID:    cmd.CausationID,
		})
		if errors.Is(err, decider.ErrRefused) {
			return Refused(err)
		}
		return err
	}
	return r
}

// HandlerSender returns a [Sender] that hands each command to the handler that routes
// routes its stream's category to, with the command's idempotency key, correlation id and
// causation id (so a command sent again after a crash takes effect once, and the events it
// causes name their cause). The command is converted to the handler's command type.
//
// The Sender returns the handler's refusals (its Decide's and Validate's errors, see
// [decider.ErrRefused]) marked with [Refused], so that React compensates for them; the
// handler's other errors unchanged (they stop the runner); and an error matching
// [ErrNoHandler] for a stream of a category no route names or a command of another type.
//
// HandlerSender returns an error matching [annals.ErrInvalidArgument] for a zero Route or one
// with a nil handler, and for a category that is empty, contains "-" or is routed twice.
func HandlerSender(routes ...Route) (Sender, error) {
	byCategory := make(map[string]func(context.Context, Command) error, len(routes))
	for i, r := range routes {
		switch _, dup := byCategory[r.category]; {
		case r.handle == nil:
			return nil, fmt.Errorf("%w: process: route %d (%q) has no handler", annals.ErrInvalidArgument, i, r.category)
		case r.category == "" || strings.Contains(r.category, "-"):
			return nil, fmt.Errorf("%w: process: route %d: category %q: want a non-empty name without \"-\"", annals.ErrInvalidArgument, i, r.category)
		case dup:
			return nil, fmt.Errorf("%w: process: category %q is routed twice", annals.ErrInvalidArgument, r.category)
		}
		byCategory[r.category] = r.handle
	}
	return func(ctx context.Context, cmd Command) error {
		handle, ok := byCategory[annals.Category(cmd.Stream)]
		if !ok {
			return fmt.Errorf("%w: %T for %q: no route for category %q", ErrNoHandler, cmd.Command, cmd.Stream, annals.Category(cmd.Stream))
		}
		return handle(ctx, cmd)
	}, nil
}

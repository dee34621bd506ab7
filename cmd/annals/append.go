package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/annalsdb/annals"
	"github.com/spf13/cobra"
)

// Batches of events read from stdin: at most this many events and bytes per append, so that
// a batch stays well within the store's default append limit (16 MiB).
const (
	batchEvents = 1000
	batchBytes  = 4 << 20
)

func (m *Main) newAppendCmd() *cobra.Command {
	var (
		expected    string
		metadata    string
		id          string
		contentType string
		jsonOut     bool
	)
	cmd := &cobra.Command{
		Use:   "append STREAM {TYPE [DATA] | -}",
		Short: "Append an event to a stream (or JSON lines from stdin)",
		Long: `Append one event of type TYPE to STREAM. DATA is the event's body, JSON by default
(quote it for the shell: '{"sku":"A1"}'); without DATA the body is {}. The append is checked
against --expected: any (default), no-stream, exists, or the revision the stream must be at.
DATA and --metadata must be valid JSON unless --content-type names another format; malformed
JSON is refused and nothing is written.

With - in place of TYPE, the events are read from stdin instead, one JSON object per line
({"id":..,"type":..,"data":..,"metadata":..}; id is optional and makes a retry idempotent;
see the format below). Blank lines are skipped; stream, revision, position and time fields
are ignored (the events go to STREAM). The whole input is read and checked before anything
is written, so a malformed line writes nothing. Consecutive lines are then appended in
batches of up to 1000 events (4 MiB), each batch atomic: the first batch is checked against
--expected, each later one against the revision the previous batch ended at, so the events
land at contiguous revisions or the command stops with a conflict. --id, --metadata and
--content-type do not apply in this mode (put them in the lines).

Prints the stream, the revision of the (last) event written and its position in the global
log; with --json as {"stream":..,"events":..,"revision":..,"position":..}.

` + formatHelp,
		Example: `  annals append cart-42 ItemAdded '{"sku":"A1","qty":2}'
  annals append cart-42 CartCheckedOut --expected 1
  annals read cart-7 --json | annals append cart-42 -`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 2 && args[1] == "-" {
				return nil
			}
			if len(args) == 3 && args[1] == "-" {
				return usageErrorf(cmd, "DATA cannot follow -: with - the events come from stdin")
			}
			return argsBetween(2, 3, "STREAM TYPE [DATA], or STREAM -")(cmd, args)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			stream := args[0]
			if err := annals.ValidateUserStreamID(stream); err != nil {
				return usageErrorf(cmd, "%s", trimSentinels(err.Error()))
			}
			exp, err := annals.ParseExpectedRevision(expected)
			if err != nil {
				return usageErrorf(cmd, "--expected: %s", trimSentinels(err.Error()))
			}
			if args[1] == "-" {
				for _, f := range []string{"id", "metadata", "content-type"} {
					if cmd.Flags().Changed(f) {
						return usageErrorf(cmd, "--%s applies to one event, not to events from stdin (put %q in the JSON lines)", f, jsonName(f))
					}
				}
				return m.appendLines(cmd, stream, exp, jsonOut)
			}
			ev := annals.Event{Type: args[1], ContentType: contentType, Data: []byte("{}")}
			if ev.Type == "" {
				return usageErrorf(cmd, "empty event TYPE")
			}
			if len(args) == 3 {
				ev.Data = []byte(args[2])
			}
			if cmd.Flags().Changed("metadata") {
				ev.Metadata = []byte(metadata)
			}
			if isJSONContentType(contentType) {
				if err := checkJSON(ev.Data); err != nil {
					return usageError{msg: fmt.Sprintf("DATA is not valid JSON: %s (quote it for the shell, e.g. '{\"sku\":\"A1\"}', or pass --content-type)", err)}
				}
				if ev.Metadata != nil {
					if err := checkJSON(ev.Metadata); err != nil {
						return usageErrorf(cmd, "--metadata is not valid JSON: %s", err)
					}
				}
			}
			if id != "" {
				if ev.ID, err = annals.ParseUUID(id); err != nil {
					return usageErrorf(cmd, "--id: %s", trimSentinels(err.Error()))
				}
			}
			return m.withStore(cmd.Context(), false, func(s annals.Store) error {
				res, err := s.Append(cmd.Context(), stream, exp, ev)
				if err != nil {
					return err
				}
				return m.printAppended(stream, 1, res, jsonOut)
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&expected, "expected", "any", "expected state of the stream: any, no-stream, exists or a revision number")
	f.StringVar(&metadata, "metadata", "", "event metadata (JSON unless --content-type says otherwise)")
	f.StringVar(&id, "id", "", "event id (UUID); repeating an append with the same id writes nothing")
	f.StringVar(&contentType, "content-type", "", "content type of DATA and --metadata (default application/json)")
	f.BoolVar(&jsonOut, "json", false, "print the result as JSON")
	return cmd
}

// jsonName is the JSON lines field that stands for an append flag.
func jsonName(flag string) string {
	if flag == "content-type" {
		return "contentType"
	}
	return flag
}

func checkJSON(b []byte) error {
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return errors.New(jsonErrorText(err))
	}
	return nil
}

// numberedEvent is an event read from input line number line.
type numberedEvent struct {
	lineEvent
	line int
}

// readLines reads JSON lines from r until EOF, skipping blank lines; fn gets each event and
// its line number. Errors name the line.
func readLines(r io.Reader, fn func(numberedEvent) error) error {
	br := bufio.NewReaderSize(r, 1<<16)
	for n := 1; ; n++ {
		line, err := br.ReadBytes('\n')
		if len(bytes.TrimSpace(line)) > 0 {
			ev, perr := parseLine(line)
			if perr != nil {
				return fmt.Errorf("line %d: %w", n, perr)
			}
			if ferr := fn(numberedEvent{lineEvent: ev, line: n}); ferr != nil {
				return ferr
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read line %d: %w", n, err)
		}
	}
}

// appendLines is append STREAM -: it reads every line first, then appends in batches.
func (m *Main) appendLines(cmd *cobra.Command, stream string, expected annals.ExpectedRevision, jsonOut bool) error {
	if isTerminal(m.Stdin) {
		fmt.Fprintln(m.Stderr, "reading events from stdin, one JSON object per line; end with Ctrl-D")
	}
	var events []numberedEvent
	err := readLines(m.Stdin, func(ev numberedEvent) error {
		events = append(events, ev)
		return nil
	})
	if err != nil {
		return fmt.Errorf("stdin: %w; nothing was written", err)
	}
	if len(events) == 0 {
		return errors.New(`no events on stdin (want one JSON object per line, e.g. {"type":"ItemAdded","data":{"sku":"A1"}})`)
	}
	return m.withStore(cmd.Context(), false, func(s annals.Store) error {
		var res annals.AppendResult
		written := 0
		for len(events) > 0 {
			n, size := 0, 0
			for n < len(events) && n < batchEvents && (n == 0 || size+events[n].Size() <= batchBytes) {
				size += events[n].Size()
				n++
			}
			batch := make([]annals.Event, n)
			for i := range batch {
				batch[i] = events[i].Event
			}
			var err error
			res, err = s.Append(cmd.Context(), stream, expected, batch...)
			if err != nil {
				where := fmt.Sprintf("line %d", events[0].line)
				if n > 1 {
					where = fmt.Sprintf("lines %d-%d", events[0].line, events[n-1].line)
				}
				if written > 0 {
					return fmt.Errorf("%s: %w (the %d events before were written, up to revision %d)", where, err, written, res.Revision)
				}
				return fmt.Errorf("%s: %w", where, err)
			}
			written += n
			expected = annals.Exact(res.Revision)
			events = events[n:]
		}
		return m.printAppended(stream, written, res, jsonOut)
	})
}

func (m *Main) printAppended(stream string, n int, res annals.AppendResult, jsonOut bool) error {
	if jsonOut {
		b, err := json.Marshal(struct {
			Stream   string `json:"stream"`
			Events   int    `json:"events"`
			Revision uint64 `json:"revision"`
			Position uint64 `json:"position"`
		}{stream, n, res.Revision, res.Position})
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(m.Stdout, "%s\n", b)
		return err
	}
	what := "1 event"
	if n != 1 {
		what = fmt.Sprintf("%d events", n)
	}
	revs := fmt.Sprintf("revision %d", res.Revision)
	if n > 1 {
		revs = fmt.Sprintf("revisions %d-%d", res.Revision+1-uint64(n), res.Revision)
	}
	_, err := fmt.Fprintf(m.Stdout, "appended %s to %s: %s, position %d\n", what, stream, revs, res.Position)
	return err
}

package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/annalsdb/annals"
	"github.com/spf13/cobra"
)

func (m *Main) newExportCmd() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "export [--out FILE]",
		Short: "Write every user event as JSON lines",
		Long: `Write every event of the user streams, in the order of the global log, as JSON lines (the
format below, with ids and revisions) to --out FILE, or to stdout. The export is a snapshot:
it ends at the last event written when it starts. "annals import" reads it back.

Events of the system streams are left out: $meta-… (stream metadata, soft deletes,
tombstones), so an import does not bring back stream metadata or deletions; the events of
deleted streams that are still in the log are exported and an import re-creates those
streams. $groups and $group-… (consumer groups: settings, checkpoints, parked events) are left
out too, because they name positions of the log and an import gives events new positions:
create the groups again after an import.

FILE is written whole or not at all: the export goes to a temporary file beside it, renamed
to FILE once complete and synced. A progress bar is drawn on stderr when stderr is a terminal
(and stdout is not, when the events go there). A summary line ends the export, on stderr
when the events go to stdout.

` + formatHelp,
		Example: `  annals export --out backup.jsonl
  annals export | gzip > backup.jsonl.gz`,
		Args: argsBetween(0, 0, "no arguments (pass the file with --out)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return m.withStore(cmd.Context(), true, func(s annals.Store) error {
				return m.export(cmd.Context(), s, out)
			})
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "write to this file instead of stdout (- is stdout)")
	return cmd
}

func (m *Main) export(ctx context.Context, s annals.Store, out string) (err error) {
	last, err := lastPosition(ctx, s)
	if err != nil {
		return err
	}
	toStdout := out == "" || out == "-"
	var (
		w       io.Writer = m.Stdout
		summary io.Writer = m.Stdout
		tmp     *os.File
	)
	if toStdout {
		summary = m.Stderr
	} else {
		tmp, err = os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".*.tmp")
		if err != nil {
			return fmt.Errorf("create export file: %w", err)
		}
		defer func() {
			if err != nil {
				tmp.Close()
				os.Remove(tmp.Name())
			}
		}()
		w = tmp
	}
	bar := newProgress(m.Stderr, isTerminal(m.Stderr) && !(toStdout && isTerminal(m.Stdout)), int64(last), "exporting")
	defer bar.done()
	bw := bufio.NewWriterSize(w, 1<<16)
	var (
		buf     []byte
		events  int
		streams = make(map[string]struct{})
	)
	if last > 0 {
		for ev, err := range s.ReadAll(ctx, &annals.ReadOptions{Until: last + 1}) {
			if err != nil {
				return fmt.Errorf("export: read the log: %w", err)
			}
			bar.set(int64(ev.Position))
			if strings.HasPrefix(ev.Stream, "$") {
				continue
			}
			if buf, err = appendJSONLine(buf[:0], &ev); err != nil {
				return err
			}
			if _, err := bw.Write(buf); err != nil {
				return fmt.Errorf("export: write: %w", err)
			}
			events++
			streams[ev.Stream] = struct{}{}
		}
	}
	bar.done()
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("export: write: %w", err)
	}
	dest := "stdout"
	if tmp != nil {
		if err := tmp.Sync(); err != nil {
			return fmt.Errorf("export: sync %s: %w", tmp.Name(), err)
		}
		if err := tmp.Close(); err != nil {
			return fmt.Errorf("export: close %s: %w", tmp.Name(), err)
		}
		if err := os.Rename(tmp.Name(), out); err != nil {
			return fmt.Errorf("export: %w", err)
		}
		dest = out
	}
	_, err = fmt.Fprintf(summary, "exported %s of %s to %s\n", plural(events, "event"), plural(len(streams), "stream"), dest)
	return err
}

// lastPosition returns the position of the last event in the log, 0 when it is empty.
func lastPosition(ctx context.Context, s annals.Store) (uint64, error) {
	for ev, err := range s.ReadAll(ctx, &annals.ReadOptions{Backwards: true, From: annals.End, Limit: 1}) {
		if err != nil {
			return 0, fmt.Errorf("read the end of the log: %w", err)
		}
		return ev.Position, nil
	}
	return 0, nil
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

func (m *Main) newImportCmd() *cobra.Command {
	var in string
	cmd := &cobra.Command{
		Use:   "import [--in FILE]",
		Short: "Append the events of an export (JSON lines), idempotently",
		Long: `Read JSON lines as "annals export" writes them, from --in FILE or from stdin, and append each
event to its stream at the revision the line records, with the id it records. Every line
needs id, stream, type and revision; the lines of one stream must come in revision order
(streams may interleave). The data directory is created if needed.

Importing is idempotent: each append expects the stream to be just before the line's revision
(no-stream for revision 0), so a line already imported is recognised by its id and writes
nothing. Importing the same file twice writes nothing the second time, an interrupted import
finishes when run again, and an export that grew since the last import adds only its new
events. A stream that holds other events at those revisions is a conflict: the import stops
there (the events before it stay written).

The store gives the events new positions and times; ids, streams, revisions, types, content
types, data and metadata are kept byte for byte. Consecutive lines of one stream with
contiguous revisions are appended together, up to 1000 events (4 MiB) per append. When --in
is a regular file, all of it is checked before anything is written, so a malformed line
writes nothing; from stdin, lines before a malformed one may already be written (fix the
input and import it again). A progress bar is drawn on stderr when it is a terminal; a
summary line on stdout ends the import.

` + formatHelp,
		Example: `  annals import --in backup.jsonl --data ./restored
  gunzip -c backup.jsonl.gz | annals import`,
		Args: argsBetween(0, 0, "no arguments (pass the file with --in)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return m.importEvents(cmd.Context(), in)
		},
	}
	cmd.Flags().StringVar(&in, "in", "", "read from this file instead of stdin (- is stdin)")
	return cmd
}

// importLine checks what import needs of a line beyond the format: a stream it may write, a
// revision and an id.
func importLine(ev numberedEvent) error {
	switch {
	case ev.Stream == "":
		return fmt.Errorf(`line %d: no "stream"`, ev.line)
	case ev.Revision == nil:
		return fmt.Errorf(`line %d: no "revision" (to append events without revisions, use 'annals append STREAM -')`, ev.line)
	case *ev.Revision > uint64(1<<63-1):
		return fmt.Errorf("line %d: revision %d is too large", ev.line, *ev.Revision)
	case ev.ID.IsZero():
		return fmt.Errorf(`line %d: no "id" (import needs the event ids to be idempotent)`, ev.line)
	}
	if err := annals.ValidateUserStreamID(ev.Stream); err != nil {
		return fmt.Errorf("line %d: %s", ev.line, trimSentinels(err.Error()))
	}
	return nil
}

func (m *Main) importEvents(ctx context.Context, in string) error {
	var (
		r     io.Reader = m.Stdin
		name            = "stdin"
		total int64     = -1
	)
	if in != "" && in != "-" {
		f, err := os.Open(in)
		if err != nil {
			return fmt.Errorf("import: %w", err)
		}
		defer f.Close()
		r, name = f, in
		if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
			// Check the whole file first, so that a malformed line writes nothing.
			total = 0
			err := readLines(f, func(ev numberedEvent) error {
				total++
				return importLine(ev)
			})
			if err != nil {
				return fmt.Errorf("%s: %w; nothing was imported", in, err)
			}
			if _, err := f.Seek(0, io.SeekStart); err != nil {
				return fmt.Errorf("import: %w", err)
			}
		}
	}
	return m.withStore(ctx, false, func(s annals.Store) error {
		head, err := lastPosition(ctx, s)
		if err != nil {
			return err
		}
		im := &importer{ctx: ctx, s: s, maxPos: head}
		im.bar = newProgress(m.Stderr, isTerminal(m.Stderr), total, "importing")
		defer im.bar.done()
		err = readLines(r, func(ev numberedEvent) error {
			if err := importLine(ev); err != nil {
				return err
			}
			return im.add(ev)
		})
		if err == nil {
			err = im.flush()
		}
		im.bar.done()
		if err != nil {
			if im.written+im.skipped > 0 {
				return fmt.Errorf("%s: %w (%d events written before it; run the same import again once the cause is fixed: it skips what is written)", name, err, im.written)
			}
			return fmt.Errorf("%s: %w", name, err)
		}
		_, err = fmt.Fprintf(m.Stdout, "imported %s from %s: %d written, %d already there\n",
			plural(im.written+im.skipped, "event"), name, im.written, im.skipped)
		return err
	})
}

// importer appends the lines of an import, grouping consecutive lines of a stream.
type importer struct {
	ctx   context.Context
	s     annals.Store
	bar   *progress
	batch []numberedEvent
	size  int
	// maxPos is the highest position in the store that this import knows of: an append whose
	// result lies beyond it wrote new events, one that does not was a repeat.
	maxPos           uint64
	written, skipped int
}

func (im *importer) add(ev numberedEvent) error {
	if n := len(im.batch); n > 0 {
		last := im.batch[n-1]
		if last.Stream != ev.Stream || *last.Revision+1 != *ev.Revision ||
			n >= batchEvents || im.size+ev.Size() > batchBytes {
			if err := im.flush(); err != nil {
				return err
			}
		}
	}
	im.batch = append(im.batch, ev)
	im.size += ev.Size()
	return nil
}

// flush appends the batch; when it conflicts, it appends its events one by one, so that a
// batch that is partly in the store already (an export that grew) still imports.
func (im *importer) flush() error {
	batch := im.batch
	im.batch, im.size = im.batch[:0], 0
	if len(batch) == 0 {
		return nil
	}
	err := im.append(batch)
	if errors.Is(err, annals.ErrWrongExpectedVersion) && len(batch) > 1 {
		for i := range batch {
			if err := im.append(batch[i : i+1]); err != nil {
				return err
			}
		}
		return nil
	}
	return err
}

func (im *importer) append(batch []numberedEvent) error {
	first := batch[0]
	expected := annals.NoStream
	if *first.Revision > 0 {
		expected = annals.Exact(*first.Revision - 1)
	}
	events := make([]annals.Event, len(batch))
	for i := range batch {
		events[i] = batch[i].Event
	}
	res, err := im.s.Append(im.ctx, first.Stream, expected, events...)
	if err != nil {
		where := fmt.Sprintf("line %d", first.line)
		if len(batch) > 1 {
			where = fmt.Sprintf("lines %d-%d", first.line, batch[len(batch)-1].line)
		}
		if w, ok := errors.AsType[*annals.WrongExpectedVersionError](err); ok && len(batch) == 1 {
			return fmt.Errorf("%s: %s", where, importConflict(w, *first.Revision))
		}
		return fmt.Errorf("%s: %w", where, err)
	}
	if res.Position > im.maxPos {
		im.maxPos = res.Position
		im.written += len(batch)
	} else {
		im.skipped += len(batch)
	}
	im.bar.add(len(batch))
	return nil
}

func importConflict(w *annals.WrongExpectedVersionError, rev uint64) string {
	actual, exists := w.Actual.Revision()
	switch {
	case !exists:
		return fmt.Sprintf("conflict: the file continues stream %q at revision %d, but the stream does not exist here (does the file lack its first events?)", w.Stream, rev)
	case actual+1 < rev:
		return fmt.Sprintf("conflict: the file puts revision %d of stream %q after revision %d here (does the file lack the events in between?)", rev, w.Stream, actual)
	}
	return fmt.Sprintf("conflict: stream %q already holds another event at revision %d (import into an empty --data directory, or one that holds only earlier imports of this data)", w.Stream, rev)
}

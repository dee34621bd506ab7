package main

import (
	"errors"
	"fmt"
	"iter"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/filestore"
	"github.com/spf13/cobra"
)

// readFlags are the flags read and tail share.
type readFlags struct {
	from       uint64
	limit      int
	jsonOut    bool
	categories []string
	types      []string
	prefixes   []string
}

func (f *readFlags) register(cmd *cobra.Command, fromHelp, limitHelp string) {
	fl := cmd.Flags()
	fl.Uint64Var(&f.from, "from", 0, fromHelp)
	fl.IntVar(&f.limit, "limit", 0, limitHelp)
	fl.BoolVar(&f.jsonOut, "json", false, "print JSON lines (the format below) instead of text")
	fl.StringSliceVar(&f.categories, "category", nil, "$all only: keep events of streams in these categories (the part of the stream id before the first -)")
	fl.StringSliceVar(&f.types, "type", nil, "$all only: keep events of these types")
	fl.StringSliceVar(&f.prefixes, "prefix", nil, "$all only: keep events of streams whose id starts with one of these")
}

// target checks the arguments and flags and returns the stream to read (or annals.AllStream)
// and the filter (nil for none).
func (f *readFlags) target(cmd *cobra.Command, args []string) (string, *annals.Filter, error) {
	if f.limit < 0 {
		return "", nil, usageErrorf(cmd, "--limit %d: want 0 (no limit) or more", f.limit)
	}
	stream := annals.AllStream
	if len(args) == 1 {
		stream = args[0]
	}
	for name, list := range map[string][]string{"category": f.categories, "type": f.types, "prefix": f.prefixes} {
		if cmd.Flags().Changed(name) && len(list) == 0 {
			return "", nil, usageErrorf(cmd, "--%s needs a value", name)
		}
	}
	var filter *annals.Filter
	if len(f.categories)+len(f.types)+len(f.prefixes) > 0 {
		filter = &annals.Filter{StreamPrefixes: f.prefixes, Categories: f.categories, EventTypes: f.types}
		if stream != annals.AllStream {
			return "", nil, usageErrorf(cmd, "--category, --type and --prefix apply to $all only, not to stream %q", stream)
		}
		if err := filter.Validate(); err != nil {
			return "", nil, usageErrorf(cmd, "%s", trimSentinels(err.Error()))
		}
	}
	if stream != annals.AllStream {
		if err := annals.ValidateStreamID(stream); err != nil {
			return "", nil, usageErrorf(cmd, "%s (for the global log pass '$all', in single quotes)", trimSentinels(err.Error()))
		}
	}
	return stream, filter, nil
}

// streamError explains the errors of reading a stream.
func streamError(stream string, err error) error {
	switch {
	case errors.Is(err, annals.ErrStreamNotFound):
		return fmt.Errorf("stream %q not found (see 'annals streams' for the streams there are)", stream)
	case errors.Is(err, annals.ErrStreamDeleted):
		return fmt.Errorf("stream %q was tombstoned (deleted for good)", stream)
	}
	return err
}

const readLong = `Read the events of STREAM, or of the global log $all (the default; quote it in the shell:
'$all'), in order: forwards from the start, or backwards from the end with --backwards.
--from is a revision for a stream and a position for $all, inclusive. --until and --as-of
read the past: only the events below a revision (position for $all), or those recorded by a
moment. $all includes the
system events (those of the $meta-… streams). --category, --type and --prefix filter $all;
each may be repeated or take a comma-separated list. An event passes when its stream matches
one of the prefixes or categories (if any are given) and its type is one of the types (if
any are given).

Text output is one line per event: position, stream@revision, type, time (UTC) and the data
(compacted JSON, quoted text, or its size and content type), cut at 200 bytes; --json prints
everything.

`

func (m *Main) newReadCmd() *cobra.Command {
	var (
		f         readFlags
		backwards bool
		until     uint64
		asOf      string
	)
	cmd := &cobra.Command{
		Use:   "read [STREAM|$all]",
		Short: "Read the events of a stream or of the global log",
		Long:  readLong + formatHelp,
		Example: `  annals read cart-42
  annals read '$all' --type ItemAdded --limit 10
  annals read cart-42 --backwards --limit 1 --json
  annals read cart-42 --as-of 2026-12-01T08:00:00Z`,
		Args: argsBetween(0, 1, "[STREAM|$all]"),
		RunE: func(cmd *cobra.Command, args []string) error {
			stream, filter, err := f.target(cmd, args)
			if err != nil {
				return err
			}
			opts := &annals.ReadOptions{Backwards: backwards, From: f.from, Limit: f.limit, Until: until, Filter: filter}
			if asOf != "" {
				t, err := time.Parse(time.RFC3339Nano, asOf)
				if err != nil {
					return usageErrorf(cmd, "--as-of %q: want an RFC 3339 time such as 2026-12-01T08:00:00Z", asOf)
				}
				opts.AsOf = t
			}
			if backwards && !cmd.Flags().Changed("from") {
				opts.From = annals.End
			}
			return m.withStore(cmd.Context(), true, func(s annals.Store) error {
				var seq iter.Seq2[annals.RecordedEvent, error]
				if stream == annals.AllStream {
					seq = s.ReadAll(cmd.Context(), opts)
				} else {
					seq = s.ReadStream(cmd.Context(), stream, opts)
				}
				p := newPrinter(m.Stdout, f.jsonOut)
				for ev, err := range seq {
					if err != nil {
						return errors.Join(p.flush(), streamError(stream, err))
					}
					if err := p.event(&ev); err != nil {
						return err
					}
				}
				return p.flush()
			})
		},
	}
	f.register(cmd, "first revision (stream) or position ($all) to read, inclusive (default: the start, or the end with --backwards)",
		"stop after this many events (0: no limit)")
	cmd.Flags().BoolVar(&backwards, "backwards", false, "read from --from (default: the end) towards the start")
	cmd.Flags().Uint64Var(&until, "until", 0, "read only events below this revision (stream) or position ($all): the stream as of revision N is --until N+1")
	cmd.Flags().StringVar(&asOf, "as-of", "", "read the store as it was at this moment (RFC 3339): only events recorded at or before it")
	return cmd
}

func (m *Main) newTailCmd() *cobra.Command {
	var f readFlags
	cmd := &cobra.Command{
		Use:   "tail [STREAM|$all]",
		Short: "Follow a stream or the global log live, until Ctrl-C",
		Long: `Follow STREAM, or the global log $all (the default; quote it in the shell: '$all'), and print
each event as it is appended, until Ctrl-C (which ends tail with exit status 0) or --limit
events. By default only events appended after tail starts are shown; --from N starts at
revision (stream) or position ($all) N instead, printing the stored events first and then
following live, with no gap and no duplicate. The stream need not exist yet. Filters and
output as for read (see 'annals read --help').

tail reads the log directly and takes no lock, so other annals commands can append to the
same data directory while it runs (unlike metadata and soft deletes, it shows every event).

` + formatHelp,
		Example: `  annals tail '$all' --category cart
  annals tail cart-42 --from 0 --json`,
		Args: argsBetween(0, 1, "[STREAM|$all]"),
		RunE: func(cmd *cobra.Command, args []string) error {
			stream, filter, err := f.target(cmd, args)
			if err != nil {
				return err
			}
			opts := &annals.SubscribeOptions{From: annals.End, Filter: filter}
			if cmd.Flags().Changed("from") {
				opts.From = f.from
			}
			ctx := cmd.Context()
			follow := func(seq iter.Seq2[annals.RecordedEvent, error]) error {
				p := newPrinter(m.Stdout, f.jsonOut)
				n := 0
				for ev, err := range seq {
					if err != nil {
						if ctx.Err() != nil {
							return p.flush() // Ctrl-C: the normal way to end
						}
						return errors.Join(p.flush(), streamError(stream, err))
					}
					if err := p.event(&ev); err != nil {
						return err
					}
					if err := p.flush(); err != nil {
						return err
					}
					if n++; f.limit > 0 && n >= f.limit {
						break
					}
				}
				return p.flush()
			}
			if m.Open == nil && m.remote.server == "" && m.postgres.url == "" {
				// The embedded store: follow its log without opening it, so that other annals
				// processes (append, read) can use the directory meanwhile.
				if err := m.checkDataDir(); err != nil {
					return err
				}
				fo := &filestore.FollowOptions{From: opts.From, Filter: filter}
				if stream != annals.AllStream {
					fo.Stream = stream
				}
				return follow(filestore.Follow(ctx, m.dataDir, fo))
			}
			return m.withStore(cmd.Context(), true, func(s annals.Store) error {
				if stream == annals.AllStream {
					return follow(s.SubscribeAll(ctx, opts))
				}
				return follow(s.SubscribeStream(ctx, stream, opts))
			})
		},
	}
	f.register(cmd, "start at this revision (stream) or position ($all), inclusive (default: only new events)",
		"stop after this many events (0: follow until Ctrl-C)")
	return cmd
}

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/groups"
	"github.com/spf13/cobra"
)

const groupsLong = `Manage the consumer groups (persistent subscriptions) of the store: a named group follows one
stream or the global log $all (with a filter), any number of consumers join it ('annals
consume GROUP', or a service through the client), and the group hands each event to one of
them, at least once: a consumer acks what it handled or nacks it (retry, park, skip); an event
not settled within the message timeout is delivered again, and one retried more than
--max-retries times is parked. 'annals groups replay-parked' gives parked events back.

With --server the commands work on the groups the server runs. On a data directory (or
--postgres) they run the groups in this process while the command runs: the settings,
checkpoints and parked events are kept in the store either way, and the groups deliver only
while a process runs them ('annals serve', or 'annals consume' on the data directory).`

func (m *Main) newGroupsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "groups",
		Short: "Manage consumer groups: create, update, list, info, replay-parked, delete",
		Long:  groupsLong,
		Args:  cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageErrorf(cmd, "unknown command %q for annals groups", args[0])
			}
			return cmd.Help()
		},
	}
	cmd.AddCommand(
		m.newGroupsCreateCmd(),
		m.newGroupsUpdateCmd(),
		m.newGroupsListCmd(),
		m.newGroupsInfoCmd(),
		m.newGroupsReplayCmd(),
		m.newGroupsDeleteCmd(),
	)
	return cmd
}

// groupsServer is a store that serves consumer groups itself: the client of a server.
type groupsServer interface {
	Groups() groups.Service
}

// withGroups runs fn with the consumer groups of the store the flags name: the server's with
// --server (any store that is a groupsServer), else a [groups.Manager] run in this process over the store opened as the other
// commands open it. It closes the manager and the store before it returns, and returns fn's
// error or else theirs.
func (m *Main) withGroups(ctx context.Context, mustExist bool, fn func(groups.Service) error) error {
	return m.withStore(ctx, mustExist, func(s annals.Store) (err error) {
		if gs, ok := s.(groupsServer); ok {
			return fn(gs.Groups())
		}
		if m.remote.server != "" {
			return errors.New("this annals client cannot work with consumer groups over the network")
		}
		gstore, ok := s.(groups.Store)
		if !ok {
			return errors.New("this store does not keep consumer groups (run 'annals serve' on it and pass --server)")
		}
		logger := slog.New(slog.NewTextHandler(m.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
		mgr, err := groups.Open(ctx, gstore, &groups.Options{Logger: logger})
		if err != nil {
			return fmt.Errorf("open consumer groups: %w", err)
		}
		defer func() {
			if cerr := mgr.Close(); cerr != nil && err == nil {
				err = fmt.Errorf("close consumer groups: %w", cerr)
			}
		}()
		return fn(mgr)
	})
}

// groupError explains the errors of the groups' API for group name, saying what to do next.
func groupError(name string, err error) error {
	switch {
	case errors.Is(err, groups.ErrGroupNotFound):
		return fmt.Errorf("no group %s: annals groups list shows the groups", name)
	case errors.Is(err, groups.ErrGroupExists):
		return fmt.Errorf("group %s exists already: annals groups info %s shows it, annals groups update %s changes it", name, name, name)
	case errors.Is(err, groups.ErrGroupDeleted):
		return fmt.Errorf("group %s was deleted: annals groups create %s makes it again", name, name)
	case errors.Is(err, groups.ErrTooManyGroups):
		return fmt.Errorf("cannot create group %s: the store has %d groups, the most it keeps (annals groups delete removes one)", name, groups.MaxGroups)
	case errors.Is(err, groups.ErrTooManyConsumers):
		return fmt.Errorf("group %s has %d consumers, the most it takes: stop one first", name, groups.MaxConsumers)
	}
	return err
}

// checkGroupName returns a usage error unless name is a valid group name.
func checkGroupName(cmd *cobra.Command, name string) error {
	if err := groups.ValidateName("group", name); err != nil {
		return usageErrorf(cmd, "%s", trimSentinels(err.Error()))
	}
	return nil
}

// settingsFlags are the flags of create and update that set a group's settings.
type settingsFlags struct {
	stream             string
	all                bool
	categories         []string
	types              []string
	prefixes           []string
	start              string
	strategy           string
	pinKey             string
	messageTimeout     time.Duration
	maxRetries         int
	checkpointInterval time.Duration
	buffer             int
}

// register adds the flags; create (withTarget) also takes the stream and the start, which an
// update cannot change.
func (f *settingsFlags) register(cmd *cobra.Command, withTarget bool) {
	fl := cmd.Flags()
	if withTarget {
		fl.StringVar(&f.stream, "stream", "", "the stream the group follows")
		fl.BoolVar(&f.all, "all", false, "the group follows the global log $all (with --category, --event-type, --prefix to filter it)")
		fl.StringVar(&f.start, "start", "beginning", "where the group starts: beginning, end (only events appended from now), or a position ($all) or revision (stream) N")
	}
	fl.StringSliceVar(&f.categories, "category", nil, "$all only: deliver events of streams in these categories")
	fl.StringSliceVar(&f.types, "event-type", nil, "$all only: deliver events of these types")
	fl.StringSliceVar(&f.prefixes, "prefix", nil, "$all only: deliver events of streams whose id starts with one of these")
	fl.StringVar(&f.strategy, "strategy", "", "round-robin (default), pinned-by-stream (one stream's events to one consumer, in order) or pinned-by-key")
	fl.StringVar(&f.pinKey, "pin-key", "", "with --strategy pinned-by-key: the top-level field of the events' JSON metadata to pin by (default $correlationId)")
	fl.DurationVar(&f.messageTimeout, "message-timeout", 0, "an event not settled within this long is delivered again, 100ms to 1h (default 30s)")
	fl.IntVar(&f.maxRetries, "max-retries", 0, "park an event retried more often than this, up to 1000; -1: park on the first failure (default 10)")
	fl.DurationVar(&f.checkpointInterval, "checkpoint-interval", 0, "write the checkpoint at most this often, 10ms to 1m (default 1s)")
	fl.IntVar(&f.buffer, "buffer", 0, "the most events the group holds read and unsettled, up to 100000 (default 4096)")
}

// settingNames are the flags of update.
var settingNames = []string{"category", "event-type", "prefix", "strategy", "pin-key", "message-timeout", "max-retries", "checkpoint-interval", "buffer"}

// anyChanged reports whether a flag that sets a setting was given.
func (f *settingsFlags) anyChanged(cmd *cobra.Command) bool {
	for _, name := range settingNames {
		if cmd.Flags().Changed(name) {
			return true
		}
	}
	return false
}

// apply sets the fields of s whose flags were given, leaving the others as they are.
func (f *settingsFlags) apply(cmd *cobra.Command, s *groups.Settings) error {
	changed := cmd.Flags().Changed
	for _, name := range []string{"category", "event-type", "prefix"} {
		if !changed(name) {
			continue
		}
		if s.Filter == nil {
			s.Filter = &annals.Filter{}
		}
		switch name {
		case "category":
			s.Filter.Categories = nilIfEmpty(f.categories)
		case "event-type":
			s.Filter.EventTypes = nilIfEmpty(f.types)
		case "prefix":
			s.Filter.StreamPrefixes = nilIfEmpty(f.prefixes)
		}
	}
	if s.Filter != nil && len(s.Filter.Categories)+len(s.Filter.EventTypes)+len(s.Filter.StreamPrefixes) == 0 {
		s.Filter = nil
	}
	if changed("strategy") {
		s.Strategy = groups.Strategy(f.strategy)
		if s.Strategy != groups.PinnedByKey && !changed("pin-key") {
			s.PinKey = ""
		}
	}
	if changed("pin-key") {
		s.PinKey = f.pinKey
	}
	if changed("message-timeout") {
		s.MessageTimeout = f.messageTimeout
	}
	if changed("max-retries") {
		s.MaxRetries = f.maxRetries
	}
	if changed("checkpoint-interval") {
		s.CheckpointInterval = f.checkpointInterval
	}
	if changed("buffer") {
		s.Buffer = f.buffer
	}
	if err := s.Validate(); err != nil {
		return usageErrorf(cmd, "%s", flagNames.Replace(trimSentinels(err.Error())))
	}
	return nil
}

func nilIfEmpty(list []string) []string {
	if len(list) == 0 {
		return nil
	}
	return list
}

// flagNames turns the settings' field names in [groups.Settings.Validate]'s messages into the
// flags that set them.
var flagNames = strings.NewReplacer(
	"group settings: ", "",
	"messageTimeout", "--message-timeout",
	"maxRetries", "--max-retries",
	"checkpointInterval", "--checkpoint-interval",
	"buffer", "--buffer",
	"pinKey: ", "--pin-key: ",
	"strategy", "--strategy",
	"filter: ", "",
	"start: ", "--start: ",
)

// target reads --stream, --all and --start for create.
func (f *settingsFlags) target(cmd *cobra.Command, s *groups.Settings) error {
	switch {
	case f.all && cmd.Flags().Changed("stream"):
		return usageErrorf(cmd, "--stream and --all both name what the group follows: pass one of them")
	case f.all:
		s.Stream = annals.AllStream
	case f.stream == "":
		return usageErrorf(cmd, "what does the group follow? pass --stream STREAM or --all")
	default:
		s.Stream = f.stream
		if err := annals.ValidateStreamID(f.stream); err != nil {
			return usageErrorf(cmd, "--stream: %s (for the global log pass --all)", trimSentinels(err.Error()))
		}
	}
	if s.Stream != annals.AllStream {
		for _, name := range []string{"category", "event-type", "prefix"} {
			if cmd.Flags().Changed(name) {
				return usageErrorf(cmd, "--%s filters a group on --all, not one on a stream", name)
			}
		}
	}
	switch f.start {
	case "beginning", "":
		s.Start = groups.Start{Kind: groups.FromBeginning}
	case "end":
		s.Start = groups.Start{Kind: groups.FromEnd}
	default:
		n, err := strconv.ParseUint(f.start, 10, 64)
		if err != nil {
			return usageErrorf(cmd, "--start %q: want beginning, end, or a position (revision on a stream) N", f.start)
		}
		s.Start = groups.Start{Kind: groups.FromPosition, From: n}
	}
	return nil
}

func (m *Main) newGroupsCreateCmd() *cobra.Command {
	var (
		f       settingsFlags
		jsonOut bool
	)
	cmd := &cobra.Command{
		Use:   "create NAME {--stream STREAM | --all} [flags]",
		Short: "Create a consumer group",
		Long: `Create the consumer group NAME on a stream (--stream) or on the global log (--all, filtered
by --category, --event-type and --prefix, each repeated or a comma-separated list). The flags
not given take their defaults (see below). Prints the group; with --json its definition as
JSON.`,
		Example: `  annals groups create orders --all --category order
  annals groups create cart-42-audit --stream cart-42 --start end
  annals groups create shipping --all --event-type OrderPlaced --strategy pinned-by-stream --max-retries 3`,
		Args: argsBetween(1, 1, "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if err := checkGroupName(cmd, name); err != nil {
				return err
			}
			var s groups.Settings
			if err := f.target(cmd, &s); err != nil {
				return err
			}
			if err := f.apply(cmd, &s); err != nil {
				return err
			}
			return m.withGroups(cmd.Context(), false, func(gs groups.Service) error {
				def, err := gs.Create(cmd.Context(), name, s)
				if err != nil {
					return groupError(name, err)
				}
				return m.printDefinition("created", def, jsonOut)
			})
		},
	}
	f.register(cmd, true)
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print the group's definition as JSON")
	return cmd
}

func (m *Main) newGroupsUpdateCmd() *cobra.Command {
	var (
		f       settingsFlags
		jsonOut bool
	)
	cmd := &cobra.Command{
		Use:   "update NAME [flags]",
		Short: "Change the settings of a consumer group",
		Long: `Change the settings of the consumer group NAME: only the flags given change, the others keep
their current values. The stream a group follows and its start cannot change (delete the
group and create it again). A filter flag replaces that part of the filter (--category= with
nothing clears it). The consumers stay joined and the group goes on from where it is.`,
		Example: `  annals groups update orders --max-retries 3 --message-timeout 1m
  annals groups update orders --strategy pinned-by-stream`,
		Args: argsBetween(1, 1, "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if err := checkGroupName(cmd, name); err != nil {
				return err
			}
			if !f.anyChanged(cmd) {
				return usageErrorf(cmd, "nothing to change: pass the settings to change")
			}
			return m.withGroups(cmd.Context(), true, func(gs groups.Service) error {
				info, err := gs.Info(cmd.Context(), name)
				if err != nil {
					return groupError(name, err)
				}
				s := info.Settings
				if s.Filter != nil {
					c := *s.Filter
					s.Filter = &c
				}
				if s.Stream != annals.AllStream {
					for _, fl := range []string{"category", "event-type", "prefix"} {
						if cmd.Flags().Changed(fl) {
							return usageErrorf(cmd, "--%s filters a group on $all; group %s follows stream %q", fl, name, s.Stream)
						}
					}
				}
				if err := f.apply(cmd, &s); err != nil {
					return err
				}
				def, err := gs.Update(cmd.Context(), name, s)
				if err != nil {
					return groupError(name, err)
				}
				return m.printDefinition("updated", def, jsonOut)
			})
		},
	}
	f.register(cmd, false)
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print the group's definition as JSON")
	return cmd
}

// printDefinition prints a group created or updated: a line, or its definition as JSON.
func (m *Main) printDefinition(verb string, def groups.Definition, jsonOut bool) error {
	if jsonOut {
		return writeJSONLine(m.Stdout, def)
	}
	s := def.Settings.WithDefaults()
	_, err := fmt.Fprintf(m.Stdout, "%s group %s on %s: %s\n", verb, def.Name, describeTarget(s), s.Strategy)
	return err
}

// describeTarget is what a group follows, for a person: the stream, or $all and its filter.
func describeTarget(s groups.Settings) string {
	if s.Stream != annals.AllStream || s.Filter == nil {
		return s.Stream
	}
	var parts []string
	for _, p := range []struct {
		what string
		list []string
	}{{"categories", s.Filter.Categories}, {"types", s.Filter.EventTypes}, {"prefixes", s.Filter.StreamPrefixes}} {
		if len(p.list) > 0 {
			parts = append(parts, p.what+" "+strings.Join(p.list, ","))
		}
	}
	return s.Stream + " (" + strings.Join(parts, "; ") + ")"
}

// writeJSONLine writes v as one line of JSON.
func writeJSONLine(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

func (m *Main) newGroupsListCmd() *cobra.Command {
	var jsonOut bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the consumer groups with their consumers, events in flight, lag and parked events",
		Long: `List the consumer groups by name: the stream each follows, its strategy, its consumers, the
events delivered and not yet settled (in flight), its lag (positions on $all, revisions on a
stream, between its checkpoint and the end) and its parked events. With --json, one object
per line, as 'annals groups info --json' prints it.`,
		Args: argsBetween(0, 0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return m.withGroups(cmd.Context(), true, func(gs groups.Service) error {
				list, err := gs.List(cmd.Context())
				if err != nil {
					return err
				}
				if jsonOut {
					for _, in := range list {
						if err := writeJSONLine(m.Stdout, in); err != nil {
							return err
						}
					}
					return nil
				}
				if len(list) == 0 {
					_, err := fmt.Fprintln(m.Stdout, "no groups (annals groups create NAME --stream STREAM makes one)")
					return err
				}
				tw := tabwriter.NewWriter(m.Stdout, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "NAME\tSTREAM\tSTRATEGY\tCONSUMERS\tIN FLIGHT\tLAG\tPARKED")
				for _, in := range list {
					s := in.Settings.WithDefaults()
					fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\n", in.Name, describeTarget(s), s.Strategy, len(in.Consumers), in.InFlight, in.Lag, in.Parked)
				}
				return tw.Flush()
			})
		},
	}
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print JSON lines")
	return cmd
}

func (m *Main) newGroupsInfoCmd() *cobra.Command {
	var jsonOut bool
	cmd := &cobra.Command{
		Use:   "info NAME",
		Short: "Show a consumer group: its settings, figures and consumers",
		Long: `Show the consumer group NAME: its settings (with the defaults filled in), its checkpoint, lag,
events in flight, buffered and parked, the counts since the process that runs it loaded it,
and its consumers. With --json, the group as one JSON object (settings as stored; durations
in nanoseconds).`,
		Args: argsBetween(1, 1, "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if err := checkGroupName(cmd, name); err != nil {
				return err
			}
			return m.withGroups(cmd.Context(), true, func(gs groups.Service) error {
				in, err := gs.Info(cmd.Context(), name)
				if err != nil {
					return groupError(name, err)
				}
				if jsonOut {
					return writeJSONLine(m.Stdout, in)
				}
				return printInfo(m.Stdout, in)
			})
		},
	}
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print the group as JSON")
	return cmd
}

// printInfo prints a group for a person.
func printInfo(w io.Writer, in groups.Info) error {
	s := in.Settings.WithDefaults()
	start := string(s.Start.Kind)
	if s.Start.Kind == groups.FromPosition {
		start = strconv.FormatUint(s.Start.From, 10)
	}
	strategy := string(s.Strategy)
	if s.Strategy == groups.PinnedByKey {
		strategy += " (" + s.PinKey + ")"
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, kv := range [][2]string{
		{"group", in.Name},
		{"stream", describeTarget(s)},
		{"start", start},
		{"strategy", strategy},
		{"message timeout", s.MessageTimeout.String()},
		{"max retries", strconv.Itoa(s.MaxRetries)},
		{"checkpoint interval", s.CheckpointInterval.String()},
		{"buffer", strconv.Itoa(s.Buffer)},
		{"checkpoint", strconv.FormatUint(in.Checkpoint, 10)},
		{"lag", strconv.FormatUint(in.Lag, 10)},
		{"in flight", strconv.Itoa(in.InFlight)},
		{"buffered", strconv.Itoa(in.Buffered)},
		{"parked", strconv.FormatUint(in.Parked, 10)},
		{"delivered", strconv.FormatUint(in.Delivered, 10)},
		{"acked", strconv.FormatUint(in.Acked, 10)},
		{"retries", strconv.FormatUint(in.Retries, 10)},
		{"parked in all", strconv.FormatUint(in.ParkedTotal, 10)},
		{"skipped", strconv.FormatUint(in.Skipped, 10)},
		{"consumers", strconv.Itoa(len(in.Consumers))},
	} {
		fmt.Fprintf(tw, "%s\t%s\n", kv[0], kv[1])
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(in.Consumers) == 0 {
		return nil
	}
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "\nCONSUMER\tID\tWINDOW\tIN FLIGHT\tDELIVERED\tACKED\tNACKED\tJOINED")
	for _, c := range in.Consumers {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%s\n", c.Name, c.ID, c.Window, c.InFlight, c.Delivered, c.Acked, c.Nacked,
			c.Joined.UTC().Format(time.RFC3339))
	}
	return tw.Flush()
}

func (m *Main) newGroupsReplayCmd() *cobra.Command {
	var (
		limit   int
		jsonOut bool
	)
	cmd := &cobra.Command{
		Use:   "replay-parked NAME",
		Short: "Give the parked events of a consumer group back for delivery",
		Long: `Give back up to --limit (default all) parked events of the consumer group NAME for delivery to
its consumers, oldest first, with their retries counted afresh. Prints how many; with --json
as {"group":..,"replayed":..}.`,
		Args: argsBetween(1, 1, "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if err := checkGroupName(cmd, name); err != nil {
				return err
			}
			if limit < 0 {
				return usageErrorf(cmd, "--limit %d: want 0 (all) or more", limit)
			}
			return m.withGroups(cmd.Context(), true, func(gs groups.Service) error {
				n, err := gs.ReplayParked(cmd.Context(), name, limit)
				if err != nil {
					return groupError(name, err)
				}
				if jsonOut {
					return writeJSONLine(m.Stdout, struct {
						Group    string `json:"group"`
						Replayed int    `json:"replayed"`
					}{name, n})
				}
				_, err = fmt.Fprintf(m.Stdout, "gave back %s of group %s for delivery\n", plural(n, "parked event"), name)
				return err
			})
		},
	}
	cmd.Flags().IntVar(&limit, "limit", 0, "give back at most this many (0: all)")
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print the result as JSON")
	return cmd
}

func (m *Main) newGroupsDeleteCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a consumer group",
		Long: `Delete the consumer group NAME: its consumers are ended, its events in flight dropped. The
events of the stream or log it followed stay; its checkpoint and parked streams stay in the
log but no longer count (a group created again under the name starts afresh).`,
		Args: argsBetween(1, 1, "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if err := checkGroupName(cmd, name); err != nil {
				return err
			}
			return m.withGroups(cmd.Context(), true, func(gs groups.Service) error {
				if err := gs.Delete(cmd.Context(), name); err != nil {
					return groupError(name, err)
				}
				_, err := fmt.Fprintf(m.Stdout, "deleted group %s\n", name)
				return err
			})
		},
	}
}

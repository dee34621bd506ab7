// Command annals is the command-line tool of Annals: it appends, reads, follows, exports and
// imports the events of an embedded store (filestore) in a data directory, and checks that
// directory for damage. Run "annals --help" for the commands.
//
// Everything the binary does goes through [Main], so that the end-to-end tests run the same
// code with buffers in place of the terminal.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/filestore"
	"github.com/annalsdb/annals/pgstore"
	"github.com/spf13/cobra"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// After the first signal, let a second one kill the process the usual way.
		<-ctx.Done()
		stop()
	}()
	m := &Main{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Args: os.Args[1:]}
	err := m.Run(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, errorLine(err))
		os.Exit(exitCode(err))
	}
}

// Main is one run of the annals command. Set the fields, then call [Main.Run]. A Main is used
// once; it is not safe for concurrent use.
type Main struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	// Args are the command-line arguments without the program name.
	Args []string
	// Getenv reads the environment (ANNALS_DATA); nil means os.Getenv.
	Getenv func(string) string
	// Open opens the store in a data directory; nil means filestore.Open(dir, nil). The
	// command closes the store it opened before Run returns.
	Open func(dir string) (annals.Store, error)

	// dataDir is the value of the global --data flag.
	dataDir string
	// remote holds the global flags that point the commands at a server instead.
	remote struct {
		server, token, tlsCA string
	}
	// postgres holds the global flags that point the commands at a PostgreSQL store instead.
	postgres struct {
		url, schema string
	}
}

// defaultDataDir is where the data lives when neither --data nor ANNALS_DATA says otherwise.
const defaultDataDir = "./annals-data"

// Run parses m.Args and runs the command they name. It returns nil on success (and when tail
// ends because ctx was cancelled), an error that [exitCode] maps to 2 for usage errors (unknown
// command or flag, wrong number of arguments, a malformed argument), and any other error for
// a failure at run time. It writes nothing to Stderr on error: main prints [errorLine](err).
func (m *Main) Run(ctx context.Context) error {
	if m.Stdin == nil {
		m.Stdin = strings.NewReader("")
	}
	if m.Stdout == nil {
		m.Stdout = io.Discard
	}
	if m.Stderr == nil {
		m.Stderr = io.Discard
	}
	root := m.newRootCmd()
	root.SetArgs(m.Args)
	root.SetIn(m.Stdin)
	root.SetOut(m.Stdout)
	root.SetErr(m.Stderr)
	return root.ExecuteContext(ctx)
}

func (m *Main) getenv(key string) string {
	if m.Getenv != nil {
		return m.Getenv(key)
	}
	return os.Getenv(key)
}

func (m *Main) newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "annals",
		Short: "Annals event store: append, read, follow, export and import events",
		Long: `annals works on the embedded event store in a data directory (--data, default
./annals-data, or $ANNALS_DATA). One process at a time may open a data directory; "annals
tail" reads the log without opening it, so it can follow what other annals commands append.
"annals serve" serves a data directory over the network; with --server URL (or
$ANNALS_SERVER) append, read, tail, streams, export, import, groups and consume work
against such a server instead, with --token (or $ANNALS_TOKEN) when it asks for credentials. With --postgres URL
(or $ANNALS_POSTGRES) every command but bench works on a PostgreSQL store instead of the
data directory (its tables in --postgres-schema, created on first use), serve included.
check and serve work on a data directory or PostgreSQL, not through --server; bench on a
data directory, or with --server on the realistic workloads against that server. relay and
ingest bridge the store to Kafka and NATS JetStream (docs/bridges.md).

The global log is named $all; quote it in the shell ('$all'). read and tail work on $all
when no stream is given.

Exit status: 0 on success, 1 when the command failed, 2 for a usage error (unknown command or
flag, missing or malformed argument). Errors are one line on stderr, starting "annals: ".`,
		SilenceUsage:      true,
		SilenceErrors:     true,
		Args:              cobra.ArbitraryArgs,
		DisableAutoGenTag: true,
		// Suggest a command within this edit distance of an unknown one.
		SuggestionsMinimumDistance: 2,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				msg := fmt.Sprintf("unknown command %q", args[0])
				if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
					msg += fmt.Sprintf(" (did you mean %q? see 'annals --help')", s[0])
					return usageError{msg: msg}
				}
				return usageErrorf(cmd, "%s", msg)
			}
			return cmd.Help()
		},
	}
	def := defaultDataDir
	if v := m.getenv("ANNALS_DATA"); v != "" {
		def = v
	}
	root.PersistentFlags().StringVar(&m.dataDir, "data", def, "data directory of the store (env ANNALS_DATA)")
	root.PersistentFlags().StringVar(&m.remote.server, "server", m.getenv("ANNALS_SERVER"), "work against the server at this URL (http://host:2113 or https://…) instead of --data (env ANNALS_SERVER)")
	root.PersistentFlags().StringVar(&m.remote.token, "token", m.getenv("ANNALS_TOKEN"), "with --server: bearer token (a login token or an API token; env ANNALS_TOKEN)")
	root.PersistentFlags().StringVar(&m.remote.tlsCA, "tls-ca", m.getenv("ANNALS_TLS_CA"), "with an https --server: trust the certificates signed by this PEM file too, e.g. the one of 'annals serve --dev' (env ANNALS_TLS_CA)")
	root.PersistentFlags().StringVar(&m.postgres.url, "postgres", m.getenv("ANNALS_POSTGRES"), "use the PostgreSQL store at this URL (postgres://user@host:5432/db) instead of --data (env ANNALS_POSTGRES)")
	pgSchema := m.getenv("ANNALS_POSTGRES_SCHEMA")
	if pgSchema == "" {
		pgSchema = "annals"
	}
	root.PersistentFlags().StringVar(&m.postgres.schema, "postgres-schema", pgSchema, "with --postgres: the schema that holds the store (env ANNALS_POSTGRES_SCHEMA)")
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return usageErrorf(cmd, "%s", strings.Replace(err.Error(), "unknown flag: ", "unknown flag ", 1))
	})
	root.AddCommand(
		m.newAppendCmd(),
		m.newReadCmd(),
		m.newTailCmd(),
		m.newStreamsCmd(),
		m.newExportCmd(),
		m.newImportCmd(),
		m.newCheckCmd(),
		newBenchCmd(m),
		m.newServeCmd(),
		m.newPasswdCmd(),
		m.newGroupsCmd(),
		m.newConsumeCmd(),
		m.newRelayCmd(),
		m.newIngestCmd(),
	)
	return root
}

// usageError is a mistake in how the command was called: exit status 2.
type usageError struct {
	msg string
	err error // the cause, if any
}

func (e usageError) Error() string { return e.msg }

func (e usageError) Unwrap() error { return e.err }

// usageErrorf returns a usage error whose message ends with a pointer to cmd's help.
func usageErrorf(cmd *cobra.Command, format string, args ...any) error {
	return usageError{msg: fmt.Sprintf(format, args...) + fmt.Sprintf(" (see '%s --help')", cmd.CommandPath())}
}

// argsBetween is cobra.RangeArgs with a usage error that names the arguments wanted.
func argsBetween(lo, hi int, want string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		switch {
		case len(args) < lo:
			return usageErrorf(cmd, "missing arguments: want %s", want)
		case len(args) > hi:
			return usageErrorf(cmd, "too many arguments: want %s, got %d", want, len(args))
		}
		return nil
	}
}

// exitCode is the process exit status for an error Run returned.
func exitCode(err error) int {
	if _, ok := errors.AsType[usageError](err); ok {
		return 2
	}
	return 1
}

// errorLine is the one line main prints for an error: "annals: " and a message that says,
// where it can, what to do next.
func errorLine(err error) string {
	msg := describe(err)
	msg = strings.Join(strings.Fields(strings.ReplaceAll(msg, "\n", "; ")), " ")
	return "annals: " + msg
}

// describe turns an error into a message for a person: the store's sentinels get an
// explanation, and the "annals: " prefixes of the wrapped sentinels go (main adds one).
func describe(err error) string {
	msg := err.Error()
	if w, ok := errors.AsType[*annals.WrongExpectedVersionError](err); ok {
		msg = strings.Replace(msg, w.Error(), conflictMessage(w), 1)
	}
	msg = trimSentinels(msg)
	switch {
	case errors.Is(err, context.Canceled):
		return strings.Replace(msg, context.Canceled.Error(), "interrupted", 1)
	case errors.Is(err, annals.ErrClosed):
		return msg + " (run the command again)"
	}
	return msg
}

func conflictMessage(w *annals.WrongExpectedVersionError) string {
	actual := "does not exist"
	next := "--expected no-stream"
	if r, ok := w.Actual.Revision(); ok {
		actual = fmt.Sprintf("is at revision %d", r)
		next = fmt.Sprintf("--expected %d", r)
	}
	want := map[annals.ExpectedRevision]string{
		annals.NoStream:     "expected it not to exist",
		annals.StreamExists: "expected it to exist",
	}[w.Expected]
	if want == "" {
		want = fmt.Sprintf("expected revision %s", w.Expected)
	}
	return fmt.Sprintf("conflict: stream %q %s, %s (read the stream, then retry with %s or --expected any)",
		w.Stream, actual, want, next)
}

// trimSentinels drops the "annals: " prefixes of the store's sentinel errors from a message.
func trimSentinels(msg string) string {
	msg = strings.ReplaceAll(msg, annals.ErrInvalidArgument.Error()+": ", "")
	return strings.ReplaceAll(msg, "annals: ", "")
}

// openStore opens the store in the --data directory. When mustExist is true (commands that
// only read), a missing directory is an error rather than a new, empty store.
func (m *Main) openStore(ctx context.Context, mustExist bool) (annals.Store, error) {
	switch {
	case m.remote.server != "" && m.postgres.url != "":
		return nil, usageError{msg: "--server and --postgres both name the store: pass one of them (and check ANNALS_SERVER and ANNALS_POSTGRES)"}
	case m.remote.server != "":
		return m.openRemote(ctx)
	case m.postgres.url != "":
		return m.openPostgres(ctx)
	}
	dir := m.dataDir
	if dir == "" {
		return nil, usageError{msg: "empty --data directory (pass --data DIR)"}
	}
	if mustExist {
		if err := m.checkDataDir(); err != nil {
			return nil, err
		}
	}
	if m.Open != nil {
		return m.Open(dir)
	}
	s, err := filestore.Open(dir, nil)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// openPostgres opens the PostgreSQL store of --postgres and --postgres-schema.
func (m *Main) openPostgres(ctx context.Context) (*pgstore.Store, error) {
	return pgstore.Open(ctx, m.postgres.url, &pgstore.Options{Schema: m.postgres.schema})
}

// checkDataDir returns an error unless the --data directory exists (and, for the default
// store, holds a log), so that a command that only reads does not create an empty store.
func (m *Main) checkDataDir() error {
	dir := m.dataDir
	if dir == "" {
		return usageError{msg: "empty --data directory (pass --data DIR)"}
	}
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("no data directory at %s (append something first, or pass --data)", dir)
	case err != nil:
		return fmt.Errorf("data directory: %w", err)
	case !fi.IsDir():
		return fmt.Errorf("%s is not a directory (pass --data with the data directory)", dir)
	}
	if m.Open == nil {
		if _, err := os.Stat(filepath.Join(dir, "log")); err != nil {
			return fmt.Errorf("no annals data in %s (append something first, or pass --data)", dir)
		}
	}
	return nil
}

// withStore opens the store (or, with --server, a client of the server), runs fn and closes the store, returning fn's error or else
// Close's.
func (m *Main) withStore(ctx context.Context, mustExist bool, fn func(annals.Store) error) (err error) {
	s, err := m.openStore(ctx, mustExist)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := s.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("close store: %w", cerr)
		}
	}()
	return fn(s)
}

package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/filestore"
	"github.com/spf13/cobra"
)

func (m *Main) newCheckCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "check",
		Short: "Check the data directory for damage",
		Long: `Check the embedded store in the data directory without changing it (with --postgres, the
PostgreSQL store: positions, revisions, times and each stream's row, in one snapshot): every record's
checksum, that positions run 1, 2, 3, … and each stream's revisions 0, 1, 2, …, that times
never decrease, and that every index entry points at the events it claims. The directory
must not be open in another process.

Prints a summary line starting "ok:". Damage ends the command with exit status 1 and an error
naming the file and offset of the first damage found. A torn tail (a write a crash cut short,
never acknowledged) is not damage: it is reported, and the next command that opens the store
removes it. Events not yet indexed (after a crash) are indexed by the next open.`,
		Args: argsBetween(0, 0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := m.localOnly(cmd); err != nil {
				return err
			}
			if m.postgres.url != "" {
				return m.checkPostgres(cmd.Context())
			}
			if err := m.checkDataDir(); err != nil {
				return err
			}
			rep, err := filestore.Check(cmd.Context(), m.dataDir)
			if err != nil {
				if errors.Is(err, annals.ErrCorrupt) {
					if rep.TornTail != "" {
						// What looked like a torn tail was acknowledged data: that is the damage.
						err = fmt.Errorf("%w; the log is damaged at %s", err, rep.TornTail)
					}
					return fmt.Errorf("%w (restore the directory from a backup, or import an export into a new one)", err)
				}
				return fmt.Errorf("check %s: %w", m.dataDir, err)
			}
			_, err = fmt.Fprintln(m.Stdout, checkSummary(m.dataDir, rep))
			return err
		},
	}
}

// checkPostgres checks the PostgreSQL store of --postgres.
func (m *Main) checkPostgres(ctx context.Context) error {
	s, err := m.openPostgres(ctx)
	if err != nil {
		return err
	}
	defer s.Close()
	rep, err := s.Check(ctx)
	if err != nil {
		if errors.Is(err, annals.ErrCorrupt) {
			return fmt.Errorf("%w (restore the database from a backup, or import an export into a new schema)", err)
		}
		return fmt.Errorf("check schema %s: %w", m.postgres.schema, err)
	}
	_, err = fmt.Fprintf(m.Stdout, "ok: %s in %s (system streams included), last position %d; schema %s at version %d\n",
		plural(int(rep.Events), "event"), plural(rep.Streams, "stream"), rep.LastPosition, rep.Schema, rep.SchemaVersion)
	return err
}

func checkSummary(dir string, rep filestore.CheckReport) string {
	s := fmt.Sprintf("ok: %s in %s (system streams included), last position %d; %s, %s of log data, in %s",
		plural(int(rep.Events), "event"), plural(rep.Streams, "stream"), rep.LastPosition,
		plural(rep.Segments, "segment"), byteSize(rep.Bytes), dir)
	if rep.Indexed < rep.Events {
		s += fmt.Sprintf("; %d events not yet indexed (the next open indexes them)", rep.Events-rep.Indexed)
	}
	if rep.TornTail != "" {
		s += fmt.Sprintf("; torn tail left by a crash at %s (never acknowledged; the next open removes it)", rep.TornTail)
	}
	return s
}

func byteSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

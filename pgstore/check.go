package pgstore

import (
	"context"
	"fmt"
	"time"

	"github.com/annalsdb/annals"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// CheckReport summarizes a store verified by [Store.Check].
type CheckReport struct {
	Schema        string
	SchemaVersion int
	Events        uint64 // events in the log
	LastPosition  uint64
	Streams       int // streams with at least one event, system streams included
}

// Check verifies the store's tables in one consistent snapshot (a read-only REPEATABLE READ
// transaction, so appends go on meanwhile): that positions run 1, 2, 3, … with no gap up to
// the log's head, that each stream's revisions run 0, 1, 2, …, that times never decrease along
// the log, and that each stream's row agrees with its events (next revision, last event ID,
// soft-delete base, metadata event). It reads the whole log once, keeping one entry per
// stream in memory.
//
// It returns an error matching [annals.ErrCorrupt], naming the position or stream, at the
// first damage it finds.
func (s *Store) Check(ctx context.Context) (CheckReport, error) {
	rep := CheckReport{Schema: s.opts.Schema}
	if err := s.begin(ctx); err != nil {
		return rep, err
	}
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return rep, s.fail(ctx, "check: begin", err)
	}
	defer tx.Rollback(ctx)
	if err := tx.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM "+s.schema+".schema_migrations").Scan(&rep.SchemaVersion); err != nil {
		return rep, s.fail(ctx, "check: schema version", err)
	}
	var head int64
	if err := tx.QueryRow(ctx, s.sql.head).Scan(&head); err != nil {
		return rep, s.fail(ctx, "check: log head", err)
	}

	type seen struct {
		next uint64
		last pgtype.UUID
	}
	streams := map[string]*seen{}
	rows, err := tx.Query(ctx, "SELECT position, stream, revision, id, time FROM "+s.schema+".events ORDER BY position")
	if err != nil {
		return rep, s.fail(ctx, "check: read the log", err)
	}
	var pos, rev int64
	var stream string
	var id pgtype.UUID
	var tm, lastTime time.Time
	next := uint64(1)
	_, err = pgx.ForEachRow(rows, []any{&pos, &stream, &rev, &id, &tm}, func() error {
		st := streams[stream]
		if st == nil {
			st = &seen{}
			streams[stream] = st
		}
		switch {
		case uint64(pos) != next:
			return fmt.Errorf("%w: the log has position %d where %d should be", annals.ErrCorrupt, pos, next)
		case uint64(rev) != st.next:
			return fmt.Errorf("%w: position %d: stream %q has revision %d, want %d", annals.ErrCorrupt, pos, stream, rev, st.next)
		case tm.Before(lastTime):
			return fmt.Errorf("%w: position %d: time %v is before that of position %d (%v)", annals.ErrCorrupt, pos, tm, pos-1, lastTime)
		}
		st.next++
		st.last = id
		lastTime = tm
		next++
		return ctx.Err()
	})
	if err != nil {
		return rep, s.fail(ctx, "check: read the log", err)
	}
	rep.Events = next - 1
	rep.LastPosition = next - 1
	rep.Streams = len(streams)
	if uint64(head) != rep.LastPosition {
		return rep, fmt.Errorf("%w: the log head says %d but the log ends at position %d", annals.ErrCorrupt, head, rep.LastPosition)
	}

	rows, err = tx.Query(ctx, "SELECT stream, next_revision, base, meta_revision, last_id FROM "+s.schema+".streams")
	if err != nil {
		return rep, s.fail(ctx, "check: read the streams", err)
	}
	var nextRev, base, metaRev int64
	var lastID pgtype.UUID
	rowsSeen := 0
	_, err = pgx.ForEachRow(rows, []any{&stream, &nextRev, &base, &metaRev, &lastID}, func() error {
		st := streams[stream]
		if st == nil {
			st = &seen{}
		} else {
			rowsSeen++
		}
		meta := streams[annals.MetaStream(stream)]
		switch {
		case uint64(nextRev) != st.next:
			return fmt.Errorf("%w: stream %q: its row says next revision %d, its events %d", annals.ErrCorrupt, stream, nextRev, st.next)
		case lastID != st.last:
			return fmt.Errorf("%w: stream %q: its row's last event ID differs from its last event's", annals.ErrCorrupt, stream)
		case base < 0 || base > nextRev:
			return fmt.Errorf("%w: stream %q: soft-delete base %d is outside 0…%d", annals.ErrCorrupt, stream, base, nextRev)
		case metaRev >= 0 && (meta == nil || uint64(metaRev) >= meta.next):
			return fmt.Errorf("%w: stream %q: its metadata is at revision %d of %q, which has no such event", annals.ErrCorrupt, stream, metaRev, annals.MetaStream(stream))
		}
		return nil
	})
	if err != nil {
		return rep, s.fail(ctx, "check: read the streams", err)
	}
	if rowsSeen != len(streams) {
		return rep, fmt.Errorf("%w: %d streams have events but only %d have a row", annals.ErrCorrupt, len(streams), rowsSeen)
	}
	var badMeta int64
	err = tx.QueryRow(ctx, `SELECT count(*) FROM `+s.schema+`.streams s JOIN `+s.schema+`.events e
		ON e.stream = '$meta-' || s.stream AND e.revision = s.meta_revision WHERE e.type <> $1`, annals.MetadataEventType).Scan(&badMeta)
	if err != nil {
		return rep, s.fail(ctx, "check: metadata events", err)
	}
	if badMeta > 0 {
		return rep, fmt.Errorf("%w: %d streams name a metadata event that is not a %s event", annals.ErrCorrupt, badMeta, annals.MetadataEventType)
	}
	return rep, nil
}

package pgstore

import "strings"

// queries holds the store's fixed SQL, with the schema filled in.
type queries struct {
	head, ensure, lock, ids, update, deleteUnused, insert, notify, fast string
	streamState, streamTombstoned, streamPageFwd, streamPageBwd         string
	getMetadata, list                                                   string
}

// eventColumns are the columns scanEvents reads, in its order.
const eventColumns = "position, stream, revision, id, type, content_type, data, metadata, time"

func newQueries(schema string) queries {
	r := strings.NewReplacer("S.", schema+".")
	q := queries{
		head: `SELECT position FROM S.log_head`,
		// ensure gives every stream of a batch a row, so that lock can lock it; rows created
		// for appends that end up writing nothing are deleted again (deleteUnused).
		ensure: `INSERT INTO S.streams (stream) SELECT k FROM unnest($1::text[]) AS k ORDER BY k COLLATE "C"
			ON CONFLICT (stream) DO NOTHING RETURNING stream`,
		lock: `SELECT stream, next_revision, base, tombstoned, meta_revision, last_id FROM S.streams
			WHERE stream = ANY($1::text[]) ORDER BY stream FOR UPDATE`,
		ids: `SELECT revision, id, position FROM S.events
			WHERE stream = $1 AND revision >= $2 AND revision < $3 ORDER BY revision`,
		update: `UPDATE S.streams AS s SET next_revision = u.next, base = u.base, tombstoned = u.tomb,
			meta_revision = u.meta, last_id = u.last
			FROM unnest($1::text[], $2::int8[], $3::int8[], $4::bool[], $5::int8[], $6::uuid[])
				AS u(stream, next, base, tomb, meta, last)
			WHERE s.stream = u.stream`,
		deleteUnused: `DELETE FROM S.streams WHERE stream = ANY($1::text[])`,
		// insert takes the log's head row lock, as the last write of the transaction, and
		// holds it until the commit: the heart of the ordering design (see doc.go).
		insert: `WITH head AS (
				UPDATE S.log_head SET position = position + $1, time = greatest(time, clock_timestamp())
				RETURNING position - $1 AS base, time
			), ins AS (
				INSERT INTO S.events (position, stream, revision, id, type, category, content_type, data, metadata, time)
				SELECT head.base + u.ord, u.stream, u.revision, u.id, u.type, u.category, u.content_type, u.data, u.metadata, head.time
				FROM head, unnest($2::text[], $3::int8[], $4::uuid[], $5::text[], $6::text[], $7::text[], $8::bytea[], $9::bytea[])
					WITH ORDINALITY AS u(stream, revision, id, type, category, content_type, data, metadata, ord)
			)
			SELECT base FROM head`,
		notify: `SELECT pg_notify($1, position::text) FROM S.log_head`,
		// fast is an append of one request whose check SQL can make: the stream exists, is
		// not tombstoned, its last event is not the append's last (no retry), and $9 is Any
		// (-1), StreamExists (-3) or the exact last revision. It returns no row, and writes
		// nothing, when the check does not pass.
		fast: `WITH st AS (
				UPDATE S.streams SET next_revision = next_revision + $1, last_id = $3
				WHERE stream = $2 AND NOT tombstoned AND next_revision > base AND last_id IS DISTINCT FROM $3
					AND ($9::int8 IN (-1, -3) OR next_revision - 1 = $9)
				RETURNING next_revision - $1 AS rev0
			), head AS (
				UPDATE S.log_head SET position = position + $1, time = greatest(time, clock_timestamp())
				WHERE EXISTS (SELECT FROM st)
				RETURNING position - $1 AS base, time
			), ins AS (
				INSERT INTO S.events (position, stream, revision, id, type, category, content_type, data, metadata, time)
				SELECT head.base + u.ord, $2, st.rev0 + u.ord - 1, u.id, u.type, $10, u.content_type, u.data, u.metadata, head.time
				FROM st, head, unnest($4::uuid[], $5::text[], $6::text[], $7::bytea[], $8::bytea[])
					WITH ORDINALITY AS u(id, type, content_type, data, metadata, ord)
			)
			SELECT st.rev0, head.base FROM st, head`,

		streamState: `SELECT s.next_revision, s.base, s.tombstoned, e.data, clock_timestamp()
			FROM S.streams s LEFT JOIN S.events e ON e.stream = $2 AND e.revision = s.meta_revision
			WHERE s.stream = $1`,
		streamTombstoned: `SELECT coalesce((SELECT tombstoned FROM S.streams WHERE stream = $1), false)`,
		streamPageFwd: `SELECT ` + eventColumns + ` FROM S.events
			WHERE stream = $1 AND revision >= $2 AND revision < $3 AND time > $4 AND time <= $5
			ORDER BY revision LIMIT $6`,
		streamPageBwd: `SELECT ` + eventColumns + ` FROM S.events
			WHERE stream = $1 AND revision <= $2 AND revision >= $3 AND time > $4 AND time <= $5
			ORDER BY revision DESC LIMIT $6`,
		getMetadata: `SELECT (SELECT tombstoned FROM S.streams WHERE stream = $1),
			(SELECT e.data FROM S.streams s JOIN S.events e ON e.stream = $2 AND e.revision = s.meta_revision WHERE s.stream = $1),
			(SELECT next_revision FROM S.streams WHERE stream = $2)`,
		list: `SELECT stream, next_revision, base FROM S.streams
			WHERE stream > $1 AND stream >= $2 AND stream <= $3 AND starts_with(stream, $2)
				AND NOT starts_with(stream, '$') AND next_revision > base AND NOT tombstoned
			ORDER BY stream LIMIT $4`,
	}
	for _, p := range []*string{&q.head, &q.ensure, &q.lock, &q.ids, &q.update, &q.deleteUnused, &q.insert, &q.notify, &q.fast,
		&q.streamState, &q.streamTombstoned, &q.streamPageFwd, &q.streamPageBwd, &q.getMetadata, &q.list} {
		*p = r.Replace(*p)
	}
	return q
}

-- Version 1: the log, the streams, projection checkpoints.
--
-- {{schema}} is replaced by the quoted schema name. Stream ids and event types use the "C"
-- collation so that comparisons and ORDER BY are byte-wise whatever the database's locale.

-- log_head is the one row that assigns positions. An append updates it as the last step of its
-- transaction and holds its row lock until it commits, so positions are handed out in commit
-- order and a transaction that rolls back leaves no gap (see doc.go).
CREATE TABLE {{schema}}.log_head (
    id       boolean PRIMARY KEY DEFAULT true CHECK (id),
    position bigint NOT NULL,
    time     timestamptz NOT NULL
);
INSERT INTO {{schema}}.log_head (position, time) VALUES (0, '-infinity');

-- streams holds one row per stream ever written or named by a system event. The stream exists
-- when next_revision > base; base is the first revision after the last soft delete.
-- meta_revision is the revision, in the stream's $meta- stream, of its last $metadata event
-- (-1 for none); last_id is the ID of its last event, for the idempotency check.
CREATE TABLE {{schema}}.streams (
    stream        text COLLATE "C" PRIMARY KEY,
    next_revision bigint NOT NULL DEFAULT 0,
    base          bigint NOT NULL DEFAULT 0,
    tombstoned    boolean NOT NULL DEFAULT false,
    meta_revision bigint NOT NULL DEFAULT -1,
    last_id       uuid
);

CREATE TABLE {{schema}}.events (
    position     bigint PRIMARY KEY,
    stream       text COLLATE "C" NOT NULL,
    revision     bigint NOT NULL,
    id           uuid NOT NULL,
    type         text COLLATE "C" NOT NULL,
    category     text COLLATE "C" NOT NULL,
    content_type text NOT NULL,
    data         bytea NOT NULL,
    metadata     bytea NOT NULL,
    time         timestamptz NOT NULL,
    CONSTRAINT events_stream_revision UNIQUE (stream, revision)
);
CREATE INDEX events_category ON {{schema}}.events (category, position);
CREATE INDEX events_type ON {{schema}}.events (type, position);

-- checkpoints records how far each projection has applied the log; see Store.Project.
CREATE TABLE {{schema}}.checkpoints (
    name     text COLLATE "C" PRIMARY KEY,
    position bigint NOT NULL,
    updated  timestamptz NOT NULL
);

-- Version 3: leases with fencing tokens (see Store.Acquire).
--
-- One row per lease name ever acquired. Rows are never deleted: token is the last fencing
-- token given for the name, and the next acquisition gets token + 1, after a release or an
-- expiry as after a restart. expires is '-infinity' when nobody holds the lease (released, or
-- the row was just created); otherwise the lease is held until expires, on the database's
-- clock. ttl_ms is the time to live the holder asked for, in whole milliseconds.
CREATE TABLE {{schema}}.leases (
    name     text COLLATE "C" PRIMARY KEY,
    holder   text NOT NULL,
    token    bigint NOT NULL CHECK (token >= 0),
    ttl_ms   bigint NOT NULL CHECK (ttl_ms >= 0),
    acquired timestamptz NOT NULL,
    expires  timestamptz NOT NULL
);

-- Version 2: generations of projections (see Projections).
--
-- A checkpoint now belongs to one generation of a projection; Store.Project and
-- Store.Checkpoint use the active generation (0 until one is activated).
ALTER TABLE {{schema}}.checkpoints ADD COLUMN generation bigint NOT NULL DEFAULT 0;
ALTER TABLE {{schema}}.checkpoints DROP CONSTRAINT checkpoints_pkey;
ALTER TABLE {{schema}}.checkpoints ADD PRIMARY KEY (name, generation);

-- projections gives each projection name a number, which names the schemas of its
-- generations ({{schema}}$<id>_<generation>), and records its active generation. A generation
-- exists when it has a row in checkpoints; its schema is created and dropped with that row.
CREATE TABLE {{schema}}.projections (
    name      text COLLATE "C" PRIMARY KEY,
    id        bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    active    bigint NOT NULL DEFAULT 0,
    activated timestamptz
);

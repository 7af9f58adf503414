-- Federation: where each member's replica lives, cached remote beams, and fork proofs.

-- Children per node in the space's broadcast tree, from its genesis.
ALTER TABLE spaces ADD COLUMN fanout INTEGER NOT NULL DEFAULT 10;

-- A member's home node: set by its join (the owner's is the sequencer). NULL for rows that are
-- not members (invited, banned).
ALTER TABLE members ADD COLUMN home TEXT;            -- home node DID
ALTER TABLE members ADD COLUMN authority TEXT;       -- home node host[:port]
CREATE INDEX members_by_home ON members(space, home);

-- Beams authored elsewhere, fetched from their author's node and verified, kept while a space
-- this node replicates refers to them. A tombstone event removes the row.
CREATE TABLE beam_cache (
    path        TEXT PRIMARY KEY NOT NULL,
    id          TEXT NOT NULL,
    author      TEXT NOT NULL,
    json        TEXT NOT NULL
) STRICT, WITHOUT ROWID;
CREATE INDEX beam_cache_by_id ON beam_cache(id);

-- Two different events signed by a space's sequencer for one seq: proof that it forked its log.
CREATE TABLE forks (
    space       TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    kept        TEXT NOT NULL,   -- the event this node holds
    rival       TEXT NOT NULL,   -- the conflicting event it refused
    detected_at INTEGER NOT NULL,
    PRIMARY KEY (space, seq, rival)
) STRICT, WITHOUT ROWID;

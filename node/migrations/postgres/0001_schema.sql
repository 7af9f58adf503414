-- Northstar node schema for PostgreSQL: the tables, keys and indexes that the SQLite migrations
-- 0001 to 0005 end with, in one step (no PostgreSQL database predates them).
--
-- Every text column compares bytewise (COLLATE "C"), as SQLite does, so listings come back in
-- the same order on both backends whatever the server's default collation. Integers are
-- BIGINT: seqs and times in milliseconds.

-- Spaces this node knows: ones it sequences and ones it replicates.
CREATE TABLE spaces (
    id          TEXT COLLATE "C" PRIMARY KEY,   -- {type}/{ownerKeyId}/{uniqueId}
    type        TEXT COLLATE "C" NOT NULL,
    owner       TEXT COLLATE "C" NOT NULL,      -- owner DID
    name        TEXT COLLATE "C" NOT NULL,
    sequencer   TEXT COLLATE "C" NOT NULL,      -- sequencer node DID
    authority   TEXT COLLATE "C" NOT NULL,      -- sequencer host[:port]
    head_seq    BIGINT NOT NULL,                -- seq of the last event
    head_id     TEXT COLLATE "C" NOT NULL,      -- id of the last event
    created_at  BIGINT NOT NULL,
    fanout      BIGINT NOT NULL DEFAULT 10      -- children per node in the broadcast tree
);

-- Each space's log, append-only. (space, seq) is unique and gap-free; id is unique.
CREATE TABLE events (
    space   TEXT COLLATE "C" NOT NULL REFERENCES spaces(id),
    seq     BIGINT NOT NULL,
    id      TEXT COLLATE "C" NOT NULL UNIQUE,
    kind    TEXT COLLATE "C" NOT NULL,
    author  TEXT COLLATE "C" NOT NULL,
    json    TEXT COLLATE "C" NOT NULL,          -- the signed event exactly as served
    PRIMARY KEY (space, seq)
);

-- Membership state derived from the log, kept in the transaction that appends the event. A
-- member's home node (DID and host[:port]); NULL for rows that are not members.
CREATE TABLE members (
    space       TEXT COLLATE "C" NOT NULL REFERENCES spaces(id),
    did         TEXT COLLATE "C" NOT NULL,
    state       TEXT COLLATE "C" NOT NULL,      -- member | invited | banned
    seq         BIGINT NOT NULL,                -- the event that set this state
    home        TEXT COLLATE "C",
    authority   TEXT COLLATE "C",
    PRIMARY KEY (space, did)
);
CREATE INDEX members_by_did ON members(did, state);
CREATE INDEX members_by_home ON members(space, home);

-- Beams authored by this node's users, at beam/{authorHash}/{beamId}.
CREATE TABLE beams (
    path        TEXT COLLATE "C" PRIMARY KEY,
    id          TEXT COLLATE "C" NOT NULL,
    author      TEXT COLLATE "C" NOT NULL,
    json        TEXT COLLATE "C" NOT NULL,      -- the signed beam
    created_at  BIGINT NOT NULL
);
CREATE INDEX beams_by_author ON beams(author, created_at);
CREATE INDEX beams_by_id ON beams(id);

-- Which spaces reference which beam, who placed each ref and where the beam lives.
CREATE TABLE beam_refs (
    beam    TEXT COLLATE "C" NOT NULL,          -- beam content id
    space   TEXT COLLATE "C" NOT NULL REFERENCES spaces(id),
    seq     BIGINT NOT NULL,
    author  TEXT COLLATE "C",
    home    TEXT COLLATE "C",
    PRIMARY KEY (beam, space, seq)
);

-- Every space sequenced elsewhere that an author posted a beam into through this node, its
-- home node (see the SQLite migration 0004 for why).
CREATE TABLE beam_posts (
    path    TEXT COLLATE "C" NOT NULL,          -- beam/{authorHash}/{beamId}
    space   TEXT COLLATE "C" NOT NULL,          -- the space id the ref named
    PRIMARY KEY (path, space)
);

-- Deleted beams: the content is gone; the signed tombstone stays so the id is never reused.
CREATE TABLE tombstones (
    beam    TEXT COLLATE "C" PRIMARY KEY,
    author  TEXT COLLATE "C" NOT NULL,
    json    TEXT COLLATE "C" NOT NULL
);

-- Beams authored elsewhere, fetched from their author's node and verified, kept while a space
-- this node replicates refers to them. A tombstone event removes the row.
CREATE TABLE beam_cache (
    path        TEXT COLLATE "C" PRIMARY KEY,
    id          TEXT COLLATE "C" NOT NULL,
    author      TEXT COLLATE "C" NOT NULL,
    json        TEXT COLLATE "C" NOT NULL
);
CREATE INDEX beam_cache_by_id ON beam_cache(id);

-- Two different events signed by a space's sequencer for one seq: proof that it forked its log.
CREATE TABLE forks (
    space       TEXT COLLATE "C" NOT NULL,
    seq         BIGINT NOT NULL,
    kept        TEXT COLLATE "C" NOT NULL,      -- the event this node holds
    rival       TEXT COLLATE "C" NOT NULL,      -- the conflicting event it refused
    detected_at BIGINT NOT NULL,
    PRIMARY KEY (space, seq, rival)
);

-- The node this database belongs to: recorded by the first node that opens it, and checked at
-- every start after, so two nodes never write one database's logs. One row at most.
CREATE TABLE node_identity (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    did  TEXT COLLATE "C" NOT NULL
);

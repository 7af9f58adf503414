-- Northstar node schema, version 1.
-- Events are append-only: a row is never updated or deleted once committed.

-- Spaces this node knows: ones it sequences and (later) ones it replicates.
CREATE TABLE spaces (
    id          TEXT PRIMARY KEY NOT NULL,   -- {type}/{ownerKeyId}/{uniqueId}
    type        TEXT NOT NULL,
    owner       TEXT NOT NULL,               -- owner DID
    name        TEXT NOT NULL,
    sequencer   TEXT NOT NULL,               -- sequencer node DID
    authority   TEXT NOT NULL,               -- sequencer host[:port]
    head_seq    INTEGER NOT NULL,            -- seq of the last event
    head_id     TEXT NOT NULL,               -- id of the last event
    created_at  INTEGER NOT NULL
) STRICT;

-- Each space's log. (space, seq) is unique and gap-free; id is unique.
CREATE TABLE events (
    space   TEXT NOT NULL REFERENCES spaces(id),
    seq     INTEGER NOT NULL,
    id      TEXT NOT NULL UNIQUE,
    kind    TEXT NOT NULL,
    author  TEXT NOT NULL,
    json    TEXT NOT NULL,                   -- the signed event exactly as served
    PRIMARY KEY (space, seq)
) STRICT, WITHOUT ROWID;

-- Membership state derived from the log, kept in the transaction that appends the event.
CREATE TABLE members (
    space   TEXT NOT NULL REFERENCES spaces(id),
    did     TEXT NOT NULL,
    state   TEXT NOT NULL,                   -- member | invited | banned
    seq     INTEGER NOT NULL,                -- the event that set this state
    PRIMARY KEY (space, did)
) STRICT, WITHOUT ROWID;
CREATE INDEX members_by_did ON members(did, state);

-- Beams authored by this node's users, at beam/{authorHash}/{beamId}.
CREATE TABLE beams (
    path        TEXT PRIMARY KEY NOT NULL,
    id          TEXT NOT NULL,
    author      TEXT NOT NULL,
    json        TEXT NOT NULL,               -- the signed beam
    created_at  INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
CREATE INDEX beams_by_author ON beams(author, created_at);

-- Which spaces reference which beam, so a deletion reaches every one of them.
CREATE TABLE beam_refs (
    beam    TEXT NOT NULL,                   -- beam content id
    space   TEXT NOT NULL REFERENCES spaces(id),
    seq     INTEGER NOT NULL,
    PRIMARY KEY (beam, space, seq)
) STRICT, WITHOUT ROWID;

-- Deleted beams: the content is gone; the signed tombstone stays so the id is never reused.
CREATE TABLE tombstones (
    beam    TEXT PRIMARY KEY NOT NULL,
    author  TEXT NOT NULL,
    json    TEXT NOT NULL
) STRICT, WITHOUT ROWID;

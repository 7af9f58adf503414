-- Beam edits (spec §4.10): every edit this node holds, from its users (as their home node) or
-- from the logs of the spaces it holds. Append-only; a version's beam lives in `beams` (home
-- node) or `beam_cache` (member node) like any beam. Which version is current, and which ones
-- an edit that drops history deleted, is computed from these rows: the order is `version`,
-- then `id` compared as text in byte order (collation "C", as SQLite's BINARY).
CREATE TABLE IF NOT EXISTS edits (
    id            TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    original      TEXT COLLATE "C" NOT NULL,
    author        TEXT COLLATE "C" NOT NULL,
    version       BIGINT NOT NULL,
    beam          TEXT COLLATE "C" NOT NULL,
    drop_history  BIGINT NOT NULL,
    json          TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS edits_by_original ON edits(original, author);
CREATE INDEX IF NOT EXISTS edits_by_beam ON edits(beam);

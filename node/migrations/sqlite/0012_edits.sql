-- Beam edits (spec §4.10): every edit this node holds, from its users (as their home node) or
-- from the logs of the spaces it holds. Append-only; a version's beam lives in `beams` (home
-- node) or `beam_cache` (member node) like any beam. Which version is current, and which ones
-- an edit that drops history deleted, is computed from these rows: the order is `version`,
-- then `id` compared as text (byte order, BINARY collation).
CREATE TABLE edits (
    id            TEXT PRIMARY KEY NOT NULL,   -- the edit's content id
    original      TEXT NOT NULL,               -- the beam it supersedes (version 0)
    author        TEXT NOT NULL,
    version       INTEGER NOT NULL,
    beam          TEXT NOT NULL,               -- the version's beam id
    drop_history  INTEGER NOT NULL,            -- 1 if the versions below it are deleted
    json          TEXT NOT NULL                -- the signed edit
) STRICT, WITHOUT ROWID;
CREATE INDEX edits_by_original ON edits(original, author);
CREATE INDEX edits_by_beam ON edits(beam);

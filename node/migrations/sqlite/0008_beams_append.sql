-- Beams are kept in the order they arrive (a rowid table), found by content id. Keyed by
-- path, each new beam landed on a random page of a table holding five beams to the page, and
-- split one every few inserts: about two pages of the beam itself per post. Appended, a beam
-- costs the fraction of a page its bytes fill. A beam's id hashes the signed beam, author
-- included, so it names one path: the unique index on id keeps beams unique, and a lookup by
-- path goes through the id and checks the path. The author index is in a listing's order
-- (newest first, then by id, which for one author is path order), so nothing is sorted.
CREATE TABLE beams_appended (
    path        TEXT NOT NULL,               -- beam/{authorHash}/{beamId}
    id          TEXT NOT NULL,
    author      TEXT NOT NULL,
    json        TEXT NOT NULL,               -- the signed beam
    created_at  INTEGER NOT NULL
) STRICT;
INSERT INTO beams_appended (path, id, author, json, created_at)
    SELECT path, id, author, json, created_at FROM beams ORDER BY created_at, path;
DROP TABLE beams;
ALTER TABLE beams_appended RENAME TO beams;
CREATE UNIQUE INDEX beams_by_id ON beams(id);
CREATE INDEX beams_by_author ON beams(author, created_at DESC, id);

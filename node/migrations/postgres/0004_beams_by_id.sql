-- Beams are found by content id. A beam's id hashes the signed beam, author included, so it
-- names one path: the unique index on id keeps beams unique and a lookup by path goes through
-- the id and checks the path, which needs no index of its own. The author index is in a
-- listing's order (newest first, then by id, which for one author is path order).
ALTER TABLE beams DROP CONSTRAINT beams_pkey;
DROP INDEX beams_by_id;
CREATE UNIQUE INDEX beams_by_id ON beams(id);
DROP INDEX beams_by_author;
CREATE INDEX beams_by_author ON beams(author, created_at DESC, id);

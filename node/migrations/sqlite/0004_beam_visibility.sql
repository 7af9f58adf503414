-- Who may read a beam (spec/protocol.md §6.3.16): a beam whose refs are all in dm spaces is
-- for the members of those spaces (and their home nodes) only, so reads need to find a beam's
-- refs by author and the spaces its author posted it into.

-- Every space sequenced elsewhere that an author posted a beam into through this node, its
-- home node, whether or not the space's sequencer accepted the ref: written with the beam,
-- before the ref reaches a log this node holds (a remote sequencer's push may reach other nodes
-- first). A post into a space sequenced here needs no row: its ref enters the log in the same
-- transaction as the beam.
CREATE TABLE beam_posts (
    path    TEXT NOT NULL,               -- beam/{authorHash}/{beamId}
    space   TEXT NOT NULL,               -- the space id the ref named
    PRIMARY KEY (path, space)
) STRICT, WITHOUT ROWID;

-- A beam id names one author's beam: a ref by anyone else to that id is refused, which needs
-- the stored beams by id.
CREATE INDEX beams_by_id ON beams(id);

-- Refs recorded before 0003 have no author or home; both are in the signed ref inside the
-- event, so take them from there. Reads now match refs by author, and a ref without one would
-- hide a public beam.
UPDATE beam_refs SET
    author = (SELECT json_extract(e.json, '$.payload.body.author') FROM events e
              WHERE e.space = beam_refs.space AND e.seq = beam_refs.seq),
    home = (SELECT json_extract(e.json, '$.payload.body.home') FROM events e
            WHERE e.space = beam_refs.space AND e.seq = beam_refs.seq)
WHERE author IS NULL;

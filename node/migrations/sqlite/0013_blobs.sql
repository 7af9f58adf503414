-- Blobs (spec/protocol.md §13), owned by the blobs service: the files live under
-- {data_dir}/blobs/ ({id} and {id}.obao, its outboard); these rows say whose they are.
CREATE TABLE blobs (
    id          TEXT PRIMARY KEY NOT NULL,   -- content id of the bytes
    size        INTEGER NOT NULL,
    owner       TEXT NOT NULL,               -- uploader's DID; for a cached copy the beam's author
    media_type  TEXT NOT NULL,
    created_at  INTEGER NOT NULL,            -- ms
    cached      INTEGER NOT NULL DEFAULT 0,  -- 1: a copy of a blob whose home is another node
    released_at INTEGER                      -- ms: since when no live beam attaches it
) STRICT, WITHOUT ROWID;
CREATE INDEX blobs_by_owner ON blobs(owner);

-- Which beams (by path) attach which blobs: stored beams on their home node, cached beams on
-- a member node. A row goes when its beam is no longer stored or cached.
CREATE TABLE blob_refs (
    blob    TEXT NOT NULL,
    beam    TEXT NOT NULL,
    PRIMARY KEY (blob, beam)
) STRICT, WITHOUT ROWID;
CREATE INDEX blob_refs_by_beam ON blob_refs(beam);

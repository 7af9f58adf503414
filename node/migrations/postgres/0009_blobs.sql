-- Blobs (spec/protocol.md §13), owned by the blobs service: see the SQLite migration 0012.
CREATE TABLE IF NOT EXISTS blobs (
    id          TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    size        BIGINT NOT NULL,
    owner       TEXT COLLATE "C" NOT NULL,
    media_type  TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    cached      BIGINT NOT NULL DEFAULT 0,
    released_at BIGINT
);
CREATE INDEX IF NOT EXISTS blobs_by_owner ON blobs(owner);

CREATE TABLE IF NOT EXISTS blob_refs (
    blob    TEXT COLLATE "C" NOT NULL,
    beam    TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (blob, beam)
);
CREATE INDEX IF NOT EXISTS blob_refs_by_beam ON blob_refs(beam);

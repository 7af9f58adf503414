-- What the operator decided about a DID, and when it was seen: one row per DID that
-- authenticated here or that the operator allowed, denied or banned (`northstar admin`).
-- `access` is 'allow' or 'deny' when the operator said so at runtime (it overrides the config
-- file's registration.allow), NULL otherwise; `banned_at` is set while the DID is banned from
-- the whole node. Written outside the group commit: it holds no log state.
CREATE TABLE IF NOT EXISTS users (
    did         TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    first_seen  BIGINT,
    last_seen   BIGINT,
    access      TEXT COLLATE "C",
    banned_at   BIGINT
);

-- What the operator decided about a DID, and when it was seen: one row per DID that
-- authenticated here or that the operator allowed, denied or banned (`northstar admin`).
-- `access` is 'allow' or 'deny' when the operator said so at runtime (it overrides the config
-- file's registration.allow), NULL otherwise; `banned_at` is set while the DID is banned from
-- the whole node. Written outside the group commit: it holds no log state.
CREATE TABLE users (
    did         TEXT PRIMARY KEY NOT NULL,
    first_seen  INTEGER,                     -- first authentication, ms
    last_seen   INTEGER,                     -- latest authentication written, ms
    access      TEXT,                        -- allow | deny | NULL
    banned_at   INTEGER                      -- ms, NULL when not banned
) STRICT, WITHOUT ROWID;

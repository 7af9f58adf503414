-- Spaces the node's operator removed (`northstar admin remove-space`): their logs, members and
-- refs are gone, and the id stays here so the space is neither created nor replicated again.
CREATE TABLE IF NOT EXISTS removed_spaces (
    id          TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    removed_at  BIGINT NOT NULL
);

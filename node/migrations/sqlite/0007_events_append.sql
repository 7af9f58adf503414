-- Events are kept in log order, found by (space, seq). An event's id hashes the event (all
-- of it but its signature, space and seq included), so the primary key already keeps ids
-- unique; the unique index on id cost a random B-tree page per appended event and answered
-- no query. SQLite drops a column's UNIQUE only by rebuilding the table.
CREATE TABLE events_appended (
    space   TEXT NOT NULL REFERENCES spaces(id),
    seq     INTEGER NOT NULL,
    id      TEXT NOT NULL,
    kind    TEXT NOT NULL,
    author  TEXT NOT NULL,
    json    TEXT NOT NULL,                   -- the signed event exactly as served
    PRIMARY KEY (space, seq)
) STRICT, WITHOUT ROWID;
INSERT INTO events_appended (space, seq, id, kind, author, json)
    SELECT space, seq, id, kind, author, json FROM events ORDER BY space, seq;
DROP TABLE events;
ALTER TABLE events_appended RENAME TO events;

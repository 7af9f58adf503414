-- Events are found by (space, seq). An event's id hashes the event (all of it but its
-- signature, space and seq included), so the primary key already keeps ids unique; the
-- unique index on id cost an index page per appended event and answered no query.
ALTER TABLE events DROP CONSTRAINT IF EXISTS events_id_key;

-- Who placed each ref and where the beam lives, so a tombstone is appended only to spaces
-- where its author placed the beam, and a node fetches a remote beam only from the home a ref
-- names.
ALTER TABLE beam_refs ADD COLUMN author TEXT;
ALTER TABLE beam_refs ADD COLUMN home TEXT;

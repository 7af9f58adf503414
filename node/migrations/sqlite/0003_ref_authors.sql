-- Who placed each ref, so a tombstone is appended only to spaces where its author's beam was
-- posted by that author (a tombstone names the beam and is signed by its author; this row is
-- how the sequencer checks the two belong together).
ALTER TABLE beam_refs ADD COLUMN author TEXT;

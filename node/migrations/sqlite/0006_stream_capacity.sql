-- The stream uplink (kbit/s) a member's join declared for its home node; NULL when the join
-- declared none. Stream trees order member nodes by it (spec §10.5).
ALTER TABLE members ADD COLUMN capacity INTEGER;

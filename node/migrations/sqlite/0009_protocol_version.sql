-- The protocol version whose signatures the database's logs and beams carry. A database from
-- before this column holds protocol 1 (or older) data; a node refuses to serve data of another
-- version than it speaks (the signatures would not verify for its peers).
ALTER TABLE node_identity ADD COLUMN protocol INTEGER NOT NULL DEFAULT 1;

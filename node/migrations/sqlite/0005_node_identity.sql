-- The node this database belongs to: recorded by the first node that opens it, and checked at
-- every start after, so two nodes (two keys) never write one database's logs. One row at most.
CREATE TABLE node_identity (
    id   INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    did  TEXT NOT NULL                       -- the node's DID
) STRICT;

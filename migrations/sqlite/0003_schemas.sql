-- Facade schema versions, for instances that take their schema from the registry
-- (`schema.source = "registry"`): each version's SDL files as a JSON array of
-- {"name", "text"}, and which version every instance runs.
CREATE TABLE schemas (
    version     INTEGER PRIMARY KEY,
    sha256      TEXT NOT NULL UNIQUE,
    files       TEXT NOT NULL,
    author      TEXT NOT NULL,
    reason      TEXT,
    created_ms  INTEGER NOT NULL
);

CREATE TABLE schema_active (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    version     INTEGER NOT NULL REFERENCES schemas (version),
    updated_ms  INTEGER NOT NULL
);

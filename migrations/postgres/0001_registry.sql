-- Clients, tokens, endpoints with immutable versions, rollouts and the audit log.
-- Times are Unix milliseconds.

CREATE TABLE clients (
    name        TEXT PRIMARY KEY,
    team        TEXT NOT NULL,
    created_ms  BIGINT NOT NULL
);

CREATE TABLE tokens (
    id          BIGSERIAL PRIMARY KEY,
    sha256      TEXT NOT NULL UNIQUE,
    kind        TEXT NOT NULL CHECK (kind IN ('admin', 'team')),
    team        TEXT,
    label       TEXT NOT NULL,
    created_ms  BIGINT NOT NULL,
    CHECK ((kind = 'team') = (team IS NOT NULL))
);

CREATE TABLE endpoints (
    client        TEXT NOT NULL REFERENCES clients (name),
    name          TEXT NOT NULL,
    next_version  BIGINT NOT NULL DEFAULT 1,
    created_ms    BIGINT NOT NULL,
    PRIMARY KEY (client, name)
);

CREATE TABLE versions (
    client          TEXT NOT NULL,
    endpoint        TEXT NOT NULL,
    version         BIGINT NOT NULL,
    document        TEXT NOT NULL,
    operation_name  TEXT,
    script          TEXT,
    sha256          TEXT NOT NULL,
    document_sha256 TEXT NOT NULL,
    author          TEXT NOT NULL,
    created_ms      BIGINT NOT NULL,
    PRIMARY KEY (client, endpoint, version),
    FOREIGN KEY (client, endpoint) REFERENCES endpoints (client, name)
);
CREATE INDEX versions_by_sha256 ON versions (client, endpoint, sha256);
CREATE INDEX versions_by_document ON versions (document_sha256);

CREATE TABLE rollouts (
    client           TEXT NOT NULL,
    endpoint         TEXT NOT NULL,
    stable           BIGINT NOT NULL,
    canary           BIGINT,
    canary_percent   BIGINT NOT NULL DEFAULT 0 CHECK (canary_percent BETWEEN 0 AND 100),
    previous_stable  BIGINT,
    updated_ms       BIGINT NOT NULL,
    PRIMARY KEY (client, endpoint),
    FOREIGN KEY (client, endpoint, stable) REFERENCES versions (client, endpoint, version),
    FOREIGN KEY (client, endpoint, canary) REFERENCES versions (client, endpoint, version)
);

CREATE TABLE audit (
    id       BIGSERIAL PRIMARY KEY,
    at_ms    BIGINT NOT NULL,
    actor    TEXT NOT NULL,
    action   TEXT NOT NULL,
    target   TEXT NOT NULL,
    detail   TEXT NOT NULL,
    reason   TEXT
);

-- Bumped by every change, so instances can tell cheaply whether to reload.
CREATE TABLE registry_generation (
    id          BIGINT PRIMARY KEY CHECK (id = 1),
    generation  BIGINT NOT NULL
);
INSERT INTO registry_generation (id, generation) VALUES (1, 0);

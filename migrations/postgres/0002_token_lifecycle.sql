-- Token lifecycle: when a token was last used, when it expires, and when it was revoked.
ALTER TABLE tokens ADD COLUMN last_used_ms BIGINT;
ALTER TABLE tokens ADD COLUMN expires_ms BIGINT;
ALTER TABLE tokens ADD COLUMN revoked_ms BIGINT;

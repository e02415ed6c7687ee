-- Token lifecycle: when a token was last used, when it expires, and when it was revoked.
ALTER TABLE tokens ADD COLUMN last_used_ms INTEGER;
ALTER TABLE tokens ADD COLUMN expires_ms INTEGER;
ALTER TABLE tokens ADD COLUMN revoked_ms INTEGER;

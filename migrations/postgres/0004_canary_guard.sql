-- The canary guard's settings per rollout (JSON; NULL: the defaults). See registry/canary.rs.
ALTER TABLE rollouts ADD COLUMN guard TEXT;

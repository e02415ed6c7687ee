-- The sample variables a version was published with (a JSON object; NULL: none), so the
-- playground can start a run of that version with them. See registry/publish.rs.
ALTER TABLE versions ADD COLUMN sample_variables TEXT;

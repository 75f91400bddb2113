-- trialvault 0.5 -> 0.6: guards that deny by default; the extension describes
-- its own objects.
\echo Use "ALTER EXTENSION trialvault UPDATE TO '0.6'" to load this file. \quit

-- The extension's own objects, described one by one (see extension/catalog.c).
CREATE FUNCTION trialvault.catalog_state(OUT object text, OUT definition text)
	RETURNS SETOF record
	LANGUAGE C STABLE
	SET search_path = pg_catalog, pg_temp
	AS 'MODULE_PATHNAME', 'tv_catalog_state';
COMMENT ON FUNCTION trialvault.catalog_state() IS
	'Every object of the extension described as text (definitions, columns, constraints, indexes, triggers, owners, privileges, comments), one row per object. verify() compares it with what the installed version''s script created.';

-- Only protect() attaches the guard to a table (it runs that DDL as the
-- extension's owner): a guarded table takes a slot of shared memory.
REVOKE ALL ON FUNCTION trialvault.guard() FROM PUBLIC;
COMMENT ON FUNCTION trialvault.guard() IS
	'Trigger function of the guard triggers of protected tables: refuses UPDATE, DELETE and TRUNCATE; chains each inserted row. Attached only by protect().';

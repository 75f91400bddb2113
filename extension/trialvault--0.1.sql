-- trialvault 0.1: insert-only, hash-chained tables.
\echo Use "CREATE EXTENSION trialvault" to load this file. \quit

-- Refuse to install unless the library was preloaded: without the hooks
-- loaded at server start, some backends would run without the guards.
CREATE FUNCTION trialvault._require_preload() RETURNS void
	LANGUAGE C STRICT AS 'MODULE_PATHNAME', 'tv_require_preload_sql';
SELECT trialvault._require_preload();
REVOKE ALL ON FUNCTION trialvault._require_preload() FROM PUBLIC;
COMMENT ON FUNCTION trialvault._require_preload() IS
	'Internal: fails unless trialvault is in shared_preload_libraries.';

REVOKE ALL ON SCHEMA trialvault FROM PUBLIC;
GRANT USAGE ON SCHEMA trialvault TO PUBLIC;

CREATE FUNCTION trialvault.guard() RETURNS trigger
	LANGUAGE C AS 'MODULE_PATHNAME', 'tv_guard';
COMMENT ON FUNCTION trialvault.guard() IS
	'Trigger function of the guard triggers of protected tables: refuses UPDATE, DELETE and TRUNCATE; chains each inserted row.';

-- protect() and verify() run with a fixed search_path so that nothing planted
-- earlier on the caller's path (types, operators) is used inside them.
CREATE FUNCTION trialvault.protect(tbl regclass) RETURNS void
	LANGUAGE C
	SET search_path = pg_catalog, pg_temp
	AS 'MODULE_PATHNAME', 'tv_protect';
REVOKE ALL ON FUNCTION trialvault.protect(regclass) FROM PUBLIC;
COMMENT ON FUNCTION trialvault.protect(regclass) IS
	'Makes a table insert-only and hash-chained (chains the rows already present). Only the table owner may call it; calling it again does nothing.';

CREATE FUNCTION trialvault.verify(tbl regclass,
	OUT ok boolean,
	OUT rows_checked bigint,
	OUT first_bad text,
	OUT bad_rows bigint,
	OUT heads bigint,
	OUT head_digest bytea,
	OUT guard text)
	LANGUAGE C STABLE
	SET search_path = pg_catalog, pg_temp
	AS 'MODULE_PATHNAME', 'tv_verify';
COMMENT ON FUNCTION trialvault.verify(regclass) IS
	'Recomputes the hash chain of a protected table: ok, rows checked, the first row that does not fit and why, how many do not, the open ends of the chain and their digest, and the state of the guard triggers.';

CREATE VIEW trialvault.protected_tables AS
	SELECT c.oid::regclass AS table_name,
		n.nspname AS schema_name,
		c.relname AS relation_name,
		bool_and(t.tgenabled = 'A') AS guards_enabled,
		count(*) AS guard_triggers
	FROM pg_catalog.pg_trigger t
	JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid
	JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
	WHERE t.tgfoid = 'trialvault.guard()'::regprocedure
	GROUP BY c.oid, n.nspname, c.relname;
COMMENT ON VIEW trialvault.protected_tables IS
	'Tables protected by trialvault (those carrying its guard triggers), and whether every guard trigger is enabled ALWAYS.';
GRANT SELECT ON trialvault.protected_tables TO PUBLIC;

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

-- What the installed version's script created, object by object: verify()
-- compares the catalogs with it, so that an edit made behind the guards'
-- back is at least seen (extension/catalog.c).  Rows come only from
-- _seal_catalog(), the last statement of every script.
CREATE TABLE trialvault.catalog_seal (
	version text NOT NULL,
	object text NOT NULL,
	fingerprint bytea NOT NULL,
	sealed_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (version, object)
);
COMMENT ON TABLE trialvault.catalog_seal IS
	'SHA-256 of the description of every object of the extension (trialvault.catalog_state()) as each version''s script left it; verify() reports any difference. Insert-only, hash-chained, written only by the extension''s scripts.';
SELECT trialvault.protect('trialvault.catalog_seal');
REVOKE ALL ON trialvault.catalog_seal FROM PUBLIC;

CREATE FUNCTION trialvault._seal_insert_guard() RETURNS trigger
	LANGUAGE C AS 'MODULE_PATHNAME', 'tv_seal_insert_guard';
REVOKE ALL ON FUNCTION trialvault._seal_insert_guard() FROM PUBLIC;
COMMENT ON FUNCTION trialvault._seal_insert_guard() IS
	'Internal: trigger that lets only the extension''s own scripts add rows to trialvault.catalog_seal.';
CREATE TRIGGER a_seal_only_by_scripts BEFORE INSERT ON trialvault.catalog_seal
	FOR EACH ROW EXECUTE FUNCTION trialvault._seal_insert_guard();
ALTER TABLE trialvault.catalog_seal ENABLE ALWAYS TRIGGER a_seal_only_by_scripts;

CREATE FUNCTION trialvault._seal_catalog() RETURNS void
	LANGUAGE C AS 'MODULE_PATHNAME', 'tv_seal_catalog';
REVOKE ALL ON FUNCTION trialvault._seal_catalog() FROM PUBLIC;
COMMENT ON FUNCTION trialvault._seal_catalog() IS
	'Internal: records the fingerprints of the extension''s objects under the version being installed; called last by every script.';

-- Only protect() attaches the guard to a table (it runs that DDL as the
-- extension's owner): a guarded table takes a slot of shared memory.
REVOKE ALL ON FUNCTION trialvault.guard() FROM PUBLIC;
COMMENT ON FUNCTION trialvault.guard() IS
	'Trigger function of the guard triggers of protected tables: refuses UPDATE, DELETE and TRUNCATE; chains each inserted row. Attached only by protect().';

-- =====================================================================
-- Last: seal what this script created (see catalog_seal above).
-- =====================================================================
SELECT trialvault._seal_catalog();

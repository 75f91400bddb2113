-- trialvault 0.8 -> 0.9: encrypted incremental backups (the shipper's status),
-- and an index on tv_seq for every protected table.
\echo Use "ALTER EXTENSION trialvault UPDATE TO '0.9'" to load this file. \quit

-- protect() now gives every table it protects a unique index on tv_seq (the
-- shipper reads new rows by range); the tables protected before get theirs
-- here, with the name protect() would choose.
DO $$
DECLARE
	t regclass;
BEGIN
	FOR t IN SELECT p.table_name FROM trialvault.protected_tables p ORDER BY p.table_name::text LOOP
		IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_index i
					   JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
					   WHERE i.indrelid = t AND a.attname = 'tv_seq' AND i.indpred IS NULL) THEN
			EXECUTE format('CREATE UNIQUE INDEX ON %s (tv_seq)', t);
		END IF;
	END LOOP;
END
$$;

-- =====================================================================
-- 9. Encrypted backups (worker/shipper.c, docs/backups.md)
-- =====================================================================

CREATE FUNCTION trialvault._backup_status(OUT table_name regclass,
	OUT shipped_rows bigint,
	OUT lag_rows bigint,
	OUT lag_seconds double precision,
	OUT last_success timestamptz,
	OUT last_error text,
	OUT batches bigint,
	OUT bytes bigint)
	RETURNS SETOF record
	LANGUAGE C STABLE
	SET search_path = pg_catalog, pg_temp
	AS 'MODULE_PATHNAME', 'tv_backup_status';
COMMENT ON FUNCTION trialvault._backup_status() IS
	'Internal: the rows of backup_status, from the shippers'' shared memory and a count of the rows not shipped yet.';
REVOKE ALL ON FUNCTION trialvault._backup_status() FROM PUBLIC;
-- (functions in a view run with the privileges of whoever reads it)
GRANT EXECUTE ON FUNCTION trialvault._backup_status() TO trialvault_admin;

CREATE VIEW trialvault.backup_status AS
	SELECT * FROM trialvault._backup_status();
COMMENT ON VIEW trialvault.backup_status IS
	'One row per protected table of this database: rows shipped to the remote repository since the shipper started, rows not shipped yet, for how long the table has not been fully shipped (seconds), the last batch shipped, the newest error (the table''s or the shipper''s), batches and bytes shipped since the shipper started.';
REVOKE ALL ON trialvault.backup_status FROM PUBLIC;
GRANT SELECT ON trialvault.backup_status TO trialvault_admin;

-- Last: seal what this version's objects are.
SELECT trialvault._seal_catalog();

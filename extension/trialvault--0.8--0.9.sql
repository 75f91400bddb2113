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

CREATE FUNCTION trialvault.verify_against_remote(OUT table_name text,
	OUT ok boolean,
	OUT detail text)
	RETURNS SETOF record
	LANGUAGE C VOLATILE
	SET search_path = pg_catalog, pg_temp
	AS 'MODULE_PATHNAME', 'tv_verify_against_remote';
COMMENT ON FUNCTION trialvault.verify_against_remote() IS
	'One row per protected table of this database (and per table shipped from it that is no longer one): whether the local chain still holds what was shipped to the backup repository. The newest batch''s signed heads must still be there with the same tv_hash and the chain must verify; a shipped row rewritten, even consistently, is named.';
REVOKE ALL ON FUNCTION trialvault.verify_against_remote() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION trialvault.verify_against_remote() TO trialvault_admin;

CREATE FUNCTION trialvault.full_backup(OUT backup_id bigint, OUT completed boolean)
	RETURNS record
	LANGUAGE C VOLATILE
	SET search_path = pg_catalog, pg_temp
	AS 'MODULE_PATHNAME', 'tv_full_backup';
COMMENT ON FUNCTION trialvault.full_backup() IS
	'Asks this database''s backup shipper for a full backup and waits for it: every protected row shipped so far, encrypted to the backup key in chunks with a manifest, confirmed by the repository, then the purge of what it covers. Returns the backup id and whether it completed (false, with the reason in backup_status, when the repository cannot be reached).';
REVOKE ALL ON FUNCTION trialvault.full_backup() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION trialvault.full_backup() TO trialvault_admin;

-- What pg_cron runs: a full backup that did not complete fails the job, so
-- that cron.job_run_details says so.
CREATE FUNCTION trialvault.scheduled_full_backup() RETURNS bigint
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	r record;
	why text;
BEGIN
	SELECT * INTO r FROM trialvault.full_backup();
	IF NOT r.completed THEN
		SELECT string_agg(DISTINCT s.last_error, '; ') INTO why
			FROM trialvault.backup_status s WHERE s.last_error IS NOT NULL;
		RAISE EXCEPTION 'the scheduled full backup did not complete'
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = coalesce(why, 'no reason was recorded'),
				  HINT = 'trialvault.backup_status shows where shipping stands.';
	END IF;
	RETURN r.backup_id;
END
$$;
COMMENT ON FUNCTION trialvault.scheduled_full_backup() IS
	'full_backup() for pg_cron (schedule_backups): returns the backup id, or fails with the reason when the backup did not complete.';
REVOKE ALL ON FUNCTION trialvault.scheduled_full_backup() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION trialvault.scheduled_full_backup() TO trialvault_admin;

CREATE FUNCTION trialvault.schedule_backups(cron text DEFAULT '0 2 * * *') RETURNS bigint
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	job bigint;
BEGIN
	IF cron IS NULL OR cron = '' THEN
		RAISE EXCEPTION 'schedule_backups needs a cron schedule'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'For example ''0 2 * * *'', every day at 02:00 (the server''s time zone of pg_cron: GMT by default).';
	END IF;
	IF to_regprocedure('cron.schedule_in_database(text,text,text,text,text,boolean)') IS NULL THEN
		RAISE EXCEPTION 'pg_cron is not installed in this database'
			USING ERRCODE = 'undefined_function',
				  HINT = 'Add pg_cron to shared_preload_libraries, set cron.database_name to this database, restart, and CREATE EXTENSION pg_cron.';
	END IF;
	-- One job per database: scheduling again replaces the schedule.
	EXECUTE 'SELECT cron.schedule_in_database($1, $2, $3, $4)'
		INTO job
		USING 'trialvault full backup ' || current_database(), cron,
			  'SELECT trialvault.scheduled_full_backup()', current_database();
	RETURN job;
END
$$;
COMMENT ON FUNCTION trialvault.schedule_backups(text) IS
	'Registers the daily (or the given cron schedule''s) full backup of this database with pg_cron, as the calling administrator; pg_cron must be installed in this database. Returns the pg_cron job id; calling it again changes the schedule.';
REVOKE ALL ON FUNCTION trialvault.schedule_backups(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION trialvault.schedule_backups(text) TO trialvault_admin;

-- Last: seal what this version's objects are.
SELECT trialvault._seal_catalog();

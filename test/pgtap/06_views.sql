-- Secured per-user views (issue 4): the session's one open study, and the
-- views my_documents, my_sites, my_roles, my_decryption_log and audit_trail
-- as the only door in.  Every study role against every view, in two studies
-- with two sites each (both studies have sites "A" and "B", so a filter on
-- the site alone would show); a member of both studies; no study open;
-- revocation, monitor authorization expiry and revocation; forged settings
-- (SET/set_config/RESET/ALTER ROLE on trialvault.*, RESET ALL, SET ROLE and
-- SET SESSION AUTHORIZATION games); leaky functions and operators in WHERE;
-- functions and operators planted earlier on the search_path (and in
-- pg_temp); no direct access to any base table, sequence or internal
-- function; create_secured_view for a DBA's own protected table.
--
-- Expected view contents are written out literally (document names, sites,
-- roles, log entries as "doc:requester:reason"), not recomputed with the
-- views' own logic.  Where a whole set must be compared (audit trail, what a
-- leaky function captured), the reference is read from the base tables by
-- the superuser.
--
-- Long runs of the same check are tables: a VALUES list of cases and one
-- query that runs the assertion for each row, in the order of the rows, so
-- that the steps still happen in sequence.  A role's step runs as that role
-- through tv06.as_role/tv06.sql_as (SET ROLE for that one statement); the
-- expected values stay written out in the rows.
--
-- The decryption-log rows are written by the log writer in its own
-- transaction and outlive this suite's ROLLBACK, so every run uses study
-- codes of its own; the views filter by study, so reruns on one cluster do
-- not see each other's rows.
--
-- COPY: "COPY ... TO STDOUT" / "FROM STDIN" cannot run inside a function
-- (SPI refuses client COPY before any permission check), so they are run as
-- plain psql statements with ON_ERROR_STOP off and ON_ERROR_ROLLBACK on, and
-- the refusal is checked through psql's :SQLSTATE variable (those refusals
-- print "ERROR: 42501" lines on stderr; that is expected).  That is done for
-- decryption_log and study_keys as every role.  For every base table the
-- server-side forms "COPY t TO '/dev/null'" and "COPY t FROM '/dev/null'"
-- are run inside tv06.direct(); the roles are given pg_write_server_files
-- and pg_read_server_files for that (rolled back), so that the refusal seen
-- is the one for the table (checked: "permission denied for table ..."), not
-- the one for server files (a control COPY (SELECT 1) TO '/dev/null' works).
--
-- Reserved settings: PostgreSQL refuses SET/set_config/RESET/ALTER ROLE SET
-- of a new "trialvault.*" name with 42602 (invalid_name); only SHOW and
-- current_setting() of such a name give 42704.  Its reserved-prefix check is
-- case-sensitive: SET "TrialVault.study" creates a placeholder, after which
-- SET trialvault.study is accepted too.  The open study is not a setting, so
-- the suite checks that none of this changes what a user sees.
--
-- SET ROLE games run both from the superuser (SET ROLE to other members: the
-- study stays open for the session, each role sees its own rows) and from a
-- session of site staff (SET SESSION AUTHORIZATION): SET ROLE to another
-- member is refused there, SET ROLE trialvault_user shows nothing.  (Whether
-- SET SESSION AUTHORIZATION itself is refused cannot be checked: PostgreSQL
-- decides by the authenticated user, the superuser running the suite.)
--
-- create_secured_view: the DBA grants USAGE on the schema of its table (the
-- view goes there); the last four tests of that section expect a table owner
-- to be refused (42501) when the view would replace another owner's secured
-- view, or go into a schema the owner may not create in (public).
BEGIN;
SELECT plan(496);

-- ---------------------------------------------------------------------
-- Helpers (rolled back with everything else).  They run as whichever role
-- is current, with a fixed search_path of their own, so that a planted
-- operator or function never runs inside them.
-- ---------------------------------------------------------------------
CREATE SCHEMA tv06;
GRANT USAGE ON SCHEMA tv06 TO PUBLIC;
CREATE TABLE tv06.cfg (s1 text NOT NULL, s2 text NOT NULL);
INSERT INTO tv06.cfg SELECT 'V06A-' || r, 'V06B-' || r
	FROM (SELECT substr(md5(random()::text || clock_timestamp()::text), 1, 12) AS r) x;
CREATE TABLE tv06.docs (name text PRIMARY KEY, doc_id bigint NOT NULL UNIQUE, study text NOT NULL,
	site text NOT NULL, body bytea NOT NULL);
-- What the search_path hijack section observed (key, value).
CREATE TABLE tv06.hij (n serial, k text NOT NULL, v text);
GRANT SELECT ON tv06.cfg TO PUBLIC;
GRANT SELECT, INSERT ON tv06.docs, tv06.hij TO PUBLIC;
GRANT USAGE ON SEQUENCE tv06.hij_n_seq TO PUBLIC;

CREATE FUNCTION tv06.s1() RETURNS text LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
	AS $$ SELECT s1 FROM tv06.cfg $$;
CREATE FUNCTION tv06.s2() RETURNS text LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
	AS $$ SELECT s2 FROM tv06.cfg $$;
-- "S1"/"S2" for this run's studies.
CREATE FUNCTION tv06.tag(p_study text) RETURNS text LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
	AS $$ SELECT CASE WHEN p_study = tv06.s1() THEN 'S1' WHEN p_study = tv06.s2() THEN 'S2'
					  ELSE coalesce(p_study, '-') END $$;
CREATE FUNCTION tv06.doc(p_name text) RETURNS bigint LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
	AS $$ SELECT doc_id FROM tv06.docs WHERE name = p_name $$;
CREATE FUNCTION tv06.body(p_name text) RETURNS bytea LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
	AS $$ SELECT body FROM tv06.docs WHERE name = p_name $$;

-- Loads a document as the current role and remembers it under a name.
CREATE FUNCTION tv06.load(p_name text, p_study text, p_site text, p_type text, p_phi boolean)
	RETURNS bigint LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	b bytea := convert_to(format('%s %s of %s/%s: MRN 47-%s', p_type, p_name, tv06.tag(p_study), p_site, p_name), 'UTF8');
	id bigint;
BEGIN
	id := trialvault.load_document(p_study, p_site, p_type, p_phi,
		format('<doc><form>%s</form><visit>1</visit></doc>', p_name)::xml, b);
	INSERT INTO tv06.docs VALUES (p_name, id, p_study, p_site, b);
	RETURN id;
END
$$;

-- Document ids as their names, sorted ("#id" for a document of no name).
CREATE FUNCTION tv06.names(p_ids bigint[]) RETURNS text LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
	SELECT coalesce(string_agg(coalesce(d.name, '#' || i.id), ' ' ORDER BY coalesce(d.name, '#' || i.id)), '')
	FROM unnest(p_ids) i(id) LEFT JOIN tv06.docs d ON d.doc_id = i.id
$$;

-- What the current role sees in each view, as text.
CREATE FUNCTION tv06.docs_seen() RETURNS text LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
	AS $$ SELECT tv06.names(ARRAY(SELECT doc_id FROM trialvault.my_documents)) $$;
CREATE FUNCTION tv06.sites_seen() RETURNS text LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
	SELECT coalesce(string_agg(format('%s/%s:%s:%s:%s', tv06.tag(s.study), s.site, array_to_string(s.my_roles, ','),
		CASE WHEN s.may_load THEN 'load' ELSE 'no load' END, s.may_open), ' | ' ORDER BY s.study, s.site), '')
	FROM trialvault.my_sites s
$$;
CREATE FUNCTION tv06.roles_seen() RETURNS text LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
	SELECT coalesce(string_agg(format('%s/%s:%s', tv06.tag(r.study), coalesce(r.site, '*'), r.study_role), ' '
		ORDER BY r.site NULLS FIRST, r.study_role), '')
	FROM trialvault.my_roles r
$$;
CREATE FUNCTION tv06.log_seen() RETURNS text LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
	SELECT coalesce(string_agg(format('%s:%s:%s', coalesce(d.name, '#' || l.doc_id), replace(l.requester::text, 'tv06_', ''),
		l.reason), ' ' ORDER BY l.log_id), '')
	FROM trialvault.my_decryption_log l LEFT JOIN tv06.docs d ON d.doc_id = l.doc_id
$$;
CREATE FUNCTION tv06.audit_seen() RETURNS bigint[] LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
	AS $$ SELECT ARRAY(SELECT event_id FROM trialvault.audit_trail ORDER BY event_id) $$;
CREATE FUNCTION tv06.audit_kinds_seen() RETURNS text LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
	AS $$ SELECT coalesce(string_agg(DISTINCT event, ' ' ORDER BY event), '') FROM trialvault.audit_trail $$;
-- The reference: a study's audit events and decryption-log rows in the base
-- tables (read as the superuser who owns these helpers).  audit_base is
-- VOLATILE so that, as an expected value in a table below, it reads the
-- events the table's earlier rows wrote (a STABLE function would read with
-- the snapshot the whole query started with).
CREATE FUNCTION tv06.audit_base(p_study text) RETURNS bigint[] LANGUAGE sql VOLATILE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$ SELECT ARRAY(SELECT event_id FROM trialvault.audit_events
					   WHERE study = p_study
						  -- security events (logins, refusals...) of the study's members
						  OR (study IS NULL AND trialvault._event_subject(event, actor, detail) IN
							  (SELECT member FROM trialvault.memberships m WHERE m.study = p_study))
					   ORDER BY event_id) $$;
CREATE FUNCTION tv06.log_base(p_study text) RETURNS bigint[] LANGUAGE sql STABLE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$ SELECT ARRAY(SELECT log_id FROM trialvault.decryption_log WHERE study = p_study ORDER BY log_id) $$;

-- The number of rows of a relation, or the error reading it gives.
CREATE FUNCTION tv06.rows(p_rel text) RETURNS text LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	n bigint;
BEGIN
	EXECUTE format('SELECT count(*) FROM %s', p_rel) INTO n;
	RETURN n::text;
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ' ' || SQLERRM;
END
$$;
-- All five views at once: "my_documents:N my_sites:N ...".
CREATE FUNCTION tv06.view_counts() RETURNS text LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	v text;
	r text[] := '{}';
BEGIN
	FOREACH v IN ARRAY ARRAY['my_documents', 'my_sites', 'my_roles', 'my_decryption_log', 'audit_trail'] LOOP
		r := r || (v || ':' || tv06.rows('trialvault.' || v));
	END LOOP;
	RETURN array_to_string(r, ' ');
END
$$;
CREATE FUNCTION tv06.no_rows() RETURNS text LANGUAGE sql IMMUTABLE
	AS $$ SELECT 'my_documents:0 my_sites:0 my_roles:0 my_decryption_log:0 audit_trail:0'::text $$;

-- The error a statement raises, as "SQLSTATE message / hint" (or "no error").
CREATE FUNCTION tv06.err(p_sql text) RETURNS text LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	st text;
	msg text;
	hnt text;
BEGIN
	EXECUTE p_sql;
	RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, hnt = PG_EXCEPTION_HINT;
	RETURN format('%s %s / %s', st, msg, hnt);
END
$$;
-- The refusal open_document gives when the study is not open in the session.
CREATE FUNCTION tv06.not_open(p_name text) RETURNS text LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
	SELECT format('42501 permission denied to open document %s / Call trialvault.open_study(''%s'') first. The attempt is recorded in the decryption log (reason "study_not_open").',
		d.doc_id, d.study)
	FROM tv06.docs d WHERE d.name = p_name
$$;

-- Every way into a relation of schema trialvault other than its views:
-- SELECT, INSERT, UPDATE, DELETE, TRUNCATE, COPY TO and COPY FROM a server
-- file.  Returns '' when each is refused with 42501 "permission denied for
-- ...", else what happened instead.
CREATE FUNCTION tv06.direct(p_rel regclass) RETURNS text LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	col name;
	kind "char";
	ops text[];
	sqls text[];
	bad text[] := '{}';
	st text;
	msg text;
BEGIN
	SELECT a.attname INTO col FROM pg_attribute a
		WHERE a.attrelid = p_rel AND a.attnum > 0 AND NOT a.attisdropped AND a.attidentity <> 'a' AND a.attgenerated = ''
		ORDER BY a.attnum LIMIT 1;
	SELECT c.relkind INTO kind FROM pg_class c WHERE c.oid = p_rel;
	IF kind = 'v' THEN
		ops := ARRAY['SELECT', 'COPY TO'];
		sqls := ARRAY[format('SELECT * FROM %s LIMIT 1', p_rel),
					  format('COPY (SELECT * FROM %s) TO %L', p_rel, '/dev/null')];
	ELSE
		ops := ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'COPY TO', 'COPY FROM'];
		sqls := ARRAY[format('SELECT * FROM %s LIMIT 1', p_rel),
					  format('INSERT INTO %s DEFAULT VALUES', p_rel),
					  format('UPDATE %s SET %I = %I', p_rel, col, col),
					  format('DELETE FROM %s', p_rel),
					  format('TRUNCATE %s', p_rel),
					  format('COPY %s TO %L', p_rel, '/dev/null'),
					  format('COPY %s FROM %L', p_rel, '/dev/null')];
	END IF;
	FOR i IN 1 .. array_length(ops, 1) LOOP
		BEGIN
			EXECUTE sqls[i];
			bad := bad || format('%s allowed', ops[i]);
		EXCEPTION WHEN OTHERS THEN
			GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
			IF st <> '42501' OR msg NOT LIKE 'permission denied for %' THEN
				bad := bad || format('%s: %s %s', ops[i], st, msg);
			END IF;
		END;
	END LOOP;
	RETURN array_to_string(bad, '; ');
END
$$;
-- The same for every sequence of schema trialvault (SELECT, nextval, setval).
CREATE FUNCTION tv06.direct_seqs() RETURNS text LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	s regclass;
	q text;
	n int := 0;
	bad text[] := '{}';
	st text;
	msg text;
BEGIN
	FOR s IN SELECT c.oid FROM pg_class c WHERE c.relnamespace = 'trialvault'::regnamespace AND c.relkind = 'S' LOOP
		n := n + 1;
		FOREACH q IN ARRAY ARRAY[format('SELECT * FROM %s', s), format('SELECT nextval(%L)', s),
								 format('SELECT setval(%L, 1000000)', s)] LOOP
			BEGIN
				EXECUTE q;
				bad := bad || format('%s allowed', q);
			EXCEPTION WHEN OTHERS THEN
				GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
				IF st <> '42501' THEN
					bad := bad || format('%s: %s %s', q, st, msg);
				END IF;
			END;
		END LOOP;
	END LOOP;
	IF n = 0 THEN
		RETURN 'no sequences found';
	END IF;
	RETURN array_to_string(bad, '; ');
END
$$;
-- The same for every internal function (name starting with "_") except the
-- ones meant to be callable (_session_scope, _session_study, _may_open,
-- _session_roles and _session_sites: what the views ask, granted to
-- trialvault_user; _require_args and _current_schema: argument checks;
-- _event_subject: a pure function of an audit row that audit_trail calls),
-- each called with NULL arguments (as sub-selects: a strict function called
-- with constant NULLs is folded away by the planner, permission unchecked).
CREATE FUNCTION tv06.direct_funcs() RETURNS text LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	f record;
	n int := 0;
	bad text[] := '{}';
	st text;
	msg text;
BEGIN
	FOR f IN SELECT p.proname,
					(SELECT string_agg(format('(SELECT NULL::%s)', format_type(t.oid, NULL)), ', ' ORDER BY a.ord)
					 FROM unnest(p.proargtypes::oid[]) WITH ORDINALITY a(typ, ord) JOIN pg_type t ON t.oid = a.typ) AS args
			 FROM pg_proc p
			 WHERE p.pronamespace = 'trialvault'::regnamespace AND p.proname LIKE '\_%'
			   AND p.proname NOT IN ('_session_scope', '_session_study', '_may_open', '_session_roles',
									 '_session_sites', '_require_args', '_current_schema', '_event_subject')
			 ORDER BY 1 LOOP
		n := n + 1;
		BEGIN
			EXECUTE format('SELECT trialvault.%I(%s)', f.proname, coalesce(f.args, ''));
			bad := bad || format('%s allowed', f.proname);
		EXCEPTION WHEN OTHERS THEN
			GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
			IF st <> '42501' OR msg NOT LIKE 'permission denied for function %' THEN
				bad := bad || format('%s: %s %s', f.proname, st, msg);
			END IF;
		END;
	END LOOP;
	IF n < 15 THEN
		RETURN format('only %s internal functions found', n);
	END IF;
	RETURN array_to_string(bad, '; ');
END
$$;

-- What a leaky function recorded in a capture table, for one prefix, and the
-- reference: what the rows the user may see would give.
CREATE FUNCTION tv06.captured(p_table text, p_prefix text) RETURNS text[] LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	r text[];
BEGIN
	EXECUTE format('SELECT coalesce(array_agg(DISTINCT v ORDER BY v), ''{}'') FROM %s WHERE v LIKE $1', p_table)
		INTO r USING p_prefix || ' %';
	RETURN r;
END
$$;
CREATE FUNCTION tv06.doc_values(p_names text[]) RETURNS text[] LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
	SELECT coalesce(array_agg(DISTINCT v ORDER BY v), '{}') FROM (
		SELECT unnest(ARRAY['doc ' || d.doc_id, 'site ' || d.site, 'meta ' || d.metadata::text]) AS v
		FROM trialvault.documents d JOIN tv06.docs t ON t.doc_id = d.doc_id
		WHERE t.name = ANY (p_names)) x
$$;
CREATE FUNCTION tv06.log_values(p_study text, p_sites text[]) RETURNS text[] LANGUAGE sql STABLE
	SET search_path = pg_catalog, pg_temp AS $$
	SELECT coalesce(array_agg(DISTINCT 'log ' || l.log_id || ' ' || l.requester ORDER BY 'log ' || l.log_id || ' ' || l.requester), '{}')
	FROM trialvault.decryption_log l WHERE l.study = p_study AND l.site = ANY (p_sites)
$$;
CREATE FUNCTION tv06.event_values(p_study text) RETURNS text[] LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
	SELECT coalesce(array_agg(DISTINCT 'event ' || e.event_id || ' ' || e.study ORDER BY 'event ' || e.event_id || ' ' || e.study), '{}')
	FROM trialvault.audit_events e WHERE e.study = p_study
$$;

-- What the search_path hijack section recorded.
CREATE FUNCTION tv06.hij_get(p_key text) RETURNS text LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
	AS $$ SELECT coalesce(string_agg(v, ' ' ORDER BY v), '') FROM tv06.hij WHERE k = p_key $$;
CREATE FUNCTION tv06.hij_docs(p_key text) RETURNS text LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
	AS $$ SELECT tv06.names(ARRAY(SELECT v::bigint FROM tv06.hij WHERE k = p_key)) $$;

-- The relations a secured view reads.
CREATE FUNCTION tv06.view_reads(p_view regclass) RETURNS text LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
	SELECT coalesce(string_agg(DISTINCT d.refobjid::regclass::text, ' '), '')
	FROM pg_rewrite r JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
	WHERE r.ev_class = p_view AND d.refclassid = 'pg_class'::regclass AND d.refobjid <> p_view
	  AND d.deptype = 'n'
$$;
CREATE FUNCTION tv06.cols(p_rel regclass, p_except name[] DEFAULT '{}') RETURNS text LANGUAGE sql STABLE
	SET search_path = pg_catalog, pg_temp AS $$
	SELECT string_agg(a.attname, ' ' ORDER BY a.attnum) FROM pg_attribute a
	WHERE a.attrelid = p_rel AND a.attnum > 0 AND NOT a.attisdropped AND NOT (a.attname = ANY (p_except))
$$;

-- Runs p_sql as p_role (SET ROLE for that one statement, then back to the
-- role that was current) and returns the first column of its first row as
-- text (bytea as '\x...'), or the error as tv06.err() reports it.  run_as
-- runs it the same way but lets the error through; sql_as gives the
-- statement that calls run_as, for lives_ok and throws_ok (whose
-- subtransaction, rolled back on an error, also undoes the SET ROLE).
CREATE FUNCTION tv06.as_role(p_role text, p_sql text) RETURNS text LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	prev text := current_setting('role');
	r text;
	st text;
	msg text;
	hnt text;
BEGIN
	PERFORM set_config('role', p_role, false);
	BEGIN
		EXECUTE p_sql INTO r;
	EXCEPTION WHEN OTHERS THEN
		GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, hnt = PG_EXCEPTION_HINT;
		r := format('%s %s / %s', st, msg, hnt);
	END;
	PERFORM set_config('role', prev, false);
	RETURN r;
END
$$;
CREATE FUNCTION tv06.run_as(p_role text, p_sql text) RETURNS void LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	prev text := current_setting('role');
BEGIN
	PERFORM set_config('role', p_role, false);
	EXECUTE p_sql;
	PERFORM set_config('role', prev, false);
END
$$;
CREATE FUNCTION tv06.sql_as(p_role text, p_sql text) RETURNS text LANGUAGE sql IMMUTABLE
	SET search_path = pg_catalog, pg_temp
	AS $$ SELECT format('SELECT tv06.run_as(%L, %L)', p_role, p_sql) $$;

-- What p_role sees in a view, as the *_seen() helpers above give it
-- ('audit_trail': the event ids as an array; 'audit_trail kinds': the
-- distinct event kinds), or 'current_study': trialvault.current_study().
-- For the DBA's secured view of the last sections: 'tv06_dba.ecrf_v', its
-- subjects; 'tv06_dba.ecrf_v rows', its row count or the error (tv06.rows).
CREATE FUNCTION tv06.seen(p_role text, p_view text) RETURNS text LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
	SELECT tv06.as_role(p_role, 'SELECT ' || CASE p_view
		WHEN 'current_study' THEN 'trialvault.current_study()'
		WHEN 'my_documents' THEN 'tv06.docs_seen()'
		WHEN 'my_sites' THEN 'tv06.sites_seen()'
		WHEN 'my_roles' THEN 'tv06.roles_seen()'
		WHEN 'my_decryption_log' THEN 'tv06.log_seen()'
		WHEN 'audit_trail' THEN 'tv06.audit_seen()::text'
		WHEN 'audit_trail kinds' THEN 'tv06.audit_kinds_seen()'
		WHEN 'tv06_dba.ecrf_v' THEN $q$(SELECT string_agg(subject, ' ' ORDER BY subject) FROM tv06_dba.ecrf_v)$q$
		WHEN 'tv06_dba.ecrf_v rows' THEN $q$tv06.rows('tv06_dba.ecrf_v')$q$
	END)
$$;
-- One row of a table of what roles see, as one test: 'open_study' opens the
-- study p_expected as p_role (lives_ok); any other p_view: what p_role sees
-- there (tv06.seen) is p_expected.
CREATE FUNCTION tv06.check(p_role text, p_view text, p_expected text, p_description text) RETURNS text
	LANGUAGE sql AS $$
	SELECT CASE p_view
		WHEN 'open_study' THEN lives_ok(tv06.sql_as(p_role, format('SELECT trialvault.open_study(%L)', p_expected)), p_description)
		ELSE is(tv06.seen(p_role, p_view), p_expected, p_description)
	END
$$;

-- Login roles (rolled back at the end).
CREATE ROLE tv06_admin LOGIN IN ROLE trialvault_admin;
CREATE ROLE tv06_outsider LOGIN;
CREATE ROLE tv06_staff_a LOGIN;
CREATE ROLE tv06_inv_a LOGIN;
CREATE ROLE tv06_inv_b LOGIN;
CREATE ROLE tv06_mon LOGIN;
CREATE ROLE tv06_mon_none LOGIN;
CREATE ROLE tv06_mon_exp LOGIN;
CREATE ROLE tv06_safety LOGIN;
CREATE ROLE tv06_sponsor LOGIN;
CREATE ROLE tv06_auditor LOGIN;
CREATE ROLE tv06_both LOGIN;
CREATE ROLE tv06_s2inv LOGIN;
CREATE ROLE tv06_s2aud LOGIN;
CREATE ROLE tv06_revoked LOGIN;
CREATE ROLE tv06_dba LOGIN;
CREATE ROLE tv06_dba2 LOGIN;

-- ---------------------------------------------------------------------
-- Two studies, each with sites A and B; roles; documents
-- ---------------------------------------------------------------------
SET ROLE tv06_admin;
SELECT lives_ok($$SELECT trialvault.create_study(tv06.s1(), 'Views, study one'), trialvault.create_study(tv06.s2(), 'Views, study two')$$,
	'two studies created');
SELECT trialvault.require_signatures(s, false) FROM (VALUES (tv06.s1()), (tv06.s2())) v(s);
SELECT lives_ok($$SELECT trialvault.add_site(s, x, 'Site ' || x) FROM (VALUES (tv06.s1(), 'A'), (tv06.s1(), 'B'),
		(tv06.s2(), 'A'), (tv06.s2(), 'B')) v(s, x)$$,
	'sites A and B in each study');
SELECT lives_ok($$SELECT trialvault.grant_role(m, s, x, r) FROM (VALUES
		('tv06_staff_a', tv06.s1(), 'A', 'site_staff'), ('tv06_inv_a', tv06.s1(), 'A', 'investigator'),
		('tv06_inv_b', tv06.s1(), 'B', 'investigator'), ('tv06_mon', tv06.s1(), NULL, 'monitor'),
		('tv06_mon_none', tv06.s1(), NULL, 'monitor'), ('tv06_mon_exp', tv06.s1(), NULL, 'monitor'),
		('tv06_safety', tv06.s1(), NULL, 'safety'), ('tv06_sponsor', tv06.s1(), NULL, 'sponsor'),
		('tv06_auditor', tv06.s1(), NULL, 'auditor'), ('tv06_both', tv06.s1(), 'B', 'site_staff'),
		('tv06_both', tv06.s2(), 'A', 'site_staff'), ('tv06_s2inv', tv06.s2(), 'B', 'investigator'),
		('tv06_s2aud', tv06.s2(), NULL, 'auditor'), ('tv06_revoked', tv06.s1(), 'A', 'site_staff')) v(m, s, x, r)$$,
	'study roles granted');
RESET ROLE;
-- Monitors step up (a second factor) before open_document shows them PHI.
\ir include/step_up.sql
SELECT pg_temp.step_up_as(m) FROM unnest(ARRAY['tv06_mon', 'tv06_mon_none', 'tv06_mon_exp']::name[]) m;
SELECT is((SELECT array_agg(r ORDER BY r) FROM unnest(ARRAY['tv06_staff_a', 'tv06_inv_a', 'tv06_inv_b', 'tv06_mon',
		'tv06_mon_none', 'tv06_mon_exp', 'tv06_safety', 'tv06_sponsor', 'tv06_auditor', 'tv06_both', 'tv06_s2inv',
		'tv06_s2aud', 'tv06_revoked', 'tv06_outsider']) r WHERE pg_has_role(r, 'trialvault_user', 'MEMBER')),
	ARRAY['tv06_auditor', 'tv06_both', 'tv06_inv_a', 'tv06_inv_b', 'tv06_mon', 'tv06_mon_exp', 'tv06_mon_none',
		'tv06_revoked', 'tv06_s2aud', 'tv06_s2inv', 'tv06_safety', 'tv06_sponsor', 'tv06_staff_a'],
	'grant_role put every member (and not the outsider) into trialvault_user');

SET ROLE tv06_staff_a;
SELECT ok(tv06.load('a1', tv06.s1(), 'A', 'source', true) > 0 AND tv06.load('a2', tv06.s1(), 'A', 'protocol', false) > 0,
	'site staff load a1 (PHI) and a2 (no PHI) at study 1, site A');
SET ROLE tv06_inv_a;
SELECT ok(tv06.load('a3', tv06.s1(), 'A', 'sae', true) > 0, 'the investigator of site A loads a3 (sae)');
SET ROLE tv06_inv_b;
SELECT ok(tv06.load('b1', tv06.s1(), 'B', 'source', true) > 0 AND tv06.load('b2', tv06.s1(), 'B', 'sae', true) > 0,
	'the investigator of site B loads b1 and b2');
SET ROLE tv06_both;
SELECT ok(tv06.load('x1', tv06.s2(), 'A', 'source', true) > 0, 'a member of both studies loads x1 at study 2, site A');
SET ROLE tv06_s2inv;
SELECT ok(tv06.load('y1', tv06.s2(), 'B', 'protocol', false) > 0, 'the investigator of study 2, site B loads y1');
SET ROLE tv06_inv_a;
SELECT lives_ok($$SELECT trialvault.authorize_monitor('tv06_mon', tv06.s1(), 'A', clock_timestamp() + interval '1 hour')$$,
	'tv06_mon is authorized for study 1, site A');
RESET ROLE;

-- ---------------------------------------------------------------------
-- No study open (a fresh session): every view empty, open_document refused
-- ---------------------------------------------------------------------
SET ROLE tv06_staff_a;
SELECT is(trialvault.current_study(), NULL, 'fresh session: current_study() is NULL');
SELECT is(tv06.view_counts(), tv06.no_rows(), 'fresh session, site staff: every view is empty, no error');
SELECT is(tv06.err(format('SELECT trialvault.open_document(%s)', tv06.doc('a1'))), tv06.not_open('a1'),
	'fresh session: open_document refuses the loader (42501) with a hint to call open_study');
SET ROLE tv06_auditor;
SELECT is(tv06.view_counts(), tv06.no_rows(), 'fresh session, auditor: every view is empty (audit_trail too)');
SET ROLE tv06_sponsor;
SELECT is(tv06.view_counts(), tv06.no_rows(), 'fresh session, sponsor: every view is empty');
RESET ROLE;
SELECT is(tv06.view_counts(), tv06.no_rows(), 'the superuser, who holds no study role, sees nothing either');

-- ---------------------------------------------------------------------
-- open_study: members only, known studies, no NULL
-- ---------------------------------------------------------------------
-- Refused calls: the role, the call, the error.
SELECT throws_ok(tv06.sql_as(c.role, c.sql), c.errcode, c.message, c.description) FROM (VALUES
	('tv06_outsider', $$SELECT trialvault.open_study(tv06.s1())$$, '42501',
		format('permission denied to open study "%s"', tv06.s1()), 'open_study refused to a role outside the study'),
	('tv06_staff_a', $$SELECT trialvault.open_study(tv06.s2())$$, '42501',
		format('permission denied to open study "%s"', tv06.s2()), 'open_study refused for a study the member holds no role in'),
	('tv06_staff_a', $$SELECT trialvault.open_study(tv06.s1() || '-nope')$$, '42704',
		format('study "%s-nope" does not exist', tv06.s1()), 'open_study of an unknown study: 42704'),
	('tv06_staff_a', $$SELECT trialvault.open_study(NULL)$$, '22004',
		'arguments of trialvault.open_study must not be NULL', 'open_study(NULL): 22004')
) c(role, sql, errcode, message, description);
SET ROLE tv06_staff_a;
SELECT is(trialvault.current_study(), NULL, 'after the refused calls no study is open');
SELECT lives_ok($$SELECT trialvault.open_study(tv06.s1())$$, 'site staff open study 1');
SELECT is(trialvault.current_study(), tv06.s1(), 'current_study() names it');
SELECT throws_ok($$SELECT trialvault.open_study(tv06.s2())$$, '42501', NULL,
	'opening a study of which one is no member is still refused while another is open');
SELECT is(trialvault.current_study(), tv06.s1(), 'a refused open_study leaves the open study as it was');

-- ---------------------------------------------------------------------
-- Decryption attempts, for the logs seen below (each requester opens
-- study 1 first; the session has one open study, whoever acts)
-- ---------------------------------------------------------------------
-- One test a row, in order: 'open_study' opens the study given as the role;
-- 'opens': open_document of the document named returns its content;
-- 'refused': it is refused (42501).
RESET ROLE;
SELECT CASE c.step
		WHEN 'open_study' THEN lives_ok(tv06.sql_as(c.role, format('SELECT trialvault.open_study(%L)', c.arg)), c.description)
		WHEN 'opens' THEN is(tv06.as_role(c.role, format('SELECT trialvault.open_document(%s)', tv06.doc(c.arg))),
			tv06.body(c.arg)::text, c.description)
		WHEN 'refused' THEN alike(tv06.as_role(c.role, format('SELECT trialvault.open_document(%s)', tv06.doc(c.arg))),
			'42501 permission denied to open document %', c.description)
	END FROM (VALUES
	('tv06_staff_a', 'opens', 'a1', 'site staff open a1'),
	('tv06_staff_a', 'refused', 'b1', 'site staff of A are refused b1 (site B)'),
	('tv06_mon', 'open_study', tv06.s1(), 'the monitor opens study 1'),
	('tv06_mon', 'opens', 'a1', 'the monitor authorized for A opens a1'),
	('tv06_mon', 'refused', 'b1', 'the monitor is refused b1 (not authorized for B)'),
	('tv06_mon_none', 'open_study', tv06.s1(), 'the monitor without authorization opens study 1'),
	('tv06_mon_none', 'refused', 'a1', 'the monitor without authorization is refused a1'),
	('tv06_inv_b', 'open_study', tv06.s1(), 'the investigator of B opens study 1'),
	('tv06_inv_b', 'opens', 'b2', 'the investigator of B opens b2'),
	('tv06_sponsor', 'open_study', tv06.s1(), 'the sponsor opens study 1'),
	('tv06_sponsor', 'opens', 'a2', 'the sponsor opens a2 (no PHI)'),
	('tv06_outsider', 'refused', 'a1', 'the outsider is refused a1'),
	('tv06_s2inv', 'open_study', tv06.s2(), 'the investigator of study 2, site B opens study 2'),
	('tv06_s2inv', 'opens', 'y1', 'and opens y1')
) c(role, step, arg, description);

-- ---------------------------------------------------------------------
-- A member of both studies sees the open one only; opening the other
-- switches
-- ---------------------------------------------------------------------
-- What the member of both sees, one test a row (tv06.check): 'open_study'
-- opens the study given, the other rows give a view and what it shows.
SELECT tv06.check(role, view, expected, description) FROM (VALUES
	('tv06_both', 'open_study', tv06.s1(), 'member of both: opens study 1'),
	('tv06_both', 'current_study', tv06.s1(), 'member of both: current_study() is study 1'),
	('tv06_both', 'my_documents', 'b1 b2', 'member of both, study 1 open: my_documents shows study 1, site B only'),
	('tv06_both', 'my_sites', 'S1/B:site_staff:load:all documents', 'member of both, study 1 open: my_sites'),
	('tv06_both', 'my_roles', 'S1/B:site_staff', 'member of both, study 1 open: my_roles'),
	('tv06_both', 'open_study', tv06.s2(), 'member of both: opens study 2'),
	('tv06_both', 'current_study', tv06.s2(), 'member of both: current_study() is now study 2'),
	('tv06_both', 'my_documents', 'x1', 'member of both, study 2 open: my_documents shows study 2, site A only'),
	('tv06_both', 'my_sites', 'S2/A:site_staff:load:all documents', 'member of both, study 2 open: my_sites'),
	('tv06_both', 'my_roles', 'S2/A:site_staff', 'member of both, study 2 open: my_roles')
) c(role, view, expected, description);
SET ROLE tv06_both;
SELECT is(trialvault.open_document(tv06.doc('x1')), tv06.body('x1'), 'member of both, study 2 open: opens x1');
SELECT is(tv06.err(format('SELECT trialvault.open_document(%s)', tv06.doc('b1'))), tv06.not_open('b1'),
	'member of both, study 2 open: b1 of study 1 is refused with a hint to open study 1');
SELECT lives_ok($$SELECT trialvault.open_study(tv06.s1())$$, 'member of both: opens study 1 again');
SELECT is(tv06.docs_seen(), 'b1 b2', 'member of both: back to study 1''s rows');

-- ---------------------------------------------------------------------
-- Each study role against each view (study 1 open; study 2 for the last
-- two roles)
-- ---------------------------------------------------------------------
-- One test a row, in order (tv06.check): each role opens its study, then
-- what it sees in each view, written out ('audit_trail' as the array of
-- event ids; the auditors' trails are compared with the base table).
RESET ROLE;
SELECT tv06.check(role, view, expected, description) FROM (VALUES
	('tv06_staff_a', 'open_study', tv06.s1(), 'site staff A: open study 1'),
	('tv06_staff_a', 'my_documents', 'a1 a2 a3', 'site staff A: my_documents = the documents of site A'),
	('tv06_staff_a', 'my_sites', 'S1/A:site_staff:load:all documents', 'site staff A: my_sites'),
	('tv06_staff_a', 'my_roles', 'S1/A:site_staff', 'site staff A: my_roles'),
	('tv06_staff_a', 'my_decryption_log', '', 'site staff A: my_decryption_log is empty (not theirs to read)'),
	('tv06_staff_a', 'audit_trail', '{}', 'site staff A: audit_trail is empty'),

	('tv06_inv_a', 'open_study', tv06.s1(), 'investigator A: open study 1'),
	('tv06_inv_a', 'my_documents', 'a1 a2 a3', 'investigator A: my_documents = the documents of site A'),
	('tv06_inv_a', 'my_sites', 'S1/A:investigator:load:all documents', 'investigator A: my_sites'),
	('tv06_inv_a', 'my_roles', 'S1/A:investigator', 'investigator A: my_roles'),
	('tv06_inv_a', 'my_decryption_log',
		'a1:staff_a:study_not_open a1:staff_a:loader a1:mon:monitor a1:mon_none:monitor_not_authorized a2:sponsor:no_phi a1:outsider:not_a_member',
		'investigator A: my_decryption_log = every attempt at site A of study 1, by anyone'),
	('tv06_inv_a', 'audit_trail', '{}', 'investigator A: audit_trail is empty'),

	('tv06_inv_b', 'open_study', tv06.s1(), 'investigator B: open study 1'),
	('tv06_inv_b', 'my_documents', 'b1 b2', 'investigator B: my_documents = the documents of site B'),
	('tv06_inv_b', 'my_sites', 'S1/B:investigator:load:all documents', 'investigator B: my_sites'),
	('tv06_inv_b', 'my_roles', 'S1/B:investigator', 'investigator B: my_roles'),
	('tv06_inv_b', 'my_decryption_log',
		'b1:staff_a:other_site b1:mon:monitor_not_authorized b2:inv_b:loader b1:both:study_not_open',
		'investigator B: my_decryption_log = every attempt at site B of study 1'),
	('tv06_inv_b', 'audit_trail', '{}', 'investigator B: audit_trail is empty'),

	('tv06_mon', 'open_study', tv06.s1(), 'monitor (authorized A): open study 1'),
	('tv06_mon', 'my_documents', 'a1 a2 a3', 'monitor (authorized A): my_documents = site A'),
	('tv06_mon', 'my_sites', 'S1/A:monitor:no load:all documents', 'monitor (authorized A): my_sites = site A'),
	('tv06_mon', 'my_roles', 'S1/*:monitor', 'monitor (authorized A): my_roles'),
	('tv06_mon', 'my_decryption_log', 'a1:mon:monitor b1:mon:monitor_not_authorized',
		'monitor (authorized A): my_decryption_log = their own attempts, at any site'),
	('tv06_mon', 'audit_trail', '{}', 'monitor (authorized A): audit_trail is empty'),

	('tv06_mon_none', 'open_study', tv06.s1(), 'monitor (no authorization): open study 1'),
	('tv06_mon_none', 'my_documents', '', 'monitor (no authorization): my_documents is empty'),
	('tv06_mon_none', 'my_sites', '', 'monitor (no authorization): my_sites is empty'),
	('tv06_mon_none', 'my_roles', 'S1/*:monitor', 'monitor (no authorization): my_roles still shows the role'),
	('tv06_mon_none', 'my_decryption_log', 'a1:mon_none:monitor_not_authorized',
		'monitor (no authorization): my_decryption_log = their own attempt'),
	('tv06_mon_none', 'audit_trail', '{}', 'monitor (no authorization): audit_trail is empty'),

	('tv06_safety', 'open_study', tv06.s1(), 'safety: open study 1'),
	('tv06_safety', 'my_documents', 'a1 a2 a3 b1 b2', 'safety: my_documents = every document of study 1'),
	('tv06_safety', 'my_sites',
		'S1/A:safety:no load:sae documents and documents without PHI | S1/B:safety:no load:sae documents and documents without PHI',
		'safety: my_sites = both sites'),
	('tv06_safety', 'my_roles', 'S1/*:safety', 'safety: my_roles'),
	('tv06_safety', 'my_decryption_log', '', 'safety: my_decryption_log is empty'),
	('tv06_safety', 'audit_trail', '{}', 'safety: audit_trail is empty'),

	('tv06_sponsor', 'open_study', tv06.s1(), 'sponsor: open study 1'),
	('tv06_sponsor', 'my_documents', 'a1 a2 a3 b1 b2', 'sponsor: my_documents = every document of study 1 (metadata only)'),
	('tv06_sponsor', 'my_sites',
		'S1/A:sponsor:no load:documents without PHI | S1/B:sponsor:no load:documents without PHI',
		'sponsor: my_sites = both sites'),
	('tv06_sponsor', 'my_roles', 'S1/*:sponsor', 'sponsor: my_roles'),
	('tv06_sponsor', 'my_decryption_log', '', 'sponsor: my_decryption_log is empty (not even their own attempt)'),
	('tv06_sponsor', 'audit_trail', '{}', 'sponsor: audit_trail is empty'),

	('tv06_auditor', 'open_study', tv06.s1(), 'auditor: open study 1'),
	('tv06_auditor', 'my_documents', 'a1 a2 a3 b1 b2', 'auditor: my_documents = every document of study 1 (metadata only)'),
	('tv06_auditor', 'my_sites',
		'S1/A:auditor:no load:documents without PHI | S1/B:auditor:no load:documents without PHI',
		'auditor: my_sites = both sites'),
	('tv06_auditor', 'my_roles', 'S1/*:auditor', 'auditor: my_roles'),
	('tv06_auditor', 'my_decryption_log',
		'a1:staff_a:study_not_open a1:staff_a:loader b1:staff_a:other_site a1:mon:monitor b1:mon:monitor_not_authorized a1:mon_none:monitor_not_authorized b2:inv_b:loader a2:sponsor:no_phi a1:outsider:not_a_member b1:both:study_not_open',
		'auditor: my_decryption_log = every attempt in study 1, nothing of study 2'),
	('tv06_auditor', 'audit_trail', tv06.audit_base(tv06.s1())::text, 'auditor: audit_trail = every audit event of study 1'),
	('tv06_auditor', 'audit_trail kinds',
		'data_key_created document_loaded monitor_authorized role_granted second_factor_confirmed second_factor_enrolled second_factor_step_up signature_policy_set site_added study_created study_opened',
		'auditor: the trail holds the study, site, role, key, document, authorization and open events, and the members'' second-factor events'),

	('tv06_s2inv', 'open_study', tv06.s2(), 'investigator of study 2, site B: open study 2'),
	('tv06_s2inv', 'my_documents', 'y1', 'investigator of study 2, site B: my_documents = y1 only (not study 1''s site B)'),
	('tv06_s2inv', 'my_sites', 'S2/B:investigator:load:all documents', 'investigator of study 2, site B: my_sites'),
	('tv06_s2inv', 'my_decryption_log', 'y1:s2inv:loader',
		'investigator of study 2, site B: my_decryption_log = site B of study 2 only'),

	('tv06_s2aud', 'open_study', tv06.s2(), 'auditor of study 2: open study 2'),
	('tv06_s2aud', 'my_documents', 'x1 y1', 'auditor of study 2: my_documents = study 2 only'),
	('tv06_s2aud', 'my_decryption_log', 'y1:s2inv:loader x1:both:loader', 'auditor of study 2: my_decryption_log = study 2 only'),
	('tv06_s2aud', 'audit_trail', tv06.audit_base(tv06.s2())::text, 'auditor of study 2: audit_trail = the events of study 2')
) c(role, view, expected, description);
SET ROLE tv06_s2aud;
SELECT ok(NOT (tv06.audit_seen() && tv06.audit_base(tv06.s1())), 'auditor of study 2: no event of study 1 in the trail');

-- Members of study 1 only cannot open study 2.
SELECT throws_ok(tv06.sql_as(r, format('SELECT trialvault.open_study(%L)', tv06.s2())), '42501',
		format('permission denied to open study "%s"', tv06.s2()), format('%s cannot open study 2', r))
	FROM unnest(ARRAY['tv06_staff_a', 'tv06_inv_a', 'tv06_mon', 'tv06_safety', 'tv06_sponsor', 'tv06_auditor']) r;
SET ROLE tv06_outsider;
SELECT is(tv06.view_counts(),
	'my_documents:42501 permission denied for view my_documents my_sites:42501 permission denied for view my_sites my_roles:42501 permission denied for view my_roles my_decryption_log:42501 permission denied for view my_decryption_log audit_trail:42501 permission denied for view audit_trail',
	'outsider (not in trialvault_user): every view is refused');
RESET ROLE;

-- ---------------------------------------------------------------------
-- No direct access: only the views and functions
-- ---------------------------------------------------------------------
SELECT is(ARRAY(SELECT c.relname::text FROM pg_class c WHERE c.relnamespace = 'trialvault'::regnamespace
		AND c.relkind IN ('r', 'p') ORDER BY 1),
	ARRAY['audit_events', 'catalog_seal', 'decryption_log', 'documents', 'invitations', 'memberships', 'metadata_defaults', 'metadata_namespaces',
		'metadata_schemas', 'monitor_authorizations', 'password_history', 'phi_rules', 'printed_names', 'second_factor_requirements',
		'second_factors', 'server_keys', 'signature_policies', 'signatures', 'signing_key_revocations', 'signing_keys', 'sites', 'studies', 'study_keys'],
	'the base tables of schema trialvault are the twenty-three tested here');
SELECT is(ARRAY(SELECT format('%s:%s', c.relname, p.priv) FROM pg_class c
		CROSS JOIN unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER']) p(priv)
		WHERE c.relnamespace = 'trialvault'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
		  AND has_table_privilege('trialvault_user', c.oid, p.priv) ORDER BY 1),
	ARRAY['audit_trail:SELECT', 'my_decryption_log:SELECT', 'my_documents:SELECT', 'my_roles:SELECT', 'my_sites:SELECT',
		'protected_tables:SELECT', 'signer_keys:SELECT'],
	'trialvault_user (and PUBLIC) may only SELECT the five views (and the protected_tables catalogue and the public signer_keys register)');
GRANT pg_read_server_files, pg_write_server_files
	TO tv06_staff_a, tv06_inv_a, tv06_mon, tv06_safety, tv06_sponsor, tv06_auditor, tv06_outsider;

-- Per role, in order: a control COPY to a server file (lives_ok, so that a
-- refusal below is the table's, not the file's); then, through
-- tv06.direct(), every base table of trialvault and current_memberships;
-- every sequence (tv06.direct_seqs); every internal function
-- (tv06.direct_funcs): each way in refused, '' expected.  The columns give
-- the wording of the descriptions: the control's, the role as the table
-- checks name it, as the sequence and function checks name it, and what the
-- sequence check adds.
SELECT CASE s.what
		WHEN 'control' THEN lives_ok(tv06.sql_as(s.role, $$COPY (SELECT 1) TO '/dev/null'$$), 'control: ' || s.control)
		WHEN 'sequences' THEN is(tv06.as_role(s.role, 'SELECT tv06.direct_seqs()'), '',
			s.who || ': every sequence of trialvault refused' || s.seq_note)
		WHEN 'functions' THEN is(tv06.as_role(s.role, 'SELECT tv06.direct_funcs()'), '',
			s.who || ': every internal function of trialvault refused')
		ELSE is(tv06.as_role(s.role, format('SELECT tv06.direct(%L::regclass)', format('trialvault.%I', s.what))), '',
			format('%s: SELECT/INSERT/UPDATE/DELETE/TRUNCATE/COPY on trialvault.%s refused (42501)', s.who_tables, s.what))
	END
	-- The steps as a set-returning function in the select list: all of one
	-- role's steps, in this order, before the next role's.
	FROM (SELECT r.*, unnest(ARRAY['control',
			'studies', 'sites', 'memberships', 'monitor_authorizations', 'study_keys', 'documents', 'decryption_log',
			'audit_events', 'metadata_schemas', 'phi_rules', 'metadata_defaults', 'metadata_namespaces', 'catalog_seal',
			'signing_keys', 'signing_key_revocations', 'printed_names', 'server_keys', 'signatures',
			'signature_policies', 'password_history', 'second_factors', 'second_factor_requirements', 'invitations', 'current_memberships',
			'sequences', 'functions']) AS what
		FROM (VALUES
			('tv06_staff_a', 'site staff may COPY to a server file (so a refusal below is the table''s)',
				'site staff', 'site staff', ' (SELECT, nextval, setval)'),
			('tv06_inv_a', 'the investigator may COPY to a server file', 'investigator', 'investigator', ''),
			('tv06_mon', 'the monitor may COPY to a server file', 'monitor (authorized)', 'monitor', ''),
			('tv06_safety', 'safety may COPY to a server file', 'safety', 'safety', ''),
			('tv06_sponsor', 'the sponsor may COPY to a server file', 'sponsor', 'sponsor', ''),
			('tv06_auditor', 'the auditor may COPY to a server file', 'auditor', 'auditor', ''),
			('tv06_outsider', 'the outsider may COPY to a server file', 'outsider', 'outsider', '')
		) r(role, control, who_tables, who, seq_note)) s;

-- COPY to and from the client, as plain statements (see the header).
\set ON_ERROR_STOP 0
\set ON_ERROR_ROLLBACK on
\set VERBOSITY sqlstate
SET ROLE tv06_staff_a;
COPY trialvault.decryption_log TO STDOUT;
SELECT is(:'SQLSTATE'::text, '42501', 'site staff: COPY trialvault.decryption_log TO STDOUT refused');
COPY trialvault.decryption_log FROM STDIN;
\.
SELECT is(:'SQLSTATE'::text, '42501', 'site staff: COPY trialvault.decryption_log FROM STDIN refused');
COPY trialvault.study_keys TO STDOUT;
SELECT is(:'SQLSTATE'::text, '42501', 'site staff: COPY trialvault.study_keys TO STDOUT refused');
COPY trialvault.study_keys FROM STDIN;
\.
SELECT is(:'SQLSTATE'::text, '42501', 'site staff: COPY trialvault.study_keys FROM STDIN refused');
SET ROLE tv06_inv_a;
COPY trialvault.decryption_log TO STDOUT;
SELECT is(:'SQLSTATE'::text, '42501', 'investigator: COPY trialvault.decryption_log TO STDOUT refused');
COPY trialvault.decryption_log FROM STDIN;
\.
SELECT is(:'SQLSTATE'::text, '42501', 'investigator: COPY trialvault.decryption_log FROM STDIN refused');
COPY trialvault.study_keys TO STDOUT;
SELECT is(:'SQLSTATE'::text, '42501', 'investigator: COPY trialvault.study_keys TO STDOUT refused');
COPY trialvault.study_keys FROM STDIN;
\.
SELECT is(:'SQLSTATE'::text, '42501', 'investigator: COPY trialvault.study_keys FROM STDIN refused');
SET ROLE tv06_mon;
COPY trialvault.decryption_log TO STDOUT;
SELECT is(:'SQLSTATE'::text, '42501', 'monitor: COPY trialvault.decryption_log TO STDOUT refused');
COPY trialvault.decryption_log FROM STDIN;
\.
SELECT is(:'SQLSTATE'::text, '42501', 'monitor: COPY trialvault.decryption_log FROM STDIN refused');
COPY trialvault.study_keys TO STDOUT;
SELECT is(:'SQLSTATE'::text, '42501', 'monitor: COPY trialvault.study_keys TO STDOUT refused');
COPY trialvault.study_keys FROM STDIN;
\.
SELECT is(:'SQLSTATE'::text, '42501', 'monitor: COPY trialvault.study_keys FROM STDIN refused');
SET ROLE tv06_safety;
COPY trialvault.decryption_log TO STDOUT;
SELECT is(:'SQLSTATE'::text, '42501', 'safety: COPY trialvault.decryption_log TO STDOUT refused');
COPY trialvault.decryption_log FROM STDIN;
\.
SELECT is(:'SQLSTATE'::text, '42501', 'safety: COPY trialvault.decryption_log FROM STDIN refused');
COPY trialvault.study_keys TO STDOUT;
SELECT is(:'SQLSTATE'::text, '42501', 'safety: COPY trialvault.study_keys TO STDOUT refused');
COPY trialvault.study_keys FROM STDIN;
\.
SELECT is(:'SQLSTATE'::text, '42501', 'safety: COPY trialvault.study_keys FROM STDIN refused');
SET ROLE tv06_sponsor;
COPY trialvault.decryption_log TO STDOUT;
SELECT is(:'SQLSTATE'::text, '42501', 'sponsor: COPY trialvault.decryption_log TO STDOUT refused');
COPY trialvault.decryption_log FROM STDIN;
\.
SELECT is(:'SQLSTATE'::text, '42501', 'sponsor: COPY trialvault.decryption_log FROM STDIN refused');
COPY trialvault.study_keys TO STDOUT;
SELECT is(:'SQLSTATE'::text, '42501', 'sponsor: COPY trialvault.study_keys TO STDOUT refused');
COPY trialvault.study_keys FROM STDIN;
\.
SELECT is(:'SQLSTATE'::text, '42501', 'sponsor: COPY trialvault.study_keys FROM STDIN refused');
SET ROLE tv06_auditor;
COPY trialvault.decryption_log TO STDOUT;
SELECT is(:'SQLSTATE'::text, '42501', 'auditor: COPY trialvault.decryption_log TO STDOUT refused');
COPY trialvault.decryption_log FROM STDIN;
\.
SELECT is(:'SQLSTATE'::text, '42501', 'auditor: COPY trialvault.decryption_log FROM STDIN refused');
COPY trialvault.study_keys TO STDOUT;
SELECT is(:'SQLSTATE'::text, '42501', 'auditor: COPY trialvault.study_keys TO STDOUT refused');
COPY trialvault.study_keys FROM STDIN;
\.
SELECT is(:'SQLSTATE'::text, '42501', 'auditor: COPY trialvault.study_keys FROM STDIN refused');
SET ROLE tv06_outsider;
COPY trialvault.decryption_log TO STDOUT;
SELECT is(:'SQLSTATE'::text, '42501', 'outsider: COPY trialvault.decryption_log TO STDOUT refused');
COPY trialvault.decryption_log FROM STDIN;
\.
SELECT is(:'SQLSTATE'::text, '42501', 'outsider: COPY trialvault.decryption_log FROM STDIN refused');
COPY trialvault.study_keys TO STDOUT;
SELECT is(:'SQLSTATE'::text, '42501', 'outsider: COPY trialvault.study_keys TO STDOUT refused');
COPY trialvault.study_keys FROM STDIN;
\.
SELECT is(:'SQLSTATE'::text, '42501', 'outsider: COPY trialvault.study_keys FROM STDIN refused');
RESET ROLE;
\set VERBOSITY default
\set ON_ERROR_ROLLBACK off
\set ON_ERROR_STOP 1
SELECT is(current_user::text, 'postgres', 'the suite is still in its transaction, as the superuser');

-- ---------------------------------------------------------------------
-- Forged state: settings, RESET, SET ROLE
-- ---------------------------------------------------------------------
SET ROLE tv06_staff_a;
SELECT lives_ok($$SELECT trialvault.open_study(tv06.s1())$$, 'forgery: site staff A open study 1');
-- Settings under the reserved prefix, as site staff A: the statement, the
-- error.
SELECT throws_ok(c.sql, c.errcode, c.message, c.description) FROM (VALUES
	(format('SET trialvault.study = %L', tv06.s2()), '42602',
		'invalid configuration parameter name "trialvault.study"', 'SET trialvault.study is refused (reserved prefix)'),
	(format('SET trialvault.current_study = %L', tv06.s2()), '42602',
		'invalid configuration parameter name "trialvault.current_study"', 'SET trialvault.current_study is refused'),
	(format('SET LOCAL trialvault.open_study = %L', tv06.s2()), '42602',
		'invalid configuration parameter name "trialvault.open_study"', 'SET LOCAL trialvault.open_study is refused'),
	(format('SELECT set_config(%L, %L, false)', 'trialvault.x', tv06.s2()), '42602',
		'invalid configuration parameter name "trialvault.x"', 'set_config(''trialvault.x'', ...) is refused'),
	(format('SELECT set_config(%L, %L, true)', 'trialvault.study', tv06.s2()), '42602',
		'invalid configuration parameter name "trialvault.study"', 'set_config(''trialvault.study'', ..., true) is refused'),
	('RESET trialvault.study', '42602',
		'invalid configuration parameter name "trialvault.study"', 'RESET trialvault.study is refused'),
	(format('ALTER ROLE CURRENT_USER SET trialvault.study = %L', tv06.s2()), '42602',
		'invalid configuration parameter name "trialvault.study"', 'ALTER ROLE ... SET trialvault.study is refused'),
	('SHOW trialvault.study', '42704',
		'unrecognized configuration parameter "trialvault.study"', 'SHOW trialvault.study: 42704, there is no such setting'),
	($$SELECT current_setting('trialvault.current_study')$$, '42704',
		'unrecognized configuration parameter "trialvault.current_study"', 'current_setting(''trialvault.current_study''): 42704')
) c(sql, errcode, message, description);
SELECT is(trialvault.current_study(), tv06.s1(), 'after the refused settings the open study is still study 1');
SELECT is(tv06.docs_seen(), 'a1 a2 a3', 'after the refused settings my_documents is unchanged');
-- A mixed-case name passes PostgreSQL's (case-sensitive) reserved-prefix
-- check and creates a placeholder, after which the lower-case name is
-- accepted too: the outcome is PostgreSQL's; what matters is the views.
DO $$
BEGIN
	PERFORM tv06.err(format('SET "TrialVault.study" = %L', tv06.s2()));
	PERFORM tv06.err(format('SET trialvault.study = %L', tv06.s2()));
	PERFORM tv06.err(format('SET "TRIALVAULT.current_study" = %L', tv06.s2()));
	PERFORM tv06.err(format('SELECT set_config(%L, %L, false)', 'trialvault.current_study', tv06.s2()));
END
$$;
SELECT is(trialvault.current_study(), tv06.s1(), 'mixed-case trialvault settings do not change the open study');
SELECT is(tv06.docs_seen(), 'a1 a2 a3', 'mixed-case trialvault settings do not change my_documents');
SELECT is(tv06.sites_seen(), 'S1/A:site_staff:load:all documents', 'mixed-case trialvault settings do not change my_sites');
RESET ALL;
SELECT is(current_user::text, 'tv06_staff_a', 'RESET ALL keeps the role');
SELECT is(trialvault.current_study(), tv06.s1(), 'RESET ALL neither closes nor changes the open study');
SELECT is(tv06.docs_seen(), 'a1 a2 a3', 'after RESET ALL my_documents is unchanged');
SELECT is(tv06.log_seen(), '', 'after RESET ALL my_decryption_log is still empty for site staff');
RESET ROLE;
SELECT is(tv06.view_counts(), tv06.no_rows(), 'RESET ROLE: the superuser (no study role) sees nothing in the open study');
SET ROLE tv06_s2inv;
SELECT is(trialvault.current_study(), NULL, 'SET ROLE to a member of study 2 only: current_study() is NULL');
SELECT is(tv06.view_counts(), tv06.no_rows(), 'SET ROLE to a member of study 2 only: every view is empty');
SET ROLE tv06_inv_b;
SELECT is(trialvault.current_study(), tv06.s1(), 'SET ROLE to another member of study 1: the study stays open for the session');
SELECT is(tv06.docs_seen(), 'b1 b2', 'SET ROLE to another member: their own rows, not those of the role that opened the study');
SET ROLE tv06_outsider;
SELECT is(trialvault.current_study(), NULL, 'SET ROLE to the outsider: current_study() is NULL');
SET ROLE tv06_staff_a;
SELECT is(tv06.docs_seen(), 'a1 a2 a3', 'SET ROLE back to site staff A: their rows again');
RESET ROLE;
-- As a real session of site staff A (not the superuser underneath).
SET SESSION AUTHORIZATION tv06_staff_a;
SELECT throws_ok('SET ROLE tv06_inv_b', '42501', 'permission denied to set role "tv06_inv_b"',
	'session of site staff A: SET ROLE to another member is refused');
SELECT throws_ok('SET ROLE tv06_auditor', '42501', 'permission denied to set role "tv06_auditor"',
	'session of site staff A: SET ROLE to the auditor is refused');
SELECT lives_ok('SET ROLE trialvault_user', 'session of site staff A: SET ROLE trialvault_user (a group it belongs to) is allowed');
SELECT is(current_user::text, 'trialvault_user', 'now acting as trialvault_user');
SELECT is(trialvault.current_study(), NULL, 'as trialvault_user: current_study() is NULL');
SELECT is(tv06.view_counts(), tv06.no_rows(), 'as trialvault_user: every view is empty (the group holds no study role)');
RESET ROLE;
SELECT is(tv06.docs_seen(), 'a1 a2 a3', 'RESET ROLE in that session: site staff A''s rows, no more');
RESET SESSION AUTHORIZATION;

-- ---------------------------------------------------------------------
-- Leaky functions in WHERE (cost almost 0, so the planner would like to
-- run them first) capture only what the user may see
-- ---------------------------------------------------------------------
CREATE SCHEMA tv06_lk_staff AUTHORIZATION tv06_staff_a;
CREATE SCHEMA tv06_lk_inv AUTHORIZATION tv06_inv_a;
CREATE SCHEMA tv06_lk_aud AUTHORIZATION tv06_auditor;
CREATE SCHEMA tv06_lk_mon AUTHORIZATION tv06_mon_none;

SET ROLE tv06_staff_a;
CREATE TABLE tv06_lk_staff.cap (v text);
CREATE FUNCTION tv06_lk_staff.leak(text) RETURNS boolean LANGUAGE plpgsql COST 0.0000001 AS $$
BEGIN
	INSERT INTO tv06_lk_staff.cap VALUES ($1);
	RAISE NOTICE 'leak: %', $1;
	RETURN true;
END
$$;
CREATE FUNCTION tv06_lk_staff.leak2(text, text) RETURNS boolean LANGUAGE plpgsql COST 0.0000001 AS $$
BEGIN
	INSERT INTO tv06_lk_staff.cap VALUES ('op ' || $1);
	RETURN true;
END
$$;
CREATE OPERATOR tv06_lk_staff.=== (LEFTARG = text, RIGHTARG = text, FUNCTION = tv06_lk_staff.leak2);
SELECT lives_ok($$SELECT trialvault.open_study(tv06.s1())$$, 'leak: site staff A open study 1');
SELECT is((SELECT count(*) FROM trialvault.my_documents
		WHERE tv06_lk_staff.leak('doc ' || doc_id) AND tv06_lk_staff.leak('site ' || site)
		  AND tv06_lk_staff.leak('meta ' || metadata::text)), 3::bigint,
	'leak: site staff A, my_documents with a leaky WHERE on doc_id, site, metadata returns their 3 rows');
SELECT is((SELECT count(*) FROM trialvault.my_documents d JOIN tv06.docs t ON tv06_lk_staff.leak('join ' || d.site || ' ' || d.doc_id)
		AND t.doc_id = d.doc_id), 3::bigint, 'leak: site staff A, a leaky join condition');
SELECT is((SELECT count(*) FROM trialvault.my_documents WHERE site OPERATOR(tv06_lk_staff.===) doc_type), 3::bigint,
	'leak: site staff A, a leaky operator');
SELECT is((SELECT count(*) FROM trialvault.my_sites WHERE tv06_lk_staff.leak('mysite ' || study || ' ' || site)), 1::bigint,
	'leak: site staff A, my_sites');
SELECT is((SELECT count(*) FROM trialvault.my_roles WHERE tv06_lk_staff.leak('myrole ' || coalesce(site, '*') || ' ' || study_role)),
	1::bigint, 'leak: site staff A, my_roles');
SELECT is((SELECT count(*) FROM trialvault.my_decryption_log WHERE tv06_lk_staff.leak('log ' || log_id || ' ' || requester)),
	0::bigint, 'leak: site staff A, my_decryption_log');
SELECT is((SELECT count(*) FROM trialvault.audit_trail WHERE tv06_lk_staff.leak('event ' || event_id || ' ' || study)),
	0::bigint, 'leak: site staff A, audit_trail');
RESET ROLE;
SELECT is(ARRAY(SELECT DISTINCT v FROM tv06_lk_staff.cap WHERE split_part(v, ' ', 1) IN ('doc', 'site', 'meta') ORDER BY v),
	tv06.doc_values(ARRAY['a1', 'a2', 'a3']), 'leak: the leaky function saw exactly the doc_id, site and metadata of a1, a2, a3');
SELECT is(tv06.captured('tv06_lk_staff.cap', 'join'),
	ARRAY(SELECT 'join A ' || tv06.doc(n) FROM unnest(ARRAY['a1', 'a2', 'a3']) n ORDER BY 1),
	'leak: the leaky join condition saw a1, a2, a3 only');
SELECT is(tv06.captured('tv06_lk_staff.cap', 'op'), ARRAY['op A'], 'leak: the leaky operator saw site A only');
SELECT is(tv06.captured('tv06_lk_staff.cap', 'mysite'), ARRAY['mysite ' || tv06.s1() || ' A'],
	'leak: my_sites let the leaky function see study 1, site A only');
SELECT is(tv06.captured('tv06_lk_staff.cap', 'myrole'), ARRAY['myrole A site_staff'], 'leak: my_roles: their one role only');
SELECT is(tv06.captured('tv06_lk_staff.cap', 'log') || tv06.captured('tv06_lk_staff.cap', 'event'), '{}'::text[],
	'leak: nothing of the decryption log or audit trail reached the leaky function of site staff');
SELECT is(ARRAY(SELECT DISTINCT split_part(v, ' ', 1) FROM tv06_lk_staff.cap ORDER BY 1),
	ARRAY['doc', 'join', 'meta', 'myrole', 'mysite', 'op', 'site'], 'leak: nothing else was captured');

SET ROLE tv06_mon_none;
CREATE TABLE tv06_lk_mon.cap (v text);
CREATE FUNCTION tv06_lk_mon.leak(text) RETURNS boolean LANGUAGE plpgsql COST 0.0000001 AS $$
BEGIN
	INSERT INTO tv06_lk_mon.cap VALUES ($1);
	RETURN true;
END
$$;
SELECT lives_ok($$SELECT trialvault.open_study(tv06.s1())$$, 'leak: monitor without authorization opens study 1');
SELECT is((SELECT count(*) FROM trialvault.my_documents
		WHERE tv06_lk_mon.leak('doc ' || doc_id) AND tv06_lk_mon.leak('meta ' || metadata::text)), 0::bigint,
	'leak: monitor without authorization, my_documents with a leaky WHERE returns nothing');
SELECT is((SELECT count(*) FROM trialvault.my_decryption_log WHERE tv06_lk_mon.leak('log ' || log_id || ' ' || requester)),
	1::bigint, 'leak: monitor without authorization, my_decryption_log: their own attempt');
RESET ROLE;
SELECT is(ARRAY(SELECT v FROM tv06_lk_mon.cap ORDER BY v),
	ARRAY(SELECT 'log ' || l.log_id || ' tv06_mon_none' FROM trialvault.decryption_log l
		  WHERE l.study = tv06.s1() AND l.requester = 'tv06_mon_none'),
	'leak: the monitor''s leaky function saw no document and only their own log row');

SET ROLE tv06_inv_a;
CREATE TABLE tv06_lk_inv.cap (v text);
CREATE FUNCTION tv06_lk_inv.leak(text) RETURNS boolean LANGUAGE plpgsql COST 0.0000001 AS $$
BEGIN
	INSERT INTO tv06_lk_inv.cap VALUES ($1);
	RETURN true;
END
$$;
SELECT lives_ok($$SELECT trialvault.open_study(tv06.s1())$$, 'leak: investigator A open study 1');
SELECT is((SELECT count(*) FROM trialvault.my_documents
		WHERE tv06_lk_inv.leak('doc ' || doc_id) AND tv06_lk_inv.leak('site ' || site)
		  AND tv06_lk_inv.leak('meta ' || metadata::text)), 3::bigint,
	'leak: investigator A, my_documents returns their 3 rows');
SELECT is((SELECT count(*) FROM trialvault.my_decryption_log WHERE tv06_lk_inv.leak('log ' || log_id || ' ' || requester)),
	6::bigint, 'leak: investigator A, my_decryption_log returns the 6 attempts at site A');
SELECT is((SELECT count(*) FROM trialvault.audit_trail WHERE tv06_lk_inv.leak('event ' || event_id || ' ' || study)),
	0::bigint, 'leak: investigator A, audit_trail returns nothing');
RESET ROLE;
SELECT is(ARRAY(SELECT DISTINCT v FROM tv06_lk_inv.cap WHERE v NOT LIKE 'log %' ORDER BY v), tv06.doc_values(ARRAY['a1', 'a2', 'a3']),
	'leak: investigator A''s leaky function saw exactly a1, a2, a3');
SELECT is(tv06.captured('tv06_lk_inv.cap', 'log'), tv06.log_values(tv06.s1(), ARRAY['A']),
	'leak: and exactly the decryption-log rows of study 1, site A');
SELECT is(tv06.captured('tv06_lk_inv.cap', 'event'), '{}'::text[], 'leak: and no audit event');

SET ROLE tv06_auditor;
CREATE TABLE tv06_lk_aud.cap (v text);
CREATE FUNCTION tv06_lk_aud.leak(text) RETURNS boolean LANGUAGE plpgsql COST 0.0000001 AS $$
BEGIN
	INSERT INTO tv06_lk_aud.cap VALUES ($1);
	RETURN true;
END
$$;
SELECT lives_ok($$SELECT trialvault.open_study(tv06.s1())$$, 'leak: auditor open study 1');
SELECT is((SELECT count(*) FROM trialvault.my_documents
		WHERE tv06_lk_aud.leak('doc ' || doc_id) AND tv06_lk_aud.leak('site ' || site)
		  AND tv06_lk_aud.leak('meta ' || metadata::text)), 5::bigint,
	'leak: auditor, my_documents returns the 5 documents of study 1');
SELECT is((SELECT count(*) FROM trialvault.my_decryption_log WHERE tv06_lk_aud.leak('log ' || log_id || ' ' || requester)),
	10::bigint, 'leak: auditor, my_decryption_log returns the 10 attempts in study 1');
SELECT ok((SELECT count(*) FROM trialvault.audit_trail WHERE tv06_lk_aud.leak('event ' || event_id || ' ' || study)) > 20,
	'leak: auditor, audit_trail returns the events of study 1');
RESET ROLE;
SELECT is(ARRAY(SELECT DISTINCT v FROM tv06_lk_aud.cap WHERE v NOT LIKE 'log %' AND v NOT LIKE 'event %' ORDER BY v),
	tv06.doc_values(ARRAY['a1', 'a2', 'a3', 'b1', 'b2']), 'leak: the auditor''s leaky function saw exactly the documents of study 1');
SELECT is(tv06.captured('tv06_lk_aud.cap', 'log'), tv06.log_values(tv06.s1(), ARRAY['A', 'B']),
	'leak: and exactly the decryption-log rows of study 1');
SELECT is(tv06.captured('tv06_lk_aud.cap', 'event'), tv06.event_values(tv06.s1()),
	'leak: and exactly the audit events of study 1 (none of study 2)');

-- ---------------------------------------------------------------------
-- search_path hijack: functions and operators planted ahead of pg_catalog
-- (and in pg_temp) never run inside the extension
-- ---------------------------------------------------------------------
CREATE SCHEMA tv06_evil AUTHORIZATION tv06_staff_a;
SET ROLE tv06_staff_a;
CREATE TABLE tv06_evil.cap (n serial, what text, by_role name DEFAULT current_user);
GRANT USAGE ON SCHEMA tv06_evil TO PUBLIC;
GRANT SELECT, INSERT ON tv06_evil.cap TO PUBLIC;
GRANT USAGE ON SEQUENCE tv06_evil.cap_n_seq TO PUBLIC;
CREATE FUNCTION tv06_evil.note(text) RETURNS void LANGUAGE sql SET search_path = pg_catalog, pg_temp
	AS $$ INSERT INTO tv06_evil.cap (what) VALUES ($1) $$;
-- Operators: note the call, give the right answer.
CREATE FUNCTION tv06_evil.text_eq(text, text) RETURNS boolean LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
	AS $$ BEGIN PERFORM tv06_evil.note('=(text,text)'); RETURN $1 OPERATOR(pg_catalog.=) $2; END $$;
CREATE OPERATOR tv06_evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = tv06_evil.text_eq);
CREATE FUNCTION tv06_evil.name_eq(name, name) RETURNS boolean LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
	AS $$ BEGIN PERFORM tv06_evil.note('=(name,name)'); RETURN $1 OPERATOR(pg_catalog.=) $2; END $$;
CREATE OPERATOR tv06_evil.= (LEFTARG = name, RIGHTARG = name, FUNCTION = tv06_evil.name_eq);
CREATE FUNCTION tv06_evil.text_cat(text, text) RETURNS text LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
	AS $$ BEGIN PERFORM tv06_evil.note('||(text,text)'); RETURN $1 OPERATOR(pg_catalog.||) $2; END $$;
CREATE OPERATOR tv06_evil.|| (LEFTARG = text, RIGHTARG = text, FUNCTION = tv06_evil.text_cat);
CREATE FUNCTION tv06_evil.overlap(text[], text[]) RETURNS boolean LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
	AS $$ BEGIN PERFORM tv06_evil.note('&&(text[],text[])'); RETURN $1 OPERATOR(pg_catalog.&&) $2; END $$;
CREATE OPERATOR tv06_evil.&& (LEFTARG = text[], RIGHTARG = text[], FUNCTION = tv06_evil.overlap);
-- Functions named like ones the extension uses: note the call and, where it
-- means anything, answer so as to widen what the caller sees.
CREATE FUNCTION tv06_evil.lower(text) RETURNS text LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
	AS $$ BEGIN PERFORM tv06_evil.note('lower(text)'); RETURN pg_catalog.lower($1); END $$;
CREATE FUNCTION tv06_evil.split_part(text, text, integer) RETURNS text LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
	AS $$ BEGIN PERFORM tv06_evil.note('split_part'); RETURN pg_catalog.split_part($1, $2, $3); END $$;
CREATE FUNCTION tv06_evil.unnest(text[]) RETURNS SETOF text LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
	AS $$ BEGIN PERFORM tv06_evil.note('unnest(text[])'); RETURN QUERY SELECT pg_catalog.unnest($1); END $$;
CREATE FUNCTION tv06_evil.agg_step(text[], text) RETURNS text[] LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
	AS $$ BEGIN PERFORM tv06_evil.note('array_agg(text)'); RETURN pg_catalog.array_append($1, $2); END $$;
CREATE AGGREGATE tv06_evil.array_agg(text) (SFUNC = tv06_evil.agg_step, STYPE = text[], INITCOND = '{}');
CREATE FUNCTION tv06_evil.max_step(timestamptz, timestamptz) RETURNS timestamptz LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
	AS $$ BEGIN PERFORM tv06_evil.note('max(timestamptz)'); RETURN CASE WHEN $1 IS NULL OR $2 OPERATOR(pg_catalog.>) $1 THEN $2 ELSE $1 END; END $$;
CREATE AGGREGATE tv06_evil.max(timestamptz) (SFUNC = tv06_evil.max_step, STYPE = timestamptz);
CREATE FUNCTION tv06_evil.pg_has_role(name, name, text) RETURNS boolean LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
	AS $$ BEGIN PERFORM tv06_evil.note('pg_has_role(name,name,text)'); RETURN true; END $$;
CREATE FUNCTION tv06_evil.pg_has_role(name, text) RETURNS boolean LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
	AS $$ BEGIN PERFORM tv06_evil.note('pg_has_role(name,text)'); RETURN true; END $$;
CREATE FUNCTION tv06_evil.clock_timestamp() RETURNS timestamptz LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
	AS $$ BEGIN PERFORM tv06_evil.note('clock_timestamp()'); RETURN '-infinity'; END $$;
CREATE FUNCTION tv06_evil.now() RETURNS timestamptz LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
	AS $$ BEGIN PERFORM tv06_evil.note('now()'); RETURN pg_catalog.now(); END $$;
CREATE FUNCTION tv06_evil.current_setting(text) RETURNS text LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
	AS $$ BEGIN PERFORM tv06_evil.note('current_setting(text)'); RETURN pg_catalog.current_setting($1); END $$;
CREATE FUNCTION tv06_evil.current_study() RETURNS text LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
	AS $$ BEGIN PERFORM tv06_evil.note('current_study()'); RETURN tv06.s2(); END $$;
CREATE FUNCTION tv06_evil._current_roles(text, name) RETURNS TABLE (site text, study_role text) LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
	AS $$ BEGIN PERFORM tv06_evil.note('_current_roles'); RETURN QUERY VALUES (NULL::text, 'auditor'::text); END $$;
CREATE FUNCTION tv06_evil._scope(name, text, text) RETURNS text[] LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
	AS $$ BEGIN PERFORM tv06_evil.note('_scope'); RETURN ARRAY['A', 'B']; END $$;
CREATE FUNCTION tv06_evil._session_scope(text) RETURNS text[] LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
	AS $$ BEGIN PERFORM tv06_evil.note('_session_scope'); RETURN ARRAY['A', 'B']; END $$;
CREATE FUNCTION tv06_evil._monitor_state(text, text, name, timestamptz) RETURNS text LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
	AS $$ BEGIN PERFORM tv06_evil.note('_monitor_state'); RETURN 'valid'; END $$;
CREATE FUNCTION pg_temp.current_study() RETURNS text LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
	AS $$ BEGIN PERFORM tv06_evil.note('pg_temp.current_study()'); RETURN tv06.s2(); END $$;
CREATE FUNCTION pg_temp.lower(text) RETURNS text LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
	AS $$ BEGIN PERFORM tv06_evil.note('pg_temp.lower(text)'); RETURN pg_catalog.lower($1); END $$;
CREATE FUNCTION pg_temp._scope(name, text, text) RETURNS text[] LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
	AS $$ BEGIN PERFORM tv06_evil.note('pg_temp._scope'); RETURN ARRAY['A', 'B']; END $$;

-- Controls: in the user's own statements, with this search_path, the
-- planted objects do run (so an empty capture below means something).
SET search_path = tv06_evil, pg_catalog, public;
INSERT INTO tv06.hij (k, v) VALUES ('control', lower('X'));
INSERT INTO tv06.hij (k, v) VALUES ('control', ('a'::text = 'b'::text)::text);
INSERT INTO tv06.hij (k, v) VALUES ('control', current_study());
INSERT INTO tv06.hij (k, v) VALUES ('control', pg_temp.current_study());
INSERT INTO tv06.hij (k, v) SELECT 'control', array_agg(x)::text FROM (VALUES ('p'::text)) v(x);
INSERT INTO tv06.hij (k, v) VALUES ('control', pg_has_role('tv06_staff_a', 'trialvault_admin', 'MEMBER')::text);
INSERT INTO tv06.hij (k, v) VALUES ('control', clock_timestamp()::text);
RESET search_path;
RESET ROLE;
SELECT is(ARRAY(SELECT DISTINCT what FROM tv06_evil.cap ORDER BY 1),
	ARRAY['=(text,text)', 'array_agg(text)', 'clock_timestamp()', 'current_study()', 'lower(text)',
		'pg_has_role(name,name,text)', 'pg_temp.current_study()'],
	'hijack control: the planted objects run in the user''s own statements on that search_path');
SELECT is(tv06.hij_get('control'), format('-infinity %s %s false true x {p}', tv06.s2(), tv06.s2()),
	'hijack control: and they give their own answers');
DELETE FROM tv06_evil.cap;

-- The extension's doors, called with that search_path.
SET ROLE tv06_staff_a;
SET search_path = tv06_evil, pg_catalog, public;
INSERT INTO tv06.hij (k, v) SELECT 'open_study', trialvault.open_study(tv06.s1())::text;
INSERT INTO tv06.hij (k, v) SELECT 'current_study', trialvault.current_study();
INSERT INTO tv06.hij (k, v) SELECT 'my_documents', doc_id::text FROM trialvault.my_documents;
INSERT INTO tv06.hij (k, v) SELECT 'my_sites', site FROM trialvault.my_sites;
INSERT INTO tv06.hij (k, v) SELECT 'my_sites may_open', may_open FROM trialvault.my_sites;
INSERT INTO tv06.hij (k, v) SELECT 'my_roles', study_role FROM trialvault.my_roles;
INSERT INTO tv06.hij (k, v) SELECT 'my_decryption_log', count(*)::text FROM trialvault.my_decryption_log;
INSERT INTO tv06.hij (k, v) SELECT 'audit_trail', count(*)::text FROM trialvault.audit_trail;
INSERT INTO tv06.hij (k, v) SELECT 'open_document', encode(trialvault.open_document(tv06.doc('a1')), 'hex');
INSERT INTO tv06.docs (name, doc_id, study, site, body)
	SELECT 'h1', trialvault.load_document(tv06.s1(), 'A', 'protocol', false, '<doc><form>h1</form><visit>1</visit></doc>',
		'\x686a61636b6564'::bytea), tv06.s1(), 'A', '\x686a61636b6564'::bytea;
INSERT INTO tv06.hij (k, v) SELECT 'my_documents after load', doc_id::text FROM trialvault.my_documents;
INSERT INTO tv06.hij (k, v) SELECT 'close_study', trialvault.close_study()::text;
INSERT INTO tv06.hij (k, v) SELECT 'current_study after close', coalesce(trialvault.current_study(), 'none');
INSERT INTO tv06.hij (k, v) SELECT 'my_documents after close', count(*)::text FROM trialvault.my_documents;
SET ROLE tv06_mon;
INSERT INTO tv06.hij (k, v) SELECT 'mon open_study', trialvault.open_study(tv06.s1())::text;
INSERT INTO tv06.hij (k, v) SELECT 'mon my_documents', doc_id::text FROM trialvault.my_documents;
INSERT INTO tv06.hij (k, v) SELECT 'mon my_sites', site FROM trialvault.my_sites;
INSERT INTO tv06.hij (k, v) SELECT 'mon open_document', encode(trialvault.open_document(tv06.doc('a2')), 'hex');
SET ROLE tv06_mon_none;
INSERT INTO tv06.hij (k, v) SELECT 'mon_none my_documents', count(*)::text FROM trialvault.my_documents;
SET ROLE tv06_auditor;
INSERT INTO tv06.hij (k, v) SELECT 'aud open_study', trialvault.open_study(tv06.s1())::text;
INSERT INTO tv06.hij (k, v) SELECT 'aud audit_trail', count(*)::text FROM trialvault.audit_trail;
INSERT INTO tv06.hij (k, v) SELECT 'aud my_decryption_log', count(*)::text FROM trialvault.my_decryption_log;
RESET search_path;
RESET ROLE;
SELECT is(ARRAY(SELECT format('%s by %s (%s calls)', what, by_role, count(*)) FROM tv06_evil.cap GROUP BY what, by_role ORDER BY 1),
	'{}'::text[],
	'hijack: no planted function or operator ran inside open_study, current_study, the views, open_document, load_document, close_study');
SELECT is(tv06.hij_get('open_study'), '', 'hijack: open_study worked');
SELECT is(tv06.hij_get('current_study'), tv06.s1(), 'hijack: current_study() = study 1, not the planted answer');
SELECT is(tv06.hij_docs('my_documents'), 'a1 a2 a3', 'hijack: my_documents unchanged (site A only)');
SELECT is(tv06.hij_get('my_sites') || ' / ' || tv06.hij_get('my_sites may_open'), 'A / all documents', 'hijack: my_sites unchanged');
SELECT is(tv06.hij_get('my_roles'), 'site_staff', 'hijack: my_roles unchanged');
SELECT is(tv06.hij_get('my_decryption_log') || ' ' || tv06.hij_get('audit_trail'), '0 0',
	'hijack: my_decryption_log and audit_trail still empty for site staff');
SELECT is(tv06.hij_get('open_document'), encode(tv06.body('a1'), 'hex'), 'hijack: open_document returned a1''s content');
SELECT is(tv06.hij_docs('my_documents after load'), 'a1 a2 a3 h1', 'hijack: load_document worked; the new document is listed');
SELECT is((SELECT loaded_by::text || ' ' || tv06.tag(study) || '/' || site FROM trialvault.documents WHERE doc_id = tv06.doc('h1')),
	'tv06_staff_a S1/A', 'hijack: the document loaded with that search_path is recorded correctly');
SELECT is(tv06.hij_get('current_study after close') || ' ' || tv06.hij_get('my_documents after close'), 'none 0',
	'hijack: close_study closed the study');
SELECT is(tv06.hij_docs('mon my_documents') || ' / ' || tv06.hij_get('mon my_sites'), 'a1 a2 a3 h1 / A',
	'hijack: the monitor sees site A only (no planted clock or _monitor_state widened it)');
SELECT is(tv06.hij_get('mon open_document'), encode(tv06.body('a2'), 'hex'), 'hijack: the monitor opened a2');
SELECT is(tv06.hij_get('mon_none my_documents'), '0', 'hijack: the monitor without authorization still sees nothing');
SELECT is(tv06.hij_get('aud audit_trail'), cardinality(tv06.audit_base(tv06.s1()))::text,
	'hijack: the auditor''s audit_trail = the events of study 1');
SELECT is(tv06.hij_get('aud my_decryption_log'), cardinality(tv06.log_base(tv06.s1()))::text,
	'hijack: the auditor''s my_decryption_log = the log of study 1');

-- ---------------------------------------------------------------------
-- No study open again: after close_study()
-- ---------------------------------------------------------------------
SET ROLE tv06_staff_a;
SELECT lives_ok($$SELECT trialvault.open_study(tv06.s1())$$, 'close: site staff A open study 1');
SELECT is(tv06.docs_seen(), 'a1 a2 a3 h1', 'close: their documents are listed');
SELECT lives_ok($$SELECT trialvault.close_study()$$, 'close: close_study()');
SELECT is(trialvault.current_study(), NULL, 'close: current_study() is NULL');
SELECT is(tv06.view_counts(), tv06.no_rows(), 'close: every view is empty, no error');
SELECT is(tv06.err(format('SELECT trialvault.open_document(%s)', tv06.doc('a1'))), tv06.not_open('a1'),
	'close: open_document refuses (42501) with a hint to call open_study');
SELECT lives_ok($$SELECT trialvault.close_study()$$, 'close: close_study() with nothing open is harmless');
SET ROLE tv06_auditor;
SELECT is(tv06.view_counts(), tv06.no_rows(), 'close: the auditor sees nothing either (the session''s study is closed)');
RESET ROLE;

-- ---------------------------------------------------------------------
-- create_secured_view for a DBA's own protected table
-- ---------------------------------------------------------------------
CREATE SCHEMA tv06_dba AUTHORIZATION tv06_dba;
CREATE SCHEMA tv06_dba2 AUTHORIZATION tv06_dba2;
SET ROLE tv06_dba;
CREATE TABLE tv06_dba.ecrf (study text NOT NULL, site text NOT NULL, subject text NOT NULL, weight numeric, secret text);
CREATE TABLE tv06_dba.plain (study text, site text, note text);
CREATE VIEW tv06_dba.other_v AS SELECT 1 AS x;
GRANT USAGE ON SCHEMA tv06_dba TO PUBLIC;
SET ROLE tv06_dba2;
CREATE TABLE tv06_dba2.t2 (study text, site text, other text);
RESET ROLE;
SELECT lives_ok($$SELECT trialvault.protect('tv06_dba.ecrf'), trialvault.protect('tv06_dba2.t2')$$,
	'secured view: the superuser protects the DBAs'' tables');
SET ROLE tv06_dba;
INSERT INTO tv06_dba.ecrf (study, site, subject, weight, secret) VALUES (tv06.s1(), 'A', 'S1A-1', 70, 'secret S1A-1'), (tv06.s1(), 'A', 'S1A-2', 71, 'secret S1A-2'),
	(tv06.s1(), 'B', 'S1B-1', 80, 'secret S1B-1'), (tv06.s2(), 'A', 'S2A-1', 90, 'secret S2A-1'),
	(tv06.s2(), 'B', 'S2B-1', 91, 'secret S2B-1');
SET ROLE tv06_dba2;
INSERT INTO tv06_dba2.t2 (study, site, other) VALUES (tv06.s1(), 'A', 'other S1A');

SET ROLE tv06_staff_a;
SELECT throws_ok($$SELECT trialvault.create_secured_view('tv06_dba.ecrf_x', 'tv06_dba.ecrf', 'study', 'site', '{secret}')$$,
	'42501', 'permission denied to create a secured view of tv06_dba.ecrf', 'secured view: refused to a role that does not own the table');
SET ROLE tv06_dba;
-- Calls refused to the table owner: create_secured_view's arguments, the
-- error.
SELECT throws_ok(format('SELECT trialvault.create_secured_view(%s)', c.args), c.errcode, c.message, c.description) FROM (VALUES
	($$'plain_v', 'tv06_dba.plain', 'study', 'site'$$, '55000',
		'table tv06_dba.plain is not protected', 'secured view: refused for an unprotected table (55000)'),
	($$'ecrf_v', 'tv06_dba.ecrf', 'nope', 'site'$$, '42703',
		'column "nope" of tv06_dba.ecrf does not exist', 'secured view: unknown study column (42703)'),
	($$'ecrf_v', 'tv06_dba.ecrf', 'study', 'nope'$$, '42703',
		'column "nope" of tv06_dba.ecrf does not exist', 'secured view: unknown site column (42703)'),
	($$'ecrf_v', 'tv06_dba.ecrf', 'study', 'site', '{secret,nope}'$$, '42703',
		'column "nope" of tv06_dba.ecrf does not exist', 'secured view: unknown hidden column (42703)'),
	($$'ecrf_v', 'tv06_dba.ecrf', 'study', 'site', '{study}'$$, '22023',
		'the study and site columns cannot be hidden', 'secured view: hiding the study column is refused'),
	($$'ecrf_v', 'tv06_dba.ecrf', 'study', 'site', '{site,secret}'$$, '22023',
		'the study and site columns cannot be hidden', 'secured view: hiding the site column is refused'),
	($$'other_v', 'tv06_dba.ecrf', 'study', 'site', '{secret}'$$, '42P07',
		'relation tv06_dba.other_v exists and is not a secured view', 'secured view: an existing ordinary view is not replaced'),
	($$'plain', 'tv06_dba.ecrf', 'study', 'site', '{secret}'$$, '42P07',
		'relation tv06_dba.plain exists and is not a secured view', 'secured view: an existing table is not replaced')
) c(args, errcode, message, description);
SELECT is(tv06.view_reads('tv06_dba.other_v') || '|' || tv06.rows('tv06_dba.plain'), '|0',
	'secured view: the ordinary view and the table are still there, unchanged');
SELECT throws_ok($$SELECT trialvault.create_secured_view('trialvault.ecrf_v', 'tv06_dba.ecrf', 'study', 'site', '{secret}')$$,
	'3F000', 'secured views of user tables cannot go into schema trialvault', 'secured view: not into schema trialvault');
SELECT is(to_regclass('tv06_dba.ecrf_v'), NULL, 'secured view: the refused calls created nothing');
SELECT lives_ok($$SELECT trialvault.create_secured_view('ecrf_v', 'tv06_dba.ecrf', 'study', 'site', '{secret}')$$,
	'secured view: the table owner creates tv06_dba.ecrf_v without column secret');
SELECT is(tv06.cols('tv06_dba.ecrf_v'), tv06.cols('tv06_dba.ecrf', '{secret}'),
	'secured view: the view has the table''s columns except secret');
SELECT is((SELECT c.relowner FROM pg_class c WHERE c.oid = 'tv06_dba.ecrf_v'::regclass),
	(SELECT n.nspowner FROM pg_namespace n WHERE n.nspname = 'trialvault'), 'secured view: owned by the extension''s owner');
SELECT is((SELECT c.reloptions FROM pg_class c WHERE c.oid = 'tv06_dba.ecrf_v'::regclass), ARRAY['security_barrier=true'],
	'secured view: security_barrier');
SELECT is(ARRAY[has_table_privilege('trialvault_user', 'tv06_dba.ecrf_v', 'SELECT'),
		has_table_privilege('trialvault_user', 'tv06_dba.ecrf_v', 'INSERT,UPDATE,DELETE,TRUNCATE'),
		has_table_privilege('tv06_outsider', 'tv06_dba.ecrf_v', 'SELECT')],
	ARRAY[true, false, false], 'secured view: SELECT granted to trialvault_user, nothing else, nothing to PUBLIC');

SET ROLE tv06_staff_a;
SELECT is(tv06.rows('tv06_dba.ecrf_v'), '0', 'secured view: site staff A with no study open see no row');
SELECT lives_ok($$SELECT trialvault.open_study(tv06.s1())$$, 'secured view: site staff A open study 1');
SELECT is((SELECT string_agg(subject, ' ' ORDER BY subject) FROM tv06_dba.ecrf_v), 'S1A-1 S1A-2',
	'secured view: site staff A see the rows of study 1, site A');
SELECT throws_ok('SELECT secret FROM tv06_dba.ecrf_v', '42703', NULL, 'secured view: column secret is not there');
SELECT throws_ok('SELECT * FROM tv06_dba.ecrf', '42501', 'permission denied for table ecrf', 'secured view: the table itself is refused');
-- The other roles, one test a row (tv06.check): the study each opens, then
-- the subjects of the rows it sees ('tv06_dba.ecrf_v') or the row count or
-- error ('tv06_dba.ecrf_v rows').
RESET ROLE;
SELECT tv06.check(role, view, expected, description) FROM (VALUES
	('tv06_inv_b', 'open_study', tv06.s1(), 'secured view: investigator B open study 1'),
	('tv06_inv_b', 'tv06_dba.ecrf_v', 'S1B-1', 'secured view: investigator B see the rows of study 1, site B'),
	('tv06_sponsor', 'open_study', tv06.s1(), 'secured view: the sponsor open study 1'),
	('tv06_sponsor', 'tv06_dba.ecrf_v', 'S1A-1 S1A-2 S1B-1', 'secured view: the sponsor sees every row of study 1'),
	('tv06_mon_none', 'open_study', tv06.s1(), 'secured view: the monitor without authorization open study 1'),
	('tv06_mon_none', 'tv06_dba.ecrf_v rows', '0', 'secured view: the monitor without authorization sees no row'),
	('tv06_both', 'open_study', tv06.s2(), 'secured view: member of both open study 2'),
	('tv06_both', 'tv06_dba.ecrf_v', 'S2A-1', 'secured view: member of both, study 2 open: study 2, site A only'),
	('tv06_both', 'open_study', tv06.s1(), 'secured view: member of both open study 1'),
	('tv06_both', 'tv06_dba.ecrf_v', 'S1B-1', 'secured view: member of both, study 1 open: study 1, site B only'),
	('tv06_outsider', 'tv06_dba.ecrf_v rows', '42501 permission denied for view ecrf_v', 'secured view: refused to the outsider')
) c(role, view, expected, description);

-- The table gains a column: one call shows it.
SET ROLE tv06_dba;
ALTER TABLE tv06_dba.ecrf ADD COLUMN visit integer;
INSERT INTO tv06_dba.ecrf (study, site, subject, weight, secret, visit) VALUES (tv06.s1(), 'A', 'S1A-3', 72, 'secret S1A-3', 3);
SELECT is(tv06.cols('tv06_dba.ecrf_v') LIKE '% visit%', false, 'secured view: before the call the view lacks the new column');
SELECT lives_ok($$SELECT trialvault.create_secured_view('ecrf_v', 'tv06_dba.ecrf', 'study', 'site', '{secret}')$$,
	'secured view: create_secured_view again after ADD COLUMN');
SELECT is(tv06.cols('tv06_dba.ecrf_v'), tv06.cols('tv06_dba.ecrf', '{secret}'),
	'secured view: the view now has the new column, still not secret');
SET ROLE tv06_staff_a;
SELECT lives_ok($$SELECT trialvault.open_study(tv06.s1())$$, 'secured view: site staff A open study 1 again');
SELECT is((SELECT string_agg(subject || ':' || coalesce(visit::text, '-'), ' ' ORDER BY subject) FROM tv06_dba.ecrf_v),
	'S1A-1:- S1A-2:- S1A-3:3', 'secured view: site staff A see the new column, same entitlements');

-- Someone else's secured view, and schemas the caller may not create in.
SET ROLE tv06_dba2;
SELECT throws_ok($$SELECT trialvault.create_secured_view('tv06_dba.ecrf_v', 'tv06_dba2.t2', 'study', 'site')$$,
	'42501', NULL, 'secured view: another table''s owner cannot replace tv06_dba.ecrf_v (a schema they have no rights in)');
RESET ROLE;
SELECT is(tv06.view_reads('tv06_dba.ecrf_v'), 'tv06_dba.ecrf', 'secured view: tv06_dba.ecrf_v still shows tv06_dba.ecrf');
SET ROLE tv06_dba;
SELECT throws_ok($$SELECT trialvault.create_secured_view('public.tv06_pub_v', 'tv06_dba.ecrf', 'study', 'site', '{secret}')$$,
	'42501', NULL, 'secured view: not into a schema the table owner may not create in (public)');
RESET ROLE;
SELECT is(to_regclass('public.tv06_pub_v'), NULL, 'secured view: no view appeared in schema public');

-- ---------------------------------------------------------------------
-- Revocation while the study is open; monitor authorizations ending
-- ---------------------------------------------------------------------
SET ROLE tv06_revoked;
SELECT lives_ok($$SELECT trialvault.open_study(tv06.s1())$$, 'revocation: a site staff member opens study 1');
SELECT is(tv06.docs_seen(), 'a1 a2 a3 h1', 'revocation: before, they see site A');
SET ROLE tv06_admin;
SELECT lives_ok($$SELECT trialvault.revoke_role('tv06_revoked', tv06.s1(), 'A', 'site_staff')$$, 'revocation: their role is revoked');
SET ROLE tv06_revoked;
SELECT is(trialvault.current_study(), NULL, 'revocation: the very next query: current_study() is NULL');
SELECT is(tv06.view_counts(), tv06.no_rows(), 'revocation: the very next query: every view is empty');
SELECT is(tv06.rows('tv06_dba.ecrf_v'), '0', 'revocation: the secured view of the DBA''s table is empty too');
SELECT throws_ok($$SELECT trialvault.open_study(tv06.s1())$$, '42501', NULL, 'revocation: open_study is refused now');

SET ROLE tv06_inv_a;
SELECT lives_ok($$SELECT trialvault.authorize_monitor('tv06_mon_exp', tv06.s1(), 'A', clock_timestamp() + interval '1 second')$$,
	'expiry: a one-second monitor authorization for site A');
SET ROLE tv06_mon_exp;
SELECT lives_ok($$SELECT trialvault.open_study(tv06.s1())$$, 'expiry: the monitor opens study 1');
SELECT is(tv06.docs_seen() || ' / ' || tv06.sites_seen(), 'a1 a2 a3 h1 / S1/A:monitor:no load:all documents',
	'expiry: while valid, my_documents and my_sites show site A');
DO $$ BEGIN PERFORM pg_sleep(1.2); END $$;
SELECT is(tv06.docs_seen(), '', 'expiry: once expired, my_documents is empty');
SELECT is(tv06.sites_seen(), '', 'expiry: once expired, my_sites is empty');
SELECT is(tv06.rows('tv06_dba.ecrf_v'), '0', 'expiry: once expired, the secured view is empty');
SELECT is(trialvault.current_study() || ' ' || tv06.roles_seen(), tv06.s1() || ' S1/*:monitor',
	'expiry: the monitor is still a member of the open study');

SET ROLE tv06_mon;
SELECT lives_ok($$SELECT trialvault.open_study(tv06.s1())$$, 'revoke_monitor: the monitor opens study 1');
SELECT is(tv06.docs_seen(), 'a1 a2 a3 h1', 'revoke_monitor: before, site A is listed');
SET ROLE tv06_inv_a;
SELECT lives_ok($$SELECT trialvault.revoke_monitor('tv06_mon', tv06.s1(), 'A')$$, 'revoke_monitor: the investigator of A revokes');
SET ROLE tv06_mon;
SELECT is(tv06.docs_seen(), '', 'revoke_monitor: the very next query: my_documents is empty');
SELECT is(tv06.sites_seen(), '', 'revoke_monitor: my_sites is empty');
SELECT is(tv06.log_seen(), 'a1:mon:monitor b1:mon:monitor_not_authorized a2:mon:no_phi',
	'revoke_monitor: my_decryption_log still shows their own attempts');
SET ROLE tv06_admin;
SELECT lives_ok($$SELECT trialvault.revoke_role('tv06_mon', tv06.s1(), NULL, 'monitor')$$, 'the monitor role itself is revoked');
SET ROLE tv06_mon;
SELECT is(trialvault.current_study(), NULL, 'after revoke_role: current_study() is NULL for the monitor');
SELECT is(tv06.view_counts(), tv06.no_rows(), 'after revoke_role: every view is empty, their own log entries too');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;

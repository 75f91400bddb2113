-- Who may open what (issue 3): every access rule of open_document and
-- emergency_open, allowed and refused, each with its decryption_log row;
-- who may call the management functions and load_document; key rotation;
-- PHI never stored in plain.
--
-- The log rows are written by the log writer in its own transaction, so they
-- outlive this suite's ROLLBACK.  Each run uses a study code of its own, and
-- tv05.logged() only looks at rows for this run's documents written since it
-- last looked, so reruns on the same cluster do not see each other's rows.
-- Refusals of open_document/emergency_open are checked through
-- tv05.as_role(): SQLSTATE 42501, the message, the detail that says why, and
-- the hint that names the logged reason code.
--
-- Long runs of the same check are tables: a VALUES list of cases and one
-- query that runs the assertion for each row, in the order of the rows (a
-- role's steps run as that role through tv05.as_role/tv05.sql_as, SET ROLE
-- for that one statement).  The expected values stay written out in the
-- rows.  Tables of open attempts (tv05.check) run as the superuser, which
-- alone may read the decryption log.
BEGIN;
SELECT plan(130);

-- ---------------------------------------------------------------------
-- Helpers (rolled back with everything else)
-- ---------------------------------------------------------------------
CREATE SCHEMA tv05;
GRANT USAGE ON SCHEMA tv05 TO PUBLIC;
CREATE TABLE tv05.cfg (study text NOT NULL);
INSERT INTO tv05.cfg VALUES ('ACC05-' || substr(md5(random()::text || clock_timestamp()::text), 1, 12));
CREATE TABLE tv05.docs (name text PRIMARY KEY, doc_id bigint NOT NULL, site text NOT NULL,
	phi boolean NOT NULL, body bytea NOT NULL);
CREATE TABLE tv05.seen (doc_id bigint, requester name, last_log bigint NOT NULL,
	PRIMARY KEY (doc_id, requester));
GRANT SELECT ON tv05.cfg TO PUBLIC;
GRANT SELECT, INSERT ON tv05.docs TO PUBLIC;

CREATE FUNCTION tv05.study() RETURNS text LANGUAGE sql STABLE AS $$ SELECT study FROM tv05.cfg $$;
CREATE FUNCTION tv05.doc(p_name text) RETURNS bigint LANGUAGE sql STABLE
	AS $$ SELECT doc_id FROM tv05.docs WHERE name = p_name $$;
CREATE FUNCTION tv05.body(p_name text) RETURNS bytea LANGUAGE sql STABLE
	AS $$ SELECT body FROM tv05.docs WHERE name = p_name $$;
-- Runs p_sql as p_role (SET ROLE for that one statement, then back to the
-- role that was current) and returns the first column of its first row as
-- text (bytea as '\x...'), or the error it raises as 'SQLSTATE message /
-- detail / hint'.  tv05.refusal() is the refusal open_document and
-- emergency_open should give: 42501, a detail that says why, and the logged
-- reason code in the hint.
CREATE FUNCTION tv05.as_role(p_role text, p_sql text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	prev text := current_setting('role');
	r text;
	st text;
	msg text;
	det text;
	hnt text;
BEGIN
	PERFORM set_config('role', p_role, false);
	BEGIN
		EXECUTE p_sql INTO r;
	EXCEPTION WHEN OTHERS THEN
		GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT,
			det = PG_EXCEPTION_DETAIL, hnt = PG_EXCEPTION_HINT;
		r := format('%s %s / %s / %s', st, msg, det, hnt);
	END;
	PERFORM set_config('role', prev, false);
	RETURN r;
END
$$;
-- run_as runs p_sql as p_role the same way but lets its error through;
-- sql_as gives the statement that does so, for throws_ok (whose
-- subtransaction, rolled back, also undoes the SET ROLE).
CREATE FUNCTION tv05.run_as(p_role text, p_sql text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
	prev text := current_setting('role');
BEGIN
	PERFORM set_config('role', p_role, false);
	EXECUTE p_sql;
	PERFORM set_config('role', prev, false);
END
$$;
CREATE FUNCTION tv05.sql_as(p_role text, p_sql text) RETURNS text LANGUAGE sql IMMUTABLE
	AS $$ SELECT format('SELECT tv05.run_as(%L, %L)', p_role, p_sql) $$;
CREATE FUNCTION tv05.refusal(p_name text, p_reason text) RETURNS text LANGUAGE sql STABLE AS $$
	SELECT format('42501 permission denied to open document %s / %s / The attempt is recorded in the decryption log (reason "%s").',
		d.doc_id,
		CASE p_reason
			WHEN 'not_a_member' THEN format('You hold no role in study "%s".', tv05.study())
			WHEN 'membership_revoked' THEN format('Your roles in study "%s" have been revoked.', tv05.study())
			WHEN 'sponsor_no_phi' THEN 'Sponsors see metadata only, never documents with PHI.'
			WHEN 'auditor_no_phi' THEN 'Auditors see logs and audit trails only, never documents with PHI.'
			WHEN 'monitor_not_authorized' THEN format('No investigator of site "%s" has authorized you as monitor.', d.site)
			WHEN 'monitor_authorization_expired' THEN format('Your monitor authorization for site "%s" has expired.', d.site)
			WHEN 'monitor_authorization_revoked' THEN format('Your monitor authorization for site "%s" was revoked.', d.site)
			WHEN 'other_site' THEN format('The document belongs to site "%s", where you hold no role.', d.site)
			WHEN 'emergency_not_authorized' THEN 'Emergency access needs membership in role trialvault_emergency.'
			WHEN 'emergency_reason_missing' THEN 'Emergency access needs a reason of at least three words.'
			WHEN 'not_entitled' THEN format('Your roles in study "%s" do not entitle you to this document.', tv05.study())
		END,
		p_reason)
	FROM tv05.docs d WHERE d.name = p_name
$$;
CREATE FUNCTION tv05.load_denied(p_site text) RETURNS text LANGUAGE sql STABLE
	AS $$ SELECT format('permission denied to load documents for site %s of study %s', p_site, tv05.study()) $$;

-- Loads a document as the current role and remembers its id and content.
CREATE FUNCTION tv05.load(p_name text, p_site text, p_type text, p_phi boolean, p_body text)
	RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
	id bigint;
BEGIN
	id := trialvault.load_document(tv05.study(), p_site, p_type, p_phi,
		'<doc><visit>1</visit><form>F-01</form></doc>'::xml, convert_to(p_body, 'UTF8'));
	INSERT INTO tv05.docs VALUES (p_name, id, p_site, p_phi, convert_to(p_body, 'UTF8'));
	RETURN id;
END
$$;

-- The decryption_log row written for (document, requester) since the last
-- look, as 'granted|refused REASON REQUESTER STUDY/SITE [emergency: WHY]'
-- (STUDY is "S" when it is this run's study; NULLs print as "-").  Anything
-- other than exactly one new row is reported as such.  Superuser only.
CREATE FUNCTION tv05.logged_id(p_doc bigint, p_requester name) RETURNS text
	LANGUAGE plpgsql AS $$
DECLARE
	since bigint;
	n bigint;
	r record;
BEGIN
	SELECT coalesce(max(s.last_log), 0) INTO since FROM tv05.seen s
		WHERE s.doc_id = p_doc AND s.requester = p_requester;
	SELECT count(*) INTO n FROM trialvault.decryption_log l
		WHERE l.doc_id = p_doc AND l.requester = p_requester
		  AND l.log_id > since AND l.requested_at >= now();
	IF n <> 1 THEN
		RETURN format('%s new log rows', n);
	END IF;
	SELECT * INTO r FROM trialvault.decryption_log l
		WHERE l.doc_id = p_doc AND l.requester = p_requester
		  AND l.log_id > since AND l.requested_at >= now();
	INSERT INTO tv05.seen VALUES (p_doc, p_requester, r.log_id)
		ON CONFLICT (doc_id, requester) DO UPDATE SET last_log = excluded.last_log;
	RETURN format('%s %s %s %s/%s%s',
		CASE WHEN r.granted THEN 'granted' ELSE 'refused' END, r.reason, r.requester,
		CASE WHEN r.study = tv05.study() THEN 'S' ELSE coalesce(r.study, '-') END,
		coalesce(r.site, '-'),
		CASE WHEN r.emergency THEN ' emergency: ' || coalesce(r.emergency_reason, '-')
			 WHEN r.emergency_reason IS NOT NULL THEN ' (not emergency, reason given)'
			 ELSE '' END);
END
$$;
CREATE FUNCTION tv05.logged(p_name text, p_requester name) RETURNS text LANGUAGE sql
	AS $$ SELECT tv05.logged_id(tv05.doc(p_name), p_requester) $$;

-- One row of a table of open attempts, as one test (run as the superuser):
--   'open' / 'emergency_open': the call (emergency_open with p_reason) as
--       p_role gives the document's content (p_expected 'content') or the
--       refusal for the reason code p_expected (tv05.refusal);
--   'logged': the decryption_log row p_role's last attempt at p_doc left
--       (tv05.logged) is p_expected.
CREATE FUNCTION tv05.check(p_role text, p_step text, p_doc text, p_expected text, p_description text,
	p_reason text DEFAULT NULL) RETURNS text LANGUAGE sql AS $$
	SELECT CASE p_step
		WHEN 'logged' THEN is(tv05.logged(p_doc, p_role), p_expected, p_description)
		ELSE is(tv05.as_role(p_role, CASE p_step
					WHEN 'open' THEN format('SELECT trialvault.open_document(%s)', tv05.doc(p_doc))
					WHEN 'emergency_open' THEN format('SELECT trialvault.emergency_open(%s, %L)', tv05.doc(p_doc), p_reason)
				END),
			CASE p_expected WHEN 'content' THEN tv05.body(p_doc)::text ELSE tv05.refusal(p_doc, p_expected) END,
			p_description)
	END
$$;

-- Login roles (rolled back at the end).
CREATE ROLE tv05_admin LOGIN IN ROLE trialvault_admin;
CREATE ROLE tv05_outsider LOGIN;
CREATE ROLE tv05_staff_a LOGIN;
CREATE ROLE tv05_staff_a2 LOGIN;
CREATE ROLE tv05_inv_a LOGIN;
CREATE ROLE tv05_inv_b LOGIN;
CREATE ROLE tv05_staff_b LOGIN;
CREATE ROLE tv05_mon LOGIN;
CREATE ROLE tv05_mon2 LOGIN;
CREATE ROLE tv05_mon3 LOGIN;
CREATE ROLE tv05_safety LOGIN;
CREATE ROLE tv05_sponsor LOGIN;
CREATE ROLE tv05_auditor LOGIN;
CREATE ROLE tv05_revoked LOGIN;
CREATE ROLE tv05_emerg LOGIN IN ROLE trialvault_emergency;

-- ---------------------------------------------------------------------
-- Management: trialvault_admin only
-- ---------------------------------------------------------------------
SET ROLE tv05_outsider;
SELECT throws_ok($$SELECT trialvault.create_study(tv05.study(), 'Access rules')$$,
	'42501', 'permission denied to create a study', 'create_study refused to a plain login role');

SET ROLE tv05_admin;
SELECT ok(trialvault.create_study(tv05.study(), 'Access rules') > 0,
	'create_study allowed to a (non-superuser) member of trialvault_admin');
SELECT trialvault.require_signatures(tv05.study(), false);
SELECT lives_ok($$SELECT trialvault.add_site(tv05.study(), s, 'Site ' || s) FROM (VALUES ('A'), ('B')) v(s)$$,
	'add_site allowed to a member of trialvault_admin');
SELECT lives_ok($$SELECT trialvault.grant_role(m, tv05.study(), s, r) FROM (VALUES
		('tv05_staff_a', 'A', 'site_staff'), ('tv05_staff_a2', 'A', 'site_staff'),
		('tv05_inv_a', 'A', 'investigator'), ('tv05_inv_b', 'B', 'investigator'),
		('tv05_staff_b', 'B', 'site_staff'), ('tv05_revoked', 'A', 'site_staff'),
		('tv05_mon', NULL, 'monitor'), ('tv05_mon2', NULL, 'monitor'), ('tv05_mon3', NULL, 'monitor'),
		('tv05_safety', NULL, 'safety'), ('tv05_sponsor', NULL, 'sponsor'),
		('tv05_auditor', NULL, 'auditor')) v(m, s, r)$$,
	'grant_role allowed to a member of trialvault_admin');
RESET ROLE;
-- Monitors step up (a second factor) before open_document shows them PHI.
\ir include/step_up.sql
SELECT pg_temp.step_up_as(m) FROM unnest(ARRAY['tv05_mon', 'tv05_mon2', 'tv05_mon3']::name[]) m;
SELECT is((SELECT count(*) FROM trialvault.current_memberships WHERE study = tv05.study()), 12::bigint,
	'the study has the 12 granted roles');

-- Management calls refused (42501) to roles outside trialvault_admin: the
-- role, the call, the message.
SELECT throws_ok(tv05.sql_as(c.role, c.sql), '42501', c.message, c.description) FROM (VALUES
	('tv05_outsider', $$SELECT trialvault.add_site(tv05.study(), 'C', 'Site C')$$,
		'permission denied to add a site', 'add_site refused to a plain login role'),
	('tv05_outsider', $$SELECT trialvault.grant_role('tv05_outsider', tv05.study(), 'A', 'investigator')$$,
		'permission denied to grant_role', 'grant_role refused to a plain login role'),
	('tv05_outsider', $$SELECT trialvault.revoke_role('tv05_staff_a', tv05.study(), 'A', 'site_staff')$$,
		'permission denied to revoke_role', 'revoke_role refused to a plain login role'),
	('tv05_outsider', $$SELECT trialvault.rotate_study_key(tv05.study())$$,
		'permission denied to rotate a study key', 'rotate_study_key refused to a plain login role'),
	('tv05_inv_a', $$SELECT trialvault.grant_role('tv05_outsider', tv05.study(), 'A', 'site_staff')$$,
		'permission denied to grant_role', 'grant_role refused to an investigator of the study')
) c(role, sql, message, description);
SELECT is((SELECT count(*) FROM trialvault.current_memberships WHERE study = tv05.study()), 12::bigint,
	'the refused calls changed no membership');

-- ---------------------------------------------------------------------
-- Loading: site staff and investigators of that site only
-- ---------------------------------------------------------------------
-- Loads allowed: the role, the document (name, site, type, PHI, text).
SELECT ok(tv05.as_role(c.role, format('SELECT tv05.load(%L, %L, %L, %L, %L) > 0',
		c.name, c.site, c.doc_type, c.phi, c.body)) = 'true', c.description) FROM (VALUES
	('tv05_staff_a', 'src', 'A', 'source', true,
		'Source note: patient Jane Roe, MRN 4711-SRC, born 1970-01-01, 12 Elm Street',
		'site staff loads a PHI source document at their site'),
	('tv05_staff_a', 'sae', 'A', 'sae', true,
		'SAE report: patient John Doe, MRN 4712-SAE, anaphylaxis after dose 3',
		'site staff loads a PHI sae document'),
	('tv05_staff_a', 'proto', 'A', 'protocol', false,
		'Protocol v2.1: inclusion criteria, visit schedule (no PHI)',
		'site staff loads a protocol without PHI'),
	('tv05_inv_a', 'inv', 'A', 'eform', true,
		'eForm entered by investigator: patient Mary Major, MRN 4713-INV',
		'an investigator loads a PHI document at their site'),
	('tv05_staff_b', 'b', 'B', 'source', true,
		'Site B source note: patient Richard Miles, MRN 4714-B',
		'site staff of site B loads at site B')
) c(role, name, site, doc_type, phi, body, description);
-- Loads at site A refused (42501): the role, the document's type and PHI flag.
SELECT throws_ok(tv05.sql_as(c.role,
		format($$SELECT trialvault.load_document(tv05.study(), 'A', %L, %s, '<doc/>', '\x0102')$$, c.doc_type, c.phi::text)),
	'42501', tv05.load_denied('A'), c.description) FROM (VALUES
	('tv05_staff_b', 'source', true, 'load_document refused to site staff of another site'),
	('tv05_sponsor', 'protocol', false, 'load_document refused to the sponsor'),
	('tv05_mon', 'source', true, 'load_document refused to a monitor'),
	('tv05_outsider', 'source', true, 'load_document refused to a role outside the study')
) c(role, doc_type, phi, description);
SELECT is((SELECT string_agg(t.name || '=' || d.loaded_by || '@' || d.site, ' ' ORDER BY t.name)
	FROM tv05.docs t JOIN trialvault.documents d USING (doc_id)),
	'b=tv05_staff_b@B inv=tv05_inv_a@A proto=tv05_staff_a@A sae=tv05_staff_a@A src=tv05_staff_a@A',
	'documents record their loader and site; refused loads left no document');
SELECT is((SELECT count(*) FROM trialvault.documents WHERE study = tv05.study()), 5::bigint,
	'exactly the five allowed loads are stored');
SELECT is((SELECT d.content FROM trialvault.documents d WHERE d.doc_id = tv05.doc('proto') AND d.content_enc IS NULL),
	tv05.body('proto'), 'a document without PHI is stored as it is');

-- ---------------------------------------------------------------------
-- One study at a time: nothing opens before the session opens the study
-- (it stays open for the session, whichever member it acts as).
-- ---------------------------------------------------------------------
SET ROLE tv05_staff_a;
SELECT throws_ok(format('SELECT trialvault.open_document(%s)', tv05.doc('src')),
	'42501', format('permission denied to open document %s', tv05.doc('src')),
	'open_document refuses before open_study, even the loader');
RESET ROLE;
SELECT is(tv05.logged('src', 'tv05_staff_a'), 'refused study_not_open tv05_staff_a S/A',
	'logged: refused, study_not_open');
SET ROLE tv05_staff_a;
SELECT lives_ok(format('SELECT trialvault.open_study(%L)', tv05.study()), 'the loader opens the study');
RESET ROLE;

-- ---------------------------------------------------------------------
-- Loader, site staff and investigator of the document's site; other site
-- ---------------------------------------------------------------------
-- Open attempts, one test a row, in order (tv05.check): 'open' as the role
-- gives the content or the refusal of the reason code in "expected";
-- 'logged' is the decryption_log row the role's attempt left.
SELECT tv05.check(role, step, doc, expected, description) FROM (VALUES
	('tv05_staff_a', 'open', 'src', 'content', 'the loader opens the document'),
	('tv05_staff_a', 'logged', 'src', 'granted loader tv05_staff_a S/A', 'logged: granted, loader'),
	('tv05_staff_a2', 'open', 'src', 'content', 'other site staff of the site open it'),
	('tv05_staff_a2', 'logged', 'src', 'granted site_staff tv05_staff_a2 S/A', 'logged: granted, site_staff'),
	('tv05_inv_a', 'open', 'src', 'content', 'the investigator of the site opens it'),
	('tv05_inv_a', 'logged', 'src', 'granted investigator tv05_inv_a S/A', 'logged: granted, investigator'),
	('tv05_staff_a2', 'open', 'inv', 'content', 'site staff open a document the investigator loaded'),
	('tv05_staff_a2', 'logged', 'inv', 'granted site_staff tv05_staff_a2 S/A', 'logged: granted, site_staff'),
	('tv05_staff_b', 'open', 'src', 'other_site', 'site staff of another site are refused'),
	('tv05_staff_b', 'logged', 'src', 'refused other_site tv05_staff_b S/A', 'logged: refused, other_site'),
	('tv05_inv_b', 'open', 'src', 'other_site', 'the investigator of another site is refused'),
	('tv05_inv_b', 'logged', 'src', 'refused other_site tv05_inv_b S/A', 'logged: refused, other_site')
) c(role, step, doc, expected, description);

-- ---------------------------------------------------------------------
-- Monitors
-- ---------------------------------------------------------------------
SELECT tv05.check(role, step, doc, expected, description) FROM (VALUES
	('tv05_mon', 'open', 'src', 'monitor_not_authorized', 'a monitor without authorization is refused'),
	('tv05_mon', 'logged', 'src', 'refused monitor_not_authorized tv05_mon S/A', 'logged: refused, monitor_not_authorized')
) c(role, step, doc, expected, description);

-- authorize_monitor refused: the caller, the role to authorize, for how long
-- from now, the error.
SELECT throws_ok(tv05.sql_as(c.role,
		format($$SELECT trialvault.authorize_monitor(%L, tv05.study(), 'A', clock_timestamp() + %L::interval)$$, c.monitor, c.valid_for)),
	c.errcode, c.message, c.description) FROM (VALUES
	('tv05_staff_a', 'tv05_mon', '1 hour', '42501', 'permission denied to authorize a monitor',
		'authorize_monitor refused to site staff'),
	('tv05_inv_b', 'tv05_mon', '1 hour', '42501', 'permission denied to authorize a monitor',
		'authorize_monitor refused to the investigator of another site'),
	('tv05_admin', 'tv05_mon', '1 hour', '42501', 'permission denied to authorize a monitor',
		'authorize_monitor refused to a trialvault_admin who is no investigator'),
	('tv05_inv_a', 'tv05_outsider', '1 hour', '22023', format('tv05_outsider does not hold the monitor role in study %s', tv05.study()),
		'authorize_monitor refuses a role that does not hold the monitor role'),
	('tv05_inv_a', 'tv05_mon', '-1 second', '22023', 'valid_until must lie in the future',
		'authorize_monitor refuses a valid_until in the past')
) c(role, monitor, valid_for, errcode, message, description);
SELECT is((SELECT count(*) FROM trialvault.monitor_authorizations WHERE study = tv05.study()), 0::bigint,
	'the refused authorizations left no row');

SELECT tv05.check(role, step, doc, expected, description) FROM (VALUES
	('tv05_mon', 'open', 'src', 'monitor_not_authorized', 'the monitor is still refused after the refused authorizations'),
	('tv05_mon', 'logged', 'src', 'refused monitor_not_authorized tv05_mon S/A', 'logged: refused, monitor_not_authorized')
) c(role, step, doc, expected, description);

SET ROLE tv05_inv_a;
SELECT lives_ok($$SELECT trialvault.authorize_monitor('tv05_mon', tv05.study(), 'A', clock_timestamp() + interval '1 hour')$$,
	'the investigator of site A authorizes a monitor for site A');
RESET ROLE;
SELECT tv05.check(role, step, doc, expected, description) FROM (VALUES
	('tv05_mon', 'open', 'src', 'content', 'the authorized monitor opens a PHI document of the site'),
	('tv05_mon', 'logged', 'src', 'granted monitor tv05_mon S/A', 'logged: granted, monitor'),
	('tv05_mon', 'open', 'b', 'monitor_not_authorized', 'the monitor authorized for site A is refused at site B'),
	('tv05_mon', 'logged', 'b', 'refused monitor_not_authorized tv05_mon S/B', 'logged: refused, monitor_not_authorized (site B)')
) c(role, step, doc, expected, description);

-- A monitor authorized for another site only.
SET ROLE tv05_inv_b;
SELECT lives_ok($$SELECT trialvault.authorize_monitor('tv05_mon2', tv05.study(), 'B', clock_timestamp() + interval '1 hour')$$,
	'the investigator of site B authorizes a monitor for site B');
RESET ROLE;
SELECT tv05.check(role, step, doc, expected, description) FROM (VALUES
	('tv05_mon2', 'open', 'src', 'monitor_not_authorized', 'a monitor authorized for site B only is refused at site A'),
	('tv05_mon2', 'open', 'b', 'content', 'the same monitor opens the document of site B'),
	('tv05_mon2', 'logged', 'src', 'refused monitor_not_authorized tv05_mon2 S/A', 'logged: refused at site A, monitor_not_authorized'),
	('tv05_mon2', 'logged', 'b', 'granted monitor tv05_mon2 S/B', 'logged: granted at site B, monitor')
) c(role, step, doc, expected, description);

-- Revoking the monitor role ends its authorizations: granting the role
-- again does not bring them back.
SET ROLE tv05_admin;
SELECT lives_ok($$SELECT trialvault.revoke_role('tv05_mon2', tv05.study(), NULL, 'monitor')$$,
	'the monitor role of tv05_mon2 is revoked');
SELECT lives_ok($$SELECT trialvault.grant_role('tv05_mon2', tv05.study(), NULL, 'monitor')$$,
	'and granted again');
RESET ROLE;
SELECT tv05.check(role, step, doc, expected, description) FROM (VALUES
	('tv05_mon2', 'open', 'b', 'monitor_not_authorized', 'the authorization for site B given before the revocation does not come back'),
	('tv05_mon2', 'logged', 'b', 'refused monitor_not_authorized tv05_mon2 S/B', 'logged: refused at site B, monitor_not_authorized')
) c(role, step, doc, expected, description);

-- An authorization that expires.
SET ROLE tv05_inv_a;
SELECT lives_ok($$SELECT trialvault.authorize_monitor('tv05_mon3', tv05.study(), 'A', clock_timestamp() + interval '1 second')$$,
	'a one-second monitor authorization');
RESET ROLE;
SELECT tv05.check(role, step, doc, expected, description) FROM (VALUES
	('tv05_mon3', 'open', 'src', 'content', 'the monitor opens the document while it is valid'),
	('tv05_mon3', 'logged', 'src', 'granted monitor tv05_mon3 S/A', 'logged: granted, monitor')
) c(role, step, doc, expected, description);
DO $$ BEGIN PERFORM pg_sleep(1.2); END $$;
SELECT tv05.check(role, step, doc, expected, description) FROM (VALUES
	('tv05_mon3', 'open', 'src', 'monitor_authorization_expired', 'the monitor is refused once the authorization has expired'),
	('tv05_mon3', 'logged', 'src', 'refused monitor_authorization_expired tv05_mon3 S/A', 'logged: refused, monitor_authorization_expired')
) c(role, step, doc, expected, description);

-- Revocation.
SET ROLE tv05_inv_b;
SELECT throws_ok($$SELECT trialvault.revoke_monitor('tv05_mon', tv05.study(), 'A')$$,
	'42501', 'permission denied to revoke a monitor', 'revoke_monitor refused to the investigator of another site');
RESET ROLE;
SELECT tv05.check(role, step, doc, expected, description) FROM (VALUES
	('tv05_mon', 'open', 'sae', 'content', 'the monitor still opens documents of site A'),
	('tv05_mon', 'logged', 'sae', 'granted monitor tv05_mon S/A', 'logged: granted, monitor')
) c(role, step, doc, expected, description);
SET ROLE tv05_inv_a;
SELECT lives_ok($$SELECT trialvault.revoke_monitor('tv05_mon', tv05.study(), 'A')$$,
	'the investigator of site A revokes the monitor');
RESET ROLE;
SELECT tv05.check(role, step, doc, expected, description) FROM (VALUES
	('tv05_mon', 'open', 'src', 'monitor_authorization_revoked', 'the revoked monitor is refused'),
	('tv05_mon', 'logged', 'src', 'refused monitor_authorization_revoked tv05_mon S/A', 'logged: refused, monitor_authorization_revoked'),
	('tv05_mon', 'open', 'proto', 'content', 'the revoked monitor is still a member and opens documents without PHI'),
	('tv05_mon', 'logged', 'proto', 'granted no_phi tv05_mon S/A', 'logged: granted, no_phi')
) c(role, step, doc, expected, description);

-- ---------------------------------------------------------------------
-- Safety: sae documents only.  Sponsor and auditor: never PHI; documents
-- without PHI: any member
-- ---------------------------------------------------------------------
SELECT tv05.check(role, step, doc, expected, description) FROM (VALUES
	('tv05_safety', 'open', 'sae', 'content', 'safety opens an sae document'),
	('tv05_safety', 'logged', 'sae', 'granted safety tv05_safety S/A', 'logged: granted, safety'),
	('tv05_safety', 'open', 'src', 'not_entitled', 'safety is refused a PHI document that is not an sae'),
	('tv05_safety', 'logged', 'src', 'refused not_entitled tv05_safety S/A', 'logged: refused, not_entitled'),

	('tv05_sponsor', 'open', 'src', 'sponsor_no_phi', 'the sponsor is refused a PHI document'),
	('tv05_sponsor', 'open', 'sae', 'sponsor_no_phi', 'the sponsor is refused a PHI sae document'),
	('tv05_sponsor', 'open', 'proto', 'content', 'the sponsor opens the protocol (no PHI)'),
	('tv05_sponsor', 'logged', 'src', 'refused sponsor_no_phi tv05_sponsor S/A', 'logged: refused, sponsor_no_phi'),
	('tv05_sponsor', 'logged', 'sae', 'refused sponsor_no_phi tv05_sponsor S/A', 'logged: refused (sae), sponsor_no_phi'),
	('tv05_sponsor', 'logged', 'proto', 'granted no_phi tv05_sponsor S/A', 'logged: granted, no_phi'),

	('tv05_auditor', 'open', 'src', 'auditor_no_phi', 'the auditor is refused a PHI document'),
	('tv05_auditor', 'open', 'proto', 'content', 'the auditor opens the protocol (no PHI)'),
	('tv05_auditor', 'logged', 'src', 'refused auditor_no_phi tv05_auditor S/A', 'logged: refused, auditor_no_phi'),
	('tv05_auditor', 'logged', 'proto', 'granted no_phi tv05_auditor S/A', 'logged: granted, no_phi'),

	('tv05_staff_b', 'open', 'proto', 'content', 'site staff of another site open a document without PHI'),
	('tv05_staff_b', 'logged', 'proto', 'granted no_phi tv05_staff_b S/A', 'logged: granted, no_phi'),

	('tv05_outsider', 'open', 'proto', 'not_a_member', 'a role outside the study is refused even a document without PHI'),
	('tv05_outsider', 'logged', 'proto', 'refused not_a_member tv05_outsider S/A', 'logged: refused, not_a_member')
) c(role, step, doc, expected, description);

-- ---------------------------------------------------------------------
-- Revoked membership, and a new grant
-- ---------------------------------------------------------------------
SELECT tv05.check(role, step, doc, expected, description) FROM (VALUES
	('tv05_revoked', 'open', 'src', 'content', 'site staff open the document before revocation'),
	('tv05_revoked', 'logged', 'src', 'granted site_staff tv05_revoked S/A', 'logged: granted, site_staff')
) c(role, step, doc, expected, description);
SET ROLE tv05_admin;
SELECT lives_ok($$SELECT trialvault.revoke_role('tv05_revoked', tv05.study(), 'A', 'site_staff')$$,
	'revoke_role allowed to a member of trialvault_admin');
RESET ROLE;
SELECT tv05.check(role, step, doc, expected, description) FROM (VALUES
	('tv05_revoked', 'open', 'src', 'membership_revoked', 'a revoked member is refused at once'),
	('tv05_revoked', 'open', 'proto', 'membership_revoked', 'a revoked member is refused even a document without PHI'),
	('tv05_revoked', 'logged', 'src', 'refused membership_revoked tv05_revoked S/A', 'logged: refused, membership_revoked'),
	('tv05_revoked', 'logged', 'proto', 'refused membership_revoked tv05_revoked S/A', 'logged: refused (no PHI), membership_revoked')
) c(role, step, doc, expected, description);
SET ROLE tv05_admin;
SELECT lives_ok($$SELECT trialvault.grant_role('tv05_revoked', tv05.study(), 'A', 'site_staff')$$,
	'the role is granted again');
RESET ROLE;
SELECT tv05.check(role, step, doc, expected, description) FROM (VALUES
	('tv05_revoked', 'open', 'src', 'content', 'after the new grant the document opens again'),
	('tv05_revoked', 'logged', 'src', 'granted site_staff tv05_revoked S/A', 'logged: granted, site_staff')
) c(role, step, doc, expected, description);

-- A loader whose roles are revoked is no longer let in as the loader.
SET ROLE tv05_admin;
SELECT lives_ok($$SELECT trialvault.revoke_role('tv05_staff_b', tv05.study(), 'B', 'site_staff')$$,
	'site staff of site B revoked');
RESET ROLE;
SELECT tv05.check(role, step, doc, expected, description) FROM (VALUES
	('tv05_staff_b', 'open', 'b', 'membership_revoked', 'the loader is refused after their membership is revoked'),
	('tv05_staff_b', 'logged', 'b', 'refused membership_revoked tv05_staff_b S/B', 'logged: refused, membership_revoked')
) c(role, step, doc, expected, description);

-- ---------------------------------------------------------------------
-- Emergency access
-- ---------------------------------------------------------------------
-- Attempts at document src as above; 'emergency_open' calls emergency_open
-- with the reason given.
SELECT tv05.check(role, step, 'src', expected, description, reason) FROM (VALUES
	('tv05_staff_a2', 'emergency_open', 'Patient collapsed in clinic, allergy list needed now', 'emergency_not_authorized',
		'emergency_open refused to a non-member of trialvault_emergency (even site staff)'),
	('tv05_staff_a2', 'logged', NULL,
		'refused emergency_not_authorized tv05_staff_a2 S/A emergency: Patient collapsed in clinic, allergy list needed now',
		'logged: refused, emergency_not_authorized, marked as emergency'),
	('tv05_emerg', 'emergency_open', 'urgent', 'emergency_reason_missing', 'emergency_open refuses a one-word reason'),
	('tv05_emerg', 'logged', NULL, 'refused emergency_reason_missing tv05_emerg S/A emergency: urgent',
		'logged: refused, emergency_reason_missing'),
	('tv05_emerg', 'emergency_open', 'need it now', 'emergency_reason_missing',
		'emergency_open refuses a three-word reason shorter than 12 characters'),
	('tv05_emerg', 'logged', NULL, 'refused emergency_reason_missing tv05_emerg S/A emergency: need it now',
		'logged: refused, emergency_reason_missing'),
	('tv05_emerg', 'emergency_open', 'Patient collapsed in clinic, allergy list needed now', 'content',
		'emergency_open with a proper reason returns the content'),
	('tv05_emerg', 'logged', NULL,
		'granted emergency tv05_emerg S/A emergency: Patient collapsed in clinic, allergy list needed now',
		'logged: granted, emergency, with the reason'),
	('tv05_emerg', 'open', NULL, 'not_a_member', 'the emergency role alone gives no ordinary access'),
	('tv05_emerg', 'logged', NULL, 'refused not_a_member tv05_emerg S/A', 'logged: refused, not_a_member, not emergency')
) c(role, step, reason, expected, description);

-- ---------------------------------------------------------------------
-- No such document
-- ---------------------------------------------------------------------
SET ROLE tv05_outsider;
SELECT throws_ok($$SELECT trialvault.open_document(-4242)$$, '42704', 'document -4242 does not exist',
	'a missing document: 42704');
RESET ROLE;
SELECT is(tv05.logged_id(-4242, 'tv05_outsider'), 'refused no_such_document tv05_outsider -/-',
	'logged: refused, no_such_document');

-- ---------------------------------------------------------------------
-- Key rotation
-- ---------------------------------------------------------------------
SELECT is((SELECT get_byte(content_enc, 10) FROM trialvault.documents WHERE doc_id = tv05.doc('src')), 1,
	'a document loaded before rotation is under data key version 1');
SET ROLE tv05_admin;
SELECT is(trialvault.rotate_study_key(tv05.study()), 2, 'rotate_study_key allowed to trialvault_admin: version 2');
SET ROLE tv05_staff_a;
SELECT ok(tv05.load('rot', 'A', 'source', true,
	'Post-rotation note: patient Jane Roe, MRN 4711-ROT, follow-up visit') > 0,
	'a document is loaded after the rotation');
RESET ROLE;
SELECT is((SELECT get_byte(content_enc, 10) FROM trialvault.documents WHERE doc_id = tv05.doc('rot')), 2,
	'the new document is under data key version 2');
SELECT tv05.check(role, step, doc, expected, description) FROM (VALUES
	('tv05_staff_a', 'open', 'src', 'content', 'the document from before the rotation still opens'),
	('tv05_staff_a', 'open', 'rot', 'content', 'the document from after the rotation opens'),
	('tv05_staff_a', 'logged', 'src', 'granted loader tv05_staff_a S/A', 'logged: granted, loader (old key)'),
	('tv05_staff_a', 'logged', 'rot', 'granted loader tv05_staff_a S/A', 'logged: granted, loader (new key)')
) c(role, step, doc, expected, description);

-- ---------------------------------------------------------------------
-- PHI is not stored in plain; the log as a whole
-- ---------------------------------------------------------------------
SELECT is((SELECT string_agg(format('%s:%s,%s,%s', t.name, d.content IS NULL, d.content_enc IS NOT NULL,
		position(t.body IN d.content_enc) = 0 AND position(convert_to('patient ', 'UTF8') IN d.content_enc) = 0), ' ' ORDER BY t.name)
	FROM tv05.docs t JOIN trialvault.documents d USING (doc_id) WHERE t.phi),
	'b:t,t,t inv:t,t,t rot:t,t,t sae:t,t,t src:t,t,t',
	'PHI documents: content NULL, content_enc set, neither the text nor "patient " in the ciphertext');
SELECT is((SELECT count(*) FROM trialvault.documents d JOIN tv05.docs t USING (doc_id)
	WHERE d.content_sha256 <> sha256(t.body) OR d.content_length <> length(t.body)), 0::bigint,
	'fingerprint and length are those of the plaintext');
SELECT is((SELECT array_agg(DISTINCT session_user_name::text) FROM trialvault.decryption_log
	WHERE doc_id IN (SELECT doc_id FROM tv05.docs) AND requested_at >= now()), ARRAY['postgres'],
	'the log keeps the session user apart from the requester (SET ROLE)');
SELECT is((SELECT count(*) FROM trialvault.decryption_log l
	WHERE (l.doc_id IN (SELECT doc_id FROM tv05.docs) OR (l.doc_id = -4242 AND l.requester = 'tv05_outsider'))
	  AND l.requested_at >= now()
	  AND l.log_id > coalesce((SELECT s.last_log FROM tv05.seen s
							   WHERE s.doc_id = l.doc_id AND s.requester = l.requester), 0)), 0::bigint,
	'every log row of this run was accounted for: one per call, no extra rows');

SELECT * FROM finish();
ROLLBACK;

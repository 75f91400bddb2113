-- Who may open what (issue 3): every access rule of open_document and
-- emergency_open, allowed and refused, each with its decryption_log row;
-- who may call the management functions and load_document; key rotation;
-- PHI never stored in plain.
--
-- The log rows are written by the log writer in its own transaction, so they
-- outlive this suite's ROLLBACK.  Each run uses a study code of its own, and
-- tv05.logged() only looks at rows for this run's documents written since it
-- last looked, so reruns on the same cluster do not see each other's rows.
-- Refusals of open_document/emergency_open are checked through tv05.err():
-- SQLSTATE 42501, the message, the detail that says why, and the hint that
-- names the logged reason code.
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
-- The error a statement raises, as 'SQLSTATE message / detail / hint' (or
-- 'no error'), and the refusal open_document and emergency_open should give:
-- 42501, a detail that says why, and the logged reason code in the hint.
CREATE FUNCTION tv05.err(p_sql text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	st text;
	msg text;
	det text;
	hnt text;
BEGIN
	EXECUTE p_sql;
	RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT,
		det = PG_EXCEPTION_DETAIL, hnt = PG_EXCEPTION_HINT;
	RETURN format('%s %s / %s / %s', st, msg, det, hnt);
END
$$;
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
SELECT is((SELECT count(*) FROM trialvault.current_memberships WHERE study = tv05.study()), 12::bigint,
	'the study has the 12 granted roles');

SET ROLE tv05_outsider;
SELECT throws_ok($$SELECT trialvault.add_site(tv05.study(), 'C', 'Site C')$$,
	'42501', 'permission denied to add a site', 'add_site refused to a plain login role');
SELECT throws_ok($$SELECT trialvault.grant_role('tv05_outsider', tv05.study(), 'A', 'investigator')$$,
	'42501', 'permission denied to grant_role', 'grant_role refused to a plain login role');
SELECT throws_ok($$SELECT trialvault.revoke_role('tv05_staff_a', tv05.study(), 'A', 'site_staff')$$,
	'42501', 'permission denied to revoke_role', 'revoke_role refused to a plain login role');
SELECT throws_ok($$SELECT trialvault.rotate_study_key(tv05.study())$$,
	'42501', 'permission denied to rotate a study key', 'rotate_study_key refused to a plain login role');
SET ROLE tv05_inv_a;
SELECT throws_ok($$SELECT trialvault.grant_role('tv05_outsider', tv05.study(), 'A', 'site_staff')$$,
	'42501', 'permission denied to grant_role', 'grant_role refused to an investigator of the study');
RESET ROLE;
SELECT is((SELECT count(*) FROM trialvault.current_memberships WHERE study = tv05.study()), 12::bigint,
	'the refused calls changed no membership');

-- ---------------------------------------------------------------------
-- Loading: site staff and investigators of that site only
-- ---------------------------------------------------------------------
SET ROLE tv05_staff_a;
SELECT ok(tv05.load('src', 'A', 'source', true,
	'Source note: patient Jane Roe, MRN 4711-SRC, born 1970-01-01, 12 Elm Street') > 0,
	'site staff loads a PHI source document at their site');
SELECT ok(tv05.load('sae', 'A', 'sae', true,
	'SAE report: patient John Doe, MRN 4712-SAE, anaphylaxis after dose 3') > 0,
	'site staff loads a PHI sae document');
SELECT ok(tv05.load('proto', 'A', 'protocol', false,
	'Protocol v2.1: inclusion criteria, visit schedule (no PHI)') > 0,
	'site staff loads a protocol without PHI');
SET ROLE tv05_inv_a;
SELECT ok(tv05.load('inv', 'A', 'eform', true,
	'eForm entered by investigator: patient Mary Major, MRN 4713-INV') > 0,
	'an investigator loads a PHI document at their site');
SET ROLE tv05_staff_b;
SELECT ok(tv05.load('b', 'B', 'source', true,
	'Site B source note: patient Richard Miles, MRN 4714-B') > 0,
	'site staff of site B loads at site B');
SELECT throws_ok($$SELECT trialvault.load_document(tv05.study(), 'A', 'source', true, '<doc/>', '\x0102')$$,
	'42501', tv05.load_denied('A'), 'load_document refused to site staff of another site');
SET ROLE tv05_sponsor;
SELECT throws_ok($$SELECT trialvault.load_document(tv05.study(), 'A', 'protocol', false, '<doc/>', '\x0102')$$,
	'42501', tv05.load_denied('A'), 'load_document refused to the sponsor');
SET ROLE tv05_mon;
SELECT throws_ok($$SELECT trialvault.load_document(tv05.study(), 'A', 'source', true, '<doc/>', '\x0102')$$,
	'42501', tv05.load_denied('A'), 'load_document refused to a monitor');
SET ROLE tv05_outsider;
SELECT throws_ok($$SELECT trialvault.load_document(tv05.study(), 'A', 'source', true, '<doc/>', '\x0102')$$,
	'42501', tv05.load_denied('A'), 'load_document refused to a role outside the study');
RESET ROLE;
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

-- ---------------------------------------------------------------------
-- Loader, site staff and investigator of the document's site; other site
-- ---------------------------------------------------------------------
SET ROLE tv05_staff_a;
SELECT is(trialvault.open_document(tv05.doc('src')), tv05.body('src'), 'the loader opens the document');
RESET ROLE;
SELECT is(tv05.logged('src', 'tv05_staff_a'), 'granted loader tv05_staff_a S/A', 'logged: granted, loader');

SET ROLE tv05_staff_a2;
SELECT is(trialvault.open_document(tv05.doc('src')), tv05.body('src'), 'other site staff of the site open it');
RESET ROLE;
SELECT is(tv05.logged('src', 'tv05_staff_a2'), 'granted site_staff tv05_staff_a2 S/A', 'logged: granted, site_staff');

SET ROLE tv05_inv_a;
SELECT is(trialvault.open_document(tv05.doc('src')), tv05.body('src'), 'the investigator of the site opens it');
RESET ROLE;
SELECT is(tv05.logged('src', 'tv05_inv_a'), 'granted investigator tv05_inv_a S/A', 'logged: granted, investigator');

SET ROLE tv05_staff_a2;
SELECT is(trialvault.open_document(tv05.doc('inv')), tv05.body('inv'),
	'site staff open a document the investigator loaded');
RESET ROLE;
SELECT is(tv05.logged('inv', 'tv05_staff_a2'), 'granted site_staff tv05_staff_a2 S/A', 'logged: granted, site_staff');

SET ROLE tv05_staff_b;
SELECT is(tv05.err($$SELECT trialvault.open_document(tv05.doc('src'))$$), tv05.refusal('src', 'other_site'),
	'site staff of another site are refused');
RESET ROLE;
SELECT is(tv05.logged('src', 'tv05_staff_b'), 'refused other_site tv05_staff_b S/A', 'logged: refused, other_site');

SET ROLE tv05_inv_b;
SELECT is(tv05.err($$SELECT trialvault.open_document(tv05.doc('src'))$$), tv05.refusal('src', 'other_site'),
	'the investigator of another site is refused');
RESET ROLE;
SELECT is(tv05.logged('src', 'tv05_inv_b'), 'refused other_site tv05_inv_b S/A', 'logged: refused, other_site');

-- ---------------------------------------------------------------------
-- Monitors
-- ---------------------------------------------------------------------
SET ROLE tv05_mon;
SELECT is(tv05.err($$SELECT trialvault.open_document(tv05.doc('src'))$$), tv05.refusal('src', 'monitor_not_authorized'),
	'a monitor without authorization is refused');
RESET ROLE;
SELECT is(tv05.logged('src', 'tv05_mon'), 'refused monitor_not_authorized tv05_mon S/A',
	'logged: refused, monitor_not_authorized');

SET ROLE tv05_staff_a;
SELECT throws_ok($$SELECT trialvault.authorize_monitor('tv05_mon', tv05.study(), 'A', clock_timestamp() + interval '1 hour')$$,
	'42501', 'permission denied to authorize a monitor', 'authorize_monitor refused to site staff');
SET ROLE tv05_inv_b;
SELECT throws_ok($$SELECT trialvault.authorize_monitor('tv05_mon', tv05.study(), 'A', clock_timestamp() + interval '1 hour')$$,
	'42501', 'permission denied to authorize a monitor', 'authorize_monitor refused to the investigator of another site');
SET ROLE tv05_admin;
SELECT throws_ok($$SELECT trialvault.authorize_monitor('tv05_mon', tv05.study(), 'A', clock_timestamp() + interval '1 hour')$$,
	'42501', 'permission denied to authorize a monitor', 'authorize_monitor refused to a trialvault_admin who is no investigator');
SET ROLE tv05_inv_a;
SELECT throws_ok($$SELECT trialvault.authorize_monitor('tv05_outsider', tv05.study(), 'A', clock_timestamp() + interval '1 hour')$$,
	'22023', format('tv05_outsider does not hold the monitor role in study %s', tv05.study()),
	'authorize_monitor refuses a role that does not hold the monitor role');
SELECT throws_ok($$SELECT trialvault.authorize_monitor('tv05_mon', tv05.study(), 'A', clock_timestamp() - interval '1 second')$$,
	'22023', 'valid_until must lie in the future', 'authorize_monitor refuses a valid_until in the past');
RESET ROLE;
SELECT is((SELECT count(*) FROM trialvault.monitor_authorizations WHERE study = tv05.study()), 0::bigint,
	'the refused authorizations left no row');

SET ROLE tv05_mon;
SELECT is(tv05.err($$SELECT trialvault.open_document(tv05.doc('src'))$$), tv05.refusal('src', 'monitor_not_authorized'),
	'the monitor is still refused after the refused authorizations');
RESET ROLE;
SELECT is(tv05.logged('src', 'tv05_mon'), 'refused monitor_not_authorized tv05_mon S/A',
	'logged: refused, monitor_not_authorized');

SET ROLE tv05_inv_a;
SELECT lives_ok($$SELECT trialvault.authorize_monitor('tv05_mon', tv05.study(), 'A', clock_timestamp() + interval '1 hour')$$,
	'the investigator of site A authorizes a monitor for site A');
SET ROLE tv05_mon;
SELECT is(trialvault.open_document(tv05.doc('src')), tv05.body('src'), 'the authorized monitor opens a PHI document of the site');
RESET ROLE;
SELECT is(tv05.logged('src', 'tv05_mon'), 'granted monitor tv05_mon S/A', 'logged: granted, monitor');
SET ROLE tv05_mon;
SELECT is(tv05.err($$SELECT trialvault.open_document(tv05.doc('b'))$$), tv05.refusal('b', 'monitor_not_authorized'),
	'the monitor authorized for site A is refused at site B');
RESET ROLE;
SELECT is(tv05.logged('b', 'tv05_mon'), 'refused monitor_not_authorized tv05_mon S/B',
	'logged: refused, monitor_not_authorized (site B)');

-- A monitor authorized for another site only.
SET ROLE tv05_inv_b;
SELECT lives_ok($$SELECT trialvault.authorize_monitor('tv05_mon2', tv05.study(), 'B', clock_timestamp() + interval '1 hour')$$,
	'the investigator of site B authorizes a monitor for site B');
SET ROLE tv05_mon2;
SELECT is(tv05.err($$SELECT trialvault.open_document(tv05.doc('src'))$$), tv05.refusal('src', 'monitor_not_authorized'),
	'a monitor authorized for site B only is refused at site A');
SELECT is(trialvault.open_document(tv05.doc('b')), tv05.body('b'), 'the same monitor opens the document of site B');
RESET ROLE;
SELECT is(tv05.logged('src', 'tv05_mon2'), 'refused monitor_not_authorized tv05_mon2 S/A',
	'logged: refused at site A, monitor_not_authorized');
SELECT is(tv05.logged('b', 'tv05_mon2'), 'granted monitor tv05_mon2 S/B', 'logged: granted at site B, monitor');

-- Revoking the monitor role ends its authorizations: granting the role
-- again does not bring them back.
SET ROLE tv05_admin;
SELECT lives_ok($$SELECT trialvault.revoke_role('tv05_mon2', tv05.study(), NULL, 'monitor')$$,
	'the monitor role of tv05_mon2 is revoked');
SELECT lives_ok($$SELECT trialvault.grant_role('tv05_mon2', tv05.study(), NULL, 'monitor')$$,
	'and granted again');
SET ROLE tv05_mon2;
SELECT is(tv05.err($$SELECT trialvault.open_document(tv05.doc('b'))$$), tv05.refusal('b', 'monitor_not_authorized'),
	'the authorization for site B given before the revocation does not come back');
RESET ROLE;
SELECT is(tv05.logged('b', 'tv05_mon2'), 'refused monitor_not_authorized tv05_mon2 S/B',
	'logged: refused at site B, monitor_not_authorized');

-- An authorization that expires.
SET ROLE tv05_inv_a;
SELECT lives_ok($$SELECT trialvault.authorize_monitor('tv05_mon3', tv05.study(), 'A', clock_timestamp() + interval '1 second')$$,
	'a one-second monitor authorization');
SET ROLE tv05_mon3;
SELECT is(trialvault.open_document(tv05.doc('src')), tv05.body('src'), 'the monitor opens the document while it is valid');
RESET ROLE;
SELECT is(tv05.logged('src', 'tv05_mon3'), 'granted monitor tv05_mon3 S/A', 'logged: granted, monitor');
DO $$ BEGIN PERFORM pg_sleep(1.2); END $$;
SET ROLE tv05_mon3;
SELECT is(tv05.err($$SELECT trialvault.open_document(tv05.doc('src'))$$), tv05.refusal('src', 'monitor_authorization_expired'),
	'the monitor is refused once the authorization has expired');
RESET ROLE;
SELECT is(tv05.logged('src', 'tv05_mon3'), 'refused monitor_authorization_expired tv05_mon3 S/A',
	'logged: refused, monitor_authorization_expired');

-- Revocation.
SET ROLE tv05_inv_b;
SELECT throws_ok($$SELECT trialvault.revoke_monitor('tv05_mon', tv05.study(), 'A')$$,
	'42501', 'permission denied to revoke a monitor', 'revoke_monitor refused to the investigator of another site');
SET ROLE tv05_mon;
SELECT is(trialvault.open_document(tv05.doc('sae')), tv05.body('sae'), 'the monitor still opens documents of site A');
RESET ROLE;
SELECT is(tv05.logged('sae', 'tv05_mon'), 'granted monitor tv05_mon S/A', 'logged: granted, monitor');
SET ROLE tv05_inv_a;
SELECT lives_ok($$SELECT trialvault.revoke_monitor('tv05_mon', tv05.study(), 'A')$$,
	'the investigator of site A revokes the monitor');
SET ROLE tv05_mon;
SELECT is(tv05.err($$SELECT trialvault.open_document(tv05.doc('src'))$$), tv05.refusal('src', 'monitor_authorization_revoked'),
	'the revoked monitor is refused');
RESET ROLE;
SELECT is(tv05.logged('src', 'tv05_mon'), 'refused monitor_authorization_revoked tv05_mon S/A',
	'logged: refused, monitor_authorization_revoked');
SET ROLE tv05_mon;
SELECT is(trialvault.open_document(tv05.doc('proto')), tv05.body('proto'),
	'the revoked monitor is still a member and opens documents without PHI');
RESET ROLE;
SELECT is(tv05.logged('proto', 'tv05_mon'), 'granted no_phi tv05_mon S/A', 'logged: granted, no_phi');

-- ---------------------------------------------------------------------
-- Safety: sae documents only
-- ---------------------------------------------------------------------
SET ROLE tv05_safety;
SELECT is(trialvault.open_document(tv05.doc('sae')), tv05.body('sae'), 'safety opens an sae document');
RESET ROLE;
SELECT is(tv05.logged('sae', 'tv05_safety'), 'granted safety tv05_safety S/A', 'logged: granted, safety');
SET ROLE tv05_safety;
SELECT is(tv05.err($$SELECT trialvault.open_document(tv05.doc('src'))$$), tv05.refusal('src', 'not_entitled'),
	'safety is refused a PHI document that is not an sae');
RESET ROLE;
SELECT is(tv05.logged('src', 'tv05_safety'), 'refused not_entitled tv05_safety S/A', 'logged: refused, not_entitled');

-- ---------------------------------------------------------------------
-- Sponsor and auditor: never PHI; documents without PHI: any member
-- ---------------------------------------------------------------------
SET ROLE tv05_sponsor;
SELECT is(tv05.err($$SELECT trialvault.open_document(tv05.doc('src'))$$), tv05.refusal('src', 'sponsor_no_phi'),
	'the sponsor is refused a PHI document');
SELECT is(tv05.err($$SELECT trialvault.open_document(tv05.doc('sae'))$$), tv05.refusal('sae', 'sponsor_no_phi'),
	'the sponsor is refused a PHI sae document');
SELECT is(trialvault.open_document(tv05.doc('proto')), tv05.body('proto'), 'the sponsor opens the protocol (no PHI)');
RESET ROLE;
SELECT is(tv05.logged('src', 'tv05_sponsor'), 'refused sponsor_no_phi tv05_sponsor S/A', 'logged: refused, sponsor_no_phi');
SELECT is(tv05.logged('sae', 'tv05_sponsor'), 'refused sponsor_no_phi tv05_sponsor S/A', 'logged: refused (sae), sponsor_no_phi');
SELECT is(tv05.logged('proto', 'tv05_sponsor'), 'granted no_phi tv05_sponsor S/A', 'logged: granted, no_phi');

SET ROLE tv05_auditor;
SELECT is(tv05.err($$SELECT trialvault.open_document(tv05.doc('src'))$$), tv05.refusal('src', 'auditor_no_phi'),
	'the auditor is refused a PHI document');
SELECT is(trialvault.open_document(tv05.doc('proto')), tv05.body('proto'), 'the auditor opens the protocol (no PHI)');
RESET ROLE;
SELECT is(tv05.logged('src', 'tv05_auditor'), 'refused auditor_no_phi tv05_auditor S/A', 'logged: refused, auditor_no_phi');
SELECT is(tv05.logged('proto', 'tv05_auditor'), 'granted no_phi tv05_auditor S/A', 'logged: granted, no_phi');

SET ROLE tv05_staff_b;
SELECT is(trialvault.open_document(tv05.doc('proto')), tv05.body('proto'),
	'site staff of another site open a document without PHI');
RESET ROLE;
SELECT is(tv05.logged('proto', 'tv05_staff_b'), 'granted no_phi tv05_staff_b S/A', 'logged: granted, no_phi');

SET ROLE tv05_outsider;
SELECT is(tv05.err($$SELECT trialvault.open_document(tv05.doc('proto'))$$), tv05.refusal('proto', 'not_a_member'),
	'a role outside the study is refused even a document without PHI');
RESET ROLE;
SELECT is(tv05.logged('proto', 'tv05_outsider'), 'refused not_a_member tv05_outsider S/A', 'logged: refused, not_a_member');

-- ---------------------------------------------------------------------
-- Revoked membership, and a new grant
-- ---------------------------------------------------------------------
SET ROLE tv05_revoked;
SELECT is(trialvault.open_document(tv05.doc('src')), tv05.body('src'), 'site staff open the document before revocation');
RESET ROLE;
SELECT is(tv05.logged('src', 'tv05_revoked'), 'granted site_staff tv05_revoked S/A', 'logged: granted, site_staff');
SET ROLE tv05_admin;
SELECT lives_ok($$SELECT trialvault.revoke_role('tv05_revoked', tv05.study(), 'A', 'site_staff')$$,
	'revoke_role allowed to a member of trialvault_admin');
SET ROLE tv05_revoked;
SELECT is(tv05.err($$SELECT trialvault.open_document(tv05.doc('src'))$$), tv05.refusal('src', 'membership_revoked'),
	'a revoked member is refused at once');
SELECT is(tv05.err($$SELECT trialvault.open_document(tv05.doc('proto'))$$), tv05.refusal('proto', 'membership_revoked'),
	'a revoked member is refused even a document without PHI');
RESET ROLE;
SELECT is(tv05.logged('src', 'tv05_revoked'), 'refused membership_revoked tv05_revoked S/A',
	'logged: refused, membership_revoked');
SELECT is(tv05.logged('proto', 'tv05_revoked'), 'refused membership_revoked tv05_revoked S/A',
	'logged: refused (no PHI), membership_revoked');
SET ROLE tv05_admin;
SELECT lives_ok($$SELECT trialvault.grant_role('tv05_revoked', tv05.study(), 'A', 'site_staff')$$,
	'the role is granted again');
SET ROLE tv05_revoked;
SELECT is(trialvault.open_document(tv05.doc('src')), tv05.body('src'), 'after the new grant the document opens again');
RESET ROLE;
SELECT is(tv05.logged('src', 'tv05_revoked'), 'granted site_staff tv05_revoked S/A', 'logged: granted, site_staff');

-- A loader whose roles are revoked is no longer let in as the loader.
SET ROLE tv05_admin;
SELECT lives_ok($$SELECT trialvault.revoke_role('tv05_staff_b', tv05.study(), 'B', 'site_staff')$$,
	'site staff of site B revoked');
SET ROLE tv05_staff_b;
SELECT is(tv05.err($$SELECT trialvault.open_document(tv05.doc('b'))$$), tv05.refusal('b', 'membership_revoked'),
	'the loader is refused after their membership is revoked');
RESET ROLE;
SELECT is(tv05.logged('b', 'tv05_staff_b'), 'refused membership_revoked tv05_staff_b S/B',
	'logged: refused, membership_revoked');

-- ---------------------------------------------------------------------
-- Emergency access
-- ---------------------------------------------------------------------
SET ROLE tv05_staff_a2;
SELECT is(tv05.err($$SELECT trialvault.emergency_open(tv05.doc('src'), 'Patient collapsed in clinic, allergy list needed now')$$),
	tv05.refusal('src', 'emergency_not_authorized'), 'emergency_open refused to a non-member of trialvault_emergency (even site staff)');
RESET ROLE;
SELECT is(tv05.logged('src', 'tv05_staff_a2'),
	'refused emergency_not_authorized tv05_staff_a2 S/A emergency: Patient collapsed in clinic, allergy list needed now',
	'logged: refused, emergency_not_authorized, marked as emergency');

SET ROLE tv05_emerg;
SELECT is(tv05.err($$SELECT trialvault.emergency_open(tv05.doc('src'), 'urgent')$$),
	tv05.refusal('src', 'emergency_reason_missing'), 'emergency_open refuses a one-word reason');
RESET ROLE;
SELECT is(tv05.logged('src', 'tv05_emerg'), 'refused emergency_reason_missing tv05_emerg S/A emergency: urgent',
	'logged: refused, emergency_reason_missing');
SET ROLE tv05_emerg;
SELECT is(tv05.err($$SELECT trialvault.emergency_open(tv05.doc('src'), 'need it now')$$),
	tv05.refusal('src', 'emergency_reason_missing'), 'emergency_open refuses a three-word reason shorter than 12 characters');
RESET ROLE;
SELECT is(tv05.logged('src', 'tv05_emerg'), 'refused emergency_reason_missing tv05_emerg S/A emergency: need it now',
	'logged: refused, emergency_reason_missing');
SET ROLE tv05_emerg;
SELECT is(trialvault.emergency_open(tv05.doc('src'), 'Patient collapsed in clinic, allergy list needed now'),
	tv05.body('src'), 'emergency_open with a proper reason returns the content');
RESET ROLE;
SELECT is(tv05.logged('src', 'tv05_emerg'),
	'granted emergency tv05_emerg S/A emergency: Patient collapsed in clinic, allergy list needed now',
	'logged: granted, emergency, with the reason');
SET ROLE tv05_emerg;
SELECT is(tv05.err($$SELECT trialvault.open_document(tv05.doc('src'))$$), tv05.refusal('src', 'not_a_member'),
	'the emergency role alone gives no ordinary access');
RESET ROLE;
SELECT is(tv05.logged('src', 'tv05_emerg'), 'refused not_a_member tv05_emerg S/A', 'logged: refused, not_a_member, not emergency');

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
SET ROLE tv05_staff_a;
SELECT is(trialvault.open_document(tv05.doc('src')), tv05.body('src'), 'the document from before the rotation still opens');
SELECT is(trialvault.open_document(tv05.doc('rot')), tv05.body('rot'), 'the document from after the rotation opens');
RESET ROLE;
SELECT is(tv05.logged('src', 'tv05_staff_a'), 'granted loader tv05_staff_a S/A', 'logged: granted, loader (old key)');
SELECT is(tv05.logged('rot', 'tv05_staff_a'), 'granted loader tv05_staff_a S/A', 'logged: granted, loader (new key)');

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

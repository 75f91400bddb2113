-- open_document decides in C, by the rules of extension/rules.c: the
-- everyday grants (loader, no PHI, site staff, investigator, safety for
-- SAE), monitors authorized for the document's site, and the reason for
-- each refusal.  This suite runs every role of a fixture that covers each
-- rule, its corners and the refusals next to them, on every document, and
-- compares open_document's outcome (its decryption_log row and its error or
-- plaintext) with what the rules say, written out below call by call (it is
-- what the SQL decision of 0.5, _open_decision(), said on this fixture).
-- Then it runs the matrix again after roles change in this transaction,
-- which the roles cache must not hide.
--
-- my_documents shows the fingerprint of a PHI document's plaintext only to
-- those the same rules let open it; that is checked on the same matrix.
--
-- Log rows are written by the log writer and outlive the ROLLBACK; each run
-- uses a study code of its own.
BEGIN;
SELECT plan(15);
\o /dev/null

CREATE SCHEMA tv08;
CREATE TABLE tv08.cfg (study text NOT NULL);
INSERT INTO tv08.cfg VALUES ('PATH08-' || substr(md5(random()::text || clock_timestamp()::text), 1, 12));
CREATE FUNCTION tv08.study() RETURNS text LANGUAGE sql STABLE AS $$ SELECT study FROM tv08.cfg $$;
CREATE TABLE tv08.docs (name text PRIMARY KEY, doc_id bigint NOT NULL, body bytea NOT NULL);
CREATE TABLE tv08.users (u name PRIMARY KEY);
GRANT USAGE ON SCHEMA tv08 TO PUBLIC;
GRANT SELECT ON tv08.cfg TO PUBLIC;
GRANT SELECT, INSERT ON tv08.docs TO PUBLIC;

CREATE FUNCTION tv08.load(p_name text, p_site text, p_type text, p_phi boolean)
	RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
	id bigint;
	body bytea := convert_to(format('%s at %s (%s): patient Jane Roe, MRN %s', p_type, p_site, p_name,
		md5(p_name)), 'UTF8');
BEGIN
	id := trialvault.load_document(tv08.study(), p_site, p_type, p_phi,
		'<doc><visit>2</visit><form>F-08</form></doc>'::xml, body);
	INSERT INTO tv08.docs VALUES (p_name, id, body);
	RETURN id;
END
$$;

-- One call of open_document as role p_user: 'granted|refused REASON', from
-- the newest log row of that call, followed by ' ok' when the plaintext
-- returned is the loaded one, or by the SQLSTATE of the error.
CREATE FUNCTION tv08.try(p_user name, p_doc bigint) RETURNS text
	LANGUAGE plpgsql AS $$
DECLARE
	got bytea;
	st text := 'ok';
	r record;
	before bigint := (SELECT coalesce(max(log_id), 0) FROM trialvault.decryption_log);
BEGIN
	BEGIN
		EXECUTE format('SET LOCAL ROLE %I', p_user);
		got := trialvault.open_document(p_doc);
		IF got IS DISTINCT FROM (SELECT body FROM tv08.docs WHERE doc_id = p_doc) THEN
			st := 'wrong plaintext';
		END IF;
		RESET ROLE;
	EXCEPTION WHEN OTHERS THEN
		st := SQLSTATE;
	END;
	RESET ROLE;
	SELECT count(*) AS n, max(l.granted::int) AS g, max(l.reason) AS reason INTO r
		FROM trialvault.decryption_log l
		WHERE l.log_id > before AND l.doc_id = p_doc AND l.requester = p_user;
	IF r.n <> 1 THEN
		RETURN format('%s log rows', r.n);
	END IF;
	RETURN format('%s %s %s', CASE WHEN r.g = 1 THEN 'granted' ELSE 'refused' END, r.reason, st);
END
$$;

-- What the rules say for each call, before the role changes below (round
-- 1) and after them (round 2): 'granted|refused REASON' and ' ok' or the
-- SQLSTATE of the refusal.
CREATE TABLE tv08.expected (round int, u name, name text, outcome text,
	PRIMARY KEY (round, u, name));
INSERT INTO tv08.expected SELECT 1, * FROM (VALUES
	('tv08_auditor', 'a_exl', 'refused auditor_no_phi 42501'),
	('tv08_auditor', 'a_proto', 'granted no_phi ok'),
	('tv08_auditor', 'a_rev', 'refused auditor_no_phi 42501'),
	('tv08_auditor', 'a_sae', 'refused auditor_no_phi 42501'),
	('tv08_auditor', 'a_src', 'refused auditor_no_phi 42501'),
	('tv08_auditor', 'ab_src', 'refused auditor_no_phi 42501'),
	('tv08_auditor', 'b_crf', 'granted no_phi ok'),
	('tv08_auditor', 'b_sae', 'refused auditor_no_phi 42501'),
	('tv08_auditor', 'b_src', 'refused auditor_no_phi 42501'),
	('tv08_auditor', 'missing', 'refused no_such_document 42704'),
	('tv08_ex_loader', 'a_exl', 'granted loader ok'),
	('tv08_ex_loader', 'a_proto', 'granted no_phi ok'),
	('tv08_ex_loader', 'a_rev', 'refused sponsor_no_phi 42501'),
	('tv08_ex_loader', 'a_sae', 'refused sponsor_no_phi 42501'),
	('tv08_ex_loader', 'a_src', 'refused sponsor_no_phi 42501'),
	('tv08_ex_loader', 'ab_src', 'refused sponsor_no_phi 42501'),
	('tv08_ex_loader', 'b_crf', 'granted no_phi ok'),
	('tv08_ex_loader', 'b_sae', 'refused sponsor_no_phi 42501'),
	('tv08_ex_loader', 'b_src', 'refused sponsor_no_phi 42501'),
	('tv08_ex_loader', 'missing', 'refused no_such_document 42704'),
	('tv08_inv_a', 'a_exl', 'granted investigator ok'),
	('tv08_inv_a', 'a_proto', 'granted no_phi ok'),
	('tv08_inv_a', 'a_rev', 'granted investigator ok'),
	('tv08_inv_a', 'a_sae', 'granted investigator ok'),
	('tv08_inv_a', 'a_src', 'granted investigator ok'),
	('tv08_inv_a', 'ab_src', 'refused other_site 42501'),
	('tv08_inv_a', 'b_crf', 'granted no_phi ok'),
	('tv08_inv_a', 'b_sae', 'refused other_site 42501'),
	('tv08_inv_a', 'b_src', 'refused other_site 42501'),
	('tv08_inv_a', 'missing', 'refused no_such_document 42704'),
	('tv08_inv_b', 'a_exl', 'refused other_site 42501'),
	('tv08_inv_b', 'a_proto', 'granted no_phi ok'),
	('tv08_inv_b', 'a_rev', 'refused other_site 42501'),
	('tv08_inv_b', 'a_sae', 'refused other_site 42501'),
	('tv08_inv_b', 'a_src', 'refused other_site 42501'),
	('tv08_inv_b', 'ab_src', 'refused other_site 42501'),
	('tv08_inv_b', 'b_crf', 'granted loader ok'),
	('tv08_inv_b', 'b_sae', 'granted loader ok'),
	('tv08_inv_b', 'b_src', 'granted loader ok'),
	('tv08_inv_b', 'missing', 'refused no_such_document 42704'),
	('tv08_mon', 'a_exl', 'granted monitor ok'),
	('tv08_mon', 'a_proto', 'granted no_phi ok'),
	('tv08_mon', 'a_rev', 'granted monitor ok'),
	('tv08_mon', 'a_sae', 'granted monitor ok'),
	('tv08_mon', 'a_src', 'granted monitor ok'),
	('tv08_mon', 'ab_src', 'refused monitor_not_authorized 42501'),
	('tv08_mon', 'b_crf', 'granted no_phi ok'),
	('tv08_mon', 'b_sae', 'refused monitor_not_authorized 42501'),
	('tv08_mon', 'b_src', 'refused monitor_not_authorized 42501'),
	('tv08_mon', 'missing', 'refused no_such_document 42704'),
	('tv08_outsider', 'a_exl', 'refused not_a_member 42501'),
	('tv08_outsider', 'a_proto', 'refused not_a_member 42501'),
	('tv08_outsider', 'a_rev', 'refused not_a_member 42501'),
	('tv08_outsider', 'a_sae', 'refused not_a_member 42501'),
	('tv08_outsider', 'a_src', 'refused not_a_member 42501'),
	('tv08_outsider', 'ab_src', 'refused not_a_member 42501'),
	('tv08_outsider', 'b_crf', 'refused not_a_member 42501'),
	('tv08_outsider', 'b_sae', 'refused not_a_member 42501'),
	('tv08_outsider', 'b_src', 'refused not_a_member 42501'),
	('tv08_outsider', 'missing', 'refused no_such_document 42704'),
	('tv08_revoked', 'a_exl', 'refused membership_revoked 42501'),
	('tv08_revoked', 'a_proto', 'refused membership_revoked 42501'),
	('tv08_revoked', 'a_rev', 'refused membership_revoked 42501'),
	('tv08_revoked', 'a_sae', 'refused membership_revoked 42501'),
	('tv08_revoked', 'a_src', 'refused membership_revoked 42501'),
	('tv08_revoked', 'ab_src', 'refused membership_revoked 42501'),
	('tv08_revoked', 'b_crf', 'refused membership_revoked 42501'),
	('tv08_revoked', 'b_sae', 'refused membership_revoked 42501'),
	('tv08_revoked', 'b_src', 'refused membership_revoked 42501'),
	('tv08_revoked', 'missing', 'refused no_such_document 42704'),
	('tv08_safety_b', 'a_exl', 'refused other_site 42501'),
	('tv08_safety_b', 'a_proto', 'granted no_phi ok'),
	('tv08_safety_b', 'a_rev', 'refused other_site 42501'),
	('tv08_safety_b', 'a_sae', 'granted safety ok'),
	('tv08_safety_b', 'a_src', 'refused other_site 42501'),
	('tv08_safety_b', 'ab_src', 'refused other_site 42501'),
	('tv08_safety_b', 'b_crf', 'granted no_phi ok'),
	('tv08_safety_b', 'b_sae', 'granted site_staff ok'),
	('tv08_safety_b', 'b_src', 'granted site_staff ok'),
	('tv08_safety_b', 'missing', 'refused no_such_document 42704'),
	('tv08_safety', 'a_exl', 'refused not_entitled 42501'),
	('tv08_safety', 'a_proto', 'granted no_phi ok'),
	('tv08_safety', 'a_rev', 'refused not_entitled 42501'),
	('tv08_safety', 'a_sae', 'granted safety ok'),
	('tv08_safety', 'a_src', 'refused not_entitled 42501'),
	('tv08_safety', 'ab_src', 'refused not_entitled 42501'),
	('tv08_safety', 'b_crf', 'granted no_phi ok'),
	('tv08_safety', 'b_sae', 'granted safety ok'),
	('tv08_safety', 'b_src', 'refused not_entitled 42501'),
	('tv08_safety', 'missing', 'refused no_such_document 42704'),
	('tv08_sponsor', 'a_exl', 'refused sponsor_no_phi 42501'),
	('tv08_sponsor', 'a_proto', 'granted no_phi ok'),
	('tv08_sponsor', 'a_rev', 'refused sponsor_no_phi 42501'),
	('tv08_sponsor', 'a_sae', 'refused sponsor_no_phi 42501'),
	('tv08_sponsor', 'a_src', 'refused sponsor_no_phi 42501'),
	('tv08_sponsor', 'ab_src', 'refused sponsor_no_phi 42501'),
	('tv08_sponsor', 'b_crf', 'granted no_phi ok'),
	('tv08_sponsor', 'b_sae', 'refused sponsor_no_phi 42501'),
	('tv08_sponsor', 'b_src', 'refused sponsor_no_phi 42501'),
	('tv08_sponsor', 'missing', 'refused no_such_document 42704'),
	('tv08_staff_a', 'a_exl', 'granted site_staff ok'),
	('tv08_staff_a', 'a_proto', 'granted loader ok'),
	('tv08_staff_a', 'a_rev', 'granted site_staff ok'),
	('tv08_staff_a', 'a_sae', 'granted loader ok'),
	('tv08_staff_a', 'a_src', 'granted loader ok'),
	('tv08_staff_a', 'ab_src', 'refused other_site 42501'),
	('tv08_staff_a', 'b_crf', 'granted no_phi ok'),
	('tv08_staff_a', 'b_sae', 'refused other_site 42501'),
	('tv08_staff_a', 'b_src', 'refused other_site 42501'),
	('tv08_staff_a', 'missing', 'refused no_such_document 42704'),
	('tv08_staff_b', 'a_exl', 'refused other_site 42501'),
	('tv08_staff_b', 'a_proto', 'granted no_phi ok'),
	('tv08_staff_b', 'a_rev', 'refused other_site 42501'),
	('tv08_staff_b', 'a_sae', 'refused other_site 42501'),
	('tv08_staff_b', 'a_src', 'refused other_site 42501'),
	('tv08_staff_b', 'ab_src', 'granted loader ok'),
	('tv08_staff_b', 'b_crf', 'granted no_phi ok'),
	('tv08_staff_b', 'b_sae', 'granted site_staff ok'),
	('tv08_staff_b', 'b_src', 'granted site_staff ok'),
	('tv08_staff_b', 'missing', 'refused no_such_document 42704')) v;
INSERT INTO tv08.expected SELECT 2, * FROM (VALUES
	('tv08_auditor', 'a_exl', 'refused auditor_no_phi 42501'),
	('tv08_auditor', 'a_proto', 'granted no_phi ok'),
	('tv08_auditor', 'a_rev', 'refused auditor_no_phi 42501'),
	('tv08_auditor', 'a_sae', 'refused auditor_no_phi 42501'),
	('tv08_auditor', 'a_src', 'refused auditor_no_phi 42501'),
	('tv08_auditor', 'ab_src', 'refused auditor_no_phi 42501'),
	('tv08_auditor', 'b_crf', 'granted no_phi ok'),
	('tv08_auditor', 'b_sae', 'refused auditor_no_phi 42501'),
	('tv08_auditor', 'b_src', 'refused auditor_no_phi 42501'),
	('tv08_auditor', 'missing', 'refused no_such_document 42704'),
	('tv08_ex_loader', 'a_exl', 'granted loader ok'),
	('tv08_ex_loader', 'a_proto', 'granted no_phi ok'),
	('tv08_ex_loader', 'a_rev', 'refused other_site 42501'),
	('tv08_ex_loader', 'a_sae', 'refused other_site 42501'),
	('tv08_ex_loader', 'a_src', 'refused other_site 42501'),
	('tv08_ex_loader', 'ab_src', 'refused other_site 42501'),
	('tv08_ex_loader', 'b_crf', 'granted no_phi ok'),
	('tv08_ex_loader', 'b_sae', 'granted site_staff ok'),
	('tv08_ex_loader', 'b_src', 'granted site_staff ok'),
	('tv08_ex_loader', 'missing', 'refused no_such_document 42704'),
	('tv08_inv_a', 'a_exl', 'granted investigator ok'),
	('tv08_inv_a', 'a_proto', 'granted no_phi ok'),
	('tv08_inv_a', 'a_rev', 'granted investigator ok'),
	('tv08_inv_a', 'a_sae', 'granted investigator ok'),
	('tv08_inv_a', 'a_src', 'granted investigator ok'),
	('tv08_inv_a', 'ab_src', 'refused other_site 42501'),
	('tv08_inv_a', 'b_crf', 'granted no_phi ok'),
	('tv08_inv_a', 'b_sae', 'refused other_site 42501'),
	('tv08_inv_a', 'b_src', 'refused other_site 42501'),
	('tv08_inv_a', 'missing', 'refused no_such_document 42704'),
	('tv08_inv_b', 'a_exl', 'refused other_site 42501'),
	('tv08_inv_b', 'a_proto', 'granted no_phi ok'),
	('tv08_inv_b', 'a_rev', 'refused other_site 42501'),
	('tv08_inv_b', 'a_sae', 'refused other_site 42501'),
	('tv08_inv_b', 'a_src', 'refused other_site 42501'),
	('tv08_inv_b', 'ab_src', 'refused other_site 42501'),
	('tv08_inv_b', 'b_crf', 'granted loader ok'),
	('tv08_inv_b', 'b_sae', 'granted loader ok'),
	('tv08_inv_b', 'b_src', 'granted loader ok'),
	('tv08_inv_b', 'missing', 'refused no_such_document 42704'),
	('tv08_mon', 'a_exl', 'granted monitor ok'),
	('tv08_mon', 'a_proto', 'granted no_phi ok'),
	('tv08_mon', 'a_rev', 'granted monitor ok'),
	('tv08_mon', 'a_sae', 'granted monitor ok'),
	('tv08_mon', 'a_src', 'granted monitor ok'),
	('tv08_mon', 'ab_src', 'refused monitor_not_authorized 42501'),
	('tv08_mon', 'b_crf', 'granted no_phi ok'),
	('tv08_mon', 'b_sae', 'refused monitor_not_authorized 42501'),
	('tv08_mon', 'b_src', 'refused monitor_not_authorized 42501'),
	('tv08_mon', 'missing', 'refused no_such_document 42704'),
	('tv08_outsider', 'a_exl', 'refused not_entitled 42501'),
	('tv08_outsider', 'a_proto', 'granted no_phi ok'),
	('tv08_outsider', 'a_rev', 'refused not_entitled 42501'),
	('tv08_outsider', 'a_sae', 'granted safety ok'),
	('tv08_outsider', 'a_src', 'refused not_entitled 42501'),
	('tv08_outsider', 'ab_src', 'refused not_entitled 42501'),
	('tv08_outsider', 'b_crf', 'granted no_phi ok'),
	('tv08_outsider', 'b_sae', 'granted safety ok'),
	('tv08_outsider', 'b_src', 'refused not_entitled 42501'),
	('tv08_outsider', 'missing', 'refused no_such_document 42704'),
	('tv08_revoked', 'a_exl', 'refused membership_revoked 42501'),
	('tv08_revoked', 'a_proto', 'refused membership_revoked 42501'),
	('tv08_revoked', 'a_rev', 'refused membership_revoked 42501'),
	('tv08_revoked', 'a_sae', 'refused membership_revoked 42501'),
	('tv08_revoked', 'a_src', 'refused membership_revoked 42501'),
	('tv08_revoked', 'ab_src', 'refused membership_revoked 42501'),
	('tv08_revoked', 'b_crf', 'refused membership_revoked 42501'),
	('tv08_revoked', 'b_sae', 'refused membership_revoked 42501'),
	('tv08_revoked', 'b_src', 'refused membership_revoked 42501'),
	('tv08_revoked', 'missing', 'refused no_such_document 42704'),
	('tv08_safety_b', 'a_exl', 'refused other_site 42501'),
	('tv08_safety_b', 'a_proto', 'granted no_phi ok'),
	('tv08_safety_b', 'a_rev', 'refused other_site 42501'),
	('tv08_safety_b', 'a_sae', 'granted safety ok'),
	('tv08_safety_b', 'a_src', 'refused other_site 42501'),
	('tv08_safety_b', 'ab_src', 'refused other_site 42501'),
	('tv08_safety_b', 'b_crf', 'granted no_phi ok'),
	('tv08_safety_b', 'b_sae', 'granted site_staff ok'),
	('tv08_safety_b', 'b_src', 'granted site_staff ok'),
	('tv08_safety_b', 'missing', 'refused no_such_document 42704'),
	('tv08_safety', 'a_exl', 'refused membership_revoked 42501'),
	('tv08_safety', 'a_proto', 'refused membership_revoked 42501'),
	('tv08_safety', 'a_rev', 'refused membership_revoked 42501'),
	('tv08_safety', 'a_sae', 'refused membership_revoked 42501'),
	('tv08_safety', 'a_src', 'refused membership_revoked 42501'),
	('tv08_safety', 'ab_src', 'refused membership_revoked 42501'),
	('tv08_safety', 'b_crf', 'refused membership_revoked 42501'),
	('tv08_safety', 'b_sae', 'refused membership_revoked 42501'),
	('tv08_safety', 'b_src', 'refused membership_revoked 42501'),
	('tv08_safety', 'missing', 'refused no_such_document 42704'),
	('tv08_sponsor', 'a_exl', 'refused sponsor_no_phi 42501'),
	('tv08_sponsor', 'a_proto', 'granted no_phi ok'),
	('tv08_sponsor', 'a_rev', 'refused sponsor_no_phi 42501'),
	('tv08_sponsor', 'a_sae', 'refused sponsor_no_phi 42501'),
	('tv08_sponsor', 'a_src', 'refused sponsor_no_phi 42501'),
	('tv08_sponsor', 'ab_src', 'refused sponsor_no_phi 42501'),
	('tv08_sponsor', 'b_crf', 'granted no_phi ok'),
	('tv08_sponsor', 'b_sae', 'refused sponsor_no_phi 42501'),
	('tv08_sponsor', 'b_src', 'refused sponsor_no_phi 42501'),
	('tv08_sponsor', 'missing', 'refused no_such_document 42704'),
	('tv08_staff_a', 'a_exl', 'refused membership_revoked 42501'),
	('tv08_staff_a', 'a_proto', 'refused membership_revoked 42501'),
	('tv08_staff_a', 'a_rev', 'refused membership_revoked 42501'),
	('tv08_staff_a', 'a_sae', 'refused membership_revoked 42501'),
	('tv08_staff_a', 'a_src', 'refused membership_revoked 42501'),
	('tv08_staff_a', 'ab_src', 'refused membership_revoked 42501'),
	('tv08_staff_a', 'b_crf', 'refused membership_revoked 42501'),
	('tv08_staff_a', 'b_sae', 'refused membership_revoked 42501'),
	('tv08_staff_a', 'b_src', 'refused membership_revoked 42501'),
	('tv08_staff_a', 'missing', 'refused no_such_document 42704'),
	('tv08_staff_b', 'a_exl', 'granted investigator ok'),
	('tv08_staff_b', 'a_proto', 'granted no_phi ok'),
	('tv08_staff_b', 'a_rev', 'granted investigator ok'),
	('tv08_staff_b', 'a_sae', 'granted investigator ok'),
	('tv08_staff_b', 'a_src', 'granted investigator ok'),
	('tv08_staff_b', 'ab_src', 'granted loader ok'),
	('tv08_staff_b', 'b_crf', 'granted no_phi ok'),
	('tv08_staff_b', 'b_sae', 'granted site_staff ok'),
	('tv08_staff_b', 'b_src', 'granted site_staff ok'),
	('tv08_staff_b', 'missing', 'refused no_such_document 42704')) v;
CREATE FUNCTION tv08.expect(p_round int, p_user name, p_doc bigint) RETURNS text
	LANGUAGE sql AS $$
	SELECT e.outcome FROM tv08.expected e JOIN tv08.docs d USING (name)
	WHERE e.round = p_round AND e.u = p_user AND d.doc_id = p_doc
$$;

-- Every user on every document: the calls that do not go as written.
CREATE FUNCTION tv08.mismatches(p_round int) RETURNS text LANGUAGE sql AS $$
	SELECT coalesce(string_agg(format('%s on %s: open_document %s, expected %s', x.u, x.name, x.got, x.want),
		'; ' ORDER BY x.u, x.name), 'none')
	FROM (SELECT u.u, d.name, tv08.try(u.u, d.doc_id) AS got, tv08.expect(p_round, u.u, d.doc_id) AS want
		  FROM tv08.users u CROSS JOIN tv08.docs d) x
	WHERE x.got IS DISTINCT FROM x.want
$$;
CREATE FUNCTION tv08.granted_count(p_round int) RETURNS bigint LANGUAGE sql AS $$
	SELECT count(*) FROM tv08.expected WHERE round = p_round AND outcome LIKE 'granted %'
$$;

CREATE ROLE tv08_staff_a LOGIN;
CREATE ROLE tv08_inv_a LOGIN;
CREATE ROLE tv08_staff_b LOGIN;
CREATE ROLE tv08_inv_b LOGIN;
CREATE ROLE tv08_safety LOGIN;
CREATE ROLE tv08_safety_b LOGIN;		-- safety and site staff of B
CREATE ROLE tv08_sponsor LOGIN;
CREATE ROLE tv08_auditor LOGIN;
CREATE ROLE tv08_mon LOGIN;
CREATE ROLE tv08_revoked LOGIN;		-- site staff of A, revoked
CREATE ROLE tv08_ex_loader LOGIN;		-- loaded at A, now sponsor only
CREATE ROLE tv08_outsider LOGIN;
INSERT INTO tv08.users SELECT rolname FROM pg_roles WHERE rolname LIKE 'tv08\_%';

SELECT trialvault.create_study(tv08.study(), 'Decision paths');
SELECT trialvault.require_signatures(tv08.study(), false);
SELECT trialvault.add_site(tv08.study(), s, 'Site ' || s) FROM (VALUES ('A'), ('B'), ('AB')) v(s);
SELECT trialvault.grant_role(m, tv08.study(), s, r) FROM (VALUES
	('tv08_staff_a', 'A', 'site_staff'), ('tv08_inv_a', 'A', 'investigator'),
	('tv08_staff_b', 'B', 'site_staff'), ('tv08_inv_b', 'B', 'investigator'),
	('tv08_safety', NULL, 'safety'), ('tv08_safety_b', NULL, 'safety'),
	('tv08_safety_b', 'B', 'site_staff'), ('tv08_sponsor', NULL, 'sponsor'),
	('tv08_auditor', NULL, 'auditor'), ('tv08_mon', NULL, 'monitor'),
	('tv08_revoked', 'A', 'site_staff'), ('tv08_ex_loader', 'A', 'site_staff'),
	('tv08_ex_loader', NULL, 'sponsor')) v(m, s, r);
-- The monitor steps up (a second factor) before open_document shows it PHI.
\ir include/step_up.sql
SELECT pg_temp.step_up_as('tv08_mon');
SET ROLE tv08_inv_a;
SELECT trialvault.authorize_monitor('tv08_mon', tv08.study(), 'A', clock_timestamp() + interval '1 hour');
RESET ROLE;

SET ROLE tv08_staff_a;
SELECT tv08.load('a_src', 'A', 'source', true), tv08.load('a_sae', 'A', 'sae', true),
	tv08.load('a_proto', 'A', 'protocol', false);
SET ROLE tv08_inv_b;
SELECT tv08.load('b_src', 'B', 'source', true), tv08.load('b_sae', 'B', 'sae', true),
	tv08.load('b_crf', 'B', 'blank_crf', false);
SET ROLE tv08_ex_loader;
SELECT tv08.load('a_exl', 'A', 'eform', true);
SET ROLE tv08_revoked;
SELECT tv08.load('a_rev', 'A', 'other', true);
RESET ROLE;
-- Site "AB" has nobody now; a document there tests that roles of site "A"
-- (kept as "A:site_staff") are not taken for it.
SELECT trialvault.grant_role('tv08_staff_b', tv08.study(), 'AB', 'site_staff');
SET ROLE tv08_staff_b;
SELECT tv08.load('ab_src', 'AB', 'source', true);
RESET ROLE;
SELECT trialvault.revoke_role('tv08_staff_b', tv08.study(), 'AB', 'site_staff');
SELECT trialvault.revoke_role('tv08_revoked', tv08.study(), 'A', 'site_staff');
SELECT trialvault.revoke_role('tv08_ex_loader', tv08.study(), 'A', 'site_staff');
INSERT INTO tv08.docs VALUES ('missing', -808, '\x');

-- The session's open study (any member may open it; it stays open for
-- the session whichever role acts).
SET ROLE tv08_staff_a;
SELECT trialvault.open_study(tv08.study());
RESET ROLE;
\o

SELECT is((SELECT count(*) FROM tv08.users), 12::bigint, 'the fixture has 12 roles');
SELECT is((SELECT count(*) FROM tv08.docs), 10::bigint, 'and 10 documents, one of them missing');
SELECT is(tv08.granted_count(1), 43::bigint, 'the rules grant 43 of the 120 calls and refuse the others');
SELECT is((SELECT string_agg(DISTINCT split_part(outcome, ' ', 2), ',' ORDER BY split_part(outcome, ' ', 2))
	FROM tv08.expected WHERE round = 1),
	'auditor_no_phi,investigator,loader,membership_revoked,monitor,monitor_not_authorized,no_phi,no_such_document,not_a_member,not_entitled,other_site,safety,site_staff,sponsor_no_phi',
	'the fixture reaches every reason of an ordinary call');
SELECT is(tv08.mismatches(1), 'none', 'open_document decides every call as the rules say');
SELECT is(tv08.mismatches(1), 'none', 'and again on the second round (roles read a second time)');

-- What my_documents shows each role: the fingerprint of a PHI document
-- only where the rules grant the role that document.
CREATE TABLE tv08.shown (u name, doc_id bigint, phi boolean, hash_shown boolean);
GRANT INSERT ON tv08.shown TO PUBLIC;
CREATE FUNCTION tv08.collect_shown() RETURNS void LANGUAGE plpgsql AS $$
DECLARE
	who name;
BEGIN
	FOR who IN SELECT u FROM tv08.users WHERE pg_has_role(u, 'trialvault_user', 'MEMBER') LOOP
		EXECUTE format('SET LOCAL ROLE %I', who);
		INSERT INTO tv08.shown SELECT current_user, m.doc_id, m.contains_phi, m.content_sha256 IS NOT NULL
			FROM trialvault.my_documents m;
		RESET ROLE;
	END LOOP;
END
$$;
\o /dev/null
SELECT tv08.collect_shown();
\o
SELECT is((SELECT coalesce(string_agg(format('%s on %s (hash %s)', s.u, d.name,
		CASE WHEN s.hash_shown THEN 'shown' ELSE 'hidden' END), '; ' ORDER BY s.u, d.name), 'none')
	FROM tv08.shown s JOIN tv08.docs d USING (doc_id)
	WHERE s.hash_shown IS DISTINCT FROM (NOT s.phi OR
		tv08.expect(1, s.u, s.doc_id) LIKE 'granted %')),
	'none', 'my_documents shows a PHI document''s content_sha256 exactly to the roles that may open it');
SELECT is((SELECT count(*) FROM tv08.shown WHERE phi AND NOT hash_shown), 29::bigint,
	'29 listed PHI documents keep their fingerprint hidden (sponsor, auditor, safety outside SAE, other sites)');
SELECT is((SELECT count(*) FROM tv08.shown WHERE phi AND hash_shown), 22::bigint,
	'and 22 show it (loader, site staff, investigator, authorized monitor, safety for SAE)');

-- Change roles in this transaction: a cached answer must not survive.
\o /dev/null
SELECT trialvault.revoke_role('tv08_staff_a', tv08.study(), 'A', 'site_staff');
SELECT trialvault.grant_role('tv08_staff_b', tv08.study(), 'A', 'investigator');
SELECT trialvault.revoke_role('tv08_safety', tv08.study(), NULL, 'safety');
SELECT trialvault.grant_role('tv08_ex_loader', tv08.study(), 'B', 'site_staff');
SELECT trialvault.grant_role('tv08_outsider', tv08.study(), NULL, 'safety');
\o
SELECT is(tv08.try('tv08_staff_a', d.doc_id), 'refused membership_revoked 42501',
	'site staff whose role was revoked in this transaction: refused, even for their own upload')
	FROM tv08.docs d WHERE name = 'a_src';
SELECT is(tv08.try('tv08_staff_b', d.doc_id), 'granted investigator ok',
	'a role granted in this transaction applies at once')
	FROM tv08.docs d WHERE name = 'a_src';
SELECT is(tv08.try('tv08_outsider', d.doc_id), 'granted safety ok',
	'an outsider made safety in this transaction opens an SAE')
	FROM tv08.docs d WHERE name = 'b_sae';
SELECT is(tv08.mismatches(2), 'none', 'after the changes open_document still decides every call as the rules say');

-- A new study in this transaction: its documents decrypt under its own key.
\o /dev/null
UPDATE tv08.cfg SET study = study || '-2';
SELECT trialvault.create_study(tv08.study(), 'Decision paths, second study');
SELECT trialvault.require_signatures(tv08.study(), false);
SELECT trialvault.add_site(tv08.study(), 'A', 'Site A');
SELECT trialvault.grant_role('tv08_inv_a', tv08.study(), 'A', 'investigator');
SET ROLE tv08_inv_a;
SELECT tv08.load('s2_src', 'A', 'source', true);
SELECT trialvault.open_study(tv08.study());
RESET ROLE;
\o
SELECT is(tv08.try('tv08_inv_a', doc_id), 'granted loader ok',
	'a document of a study created in this transaction opens (its own study id and key)')
	FROM tv08.docs WHERE name = 's2_src';
SELECT is(tv08.try('tv08_staff_b', doc_id), 'refused not_a_member 42501',
	'and a member of the first study only is no member of the second')
	FROM tv08.docs WHERE name = 's2_src';

SELECT * FROM finish();
ROLLBACK;

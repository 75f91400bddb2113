-- Studies, roles, documents and decryption: bad input and missing rights.
-- Every call gets a clear error with a proper SQLSTATE, and nothing stored
-- is lost.  (The access rules themselves: test/pgtap/05_access.sql; the log
-- writer's faults: test/integration/90_decryption_log.sh.)
\i sql/include/try.sql

\i sql/include/wait_writer.sql
SELECT pid IS NOT NULL AS writer_running, database, queue_size FROM trialvault.log_writer_status();
SELECT master_key_loaded, master_key_id ~ '^[0-9a-f]{16}$' AS id_is_a_fingerprint, problem
	FROM trialvault.key_status();

CREATE ROLE regress_tv_admin LOGIN IN ROLE trialvault_admin;
CREATE ROLE regress_tv_staff LOGIN;
CREATE ROLE regress_tv_outsider LOGIN;
CREATE ROLE regress_tv_group NOLOGIN;
CREATE ROLE regress_tv_monitor LOGIN;

-- create_study
SET ROLE regress_tv_admin;
SELECT trialvault.create_study('REG-1', 'Regression study') > 0 AS created;
SELECT trialvault.require_signatures('REG-1', false);
SELECT stmt, pg_temp.try(stmt) FROM (VALUES
	('SELECT trialvault.create_study(NULL, ''t'')'),
	('SELECT trialvault.create_study(''X'', NULL)'),
	('SELECT trialvault.create_study('''', ''t'')'),
	('SELECT trialvault.create_study(''bad code'', ''t'')'),
	('SELECT trialvault.create_study(''-x'', ''t'')'),
	('SELECT trialvault.create_study(repeat(''x'', 64), ''t'')'),
	('SELECT trialvault.create_study(''X'', '''')'),
	('SELECT trialvault.create_study(''X'', repeat(''t'', 1001))'),
	('SELECT trialvault.create_study(''REG-1'', ''again'')'),
	('SELECT trialvault.create_study(1, 2)'),
	('SELECT trialvault.create_study(''X'')')
) t(stmt);
RESET ROLE;
SET ROLE regress_tv_outsider;
SELECT pg_temp.try('SELECT trialvault.create_study(''NOPE'', ''t'')');
SELECT pg_temp.try('SELECT trialvault.rotate_study_key(''REG-1'')');
SELECT pg_temp.try('SELECT trialvault.rewrap_data_keys()');
RESET ROLE;
SET ROLE regress_tv_admin;
SELECT stmt, pg_temp.try(stmt) FROM (VALUES
	('SELECT trialvault.rotate_study_key(NULL)'),
	('SELECT trialvault.rotate_study_key('''')'),
	('SELECT trialvault.rotate_study_key(repeat(''x'', 100000))'),
	('SELECT trialvault.rotate_study_key(''REG-1'', ''extra'')')
) t(stmt);
RESET ROLE;
-- Status functions are open to everyone and show key ids, never keys.
SET ROLE regress_tv_outsider;
SELECT master_key_loaded, length(master_key_id) AS id_length, problem FROM trialvault.key_status();
SELECT pid IS NOT NULL AS writer_running, queue_size FROM trialvault.log_writer_status();
RESET ROLE;

-- add_site
SET ROLE regress_tv_admin;
SELECT trialvault.add_site('REG-1', 'A', 'Site A');
SELECT trialvault.add_site('REG-1', 'B', 'Site B');
SELECT stmt, pg_temp.try(stmt) FROM (VALUES
	('SELECT trialvault.add_site(NULL, ''C'', ''n'')'),
	('SELECT trialvault.add_site(''REG-1'', NULL, ''n'')'),
	('SELECT trialvault.add_site(''REG-1'', ''C'', NULL)'),
	('SELECT trialvault.add_site(''NO-SUCH'', ''C'', ''n'')'),
	('SELECT trialvault.add_site(''REG-1'', ''C/1'', ''n'')'),
	('SELECT trialvault.add_site(''REG-1'', ''C'', '''')'),
	('SELECT trialvault.add_site(''REG-1'', ''A'', ''again'')')
) t(stmt);
RESET ROLE;
SET ROLE regress_tv_outsider;
SELECT pg_temp.try('SELECT trialvault.add_site(''REG-1'', ''Z'', ''n'')');
RESET ROLE;

-- grant_role / revoke_role
SET ROLE regress_tv_admin;
SELECT trialvault.grant_role('regress_tv_staff', 'REG-1', 'A', 'site_staff');
SELECT trialvault.grant_role('regress_tv_staff', 'REG-1', 'A', 'site_staff');  -- already held: nothing new
SELECT stmt, pg_temp.try(stmt) FROM (VALUES
	('SELECT trialvault.grant_role(NULL, ''REG-1'', ''A'', ''site_staff'')'),
	('SELECT trialvault.grant_role(''regress_tv_staff'', NULL, ''A'', ''site_staff'')'),
	('SELECT trialvault.grant_role(''regress_tv_staff'', ''REG-1'', ''A'', NULL)'),
	('SELECT trialvault.grant_role(''regress_no_such_role'', ''REG-1'', ''A'', ''site_staff'')'),
	('SELECT trialvault.grant_role(''regress_tv_group'', ''REG-1'', ''A'', ''site_staff'')'),
	('SELECT trialvault.grant_role(''regress_tv_staff'', ''REG-1'', ''A'', ''boss'')'),
	('SELECT trialvault.grant_role(''regress_tv_staff'', ''REG-1'', NULL, ''investigator'')'),
	('SELECT trialvault.grant_role(''regress_tv_staff'', ''REG-1'', ''A'', ''sponsor'')'),
	('SELECT trialvault.grant_role(''regress_tv_staff'', ''REG-1'', ''Q'', ''site_staff'')'),
	('SELECT trialvault.grant_role(''regress_tv_staff'', ''NO-SUCH'', ''A'', ''site_staff'')')
) t(stmt);
SELECT trialvault.revoke_role('regress_tv_staff', 'REG-1', NULL, 'auditor');  -- not held: a notice
SELECT stmt, pg_temp.try(stmt) FROM (VALUES
	('SELECT trialvault.revoke_role(NULL, ''REG-1'', ''A'', ''site_staff'')'),
	('SELECT trialvault.revoke_role(''regress_tv_staff'', '''', ''A'', ''site_staff'')'),
	('SELECT trialvault.revoke_role(''regress_tv_staff'', ''REG-1'', repeat(''s'', 100000), ''site_staff'')'),
	('SELECT trialvault.revoke_role(''regress_tv_staff'', ''REG-1'', ''A'', ''boss'')')
) t(stmt);
RESET ROLE;
SET ROLE regress_tv_outsider;
SELECT pg_temp.try('SELECT trialvault.grant_role(''regress_tv_outsider'', ''REG-1'', ''A'', ''investigator'')');
SELECT pg_temp.try('SELECT trialvault.revoke_role(''regress_tv_staff'', ''REG-1'', ''A'', ''site_staff'')');
SELECT pg_temp.try('SELECT trialvault.authorize_monitor(''regress_tv_outsider'', ''REG-1'', ''A'', now() + interval ''1 day'')');
RESET ROLE;
SELECT study, site, member, study_role FROM trialvault.current_memberships ORDER BY member;

-- authorize_monitor
SET ROLE regress_tv_admin;
SELECT trialvault.grant_role('regress_tv_admin', 'REG-1', 'A', 'investigator');
SELECT trialvault.grant_role('regress_tv_monitor', 'REG-1', NULL, 'monitor');
SELECT stmt, pg_temp.try(stmt) FROM (VALUES
	('SELECT trialvault.authorize_monitor(''regress_tv_outsider'', ''REG-1'', ''A'', now() + interval ''1 day'')'),
	('SELECT trialvault.authorize_monitor(''regress_tv_staff'', ''REG-1'', ''A'', NULL)'),
	('SELECT trialvault.authorize_monitor(''regress_tv_staff'', ''REG-1'', ''B'', now() + interval ''1 day'')'),
	('SELECT trialvault.authorize_monitor(''regress_tv_monitor'', ''REG-1'', ''A'', ''yesterday'')'),
	('SELECT trialvault.authorize_monitor(''regress_tv_monitor'', ''REG-1'', ''A'', ''not a time'')'),
	('SELECT trialvault.authorize_monitor(''regress_tv_monitor'', ''REG-1'', ''Q'', now() + interval ''1 day'')'),
	('SELECT trialvault.revoke_monitor(''regress_tv_staff'', ''REG-1'', NULL)')
) t(stmt);
RESET ROLE;

-- load_document
SET ROLE regress_tv_staff;
SELECT trialvault.load_document('REG-1', 'A', 'source', true,
	'<meta><visit>1</visit></meta>', convert_to('scan with PHI', 'UTF8')) AS phi_doc \gset
SELECT trialvault.load_document('REG-1', 'A', 'protocol', false,
	'<meta><kind>protocol</kind></meta>', convert_to('protocol text', 'UTF8')) AS plain_doc \gset
SELECT stmt, pg_temp.try(stmt) FROM (VALUES
	('SELECT trialvault.load_document(NULL, ''A'', ''source'', true, ''<m/>'', ''\x01'')'),
	('SELECT trialvault.load_document(''REG-1'', NULL, ''source'', true, ''<m/>'', ''\x01'')'),
	('SELECT trialvault.load_document(''REG-1'', ''A'', NULL, true, ''<m/>'', ''\x01'')'),
	('SELECT trialvault.load_document(''REG-1'', ''A'', ''source'', NULL, ''<m/>'', ''\x01'')'),
	('SELECT trialvault.load_document(''REG-1'', ''A'', ''source'', true, NULL, ''\x01'')'),
	('SELECT trialvault.load_document(''REG-1'', ''A'', ''source'', true, ''<m/>'', NULL)'),
	('SELECT trialvault.load_document(''REG-1'', ''A'', ''source'', true, ''<m/>'', '''')'),
	('SELECT trialvault.load_document(''REG-1'', ''A'', ''letter'', true, ''<m/>'', ''\x01'')'),
	('SELECT trialvault.load_document(''REG-1'', ''A'', ''source'', ''maybe'', ''<m/>'', ''\x01'')'),
	('SELECT trialvault.load_document(''REG-1'', ''A'', ''source'', true, ''<m'', ''\x01'')'),
	('SELECT trialvault.load_document(''REG-1'', ''B'', ''source'', true, ''<m/>'', ''\x01'')'),
	('SELECT trialvault.load_document(''REG-1'', ''Q'', ''source'', true, ''<m/>'', ''\x01'')'),
	('SELECT trialvault.load_document(''NO-SUCH'', ''A'', ''source'', true, ''<m/>'', ''\x01'')'),
	('SELECT trialvault.load_document(''REG-1'', ''A'', ''source'', true, ''<m/>'', ''\x01'', ''no_such_schema'')'),
	('SELECT trialvault.load_document(''REG-1'', ''A'', ''source'', true, ''<m><PatientName>Jane Roe</PatientName></m>'', ''\x01'')')
) t(stmt);
RESET ROLE;
SET ROLE regress_tv_outsider;
SELECT pg_temp.try('SELECT trialvault.load_document(''REG-1'', ''A'', ''source'', true, ''<m/>'', ''\x01'')');
RESET ROLE;
-- The PHI refusal is on record although its transaction failed.
SELECT event, actor, study, site, detail FROM trialvault.audit_events
	WHERE event = 'metadata_phi_refused';
-- PHI is stored only as ciphertext; the rest as it is.
SELECT doc_id, contains_phi, content IS NULL AS no_plain_content,
	   length(content_enc) - content_length AS ciphertext_overhead,
	   substr(content_enc, 1, 3) AS magic_and_format,
	   position(convert_to('scan with PHI', 'UTF8') IN coalesce(content_enc, '')) AS plaintext_at,
	   content_sha256 = sha256(convert_to('scan with PHI', 'UTF8')) AS fingerprint_of_plaintext
	FROM trialvault.documents ORDER BY doc_id;

-- open_document / emergency_open: only in the session's open study.
SET ROLE regress_tv_staff;
SELECT pg_temp.try(format('SELECT trialvault.open_document(%s)', :phi_doc));
SELECT trialvault.open_study('REG-1');
SELECT convert_from(trialvault.open_document(:phi_doc), 'UTF8') AS opened;
SELECT stmt, pg_temp.try(stmt) FROM (VALUES
	('SELECT trialvault.open_document(NULL)'),
	('SELECT trialvault.open_document(-1)'),
	('SELECT trialvault.open_document(''abc'')'),
	('SELECT trialvault.emergency_open(1, NULL)'),
	('SELECT trialvault.emergency_open(1, repeat(''why '', 200))'),
	('SELECT trialvault.emergency_open(1, ''because I must see it'')')
) t(stmt);
RESET ROLE;
SET ROLE regress_tv_outsider;
SELECT pg_temp.try(format('SELECT trialvault.open_document(%s)', :phi_doc));
SELECT pg_temp.try(format('SELECT trialvault.open_document(%s)', :plain_doc));
RESET ROLE;

-- Break-glass needs a real reason even for a superuser (a member of every role).
SELECT pg_temp.try(format('SELECT trialvault.emergency_open(%s, NULL)', :phi_doc));
SELECT pg_temp.try(format('SELECT trialvault.emergency_open(%s, ''need it'')', :phi_doc));
SELECT convert_from(trialvault.emergency_open(:phi_doc, 'patient collapsed, allergy record needed'), 'UTF8') AS opened;

-- Malformed ciphertext planted by a superuser: a clean error, on record.
INSERT INTO trialvault.documents (doc_id, study, site, doc_type, contains_phi, metadata,
	metadata_sha256, content_enc, content_length, content_sha256, loaded_by)
SELECT 1000 + n, 'REG-1', 'A', 'source', true, '<m/>', '\x00', v, 1, '\x00', 'regress_tv_staff'
FROM (VALUES (1, '\x00'::bytea), (2, 'TV'::bytea), (3, '\x5456020000000100000001'::bytea || '\x00'::bytea),
			 (4, (SELECT content_enc FROM trialvault.documents WHERE doc_id = :phi_doc))) t(n, v);
SET ROLE regress_tv_staff;
SELECT n, pg_temp.try(format('SELECT trialvault.open_document(%s)', 1000 + n)) FROM generate_series(1, 4) n;
RESET ROLE;
-- (The superuser's name depends on who runs the suite.)
SELECT doc_id, CASE requester WHEN session_user THEN '(the superuser)' ELSE requester END AS requester,
	   granted, reason, emergency, left(emergency_reason, 40) AS emergency_reason
	FROM trialvault.decryption_log ORDER BY log_id;

-- Users have no rights on the tables or the internal functions.
SET ROLE regress_tv_staff;
SELECT stmt, pg_temp.try(stmt) FROM (VALUES
	('SELECT count(*) FROM trialvault.documents'),
	('SELECT count(*) FROM trialvault.decryption_log'),
	('SELECT count(*) FROM trialvault.study_keys'),
	('SELECT count(*) FROM trialvault.current_memberships'),
	('INSERT INTO trialvault.decryption_log (requester, session_user_name, requested_at, granted, reason, backend_pid) VALUES (''x'', ''x'', now(), true, ''x'', 1)'),
	('SELECT trialvault._encrypt(1, ''REG-1'', 1, ''content'', ''\x00'')'),
	('SELECT trialvault._monitor_now(''REG-1'', ''A'', ''regress_tv_staff'')'),
	('SELECT trialvault._require_site(''REG-1'', ''A'')'),
	('SELECT trialvault._create_study(''regress_tv_admin'', ''FORGED'', ''t'')')
) t(stmt);
RESET ROLE;

-- Nothing stored was lost or changed by any of the failures.
SELECT (SELECT count(*) FROM trialvault.studies) AS studies,
	   (SELECT count(*) FROM trialvault.sites) AS sites,
	   (SELECT count(*) FROM trialvault.documents) AS documents,
	   (SELECT count(*) FROM trialvault.study_keys) AS keys;
SELECT t AS table_name, (trialvault.verify(t)).ok
	FROM unnest(ARRAY['trialvault.studies', 'trialvault.sites', 'trialvault.memberships',
					  'trialvault.documents', 'trialvault.study_keys',
					  'trialvault.decryption_log', 'trialvault.audit_events']::regclass[]) t;

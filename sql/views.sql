-- The session's open study and the secured views: bad input, missing
-- rights, forged settings.  (Each role against each view, leaky functions
-- and search_path tricks: test/pgtap/06_views.sql.)  Runs after access.sql,
-- whose study REG-1 (sites A and B) and roles it uses.
\i sql/include/try.sql

-- Nothing is open in a new session: every view is empty, not an error.
SET ROLE regress_tv_staff;
SELECT trialvault.current_study();
SELECT (SELECT count(*) FROM trialvault.my_documents) AS documents,
	   (SELECT count(*) FROM trialvault.my_sites) AS sites,
	   (SELECT count(*) FROM trialvault.my_roles) AS roles,
	   (SELECT count(*) FROM trialvault.my_decryption_log) AS log,
	   (SELECT count(*) FROM trialvault.audit_trail) AS audit;
SELECT stmt, pg_temp.try(stmt) FROM (VALUES
	('SELECT trialvault.open_study(NULL)'),
	('SELECT trialvault.open_study('''')'),
	('SELECT trialvault.open_study(''NO-SUCH'')'),
	('SELECT trialvault.open_study(repeat(''x'', 10000))'),
	('SELECT trialvault.open_study(1)'),
	('SELECT trialvault._session_scope(NULL)'),
	('SELECT trialvault._session_scope(''documents'')'),
	('SELECT trialvault.close_study()')
) t(stmt);

-- The open study is not a setting: it cannot be forged, only opened.
SELECT stmt, pg_temp.try(stmt) FROM (VALUES
	('SET trialvault.study = ''REG-1'''),
	('SET trialvault.current_study = ''REG-1'''),
	('SELECT set_config(''trialvault.open_study'', ''REG-1'', false)'),
	('RESET ALL')
) t(stmt);
SELECT trialvault.current_study(), (SELECT count(*) FROM trialvault.my_documents) AS documents;

-- Opened by a member: the views fill; an unknown scope is refused.
SELECT trialvault.open_study('REG-1');
SELECT trialvault.current_study();
SELECT doc_id, site, doc_type, contains_phi, loaded_by, content_length
	FROM trialvault.my_documents WHERE doc_id < 1000 ORDER BY doc_id;
SELECT study, site, name, my_roles, may_load, may_open FROM trialvault.my_sites;
SELECT * FROM trialvault.my_roles;
SELECT pg_temp.try('SELECT trialvault._session_scope(''everything'')');
-- What the views ask about the caller: NULL, empty and oversized facts are
-- no document the caller may open; the answers are the caller's own.
SELECT f.site, f.doc_type, f.phi, f.loaded_by,
	   trialvault._may_open(f.site, f.doc_type, f.phi, f.loaded_by) AS may_open
FROM (VALUES (NULL, NULL, NULL, NULL), ('A', 'source', true, NULL), ('', '', true, ''),
			 (left(repeat('A', 100000), 20), 'source', true, 'x'), ('A', 'source', true, 'x'),
			 ('B', 'source', true, 'x'), ('B', 'source', false, 'x'),
			 ('B', 'source', true, 'regress_tv_staff')) f(site, doc_type, phi, loaded_by);
SELECT trialvault._may_open(repeat('A', 100000), 'source', true, 'x') AS may_open_oversized_site;
SELECT * FROM trialvault._session_roles() ORDER BY 1, 2;
SELECT * FROM trialvault._session_sites() ORDER BY 1;
SELECT stmt, pg_temp.try(stmt) FROM (VALUES
	('SELECT trialvault._monitor_now(''REG-1'', ''A'', current_user)'),
	('SELECT trialvault._emergency_reason_ok(''a b c d e f g h'')::text')
) t(stmt);
SELECT trialvault.close_study();
SELECT (SELECT count(*) FROM trialvault._session_roles()) AS roles,
	   (SELECT count(*) FROM trialvault._session_sites()) AS sites,
	   trialvault._may_open('A', 'source', false, 'x') AS may_open_without_a_study;
RESET ROLE;
SELECT pg_temp.try('SELECT 1 FROM trialvault._session_sites()') AS as_superuser_with_no_study;
SET ROLE regress_tv_staff;
SELECT trialvault.open_study('REG-1');
RESET ROLE;
-- Roles that are not trialvault users may not ask at all.
CREATE ROLE regress_views_stranger;
SET ROLE regress_views_stranger;
SELECT stmt, pg_temp.try(stmt) FROM (VALUES
	('SELECT trialvault._may_open(''A'', ''source'', true, ''x'')'),
	('SELECT * FROM trialvault._session_roles()'),
	('SELECT * FROM trialvault._session_sites()')
) t(stmt);
RESET ROLE;
DROP ROLE regress_views_stranger;

-- A non-member cannot open it, and sees nothing although the session has it open.
SET ROLE regress_tv_outsider;
SELECT pg_temp.try('SELECT trialvault.open_study(''REG-1'')');
SELECT trialvault.current_study();
SELECT pg_temp.try('SELECT count(*) FROM trialvault.my_documents');
SELECT pg_temp.try('SELECT * FROM trialvault.documents');
RESET ROLE;

-- Secured views of a DBA's own protected table.
CREATE TABLE ecrf (study text, site text, subject text, weight_kg numeric, notes text);
CREATE TABLE plain_ecrf (study text, site text);
SELECT trialvault.protect('ecrf');
INSERT INTO ecrf VALUES ('REG-1', 'A', 'S-001', 70.5, 'private'), ('REG-1', 'B', 'S-002', 80, 'private'),
						('OTHER', 'A', 'S-003', 90, 'private');
SELECT stmt, pg_temp.try(stmt) FROM (VALUES
	('SELECT trialvault.create_secured_view(NULL, ''ecrf'', ''study'', ''site'')'),
	('SELECT trialvault.create_secured_view(''v'', NULL, ''study'', ''site'')'),
	('SELECT trialvault.create_secured_view(''v'', ''ecrf'', NULL, ''site'')'),
	('SELECT trialvault.create_secured_view(''v'', ''no_such_table'', ''study'', ''site'')'),
	('SELECT trialvault.create_secured_view(''v'', ''plain_ecrf'', ''study'', ''site'')'),
	('SELECT trialvault.create_secured_view(''v'', ''ecrf'', ''studie'', ''site'')'),
	('SELECT trialvault.create_secured_view(''v'', ''ecrf'', ''study'', ''site'', ''{nope}'')'),
	('SELECT trialvault.create_secured_view(''v'', ''ecrf'', ''study'', ''site'', ''{site}'')'),
	('SELECT trialvault.create_secured_view(''a.b.c'', ''ecrf'', ''study'', ''site'')'),
	('SELECT trialvault.create_secured_view(''trialvault.v'', ''ecrf'', ''study'', ''site'')'),
	('SELECT trialvault.create_secured_view(''plain_ecrf'', ''ecrf'', ''study'', ''site'')')
) t(stmt);
SELECT trialvault.create_secured_view('ecrf_secured', 'ecrf', 'study', 'site', '{notes}');
SELECT pg_catalog.pg_get_userbyid(c.relowner) = (SELECT pg_catalog.pg_get_userbyid(nspowner)
		FROM pg_namespace WHERE nspname = 'trialvault') AS owned_by_extension_owner,
	   c.reloptions
	FROM pg_class c WHERE c.relname = 'ecrf_secured';
SET ROLE regress_tv_outsider;
SELECT pg_temp.try('SELECT trialvault.create_secured_view(''mine'', ''ecrf'', ''study'', ''site'')');
SELECT pg_temp.try('SELECT * FROM ecrf');
RESET ROLE;
SET ROLE regress_tv_staff;
SELECT study, site, subject, weight_kg FROM ecrf_secured ORDER BY subject;
SELECT pg_temp.try('SELECT notes FROM ecrf_secured');
RESET ROLE;
-- After the table gains a column, one call brings the view up to date.
ALTER TABLE ecrf ADD COLUMN visit int;
SELECT trialvault.create_secured_view('ecrf_secured', 'ecrf', 'study', 'site', '{notes}');
SET ROLE regress_tv_staff;
SELECT subject, visit FROM ecrf_secured ORDER BY subject;
SELECT trialvault.close_study();
SELECT count(*) FROM ecrf_secured;
RESET ROLE;

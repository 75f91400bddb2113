-- What the guards refuse, for superusers, table owners and under replica role.
\i sql/include/try.sql

CREATE TABLE source_doc (id serial PRIMARY KEY, site text, body bytea);
INSERT INTO source_doc (site, body) VALUES ('S01', '\x0102'), ('S02', '\x0304');
SELECT trialvault.protect('source_doc');

-- Full messages once, as an application would see them.
UPDATE source_doc SET site = 'S99' WHERE id = 1;
DELETE FROM source_doc WHERE id = 1;
TRUNCATE source_doc;

-- As superuser (the CASCADE notices are silenced: they list other tests' tables).
SET client_min_messages = warning;
SELECT stmt, pg_temp.try(stmt) FROM (VALUES
	('UPDATE source_doc SET site = ''S99'''),
	('UPDATE source_doc SET site = ''S99'' WHERE false'),
	('DELETE FROM source_doc'),
	('DELETE FROM source_doc WHERE false'),
	('TRUNCATE source_doc'),
	('INSERT INTO source_doc (id, site) VALUES (1, ''x'') ON CONFLICT (id) DO UPDATE SET site = ''y'''),
	('INSERT INTO source_doc (id, site) VALUES (100, ''x'') ON CONFLICT (id) DO UPDATE SET site = ''y'''),
	('INSERT INTO source_doc (id, site) VALUES (1, ''x'') ON CONFLICT DO NOTHING'),
	('WITH w AS (INSERT INTO source_doc (id, site) VALUES (101, ''x'') ON CONFLICT DO NOTHING RETURNING id) SELECT * FROM w'),
	('MERGE INTO source_doc d USING (SELECT 1 AS id) s ON d.id = s.id WHEN MATCHED THEN DELETE'),
	('ALTER TABLE source_doc DISABLE TRIGGER ALL'),
	('ALTER TABLE source_doc DISABLE TRIGGER USER'),
	('ALTER TABLE source_doc ENABLE TRIGGER ALL'),
	('ALTER TABLE source_doc DISABLE TRIGGER trialvault_guard'),
	('ALTER TABLE source_doc DISABLE TRIGGER zz_trialvault_chain'),
	('ALTER TABLE source_doc ENABLE REPLICA TRIGGER trialvault_guard_row'),
	('ALTER TABLE source_doc ENABLE TRIGGER trialvault_guard'),
	('ALTER TABLE source_doc ENABLE ALWAYS TRIGGER trialvault_guard'),
	('DROP TRIGGER trialvault_guard ON source_doc'),
	('DROP TRIGGER zz_trialvault_chain ON source_doc'),
	('ALTER TRIGGER trialvault_guard ON source_doc RENAME TO x'),
	('CREATE OR REPLACE TRIGGER trialvault_guard BEFORE UPDATE ON source_doc FOR EACH ROW EXECUTE FUNCTION suppress_redundant_updates_trigger()'),
	('ALTER TABLE source_doc DROP COLUMN body'),
	('ALTER TABLE source_doc DROP COLUMN tv_hash'),
	('ALTER TABLE source_doc ALTER COLUMN site TYPE varchar(10)'),
	('ALTER TABLE source_doc RENAME COLUMN site TO site_code'),
	('ALTER TABLE source_doc ADD COLUMN visit int DEFAULT 1'),
	('ALTER TABLE source_doc ADD COLUMN n int GENERATED ALWAYS AS IDENTITY'),
	('ALTER TABLE source_doc SET UNLOGGED'),
	('DROP TABLE source_doc'),
	('DROP TABLE source_doc CASCADE'),
	('DROP EXTENSION trialvault CASCADE'),
	('DROP SCHEMA trialvault CASCADE'),
	('DROP FUNCTION trialvault.guard() CASCADE'),
	('ALTER EXTENSION trialvault DROP FUNCTION trialvault.guard()'),
	('CREATE OR REPLACE FUNCTION trialvault.guard() RETURNS trigger LANGUAGE plpgsql AS ''BEGIN RETURN NEW; END'''),
	('ALTER SCHEMA trialvault RENAME TO tv2'),
	('INSERT INTO source_doc (site, body) VALUES (''S03'', ''\x05'')')
) AS t(stmt);
RESET client_min_messages;

-- Replica role does not switch the guards off.
SET session_replication_role = replica;
SELECT pg_temp.try('DELETE FROM source_doc');
SELECT pg_temp.try('UPDATE source_doc SET site = ''x''');
SELECT pg_temp.try('TRUNCATE source_doc');
SELECT pg_temp.try('INSERT INTO source_doc (site) VALUES (''S04'')');
RESET session_replication_role;

-- The table owner, not a superuser, is refused the same way.
CREATE ROLE regress_tv_owner LOGIN;
CREATE TABLE owned_doc (id int, note text);
ALTER TABLE owned_doc OWNER TO regress_tv_owner;
GRANT USAGE ON SCHEMA trialvault TO regress_tv_owner;
GRANT EXECUTE ON FUNCTION trialvault.protect(regclass) TO regress_tv_owner;
SET ROLE regress_tv_owner;
SELECT trialvault.protect('owned_doc');
INSERT INTO owned_doc VALUES (1, 'first');
SELECT stmt, pg_temp.try(stmt) FROM (VALUES
	('UPDATE owned_doc SET note = ''x'''),
	('DELETE FROM owned_doc'),
	('TRUNCATE owned_doc'),
	('ALTER TABLE owned_doc DISABLE TRIGGER ALL'),
	('ALTER TABLE owned_doc DISABLE TRIGGER trialvault_guard'),
	('DROP TRIGGER trialvault_guard ON owned_doc'),
	('ALTER TABLE owned_doc DROP COLUMN note'),
	('ALTER TABLE owned_doc ALTER COLUMN id TYPE bigint'),
	('DROP TABLE owned_doc')
) AS t(stmt);
RESET ROLE;

-- Updates through an inheritance parent reach the row guard.
CREATE TABLE parent_log (id int, note text);
CREATE TABLE child_log () INHERITS (parent_log);
SELECT trialvault.protect('child_log');
INSERT INTO child_log VALUES (1, 'kept');
SELECT pg_temp.try('UPDATE parent_log SET note = ''changed''');
SELECT pg_temp.try('DELETE FROM parent_log');
SELECT pg_temp.try('ALTER TABLE parent_log DROP COLUMN note');
SELECT pg_temp.try('ALTER TABLE parent_log ALTER COLUMN note TYPE varchar');
SELECT * FROM parent_log;

-- Foreign key cascades from a parent table are refused too.
CREATE TABLE subject (id int PRIMARY KEY);
CREATE TABLE subject_visit (visit int, subject_id int REFERENCES subject ON DELETE CASCADE ON UPDATE CASCADE);
INSERT INTO subject VALUES (1);
INSERT INTO subject_visit VALUES (1, 1);
SELECT trialvault.protect('subject_visit');
SELECT pg_temp.try('DELETE FROM subject');
SELECT pg_temp.try('UPDATE subject SET id = 2');
SELECT visit, subject_id, subject.id FROM subject_visit JOIN subject ON subject.id = subject_visit.subject_id;

-- A user's own BEFORE trigger must fire before the chain trigger.
CREATE FUNCTION upcase() RETURNS trigger LANGUAGE plpgsql AS
	'BEGIN NEW.site := upper(NEW.site); RETURN NEW; END';
SELECT pg_temp.try('CREATE TRIGGER zzz_upcase BEFORE INSERT ON source_doc FOR EACH ROW EXECUTE FUNCTION upcase()');
CREATE TRIGGER a_upcase BEFORE INSERT ON source_doc FOR EACH ROW EXECUTE FUNCTION upcase();
INSERT INTO source_doc (site) VALUES ('s05');
SELECT site FROM source_doc ORDER BY tv_seq DESC LIMIT 1;
-- ... nor be renamed to fire after it ...
SELECT pg_temp.try('ALTER TRIGGER a_upcase ON source_doc RENAME TO zzz_upcase');
SELECT pg_temp.try('ALTER TRIGGER a_upcase ON source_doc RENAME TO b_upcase');
-- ... nor exist already when the table is protected.
CREATE TABLE late_trig (site text);
CREATE TRIGGER zzz_upcase BEFORE INSERT ON late_trig FOR EACH ROW EXECUTE FUNCTION upcase();
SELECT pg_temp.try('SELECT trialvault.protect(''late_trig'')');
ALTER TRIGGER zzz_upcase ON late_trig RENAME TO a_upcase;
SELECT trialvault.protect('late_trig');
INSERT INTO late_trig VALUES ('s06');
SELECT site, ok FROM late_trig, trialvault.verify('late_trig');

-- The guard function cannot be attached to a table by hand without the chain columns.
CREATE TABLE bare (a int);
SELECT pg_temp.try('CREATE TRIGGER g BEFORE INSERT ON bare FOR EACH ROW EXECUTE FUNCTION trialvault.guard()');
SELECT pg_temp.try('SELECT trialvault.guard()');

-- An empty protected table can be dropped.
CREATE TABLE scratch (a int);
SELECT trialvault.protect('scratch');
DROP TABLE scratch;

SELECT ok, rows_checked, bad_rows, guard FROM trialvault.verify('source_doc');
SELECT ok, rows_checked, bad_rows, guard FROM trialvault.verify('owned_doc');

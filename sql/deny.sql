-- Deny by default: the routes around insert-only and tamper evidence that the
-- 0.5 guards left open, tried as the table owner and as a superuser.  Each
-- statement below went through on 0.5.
\i sql/include/try.sql

CREATE ROLE regress_deny_owner LOGIN;
GRANT EXECUTE ON FUNCTION trialvault.protect(regclass) TO regress_deny_owner;
CREATE SCHEMA deny AUTHORIZATION regress_deny_owner;
SET search_path = deny, public;
SET client_min_messages = warning;

-- ---------------------------------------------------------------------
-- 1. Meaning changed through a type
-- ---------------------------------------------------------------------
SET ROLE regress_deny_owner;
CREATE TYPE pair AS (a int, b int);
CREATE TYPE mood AS ENUM ('low', 'high');
CREATE TYPE wrapped AS (inner_pair pair, tag text);
CREATE DOMAIN mood_d AS mood;
CREATE TYPE moods AS RANGE (subtype = int4);
CREATE TABLE vitals (id int, p pair, m mood_d, w wrapped[], r moods);
SELECT trialvault.protect('vitals');
INSERT INTO vitals VALUES (1, ROW(10, 20), 'high', ARRAY[ROW(ROW(1, 2), 'x')::wrapped], '[1,5)');
-- A typed table can be protected when its type carries the chain columns.
CREATE TYPE entry_t AS (id int, entry text, tv_seq bigint, tv_prev_seqs bigint[],
	tv_prev_hash bytea, tv_hash bytea);
CREATE TABLE typed OF entry_t;
SELECT trialvault.protect('typed');
INSERT INTO typed (id, entry) VALUES (1, 'one');
CREATE TABLE untyped (id int, entry text);
SELECT trialvault.protect('untyped');
RESET ROLE;

SELECT stmt, pg_temp.try(stmt) FROM (VALUES
	('ALTER TYPE pair RENAME ATTRIBUTE a TO c'),
	('ALTER TYPE pair RENAME ATTRIBUTE a TO c CASCADE'),
	('ALTER TYPE pair ALTER ATTRIBUTE a TYPE bigint CASCADE'),
	('ALTER TYPE pair ADD ATTRIBUTE c int CASCADE'),
	('ALTER TYPE pair DROP ATTRIBUTE b CASCADE'),
	('ALTER TYPE mood RENAME VALUE ''low'' TO ''high!'''),
	('ALTER TYPE wrapped RENAME ATTRIBUTE tag TO label'),
	('ALTER TYPE entry_t ALTER ATTRIBUTE entry TYPE varchar(3) CASCADE'),
	('ALTER TYPE entry_t RENAME ATTRIBUTE entry TO body CASCADE'),
	('ALTER TYPE entry_t ADD ATTRIBUTE extra int CASCADE'),
	('ALTER TABLE untyped OF entry_t'),
	('ALTER TABLE typed NOT OF'),
	('ALTER TYPE mood ADD VALUE ''mid'' BEFORE ''high'''),
	('ALTER TYPE pair RENAME TO pair2'),
	('ALTER TYPE pair2 RENAME TO pair'),
	('ALTER TYPE pair OWNER TO regress_deny_owner'),
	('ALTER DOMAIN mood_d SET DEFAULT ''high'''),
	('ALTER DOMAIN mood_d DROP DEFAULT'),
	('COMMENT ON TYPE pair IS ''a pair''')
) AS t(stmt);
-- ... and the same as the owner of the types and tables.
SET ROLE regress_deny_owner;
SELECT stmt, pg_temp.try(stmt) FROM (VALUES
	('ALTER TYPE pair RENAME ATTRIBUTE a TO c CASCADE'),
	('ALTER TYPE pair ALTER ATTRIBUTE a TYPE bigint CASCADE'),
	('ALTER TYPE entry_t ALTER ATTRIBUTE entry TYPE varchar(3) CASCADE'),
	('ALTER TABLE untyped OF entry_t'),
	('ALTER TYPE mood RENAME VALUE ''low'' TO ''high!''')
) AS t(stmt);
RESET ROLE;
SELECT ok, rows_checked FROM trialvault.verify('vitals');
SELECT ok, rows_checked FROM trialvault.verify('typed');

-- Composite values are hashed by attribute name: swapping the names of two
-- attributes behind the guards' back (a catalog edit) is found.
CREATE TYPE swapme AS (first int, second int);
CREATE TABLE swapped (v swapme);
SELECT trialvault.protect('swapped');
INSERT INTO swapped VALUES (ROW(1, 2));
UPDATE pg_attribute SET attname = CASE attname WHEN 'first' THEN 'x' WHEN 'second' THEN 'first' END
	WHERE attrelid = 'swapme'::regclass AND attname IN ('first', 'second');
UPDATE pg_attribute SET attname = 'second' WHERE attrelid = 'swapme'::regclass AND attname = 'x';
SELECT (v).first, (v).second FROM swapped;
SELECT ok, bad_rows, first_bad ~ 'contents do not match' AS names_hashed FROM trialvault.verify('swapped');

-- ---------------------------------------------------------------------
-- 2. Other rows appearing as the table's
-- ---------------------------------------------------------------------
SET ROLE regress_deny_owner;
CREATE TABLE ledger (id int PRIMARY KEY, entry text);
SELECT trialvault.protect('ledger');
INSERT INTO ledger VALUES (1, 'real');
CREATE TABLE shadow (id int, entry text, tv_seq bigint, tv_prev_seqs bigint[], tv_prev_hash bytea, tv_hash bytea);
CREATE TABLE parted (id int, entry text, tv_seq bigint, tv_prev_seqs bigint[], tv_prev_hash bytea, tv_hash bytea)
	PARTITION BY RANGE (id);
CREATE TABLE sink (id int, entry text);
RESET ROLE;
SELECT stmt, pg_temp.try(stmt) FROM (VALUES
	('ALTER TABLE shadow INHERIT ledger'),
	('CREATE TABLE shadow2 () INHERITS (ledger)'),
	('ALTER TABLE parted ATTACH PARTITION ledger FOR VALUES FROM (0) TO (100)'),
	('CREATE RULE redirect AS ON INSERT TO ledger DO INSTEAD INSERT INTO sink VALUES (NEW.id, NEW.entry)'),
	('CREATE RULE quiet AS ON UPDATE TO ledger DO INSTEAD NOTHING'),
	('CREATE RULE quiet AS ON DELETE TO ledger DO ALSO NOTHING'),
	('ALTER TABLE ledger ENABLE ROW LEVEL SECURITY'),
	('ALTER TABLE ledger FORCE ROW LEVEL SECURITY'),
	('CREATE POLICY hide ON ledger USING (id > 1)'),
	('ALTER TABLE ledger DISABLE ROW LEVEL SECURITY'),
	('ALTER TABLE ledger SET ACCESS METHOD heap'),
	('ALTER TABLE ledger ALTER COLUMN entry SET STATISTICS 100'),
	('CREATE INDEX ON ledger (entry)'),
	('ALTER TABLE ledger ADD CONSTRAINT entry_len CHECK (length(entry) < 100)'),
	('COMMENT ON TABLE ledger IS ''the ledger'''),
	('GRANT SELECT ON ledger TO regress_deny_owner')
) AS t(stmt);
SET ROLE regress_deny_owner;
SELECT stmt, pg_temp.try(stmt) FROM (VALUES
	('ALTER TABLE shadow INHERIT ledger'),
	('CREATE RULE redirect AS ON INSERT TO ledger DO INSTEAD INSERT INTO sink VALUES (NEW.id, NEW.entry)'),
	('CREATE POLICY hide ON ledger USING (id > 1)'),
	('ALTER TABLE ledger ENABLE ROW LEVEL SECURITY')
) AS t(stmt);
RESET ROLE;
INSERT INTO ledger VALUES (2, 'second');
SELECT count(*) AS ledger_rows, (SELECT count(*) FROM sink) AS sink_rows FROM ledger;
SELECT pg_temp.try('UPDATE ledger SET entry = ''changed''');

-- A protected child stays under its protected parent.
CREATE TABLE ledger_sub (id int, entry text, CONSTRAINT entry_len CHECK (length(entry) < 100));
SELECT trialvault.protect('ledger_sub');
ALTER TABLE ledger_sub ADD PRIMARY KEY (id);
SELECT pg_temp.try('ALTER TABLE ledger_sub INHERIT ledger');
SELECT pg_temp.try('ALTER TABLE ledger_sub NO INHERIT ledger');
-- protect() refuses a table that already has what the guards refuse.
CREATE TABLE ruled (a int);
CREATE RULE r AS ON INSERT TO ruled DO ALSO NOTHING;
CREATE TABLE rls (a int);
ALTER TABLE rls ENABLE ROW LEVEL SECURITY;
CREATE TABLE has_kid (a int);
CREATE TABLE the_kid () INHERITS (has_kid);
SELECT stmt, pg_temp.try(stmt) FROM (VALUES
	('SELECT trialvault.protect(''ruled'')'),
	('SELECT trialvault.protect(''rls'')'),
	('SELECT trialvault.protect(''has_kid'')')
) AS t(stmt);
-- Dropping a type a protected table uses drops its column: refused.
SELECT stmt, pg_temp.try(stmt) FROM (VALUES
	('DROP TYPE pair CASCADE'),
	('DROP DOMAIN mood_d CASCADE')
) AS t(stmt);

-- ---------------------------------------------------------------------
-- 3. Existing rows given new values
-- ---------------------------------------------------------------------
CREATE DOMAIN defaulted AS int DEFAULT 7;
CREATE DOMAIN plain_int AS int;
CREATE TABLE ledger_parent (note text);
SET ROLE regress_deny_owner;
CREATE TABLE ledger_kid (note text);
SELECT trialvault.protect('ledger_kid');
INSERT INTO ledger_kid VALUES ('kid');
RESET ROLE;
ALTER TABLE ledger_kid INHERIT ledger_parent;
SELECT stmt, pg_temp.try(stmt) FROM (VALUES
	('ALTER TABLE ledger ADD COLUMN n serial'),
	('ALTER TABLE ledger ADD COLUMN n bigserial'),
	('ALTER TABLE ledger ADD COLUMN n defaulted'),
	('ALTER TABLE ledger ADD COLUMN n int GENERATED ALWAYS AS (id * 2) STORED'),
	('ALTER TABLE ledger ADD COLUMN n int DEFAULT 1'),
	('ALTER TABLE ledger ADD COLUMN n int GENERATED BY DEFAULT AS IDENTITY'),
	('ALTER TABLE ledger_parent ADD COLUMN n serial'),
	('ALTER TABLE ledger_parent ADD COLUMN n defaulted'),
	('ALTER TABLE ledger ADD COLUMN n plain_int'),
	('ALTER TABLE ledger ADD COLUMN m int'),
	('ALTER TABLE ledger ALTER COLUMN m SET DEFAULT 5'),
	('ALTER TABLE ledger_parent ADD COLUMN p int')
) AS t(stmt);
SELECT ok, rows_checked FROM trialvault.verify('ledger');
SELECT ok, rows_checked FROM trialvault.verify('ledger_kid');

-- ---------------------------------------------------------------------
-- 4. The extension's own objects: only its scripts change them
-- ---------------------------------------------------------------------
CREATE FUNCTION public.noop() RETURNS void LANGUAGE sql AS '';
SELECT stmt, pg_temp.try(stmt) FROM (VALUES
	('CREATE OR REPLACE FUNCTION trialvault.guard() RETURNS trigger LANGUAGE plpgsql AS ''BEGIN RETURN NULL; END'''),
	('ALTER FUNCTION trialvault.verify(regclass) RENAME TO verify2'),
	('ALTER FUNCTION trialvault.verify(regclass) OWNER TO regress_deny_owner'),
	('ALTER FUNCTION trialvault.verify(regclass) SET search_path = public'),
	('ALTER FUNCTION trialvault.verify(regclass) SECURITY DEFINER'),
	('ALTER FUNCTION trialvault._current_roles(text, name) SET work_mem = ''1MB'''),
	('CREATE FUNCTION trialvault.extra() RETURNS int LANGUAGE sql AS ''SELECT 1'''),
	('CREATE FUNCTION trialvault.verify(regclass, int) RETURNS int LANGUAGE sql AS ''SELECT 1'''),
	('CREATE TABLE trialvault.extra (a int)'),
	('CREATE OR REPLACE VIEW trialvault.my_roles AS SELECT ''X''::text AS study, NULL::text AS site, ''monitor''::text AS study_role'),
	('ALTER VIEW trialvault.my_documents SET (security_barrier = false)'),
	('ALTER TABLE trialvault.my_documents RESET (security_barrier)'),
	('ALTER TABLE trialvault.decryption_log ENABLE ROW LEVEL SECURITY'),
	('ALTER TABLE trialvault.decryption_log FORCE ROW LEVEL SECURITY'),
	('CREATE POLICY hide ON trialvault.decryption_log USING (false)'),
	('CREATE RULE r AS ON INSERT TO trialvault.audit_events DO INSTEAD NOTHING'),
	('CREATE TRIGGER t BEFORE INSERT ON trialvault.audit_events FOR EACH ROW EXECUTE FUNCTION suppress_redundant_updates_trigger()'),
	('CREATE INDEX ON trialvault.documents (loaded_by)'),
	('DROP INDEX trialvault.documents_site_time'),
	('ALTER TABLE trialvault.documents DROP CONSTRAINT documents_check'),
	('ALTER TABLE trialvault.documents ADD COLUMN extra int'),
	('ALTER SEQUENCE trialvault.documents_doc_id_seq RESTART WITH 1'),
	('ALTER TABLE trialvault.documents OWNER TO regress_deny_owner'),
	('TRUNCATE trialvault.decryption_log'),
	('COMMENT ON TABLE trialvault.documents IS ''mine now'''),
	('COMMENT ON FUNCTION trialvault.verify(regclass) IS ''trust me'''),
	('GRANT SELECT ON trialvault.documents TO regress_deny_owner'),
	('GRANT ALL ON ALL TABLES IN SCHEMA trialvault TO regress_deny_owner'),
	('GRANT EXECUTE ON FUNCTION trialvault._audit_durable(text, name, text, text, bigint, text) TO regress_deny_owner'),
	('GRANT EXECUTE ON FUNCTION trialvault.guard() TO regress_deny_owner'),
	('REVOKE EXECUTE ON FUNCTION trialvault._session_scope(text) FROM trialvault_user'),
	('GRANT CREATE ON SCHEMA trialvault TO regress_deny_owner'),
	('ALTER DEFAULT PRIVILEGES IN SCHEMA trialvault GRANT SELECT ON TABLES TO PUBLIC'),
	('ALTER EXTENSION trialvault ADD FUNCTION public.noop()'),
	('ALTER TRIGGER zz_trialvault_chain ON trialvault.audit_events DEPENDS ON EXTENSION pgcrypto'),
	('ALTER SCHEMA trialvault OWNER TO regress_deny_owner'),
	('GRANT EXECUTE ON FUNCTION trialvault.protect(regclass) TO regress_deny_owner'),
	('REVOKE EXECUTE ON FUNCTION trialvault.protect(regclass) FROM regress_deny_owner'),
	('GRANT USAGE ON SCHEMA trialvault TO regress_deny_owner'),
	('COMMENT ON EXTENSION trialvault IS ''insert-only, hash-chained, encrypted repository for clinical-trial source documents''')
) AS t(stmt);
-- ALTER SYSTEM cannot run in a function: tried as plain statements.
\set VERBOSITY terse
ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements';
ALTER SYSTEM RESET shared_preload_libraries;
ALTER SYSTEM RESET ALL;
\set VERBOSITY default
-- The unqualified way in: CREATE OR REPLACE under another search_path.
SET search_path = trialvault;
SELECT pg_temp.try('CREATE OR REPLACE FUNCTION guard() RETURNS trigger LANGUAGE plpgsql AS ''BEGIN RETURN NULL; END''');
SELECT pg_temp.try('CREATE OR REPLACE VIEW my_roles AS SELECT ''X''::text AS study, NULL::text AS site, ''monitor''::text AS study_role');
SET search_path = deny, public;
SELECT pg_temp.try('UPDATE ledger SET entry = ''changed''');

-- ---------------------------------------------------------------------
-- 4b. Restore mode keeps the chain columns a row brings: a superuser could
-- put a forged row, with correct hashes, into a gap of tv_seq (a rolled-back
-- insert leaves one), where no later row refers to it and verify() finds
-- nothing.  Restored rows must come after the rows a table holds.
-- ---------------------------------------------------------------------
CREATE TABLE gappy (note text);
SELECT trialvault.protect('gappy');
INSERT INTO gappy VALUES ('first');
BEGIN;
INSERT INTO gappy VALUES ('rolled back');
ROLLBACK;
INSERT INTO gappy VALUES ('third');
SELECT array_agg(tv_seq ORDER BY tv_seq) AS seqs FROM gappy;
CREATE TEMP TABLE forged AS
	SELECT 2::bigint AS tv_seq, ARRAY[g.tv_seq] AS tv_prev_seqs,
		sha256('TVPREV1'::bytea || int8send(g.tv_seq) || g.tv_hash) AS tv_prev_hash
	FROM gappy g WHERE g.note = 'first';
ALTER TABLE forged ADD COLUMN tv_hash bytea;
UPDATE forged SET tv_hash = sha256('TVHASH1'::bytea || int8send(tv_seq) || tv_prev_hash ||
	sha256('TVROW2'::bytea || int4send(4) || 'note'::bytea || int4send(25) || 'r'::bytea || int4send(6) || 'forged'::bytea));
SET trialvault.restore_mode = on;
SELECT pg_temp.try($$INSERT INTO gappy (note, tv_seq, tv_prev_seqs, tv_prev_hash, tv_hash)
	SELECT 'forged', tv_seq, tv_prev_seqs, tv_prev_hash, tv_hash FROM forged$$);
RESET trialvault.restore_mode;
SELECT ok, rows_checked, heads FROM trialvault.verify('gappy');

-- ---------------------------------------------------------------------
-- 5. The guard is attached by protect() only
-- ---------------------------------------------------------------------
SET ROLE regress_deny_owner;
CREATE TABLE squatter (a int, tv_seq bigint, tv_prev_seqs bigint[], tv_prev_hash bytea, tv_hash bytea);
SELECT pg_temp.try('CREATE TRIGGER zz_trialvault_chain BEFORE INSERT ON squatter FOR EACH ROW EXECUTE FUNCTION trialvault.guard()');
SELECT pg_temp.try('SELECT trialvault.protect(''squatter'')');
RESET ROLE;
SELECT has_function_privilege('public', 'trialvault.guard()', 'EXECUTE') AS public_may_attach_guard;

RESET client_min_messages;

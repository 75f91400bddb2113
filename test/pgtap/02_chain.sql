-- Chain behaviour inside transactions, subtransactions and multi-row statements.
BEGIN;
SELECT plan(22);

CREATE TABLE t_chain (id int, body text);
SELECT lives_ok($$SELECT trialvault.protect('t_chain')$$, 'protect() an empty table');

SELECT lives_ok($$INSERT INTO t_chain SELECT i, 'row ' || i FROM generate_series(1, 100) i$$,
	'a 100-row INSERT ... SELECT is accepted');
SELECT is((SELECT count(*) FROM t_chain WHERE tv_seq > 1 AND tv_prev_seqs <> ARRAY[tv_seq - 1]), 0::bigint,
	'within one transaction each row links to the previous one');
SELECT is((SELECT tv_prev_seqs FROM t_chain WHERE tv_seq = 1), '{}'::bigint[],
	'the first row of an empty table links to nothing');
SELECT is((SELECT count(DISTINCT tv_hash) FROM t_chain), 100::bigint, 'every row has its own hash');
SELECT is((SELECT count(*) FROM t_chain WHERE length(tv_hash) <> 32 OR length(tv_prev_hash) <> 32),
	0::bigint, 'hashes are 32-byte SHA-256 values');

-- A plpgsql exception block is a subtransaction: its rows vanish, the chain does not break.
DO $$
BEGIN
	BEGIN
		INSERT INTO t_chain VALUES (1000, 'lost');
		RAISE EXCEPTION 'roll back the block';
	EXCEPTION WHEN raise_exception THEN
		NULL;
	END;
	INSERT INTO t_chain VALUES (101, 'after the failed block');
END $$;
SELECT is((SELECT count(*) FROM t_chain WHERE id = 1000), 0::bigint, 'the rolled-back row is gone');
SELECT is((SELECT tv_prev_seqs FROM t_chain WHERE id = 101), ARRAY[100]::bigint[],
	'the next row links past the rolled-back one');
SELECT results_eq($$SELECT ok, rows_checked, bad_rows FROM trialvault.verify('t_chain')$$,
	$$VALUES (true, 101::bigint, 0::bigint)$$, 'chain verifies after a rolled-back subtransaction');

-- Nested savepoints: a released inner one belongs to its parent, a rolled-back outer one takes both.
SAVEPOINT outer_sp;
INSERT INTO t_chain VALUES (200, 'outer');
SAVEPOINT inner_sp;
INSERT INTO t_chain VALUES (201, 'inner');
RELEASE SAVEPOINT inner_sp;
ROLLBACK TO SAVEPOINT outer_sp;
INSERT INTO t_chain VALUES (102, 'after nested rollback');
SELECT is((SELECT tv_prev_seqs FROM t_chain WHERE id = 102),
	(SELECT ARRAY[tv_seq] FROM t_chain WHERE id = 101),
	'rows of a rolled-back savepoint and its released child are not linked to');

SAVEPOINT keep_sp;
INSERT INTO t_chain VALUES (103, 'kept in savepoint');
RELEASE SAVEPOINT keep_sp;
INSERT INTO t_chain VALUES (104, 'after release');
SELECT is((SELECT tv_prev_seqs FROM t_chain WHERE id = 104),
	(SELECT ARRAY[tv_seq] FROM t_chain WHERE id = 103), 'rows of a released savepoint are linked to');
SELECT results_eq($$SELECT ok, bad_rows, heads FROM trialvault.verify('t_chain')$$,
	$$VALUES (true, 0::bigint, 1::bigint)$$, 'chain verifies with one open end');

-- Refusals inside a transaction leave it usable after ROLLBACK TO.
SELECT throws_ok($$UPDATE t_chain SET body = 'x' WHERE id = 1$$, '55000', NULL, 'UPDATE refused (55000)');
SELECT throws_ok($$DELETE FROM t_chain WHERE id = 1$$, '55000', NULL, 'DELETE refused (55000)');
SELECT throws_ok($$TRUNCATE t_chain$$, '55000', NULL, 'TRUNCATE refused (55000)');
SELECT throws_ok($$ALTER TABLE t_chain DISABLE TRIGGER ALL$$, '55000', NULL, 'DISABLE TRIGGER ALL refused (55000)');
SELECT throws_ok($$DROP TABLE t_chain$$, '55000', NULL, 'DROP TABLE of a non-empty protected table refused');
SELECT is((SELECT count(*) FROM t_chain), 104::bigint, 'no row was lost');

-- Wide values are hashed from their detoasted contents.
CREATE TABLE t_wide (doc bytea, meta xml, notes text);
SELECT trialvault.protect('t_wide');
INSERT INTO t_wide SELECT decode(repeat(md5(i::text), 4000), 'hex'), ('<m><p>' || i || '</p></m>')::xml, repeat('n', 100000)
	FROM generate_series(1, 5) i;
SELECT results_eq($$SELECT ok, rows_checked FROM trialvault.verify('t_wide')$$,
	$$VALUES (true, 5::bigint)$$, 'toasted values verify');
SELECT is((SELECT count(*) FROM trialvault.protected_tables WHERE table_name::text IN ('t_chain', 't_wide')),
	2::bigint, 'protected_tables lists both tables');

-- Types and operators planted earlier on the caller's search_path are not used by protect().
CREATE SCHEMA evil;
CREATE DOMAIN evil.bytea AS pg_catalog.text;
CREATE DOMAIN evil.int8 AS pg_catalog.int4;
CREATE TABLE t_hijack (a int);
SET LOCAL search_path = evil, pg_catalog, public;
SELECT lives_ok($$SELECT trialvault.protect('public.t_hijack')$$, 'protect() with a hostile search_path');
RESET search_path;
SELECT is((SELECT string_agg(format_type(atttypid, NULL), ',' ORDER BY attnum) FROM pg_attribute
	WHERE attrelid = 't_hijack'::regclass AND attname LIKE 'tv\_%'),
	'bigint,bigint[],bytea,bytea', 'chain columns use the built-in types');

SELECT * FROM finish();
ROLLBACK;

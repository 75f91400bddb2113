-- Bad input to protect() and verify(): each a clear error with a proper SQLSTATE.
\i sql/include/try.sql

CREATE VIEW v_docs AS SELECT 1 AS a;
CREATE MATERIALIZED VIEW mv_docs AS SELECT 1 AS a;
CREATE SEQUENCE seq_docs;
CREATE TEMP TABLE temp_docs (a int);
CREATE UNLOGGED TABLE unlogged_docs (a int);
CREATE TABLE part_docs (a int) PARTITION BY RANGE (a);
CREATE TABLE part_docs_1 PARTITION OF part_docs FOR VALUES FROM (0) TO (100);
CREATE TABLE has_tv_col (a int, tv_hash text);
CREATE TABLE plain_docs (a int);
CREATE TYPE some_type AS (a int);

SELECT stmt, pg_temp.try(stmt) FROM (VALUES
	('SELECT trialvault.protect(NULL)'),
	('SELECT trialvault.protect(''v_docs'')'),
	('SELECT trialvault.protect(''mv_docs'')'),
	('SELECT trialvault.protect(''seq_docs'')'),
	('SELECT trialvault.protect(''temp_docs'')'),
	('SELECT trialvault.protect(''unlogged_docs'')'),
	('SELECT trialvault.protect(''part_docs'')'),
	('SELECT trialvault.protect(''no_such_table'')'),
	('SELECT trialvault.protect('''')'),
	('SELECT trialvault.protect(''pg_class'')'),
	('SELECT trialvault.protect(''some_type'')'),
	('SELECT trialvault.protect(42)'),
	('SELECT trialvault.protect(''has_tv_col'')'),
	('SELECT trialvault.protect(repeat(''x'', 10000))'),
	('SELECT trialvault.protect(''a.b.c.d'')'),
	('SELECT trialvault.protect(1.5)'),
	('SELECT trialvault.protect(ARRAY[1])'),
	('SELECT * FROM trialvault.verify(NULL)'),
	('SELECT * FROM trialvault.verify(''plain_docs'')'),
	('SELECT * FROM trialvault.verify(''v_docs'')'),
	('SELECT * FROM trialvault.verify(''no_such_table'')'),
	('SELECT * FROM trialvault.verify(0)')
) AS t(stmt);

-- Partitions cannot be protected either (no columns can be added to one).
SELECT pg_temp.try('SELECT trialvault.protect(''part_docs_1'')');

-- Roles without rights.
CREATE ROLE regress_tv_nobody LOGIN;
CREATE ROLE regress_tv_runner LOGIN;
GRANT USAGE ON SCHEMA trialvault TO regress_tv_runner;
GRANT EXECUTE ON FUNCTION trialvault.protect(regclass) TO regress_tv_runner;
SELECT trialvault.protect('plain_docs');
INSERT INTO plain_docs VALUES (1);
CREATE TABLE someone_elses (a int);

SET ROLE regress_tv_nobody;
SELECT stmt, pg_temp.try(stmt) FROM (VALUES
	('SELECT trialvault.protect(''someone_elses'')'),
	('SELECT * FROM trialvault.verify(''plain_docs'')'),
	('INSERT INTO plain_docs VALUES (2)'),
	('SELECT count(*) FROM trialvault.protected_tables')
) AS t(stmt);
RESET ROLE;

SET ROLE regress_tv_runner;
SELECT pg_temp.try('SELECT trialvault.protect(''someone_elses'')');
RESET ROLE;

-- With SELECT on the table, verify() is allowed.
GRANT SELECT ON plain_docs TO regress_tv_nobody;
SET ROLE regress_tv_nobody;
SELECT ok, rows_checked FROM trialvault.verify('plain_docs');
RESET ROLE;

-- Nothing stored was lost along the way.
SELECT ok, rows_checked, bad_rows FROM trialvault.verify('plain_docs');

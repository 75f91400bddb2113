-- protect(): making tables insert-only and hash-chained.
CREATE EXTENSION trialvault CASCADE;
SET client_min_messages = notice;
-- Refusals are put on record by the log writer: wait until it runs.
\i sql/include/wait_writer.sql

-- Rows already present are chained in physical order when protect() runs.
CREATE TABLE crf (
	id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	subject text NOT NULL,
	visit integer,
	weight_kg numeric(5,1),
	taken date
);
INSERT INTO crf (subject, visit, weight_kg, taken) VALUES
	('S-001', 1, 71.5, '2026-01-10'),
	('S-002', 1, 80.0, '2026-01-11');
SELECT trialvault.protect('crf');

SELECT id, subject, tv_seq, tv_prev_seqs, length(tv_prev_hash) AS prev_len,
	length(tv_hash) AS hash_len
FROM crf ORDER BY tv_seq;

-- Calling it again is harmless.
SELECT trialvault.protect('crf');

-- The chain columns are NOT NULL and appended after the user's columns.
SELECT attname, format_type(atttypid, atttypmod), attnotnull
FROM pg_attribute WHERE attrelid = 'crf'::regclass AND attnum > 0
ORDER BY attnum;

-- The guard triggers fire ALWAYS, also under session_replication_role = replica.
SELECT tgname, tgenabled FROM pg_trigger WHERE tgrelid = 'crf'::regclass ORDER BY tgname;
SELECT table_name, guards_enabled, guard_triggers FROM trialvault.protected_tables ORDER BY table_name::text;

-- New rows are chained by the trigger, whatever the client puts in the chain columns.
INSERT INTO crf (subject, visit, weight_kg, taken, tv_seq, tv_hash)
	VALUES ('S-003', 1, 66.2, '2026-01-12', 999, '\xdeadbeef');
SELECT subject, tv_seq, tv_prev_seqs, length(tv_hash) FROM crf ORDER BY tv_seq;

-- A transaction's first row links to the committed heads, later rows to its own previous row.
BEGIN;
INSERT INTO crf (subject, visit) VALUES ('S-004', 1);
INSERT INTO crf (subject, visit) VALUES ('S-005', 1);
COMMIT;
SELECT subject, tv_seq, tv_prev_seqs FROM crf WHERE tv_seq > 3 ORDER BY tv_seq;

-- Rolled-back rows and rolled-back savepoints leave a gap in tv_seq but no broken link.
BEGIN;
INSERT INTO crf (subject, visit) VALUES ('rolled back', 1);
ROLLBACK;
BEGIN;
INSERT INTO crf (subject, visit) VALUES ('S-006', 2);
SAVEPOINT s1;
INSERT INTO crf (subject, visit) VALUES ('rolled back to savepoint', 2);
ROLLBACK TO SAVEPOINT s1;
SAVEPOINT s2;
INSERT INTO crf (subject, visit) VALUES ('S-007', 2);
RELEASE SAVEPOINT s2;
COMMIT;
SELECT subject, tv_seq, tv_prev_seqs FROM crf WHERE tv_seq > 5 ORDER BY tv_seq;

SELECT ok, rows_checked, first_bad, bad_rows, heads, guard FROM trialvault.verify('crf');

-- COPY FROM works and chains.
COPY crf (subject, visit, weight_kg) FROM STDIN;
S-008	3	70.1
S-009	3	\N
\.
SELECT count(*), max(tv_seq) FROM crf;
SELECT ok, rows_checked, bad_rows FROM trialvault.verify('crf');

-- An empty table can be protected; ADD COLUMN without a default keeps old rows valid.
CREATE TABLE lab (sample text, value float8);
SELECT trialvault.protect('lab');
INSERT INTO lab VALUES ('hb', 13.5), ('wbc', 6.1);
ALTER TABLE lab ADD COLUMN unit text;
INSERT INTO lab (sample, value, unit) VALUES ('plt', 250, '10^9/L');
ALTER TABLE lab ALTER COLUMN unit SET DEFAULT 'n/a';
INSERT INTO lab (sample, value) VALUES ('na', 140);
SELECT sample, value, unit, tv_seq FROM lab ORDER BY tv_seq;
SELECT ok, rows_checked FROM trialvault.verify('lab');

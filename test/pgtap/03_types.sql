-- The canonical encoding: every kind of column verifies, under any session settings.
BEGIN;
SELECT plan(21);

CREATE TYPE mood AS ENUM ('low', 'ok', 'high');
CREATE TYPE dose AS (amount numeric, unit text, given timestamptz);
CREATE DOMAIN subject_code AS text CHECK (VALUE ~ '^S-[0-9]+$');
CREATE TABLE t_types (
	id bigint GENERATED ALWAYS AS IDENTITY,
	code subject_code,
	m mood,
	d dose,
	ds dose[],
	r tstzrange,
	ir int4range,
	n numeric,
	f4 real,
	f8 float8,
	ts timestamp,
	tz timestamptz,
	dt date,
	tm time,
	iv interval,
	j json,
	jb jsonb,
	x xml,
	u uuid,
	ip inet,
	b bool,
	by bytea,
	vc varchar(20),
	bp char(5),
	nm name,
	arr int[][],
	tarr text[],
	bits bit varying,
	money_col money,
	twice int GENERATED ALWAYS AS (length(code) * 2) STORED
);
SELECT trialvault.protect('t_types');
INSERT INTO t_types (code, m, d, ds, r, ir, n, f4, f8, ts, tz, dt, tm, iv, j, jb, x, u, ip, b, by, vc, bp, nm, arr, tarr, bits, money_col)
VALUES
	('S-1', 'ok', ROW(2.50, 'mg', '2026-02-01 08:00+01'), ARRAY[ROW(1, 'mg', NULL)::dose, NULL],
	 tstzrange('2026-01-01', '2026-02-01'), '[1,10)', 3.14159265358979323846, 0.1, 1e-300,
	 '2026-01-01 12:34:56.789', '2026-01-01 12:34:56.789+05:30', '2026-01-31', '23:59:59', '1 year 2 mons 3 days 04:05:06',
	 '{"b": 1, "a": [1, 2]}', '{"b": 1, "a": [1, 2], "é": "ü"}', '<doc lang="fr">été</doc>',
	 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '10.1.2.3/16', true, '\x00ff10', 'Grüße', 'ab', 'nm',
	 '{{1,2},{3,4}}', '{"a,b", NULL, ""}', B'10110', 12.34),
	(NULL, NULL, NULL, NULL, 'empty', NULL, 'NaN', 'Infinity', '-0', 'infinity', '-infinity', 'epoch', NULL,
	 '-1 day', NULL, 'null', NULL, NULL, '::1', false, '', '', '', '', '{}', '{}', B'', NULL),
	('S-22', 'high', ROW(NULL, NULL, NULL), '{}', '(,)', '(,5]', -0.000001, -1.5, 2.5e300, '1999-12-31', '2000-01-01 00:00+00', '0001-01-01 BC',
	 '00:00', '0', '[]', '[]', '<a/>', '00000000-0000-0000-0000-000000000000', '::ffff:1.2.3.4', NULL, '\x', 'x', 'x', 'x',
	 '[0:1]={7,8}', '{"quote\"d"}', B'1', -1);

SELECT results_eq($$SELECT ok, rows_checked, bad_rows FROM trialvault.verify('t_types')$$,
	$$VALUES (true, 3::bigint, 0::bigint)$$, 'all types verify');

SET LOCAL DateStyle = 'German, DMY';
SELECT ok((SELECT v.ok FROM trialvault.verify('t_types') v), 'verifies under DateStyle German');
SET LOCAL TimeZone = 'Pacific/Chatham';
SELECT ok((SELECT v.ok FROM trialvault.verify('t_types') v), 'verifies under another TimeZone');
SET LOCAL extra_float_digits = -15;
SELECT ok((SELECT v.ok FROM trialvault.verify('t_types') v), 'verifies with extra_float_digits = -15');
SET LOCAL IntervalStyle = 'iso_8601';
SELECT ok((SELECT v.ok FROM trialvault.verify('t_types') v), 'verifies with IntervalStyle iso_8601');
SET LOCAL bytea_output = 'escape';
SELECT ok((SELECT v.ok FROM trialvault.verify('t_types') v), 'verifies with bytea_output escape');
SET LOCAL lc_monetary = 'C';
SELECT ok((SELECT v.ok FROM trialvault.verify('t_types') v), 'verifies with another lc_monetary');
SET LOCAL client_encoding = 'LATIN1';
SELECT ok((SELECT v.ok FROM trialvault.verify('t_types') v), 'verifies with client_encoding LATIN1');
RESET client_encoding;

-- Values that print alike but differ are hashed differently (no collisions by formatting).
CREATE TABLE t_same (a text, b text);
SELECT trialvault.protect('t_same');
INSERT INTO t_same VALUES ('ab', 'c'), ('a', 'bc'), (NULL, 'abc'), ('abc', NULL), ('', 'abc');
SELECT is((SELECT count(DISTINCT tv_prev_hash || tv_hash) FROM t_same), 5::bigint,
	'column boundaries and NULLs are part of the encoding');

-- A generated column is derived, not hashed; changing its expression is not a data change.
SELECT is((SELECT twice FROM t_types WHERE code = 'S-22'), 8, 'generated column is filled');

-- The row hash is what the documentation says: SHA-256 over tag, seq, prev hash, contents digest.
CREATE TABLE t_doc (note text);
SELECT trialvault.protect('t_doc');
INSERT INTO t_doc VALUES ('hello');
SELECT is(
	(SELECT tv_prev_hash FROM t_doc),
	sha256('TVPREV1'::bytea),
	'first row: tv_prev_hash = sha256(''TVPREV1'')');
SELECT is(
	(SELECT tv_hash FROM t_doc),
	(SELECT sha256('TVHASH1'::bytea || int8send(1) || tv_prev_hash ||
		sha256('TVROW2'::bytea || int4send(4) || 'note'::bytea || int4send('text'::regtype::oid::int) ||
			'r'::bytea || int4send(5) || 'hello'::bytea))
	 FROM t_doc),
	'tv_hash matches the documented formula (each column: name, built-in type, value)');

-- Fixed-width built-in types are encoded exactly as their send functions write them,
-- and columns are taken in the byte order of their names.
CREATE TABLE t_fixed (k timestamp, j time, i oid, h int2, g real, f timestamptz, e date,
	d float8, c bool, b int8, a int4);
SELECT trialvault.protect('t_fixed');
INSERT INTO t_fixed VALUES ('2026-05-06 07:08:09.123456', '13:14:15', 4242, -7, 1.5,
	'2026-05-06 07:08:09+02', '2026-05-06', -2.25e-5, true, 9007199254740993, -123456);
SELECT is(
	(SELECT tv_hash FROM t_fixed),
	(SELECT sha256('TVHASH1'::bytea || int8send(tv_seq) || tv_prev_hash || sha256('TVROW2'::bytea ||
		(SELECT string_agg(int4send(length(n)) || convert_to(n, 'UTF8') || int4send(t::oid::int) ||
				'b'::bytea || int4send(length(v)) || v,
			''::bytea ORDER BY n COLLATE "C")
		 FROM (VALUES ('a', 'int4'::regtype, int4send(a)), ('b', 'int8', int8send(b)), ('c', 'bool', boolsend(c)),
			('d', 'float8', float8send(d)), ('e', 'date', date_send(e)), ('f', 'timestamptz', timestamptz_send(f)),
			('g', 'float4', float4send(g)), ('h', 'int2', int2send(h)), ('i', 'oid', oidsend(i)),
			('j', 'time', time_send(j)), ('k', 'timestamp', timestamp_send(k))) AS x(n, t, v))))
	 FROM t_fixed),
	'fixed-width values hash as their send form, columns in name order');

-- Only types whose OIDs PostgreSQL's sources fix (below 10000) carry their
-- OID; initdb numbers information_schema's types and the row types of
-- system views differently from cluster to cluster and version to version,
-- so they carry 0, like types a database defines.  Two first rows with the
-- same values hash alike exactly when their columns carry the same identity.
CREATE DOMAIN t_card AS integer;
CREATE TABLE t_initdb_type (x information_schema.cardinal_number[]);
CREATE TABLE t_user_type (x t_card[]);
SELECT trialvault.protect('t_initdb_type');
SELECT trialvault.protect('t_user_type');
INSERT INTO t_initdb_type VALUES ('{1,2}');
INSERT INTO t_user_type VALUES ('{1,2}');
SELECT is((SELECT tv_hash FROM t_initdb_type), (SELECT tv_hash FROM t_user_type),
	'a type initdb numbered (information_schema.cardinal_number[]) carries identity 0, as a user type does');

-- A column retyped in the catalog, behind the guards' back, to a type whose
-- values have the same bytes (int4 and float4, text and bytea) changes what
-- every row says; the type is part of the encoding, so verify() sees it.
CREATE TABLE t_retype (n int4, s text);
SELECT trialvault.protect('t_retype');
INSERT INTO t_retype VALUES (7, 'seven');
UPDATE pg_attribute SET atttypid = 'float4'::regtype WHERE attrelid = 't_retype'::regclass AND attname = 'n';
SELECT is((SELECT ok FROM trialvault.verify('t_retype')), false,
	'int4 retyped to float4 in pg_attribute (7 reads as 9.8e-45): verify() finds every row');
UPDATE pg_attribute SET atttypid = 'int4'::regtype WHERE attrelid = 't_retype'::regclass AND attname = 'n';
UPDATE pg_attribute SET atttypid = 'bytea'::regtype WHERE attrelid = 't_retype'::regclass AND attname = 's';
SELECT is((SELECT ok FROM trialvault.verify('t_retype')), false, 'text retyped to bytea: found too');
UPDATE pg_attribute SET atttypid = 'text'::regtype WHERE attrelid = 't_retype'::regclass AND attname = 's';
SELECT is((SELECT ok FROM trialvault.verify('t_retype')), true, 'and the table verifies again once undone');

-- Arrays, composites and ranges name their type in each value.  A column
-- retyped in the catalog to another composite type of the same layout
-- (both user types, so the same type identity 0) reads with the other
-- type's attribute names: the value no longer matches its column, which
-- verify() finds; an array retyped to an element type of another layout
-- is reported, not read past its end.
CREATE TYPE t_dose AS (dose int4, unit text);
CREATE TYPE t_amount AS (amount int4, unit text);
CREATE TABLE t_comp (c t_dose, a int4[]);
SELECT trialvault.protect('t_comp');
INSERT INTO t_comp VALUES (ROW(5, 'mg'), '{1,2,3}');
UPDATE pg_attribute SET atttypid = 't_amount'::regtype WHERE attrelid = 't_comp'::regclass AND attname = 'c';
SELECT is((SELECT ok::text || ' ' || bad_rows FROM trialvault.verify('t_comp')), 'false 1',
	'a composite column retyped to another composite type of the same layout: found');
UPDATE pg_attribute SET atttypid = 't_dose'::regtype WHERE attrelid = 't_comp'::regclass AND attname = 'c';
UPDATE pg_attribute SET atttypid = 'text[]'::regtype WHERE attrelid = 't_comp'::regclass AND attname = 'a';
SELECT is((SELECT ok::text || ' ' || bad_rows FROM trialvault.verify('t_comp')), 'false 1',
	'an int4[] column retyped to text[]: found, without reading int4 data as text');
UPDATE pg_attribute SET atttypid = 'int4[]'::regtype WHERE attrelid = 't_comp'::regclass AND attname = 'a';
SELECT is((SELECT ok FROM trialvault.verify('t_comp')), true, 'and verified again once undone');

-- A row hashed by 0.5 (no types, "TVROW1") still verifies; restore mode
-- brings one in with its chain columns, as a dump of a 0.5 database would.
CREATE TABLE t_old (note text);
SELECT trialvault.protect('t_old');
SET LOCAL trialvault.restore_mode = on;
INSERT INTO t_old (note, tv_seq, tv_prev_seqs, tv_prev_hash, tv_hash)
SELECT 'written by 0.5', 1, '{}', sha256('TVPREV1'::bytea),
	sha256('TVHASH1'::bytea || int8send(1) || sha256('TVPREV1'::bytea) ||
		sha256('TVROW1'::bytea || int4send(4) || 'note'::bytea || 'r'::bytea || int4send(14) || 'written by 0.5'::bytea));
RESET trialvault.restore_mode;
SELECT is((SELECT ok::text || ' ' || rows_checked FROM trialvault.verify('t_old')), 'true 1',
	'a row in the 0.5 encoding, restored, verifies');

SELECT * FROM finish();
ROLLBACK;

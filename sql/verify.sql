-- verify(): finding changes made behind the guards' back.
CREATE TABLE visit (id serial, subject text, note text, amount numeric, at timestamptz,
	seen date, score float8, tags text[], extra jsonb, flag boolean, raw bytea);
SELECT trialvault.protect('visit');
INSERT INTO visit (subject, note, amount, at, seen, score, tags, extra, flag, raw)
SELECT 'S-' || i, 'note ' || i, i * 1.25, '2026-03-01 10:00+00'::timestamptz + i * interval '1 hour',
	'2026-03-01'::date + i, i / 3.0, ARRAY['a' || i, 'b'], jsonb_build_object('k', i, 'é', 'ü'),
	i % 2 = 0, decode(md5(i::text), 'hex')
FROM generate_series(1, 20) i;
SELECT ok, rows_checked, first_bad, bad_rows, heads, guard FROM trialvault.verify('visit');

-- The encoding does not depend on session settings.
SET DateStyle = 'SQL, DMY';
SET TimeZone = 'America/New_York';
SET extra_float_digits = -3;
SET bytea_output = 'escape';
SET IntervalStyle = 'sql_standard';
SET client_encoding = 'LATIN1';
SELECT ok, rows_checked, bad_rows FROM trialvault.verify('visit');
RESET ALL;

-- A superuser switches the guard off in the catalog and edits a row.
UPDATE pg_trigger SET tgenabled = 'D' WHERE tgrelid = 'visit'::regclass;
\c
SELECT ok, first_bad, guard FROM trialvault.verify('visit');
UPDATE visit SET amount = 999 WHERE subject = 'S-7';
SELECT tv_seq FROM visit WHERE subject = 'S-7';
SELECT ok, first_bad, bad_rows, guard FROM trialvault.verify('visit');

-- ... or deletes one and recomputes nothing: the next row's link names it.
DELETE FROM visit WHERE subject = 'S-12';
SELECT ok, first_bad, bad_rows FROM trialvault.verify('visit');

-- Putting the guard back does not hide what happened.
UPDATE pg_trigger SET tgenabled = 'A' WHERE tgrelid = 'visit'::regclass;
\c
SELECT ok, first_bad, bad_rows, guard FROM trialvault.verify('visit');

-- Forged rows: a copied row keeps its hash but not its place in the chain.
CREATE TABLE ledger (entry text);
SELECT trialvault.protect('ledger');
INSERT INTO ledger VALUES ('one');
INSERT INTO ledger VALUES ('two');
INSERT INTO ledger VALUES ('three');
SELECT ok, heads FROM trialvault.verify('ledger');
UPDATE pg_trigger SET tgenabled = 'D' WHERE tgrelid = 'ledger'::regclass;
\c
-- Swap the contents of two rows.
UPDATE ledger SET entry = CASE entry WHEN 'one' THEN 'two' ELSE 'one' END WHERE entry IN ('one', 'two');
SELECT ok, first_bad, bad_rows FROM trialvault.verify('ledger');
UPDATE ledger SET entry = CASE entry WHEN 'one' THEN 'two' ELSE 'one' END WHERE entry IN ('one', 'two');
SELECT ok, first_bad, bad_rows FROM trialvault.verify('ledger');
-- Re-insert a copy of row 1 (same chain columns) as a new row.  The unique
-- index protect() made on tv_seq refuses it, so the tamperer drops it first
-- (an index never changes rows, so the guards allow that).
INSERT INTO ledger SELECT * FROM ledger WHERE tv_seq = 1;
DROP INDEX ledger_tv_seq_idx;
INSERT INTO ledger SELECT * FROM ledger WHERE tv_seq = 1;
SELECT ok, first_bad, bad_rows FROM trialvault.verify('ledger');
DELETE FROM ledger WHERE ctid = (SELECT max(ctid) FROM ledger WHERE tv_seq = 1);
-- Rewire a link: row 3 claims to follow row 1.
UPDATE ledger SET tv_prev_seqs = '{1}' WHERE tv_seq = 3;
SELECT ok, first_bad, bad_rows FROM trialvault.verify('ledger');
UPDATE ledger SET tv_prev_seqs = '{2}' WHERE tv_seq = 3;
-- Undoing every change restores the chain: verify() checks values, not storage.
UPDATE pg_trigger SET tgenabled = 'A' WHERE tgrelid = 'ledger'::regclass;
\c
SELECT ok, first_bad, bad_rows, guard FROM trialvault.verify('ledger');
-- Removing a row breaks the link of the row that follows it.
UPDATE pg_trigger SET tgenabled = 'D' WHERE tgrelid = 'ledger'::regclass;
\c
DELETE FROM ledger WHERE tv_seq = 2;
SELECT ok, first_bad, bad_rows FROM trialvault.verify('ledger');
-- Removing the newest row leaves no link behind: only head_digest, anchored
-- outside the server, can show it (see docs/dba-guide.md).
CREATE TEMP TABLE before AS SELECT head_digest FROM trialvault.verify('ledger');
DELETE FROM ledger WHERE tv_seq = 3;
SELECT ok, heads, head_digest = (SELECT head_digest FROM before) AS same_head_digest
FROM trialvault.verify('ledger');
UPDATE pg_trigger SET tgenabled = 'A' WHERE tgrelid = 'ledger'::regclass;
-- The row encoding as canon.c's header documents it, recomputed in SQL with
-- sha256(): any change to the bytes hashed (a faster digest, say) shows here.
-- Row 2's payload is large and barely compressible, so it is stored out of
-- line and hashed straight from the detoasted value.
CREATE TABLE enc_check (id int4, note text, payload bytea, meta xml);
SELECT trialvault.protect('enc_check');
INSERT INTO enc_check VALUES (1, 'short', '\x00ff', '<m>1</m>');
INSERT INTO enc_check SELECT 2, NULL, decode(string_agg(md5(i::text), '' ORDER BY i), 'hex'), NULL
	FROM generate_series(1, 200) i;
INSERT INTO enc_check VALUES (-7, '', '', '<m a="x">y</m>'), (NULL, NULL, NULL, NULL);
SELECT tv_seq, length(payload) AS payload_bytes,
	tv_hash = sha256('TVHASH1'::bytea || int8send(tv_seq) || tv_prev_hash || sha256('TVROW2'::bytea
		|| CASE WHEN id IS NULL THEN '' ELSE int4send(2) || 'id'::bytea || int4send(23)
			|| 'b'::bytea || int4send(4) || int4send(id) END
		|| CASE WHEN meta IS NULL THEN '' ELSE int4send(4) || 'meta'::bytea || int4send(142)
			|| 't'::bytea || int4send(octet_length(meta::text)) || convert_to(meta::text, 'UTF8') END
		|| CASE WHEN note IS NULL THEN '' ELSE int4send(4) || 'note'::bytea || int4send(25)
			|| 'r'::bytea || int4send(octet_length(note)) || convert_to(note, 'UTF8') END
		|| CASE WHEN payload IS NULL THEN '' ELSE int4send(7) || 'payload'::bytea || int4send(17)
			|| 'r'::bytea || int4send(length(payload)) || payload END)) AS hash_as_documented
FROM enc_check ORDER BY tv_seq;
SELECT ok, rows_checked FROM trialvault.verify('enc_check');

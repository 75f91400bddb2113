#!/usr/bin/env bash
# 75_verify_export.sh: scripts/trialvault-verify-export, the auditors'
# verifier that needs no trialvault code, agrees with trialvault.verify().
#
# Every comparison runs verify() in the database and the verifier on an
# export of the same table, and compares ok, rows_checked, first_bad (the
# whole text: tv_seq, ctid and reason), bad_rows, heads and head_digest.
#
#   1. intact tables agree: a table with every kind of column, a table in
#      a LATIN1 database, the extension's own tables, an empty table, and a
#      chain forked by overlapping transactions (rows with several
#      predecessors, several heads); composites hashed in SQL in 0.6's form
#      (TVROW2: by name, with type identities) and in 0.5's (TVROW1: by
#      position) both verify, and the retired forms (TVROW1 by name, TVROW2
#      without type identities) are rejected by both; type identities of
#      domains, enums, composites and arrays computed in SQL; the encodings
#      of trialvault 0.6 (aclitem, jsonpath, refcursor, multiranges of user
#      range types) agree under another TimeZone and client_encoding than
#      the inserts'; rows hashed the 0.5 way (computed in SQL, restored in
#      restore mode) agree, also when changed, and a row mixing the 0.5 and
#      0.6 encodings is rejected by both;
#   2. tables changed behind the guards agree on first_bad and bad_rows: a
#      row updated, a row deleted from the middle, a middle row rewritten
#      with a fresh tv_hash, damaged chain columns, rows duplicated; a row
#      failing two checks counts once in bad_rows; columns and composite
#      attributes retyped in pg_attribute between types with the same bytes
#      (rows hashed by 0.6 are bad, a row hashed by 0.5, of plain columns or
#      of a composite, is not); array, composite, range and multirange
#      columns retyped to other such types, whose values trialvault encodes
#      as a marker naming their stored type (every row with one is bad, also
#      one hashed by 0.5; copying one into a new row is refused): arrays
#      agree, composites and ranges where the export shows the
#      stored type's attribute types or bound sizes, and differ as
#      documented where it does not; arrays exported as text (of an enum,
#      jsonb, citext) retyped: the export fails, naming both element types;
#   3. an export changed after it was made is found; a truncated one is
#      refused (exit 2); rows removed from the end pass without an anchor
#      and fail with one; a chain re-hashed from a changed row onward
#      passes verify() and the verifier, and fails the anchor; an anchor
#      still holds after legitimate inserts;
#   4. unusable input exits 2 with a clear message: missing, empty, garbage,
#      trailing bytes, a description that does not match the data, an
#      unknown format or a base_type its types contradict, values of types
#      the verifier cannot reproduce (named by column); an export in format
#      1 (without base_type) still verifies;
#   5. the by-hand export of docs/independent-verification.md is the
#      script's, and gives the same result;
#   6. (last) a superuser who replaces verify() in pg_proc so that it
#      reports ok does not fool the verifier.
set -euo pipefail
source "$(dirname "$0")/../lib/cluster.sh"
source "$(dirname "$0")/lib/helpers.sh"

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CL=c75

# Logins are not recorded here: every comparison exports a table in one
# connection and runs verify() in another, whose login would add a row to
# trialvault.audit_events in between.
tv_cluster_start $CL "trialvault.audit_logins = off"
VXD=$(tv_dir $CL)/vx
mkdir -p "$VXD"
CONN="host=$(tv_dir $CL) port=$(tv_port $CL) user=postgres dbname="
DB=postgres
tv_psql $CL -d postgres >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION trialvault CASCADE;
CREATE EXTENSION citext;
SQL

source "$(dirname "$0")/lib/vx.sh"

# make_linear TABLE [N]: a table with one text column and N rows (10), one
# transaction each, so that row n is chained to row n-1.
make_linear() {
	{
		echo "SET client_min_messages = warning;"
		echo "CREATE TABLE $1 (body text);"
		echo "SELECT trialvault.protect('$1');"
		for i in $(seq 1 "${2:-10}"); do
			echo "INSERT INTO $1 VALUES ('original body $i');"
		done
	} | tv_psql $CL -d postgres >/dev/null
}

seq_of() {
	q $CL postgres "SELECT tv_seq FROM $1 WHERE body = '$2'"
}

# --- 1. intact tables ------------------------------------------------------------

help=$("$VX" --help) && rc=0 || rc=$?
like "$rc:$help" "^0:usage: trialvault-verify-export .*--save-anchor FILE.*Exit status: 0" \
	"1: the script runs by its #! line; --help explains export, verify, anchors and exit status"

tv_psql $CL -d postgres >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE TYPE mood AS ENUM ('low', 'ok', 'high', 'très');
CREATE TYPE dose AS (amount numeric, unit text, given timestamptz);
CREATE TYPE regimen AS (name text, doses dose[], moods mood[], first dose, j jsonb, x xml, "Ünit" char(3));
CREATE TYPE moodrange AS RANGE (subtype = mood);
CREATE DOMAIN subject_code AS text CHECK (VALUE ~ '^S-[0-9]+$');
CREATE DOMAIN posint AS int CHECK (VALUE > 0);
CREATE DOMAIN intpair AS int[];
CREATE DOMAIN dosedom AS dose;
CREATE TABLE t_types (
	id bigint GENERATED ALWAYS AS IDENTITY,
	code subject_code, m mood, d dose, ds dose[], rg regimen, dd dosedom,
	r tstzrange, ir int4range, nr numrange, dr daterange, mr moodrange, imr int4multirange,
	n numeric, f4 real, f8 float8, ts timestamp, tz timestamptz, dt date, tm time, ttz timetz,
	iv interval, j json, jb jsonb, x xml, u uuid, ip inet, cid cidr, mac macaddr, b bool,
	"by" bytea, vc varchar(20), bp char(5), nm name, ch "char", o oid, i2 int2, pt point, bx box,
	arr int[][], tarr text[], lb int[], marr mood[], jarr jsonb[], xarr xml[], pi posint[],
	ip2 intpair, bits bit varying, fb bit(4), money_col money, tsv tsvector, tsq tsquery,
	ci citext, cia citext[], "Grüße" text, "A" text, "a" text, "_" int, i2v int2vector,
	twice int GENERATED ALWAYS AS (length(code) * 2) STORED
);
SELECT trialvault.protect('t_types');
INSERT INTO t_types (code, m, d, ds, rg, dd, r, ir, nr, dr, mr, imr, n, f4, f8, ts, tz, dt, tm,
	ttz, iv, j, jb, x, u, ip, cid, mac, b, "by", vc, bp, nm, ch, o, i2, pt, bx, arr, tarr, lb,
	marr, jarr, xarr, pi, ip2, bits, fb, money_col, tsv, tsq, ci, cia, "Grüße", "A", "a", "_", i2v)
VALUES
	('S-1', 'ok', ROW(2.50, 'mg', '2026-02-01 08:00+01'), ARRAY[ROW(1, 'mg', NULL)::dose, NULL],
	 ROW('r1', ARRAY[ROW(1.5, 'µg', 'infinity')::dose], '{low,NULL,très}', ROW(NULL, NULL, NULL),
	     '{"k": [1, 2.50]}', '<?xml version="1.0"?><a>é</a>', 'ü'),
	 ROW(3, 'ml', '-infinity'),
	 tstzrange('2026-01-01', '2026-02-01'), '[1,10)', '(1.5,2.25]', '[2026-01-01,)', '[low,high)',
	 '{[1,3),[7,9)}', 3.14159265358979323846, 0.1, 1e-300,
	 '2026-01-01 12:34:56.789', '2026-01-01 12:34:56.789+05:30', '2026-01-31', '23:59:59',
	 '23:59:59.5+05:30', '1 year 2 mons 3 days 04:05:06',
	 '{"b": 1, "a": [1, 2]}', '{"b": 1, "a": [1, 2], "é": "ü"}',
	 '<?xml version="1.0" encoding="UTF-8"?><doc lang="fr">été</doc>',
	 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '10.1.2.3/16', '10.1.0.0/16', '08:00:2b:01:02:03',
	 true, '\x00ff10', 'Grüße', 'ab', 'nm', 'x', 4242, -7, '(1.5,-2)', '((0,0),(1,1))',
	 '{{1,2},{3,4}}', '{"a,b", NULL, ""}', '[0:1][-1:0]={{7,8},{NULL,10}}', '{low,NULL,"très"}',
	 ARRAY['{"x":1}'::jsonb, NULL, '[]'],
	 ARRAY['<?xml version="1.0" standalone="yes"?><a/>'::xml, '<b>ü</b>', NULL], '{1,2}', '{5,6}',
	 B'10110', B'1010', 12.34, 'a fat cat sat on a mat', 'fat & (rat | cat)', 'MiXeD Ça',
	 '{Ab,NULL,cD}', 'ß', 'upper', 'lower', 1, '1 2 3'),
	(NULL, NULL, NULL, NULL, NULL, NULL, 'empty', NULL, 'empty', '(,)', 'empty', '{}', 'NaN',
	 'Infinity', '-0', 'infinity', '-infinity', 'epoch', NULL, NULL, '-1 day', NULL, 'null', '<x/>',
	 NULL, '::1', '::/0', NULL, false, '', '', '', '', '', 0, 0, NULL, NULL, '{}', '{}', '{}', '{}',
	 '{}', '{}', '{}', '{}', B'', NULL, NULL, '', '', '', '{}', '', '', '', NULL, ''),
	('S-22', 'high', ROW(NULL, NULL, NULL), '{}', ROW(NULL, '{}', '{}', NULL, NULL, NULL, NULL),
	 NULL, '(,)', '(,5]', '(,)', '[,2026-01-01)', '(low,)', NULL, -0.000001, -1.5, 2.5e300,
	 '1999-12-31', '2000-01-01 00:00+00', '0001-01-01 BC', '00:00', '00:00+00', '0', '[]', '[]',
	 '<a/>', '00000000-0000-0000-0000-000000000000', '::ffff:1.2.3.4', '192.168.0.0/24', NULL, NULL,
	 '\x', 'x', 'x', 'x', NULL, NULL, NULL, '(0,0)', NULL, '[0:1]={7,8}', '{"quote\"d","back\\slash"}',
	 NULL, NULL, NULL, '{<c/>}', NULL, NULL, B'1', NULL, -1, NULL, NULL, NULL, NULL, NULL, NULL,
	 NULL, NULL, NULL);
INSERT INTO t_types (code, m, n, f4, f8, ts, tz, dt, tm, iv, jb, pt)
VALUES ('S-3', 'low', 'Infinity', '-Infinity', 'NaN', '294276-12-31 23:59:59.999999',
	'4713-01-01 00:00+00 BC', 'infinity', '24:00', '-178000000 years',
	'{"big": 123456789012345678901234567890.123}', '(-0,NaN)');
SQL
agree t_types "1: every kind of column (composites, arrays, ranges, domains, enums, xml, json, ...)"
is "$X_OK:$X_ROWS" "true:4" "1: ... and it verifies, all 4 rows"

# Composites hashed here in SQL from the specification, each row rewritten
# with its hash in one form: trialvault 0.6's ("TVROW2", every column and
# attribute with its type identity: 0 for the user-defined unit_amount,
# int4's and text's OIDs for its attributes; attributes by name, 'd', in
# byte order: amount, unit) and 0.5's ("TVROW1", no type identities,
# attributes by position, 'c': unit is 1, amount 2) verify in both.  The
# form 0.6 had before type identities ("TVROW1" with 'd', t_oldd) and one
# without type identities ("TVROW2" without them, t_noid) are rejected by
# both: the 0.5 fallback takes only 0.5's encoding of the whole row.
tv_psql $CL -d postgres >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE TYPE unit_amount AS (unit text, amount int4);
CREATE TABLE t_dform (x unit_amount);
CREATE TABLE t_cform (x unit_amount);
CREATE TABLE t_oldd (x unit_amount);
CREATE TABLE t_noid (x unit_amount);
SELECT trialvault.protect(t) FROM unnest('{t_dform,t_cform,t_oldd,t_noid}'::regclass[]) AS t;
INSERT INTO t_dform VALUES (ROW('mg', 5));
INSERT INTO t_cform VALUES (ROW('mg', 5));
INSERT INTO t_oldd VALUES (ROW('mg', 5));
INSERT INTO t_noid VALUES (ROW('mg', 5));
SQL
for t in t_dform t_cform t_oldd t_noid; do guards $t D; done
tv_psql $CL -d postgres >/dev/null <<'SQL'
CREATE FUNCTION pg_temp.rehash(t regclass, prefix text, ident bytea, tag text, payload bytea)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE format('UPDATE %s SET tv_hash = digest(''TVHASH1''::bytea || int8send(tv_seq) || tv_prev_hash
		|| digest(convert_to($1, ''UTF8'') || int4send(1) || ''x''::bytea || $2 || convert_to($3, ''UTF8'')
		          || int4send(octet_length($4)) || $4, ''sha256''), ''sha256'')', t)
	USING prefix, ident, tag, payload;
END $$;
-- by name, with type identities
SELECT pg_temp.rehash(t, prefix, ident, 'd',
	int4send(6) || 'amount'::bytea || a_ident || 'b'::bytea || int4send(4) || int4send(5) ||
	int4send(4) || 'unit'::bytea || u_ident || 'r'::bytea || int4send(2) || convert_to('mg', 'UTF8'))
  FROM (VALUES ('t_dform'::regclass, 'TVROW2', int4send(0), int4send('int4'::regtype::oid::int),
                int4send('text'::regtype::oid::int)),
               ('t_oldd', 'TVROW1', '', '', ''),
               ('t_noid', 'TVROW2', '', '', '')) AS v(t, prefix, ident, a_ident, u_ident);
-- by position, 0.5's
SELECT pg_temp.rehash('t_cform', 'TVROW1', '', 'c',
	int4send(1) || 'r'::bytea || int4send(2) || convert_to('mg', 'UTF8') ||
	int4send(2) || 'b'::bytea || int4send(4) || int4send(5));
SQL
for t in t_dform t_cform t_oldd t_noid; do guards $t A; done
agree t_dform "1: a composite hashed by the specification's TVROW2 form ('d', type identities)"
is "$X_RC:$X_OK:$X_BAD_ROWS" "0:true:0" "1: ... verifies"
agree t_cform "1: a composite hashed by the specification's TVROW1 form ('c', 0.5's)"
is "$X_RC:$X_OK:$X_BAD_ROWS" "0:true:0" "1: ... verifies"
agree t_oldd "1: a composite hashed as 'd' without type identities under TVROW1 (0.6 before them)"
is "$X_RC:$X_OK:$X_BAD_ROWS" "1:false:1" "1: ... is rejected"
agree t_noid "1: a composite hashed as TVROW2 without type identities"
is "$X_RC:$X_OK:$X_BAD_ROWS" "1:false:1" "1: ... is rejected"

# The encodings trialvault 0.6 introduced (canon.c): aclitem (no binary send
# function) and jsonpath and refcursor (send forms in the client's encoding)
# by their text output; a range over timestamptz and its multirange, whose
# text output follows TimeZone, range by range; arrays, domains, composites
# of them, and a range over the multirange.  Inserted under one TimeZone,
# verified and exported under another.
tv_psql $CL -d postgres >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE TYPE tzr AS RANGE (subtype = timestamptz, multirange_type_name = tzmr);
CREATE TYPE mrr AS RANGE (subtype = tzmr);
CREATE DOMAIN tzmrdom AS tzmr;
CREATE TYPE c06 AS (jp jsonpath, rc refcursor, mr tzmr, r tzr, "Zé" text);
CREATE TABLE t_06 (acl aclitem, acls aclitem[], jp jsonpath, jps jsonpath[], rc refcursor,
	rcs refcursor[], r tzr, mr tzmr, mrs tzmr[], md tzmrdom, c c06, cs c06[], rm mrr);
SELECT trialvault.protect('t_06');
SET TimeZone = 'Asia/Kolkata';
INSERT INTO t_06 VALUES
	('postgres=arwd/postgres', '{postgres=r/postgres,=r/postgres}', '$."é".a ? (@ > 1 && @ like_regex "ü")',
	 '{"$.a", NULL, "$[*] ? (@ == \"ß\")"}', 'curseur_é', '{c1,NULL,"ç 2"}', '[2026-01-01 10:00,2026-01-02)',
	 '{[2026-01-01 10:00:00.000001, 2026-01-02), [2026-03-01,), (,1999-01-01]}',
	 ARRAY['{[2026-01-01,2026-01-02]}'::tzmr, '{}', NULL], '{[2026-05-05,2026-05-06)}',
	 ROW('$.x', 'c', '{(,2026-01-01)}', '[2026-01-01,2026-02-01)', 'a "quoted", back\slash (x)'),
	 ARRAY[ROW('$."é"', NULL, '{}', 'empty', NULL)::c06, NULL], '["{}","{[2026-01-01,)}"]'),
	(NULL, '{}', '$', '{}', '', '{}', 'empty', '{}', '{}', '{}', ROW(NULL, NULL, NULL, NULL, NULL), '{}',
	 'empty');
SQL
export PGTZ=America/New_York
agree t_06 "1: aclitem, jsonpath, refcursor, a range over timestamptz and its multirange, arrays, domains, composites of them"
is "$X_OK:$X_ROWS" "true:2" "1: ... verifies under another TimeZone than the inserts', both rows"
unset PGTZ

# Rows hashed the 0.5 way: composites by position ('c'), jsonpath and
# refcursor in their send form, multiranges of user range types as their
# text output, all in one row's encoding; computed here in SQL from the
# specification and restored with their chain columns (restore mode checks
# tv_hash against the row, accepting the 0.5 encoding).
LG05_SQL=$(cat <<'SQL'
SET client_min_messages = warning;
CREATE SCHEMA lg05;
CREATE FUNCTION lg05.tagged(tag text, b bytea) RETURNS bytea LANGUAGE sql IMMUTABLE STRICT
	AS $$ SELECT convert_to(tag, 'UTF8') || int4send(octet_length(b)) || b $$;
CREATE FUNCTION lg05.col(name text, enc bytea) RETURNS bytea LANGUAGE sql IMMUTABLE
	AS $$ SELECT coalesce(int4send(octet_length(convert_to(name, getdatabaseencoding())))
	                      || convert_to(name, getdatabaseencoding()) || enc, '') $$;
-- a column or composite attribute in the 0.6 encoding: with its type identity
CREATE FUNCTION lg05.col2(name text, ident int4, enc bytea) RETURNS bytea LANGUAGE sql IMMUTABLE
	AS $$ SELECT coalesce(int4send(octet_length(convert_to(name, getdatabaseencoding())))
	                      || convert_to(name, getdatabaseencoding()) || int4send(ident) || enc, '') $$;
CREATE FUNCTION lg05.txt(t text) RETURNS bytea LANGUAGE sql IMMUTABLE STRICT
	AS $$ SELECT lg05.tagged('r', convert_to(t, getdatabaseencoding())) $$;
-- jsonpath and refcursor: their send forms (in the session's client_encoding)
CREATE FUNCTION lg05.jp(j jsonpath) RETURNS bytea LANGUAGE sql STABLE STRICT
	AS $$ SELECT lg05.tagged('b', jsonpath_send(j)) $$;
CREATE FUNCTION lg05.rc(r refcursor) RETURNS bytea LANGUAGE sql STABLE STRICT
	AS $$ SELECT lg05.tagged('b', textsend(r::text)) $$;
-- a multirange of a user range type: its text output (in the session's TimeZone)
CREATE FUNCTION lg05.mr(m anymultirange) RETURNS bytea LANGUAGE sql STABLE STRICT
	AS $$ SELECT lg05.tagged('t', convert_to(format('%s', m), getdatabaseencoding())) $$;
CREATE FUNCTION lg05.jps(a jsonpath[]) RETURNS bytea LANGUAGE sql STABLE STRICT
	AS $$ SELECT lg05.tagged('a', int4send(coalesce(array_ndims(a), 0)) ||
	         CASE WHEN cardinality(a) > 0
	              THEN int4send(array_length(a, 1)) || int4send(array_lower(a, 1)) ||
	                   (SELECT string_agg(coalesce(lg05.jp(a[i]), 'n'), '' ORDER BY i)
	                      FROM generate_subscripts(a, 1) AS i)
	              ELSE '' END) $$;
-- the chain columns of rows with these content digests, one after the other
CREATE FUNCTION lg05.chain(contents bytea[]) RETURNS TABLE (k bigint, ps bigint[], prev bytea, h bytea)
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
	ps := '{}';
	prev := digest('TVPREV1', 'sha256');
	FOR i IN 1 .. coalesce(array_length(contents, 1), 0) LOOP
		k := i;
		h := digest('TVHASH1'::bytea || int8send(k) || prev || contents[i], 'sha256');
		RETURN NEXT;
		ps := ARRAY[k];
		prev := digest('TVPREV1'::bytea || int8send(k) || h, 'sha256');
	END LOOP;
END $$;
SQL
)
tv_psql $CL -d postgres >/dev/null <<SQL
$LG05_SQL
SQL
tv_psql $CL -d postgres >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE TYPE lg AS (z text, jp jsonpath, mr tzmr);
-- by position: z is 1, jp 2, mr 3
CREATE FUNCTION lg05.lg(c lg) RETURNS bytea LANGUAGE sql STABLE STRICT
	AS $$ SELECT lg05.tagged('c', coalesce(int4send(1) || lg05.txt(c.z), '') ||
	                              coalesce(int4send(2) || lg05.jp(c.jp), '') ||
	                              coalesce(int4send(3) || lg05.mr(c.mr), '')) $$;
CREATE FUNCTION lg05.lgs(a lg[]) RETURNS bytea LANGUAGE sql STABLE STRICT
	AS $$ SELECT lg05.tagged('a', int4send(coalesce(array_ndims(a), 0)) ||
	         CASE WHEN cardinality(a) > 0
	              THEN int4send(array_length(a, 1)) || int4send(array_lower(a, 1)) ||
	                   (SELECT string_agg(coalesce(lg05.lg(a[i]), 'n'), '' ORDER BY i)
	                      FROM generate_subscripts(a, 1) AS i)
	              ELSE '' END) $$;
-- a range: its flags byte, then its bounds that are there
CREATE FUNCTION lg05.rm(r mrr) RETURNS bytea LANGUAGE sql STABLE STRICT
	AS $$ SELECT lg05.tagged('g', substring(range_send(r) FROM 1 FOR 1) ||
	                              coalesce(lg05.mr(lower(r)), '') || coalesce(lg05.mr(upper(r)), '')) $$;
CREATE TABLE t_legacy (note text, jp jsonpath, rc refcursor, mr tzmr, c lg, jps jsonpath[], cs lg[],
	rm mrr);
SELECT trialvault.protect('t_legacy');
CREATE TABLE lg_stage AS SELECT * FROM t_legacy WITH NO DATA;
ALTER TABLE lg_stage ADD n serial;
CREATE FUNCTION lg05.content(t lg_stage) RETURNS bytea LANGUAGE sql STABLE STRICT
	AS $$ SELECT digest('TVROW1'::bytea || lg05.col('c', lg05.lg(t.c)) || lg05.col('cs', lg05.lgs(t.cs)) ||
	                    lg05.col('jp', lg05.jp(t.jp)) || lg05.col('jps', lg05.jps(t.jps)) ||
	                    lg05.col('mr', lg05.mr(t.mr)) || lg05.col('note', lg05.txt(t.note)) ||
	                    lg05.col('rc', lg05.rc(t.rc)) || lg05.col('rm', lg05.rm(t.rm)), 'sha256') $$;
INSERT INTO lg_stage (note, jp, rc, mr, c, jps, cs, rm) VALUES
	('jsonpath', '$."é".a ? (@ > 1)', NULL, NULL, NULL, NULL, NULL, NULL),
	('multirange', NULL, NULL, '{[2026-01-01 10:00+01,2026-01-02), [2026-03-01,)}', NULL, NULL, NULL, NULL),
	('composite', NULL, NULL, NULL, ROW('a "quoted", back\slash (x)', '$.x', '{(,2026-01-01)}'), NULL, NULL,
	 NULL),
	('refcursor', NULL, 'curseur_é', NULL, NULL, NULL, NULL, NULL),
	('refcursor, jsonpath[]', NULL, 'ç', NULL, NULL, '{"$.a", NULL, "$.\"ß\""}', NULL, NULL),
	('composite[]', NULL, NULL, NULL, NULL, NULL,
	 ARRAY[NULL, ROW('{x}', NULL, '{[2026-01-01,2026-01-01]}'), ROW(NULL, '$', '{}')]::lg[], NULL),
	('range over multirange', NULL, NULL, NULL, NULL, NULL, NULL, '["{}","{[2026-01-01,)}")'),
	('all', '$.b', 'c', '{}', ROW(NULL, NULL, '{[2026-01-01,2026-01-01]}'), '{}', '{}', 'empty');
SET trialvault.restore_mode = on;
INSERT INTO t_legacy (note, jp, rc, mr, c, jps, cs, rm, tv_seq, tv_prev_seqs, tv_prev_hash, tv_hash)
SELECT s.note, s.jp, s.rc, s.mr, s.c, s.jps, s.cs, s.rm, ch.k, ch.ps, ch.prev, ch.h
  FROM lg_stage s JOIN lg05.chain(ARRAY(SELECT lg05.content(x) FROM lg_stage x ORDER BY x.n)) ch
       ON ch.k = s.n;
RESET trialvault.restore_mode;
-- and the same values hashed by this version
INSERT INTO t_legacy SELECT note || ' (0.6)', jp, rc, mr, c, jps, cs, rm FROM lg_stage;
SQL
agree t_legacy "1: rows hashed the 0.5 way (jsonpath, refcursor, multirange, composites, arrays of them) and the same values hashed now"
is "$X_OK:$X_ROWS" "true:16" "1: ... verifies, all 16 rows"

# 0.5 hashed such a multirange as its text output, which follows TimeZone:
# under another, verify() and the verifier both reject those rows alike.
export PGTZ=Asia/Tokyo
agree t_legacy "1: the same rows under another TimeZone"
is "$X_OK:$X_BAD_ROWS" "false:5" "1: ... the 5 rows whose 0.5 encoding has a timestamp in a multirange's text output fail"
unset PGTZ

# The 0.5 encoding is one encoding of the whole row: a row whose jsonpath is
# hashed the 0.5 way and its composite the 0.6 way ('d', type identities)
# matches neither, under the 0.6 prefix with type identities for the
# columns, or under the 0.5 one without.
tv_psql $CL -d postgres >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE TABLE t_mixed (jp jsonpath, c lg);
SELECT trialvault.protect('t_mixed');
INSERT INTO t_mixed VALUES ('$.a', ROW('x', NULL, NULL));
SQL
for form in TVROW2 TVROW1; do
	guards t_mixed D
	q $CL postgres "UPDATE t_mixed SET tv_hash = digest('TVHASH1'::bytea || int8send(tv_seq) || tv_prev_hash ||
		digest(convert_to('$form', 'UTF8') ||
		       CASE '$form' WHEN 'TVROW2'
		       THEN lg05.col2('c', 0, lg05.tagged('d', lg05.col2('z', 'text'::regtype::oid::int,
		                                                         lg05.txt((c).z)))) ||
		            lg05.col2('jp', 'jsonpath'::regtype::oid::int, lg05.jp(jp))
		       ELSE lg05.col('c', lg05.tagged('d', lg05.col2('z', 'text'::regtype::oid::int,
		                                                     lg05.txt((c).z)))) ||
		            lg05.col('jp', lg05.jp(jp)) END, 'sha256'), 'sha256')" >/dev/null
	guards t_mixed A
	agree t_mixed "1: a row mixing the 0.5 encoding (jsonpath) with the 0.6 one (composite), under $form"
	is "$X_OK:$X_BAD_ROWS" "false:1" "1: ... is rejected"
done

# Type identities (0.6): a domain's is its base type's (text, int4, and int4[]
# for a domain over int4[]); a type defined in the database has 0 (an enum,
# a composite, an array of a domain); a composite's attributes carry theirs,
# values inside arrays none.  Computed here in SQL from the specification.
tv_psql $CL -d postgres >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE TYPE idc AS (u text, p posint, m mood);
CREATE TABLE t_ident (code subject_code, ic idc, ip intpair, m mood, p posint, pa posint[]);
SELECT trialvault.protect('t_ident');
INSERT INTO t_ident VALUES ('S-9', ROW('x', 5, 'ok'), '{1,2}', 'très', 6, '{3}');
SQL
is "$(q $CL postgres "SELECT tv_hash = digest('TVHASH1'::bytea || int8send(tv_seq) || tv_prev_hash ||
	digest('TVROW2'::bytea ||
	       lg05.col2('code', 'text'::regtype::oid::int, lg05.txt(code::text)) ||
	       lg05.col2('ic', 0, lg05.tagged('d',
	           lg05.col2('m', 0, lg05.tagged('t', convert_to((ic).m::text, 'UTF8'))) ||
	           lg05.col2('p', 'int4'::regtype::oid::int, lg05.tagged('b', int4send((ic).p))) ||
	           lg05.col2('u', 'text'::regtype::oid::int, lg05.txt((ic).u)))) ||
	       lg05.col2('ip', 'int4[]'::regtype::oid::int, lg05.tagged('a',
	           int4send(1) || int4send(2) || int4send(1) ||
	           lg05.tagged('b', int4send(ip[1])) || lg05.tagged('b', int4send(ip[2])))) ||
	       lg05.col2('m', 0, lg05.tagged('t', convert_to(m::text, 'UTF8'))) ||
	       lg05.col2('p', 'int4'::regtype::oid::int, lg05.tagged('b', int4send(p))) ||
	       lg05.col2('pa', 0, lg05.tagged('a',
	           int4send(1) || int4send(1) || int4send(1) || lg05.tagged('b', int4send(pa[1])))),
	       'sha256'), 'sha256') FROM t_ident")" t \
	"1: type identities: domains, an enum, a composite, arrays (tv_hash is the specification's)"
agree t_ident "1: type identities of domains, an enum, a composite and arrays"
is "$X_OK:$X_ROWS" "true:1" "1: ... verifies"

# Types numbered from 10000 to 16383 (information_schema's types and their
# arrays, the row types of system views and of information_schema's tables),
# whose OIDs initdb gives per cluster, carry identity 0 like types defined in
# the database; domains among them over built-in types carry their base
# type's (cardinal_number: int4's, character_data: varchar's, sql_identifier:
# name's).  Computed here in SQL from the specification.
tv_psql $CL -d postgres >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE TABLE t_initdb (cn information_schema.cardinal_number[],
	ic information_schema.information_schema_catalog_name, sz information_schema.sql_sizing);
SELECT trialvault.protect('t_initdb');
INSERT INTO t_initdb VALUES ('{3,NULL}', ROW('catalogue é'),
	ROW(34, 'MAXIMUM_CATALOG_NAME_LENGTH', NULL, 'a note'));
SQL
is "$(q $CL postgres "SELECT count(*) FROM pg_type WHERE oid BETWEEN 10000 AND 16383
                          AND oid IN (SELECT atttypid FROM pg_attribute
                                       WHERE attrelid = 't_initdb'::regclass
                                         AND attname IN ('cn', 'ic', 'sz'))")" 3 \
	"1: information_schema.cardinal_number[] and the two row types are numbered by initdb"
is "$(q $CL postgres "SELECT tv_hash = digest('TVHASH1'::bytea || int8send(tv_seq) ||
	tv_prev_hash || digest('TVROW2'::bytea ||
	       lg05.col2('cn', 0, lg05.tagged('a',
	           int4send(1) || int4send(2) || int4send(1) || lg05.tagged('b', int4send(cn[1])) ||
	           'n'::bytea)) ||
	       lg05.col2('ic', 0, lg05.tagged('d',
	           lg05.col2('catalog_name', 'name'::regtype::oid::int,
	                     lg05.txt((ic).catalog_name::text)))) ||
	       lg05.col2('sz', 0, lg05.tagged('d',
	           lg05.col2('comments', 'varchar'::regtype::oid::int, lg05.txt((sz).comments)) ||
	           lg05.col2('sizing_id', 'int4'::regtype::oid::int,
	                     lg05.tagged('b', int4send((sz).sizing_id))) ||
	           lg05.col2('sizing_name', 'varchar'::regtype::oid::int,
	                     lg05.txt((sz).sizing_name)) ||
	           lg05.col2('supported_value', 'int4'::regtype::oid::int,
	                     lg05.tagged('b', int4send((sz).supported_value))))),
	       'sha256'), 'sha256') FROM t_initdb")" t \
	"1: types numbered by initdb carry identity 0 (tv_hash is the specification's)"
agree t_initdb "1: information_schema.cardinal_number[] and row types numbered by initdb"
is "$X_OK:$X_ROWS" "true:1" "1: ... verifies"

# Rows of the 0.5 kind changed behind the guards: found alike.
guards t_legacy D
tv_psql $CL -d postgres >/dev/null <<'SQL'
UPDATE t_legacy SET jp = '$."è".a ? (@ > 1)' WHERE note = 'jsonpath';
UPDATE t_legacy SET cs[2].mr = '{[2026-01-01,2026-01-01 00:00:00.000001]}' WHERE note = 'composite[]';
SQL
guards t_legacy A
agree t_legacy "1: two of the rows hashed the 0.5 way changed"
is "$X_OK:$X_BAD_ROWS" "false:2" "1: ... both found"
like "$X_FIRST_BAD" "^row tv_seq=1 ctid=\\([0-9]+,[0-9]+\\): contents do not match tv_hash" "1: ... the first named"

# A LATIN1 database: text is hashed in the database's encoding, which the
# export asks for (names and values with non-ASCII letters, enums and jsonb
# inside a composite, xml with an encoding declaration).  xml inside a
# composite is not verifiable there (its binary form carries a declaration).
q $CL postgres "CREATE DATABASE latin1 ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0" >/dev/null
PGCLIENTENCODING=UTF8 tv_psql $CL -d latin1 >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION trialvault CASCADE;
CREATE TYPE humeur AS ENUM ('très', 'bof');
CREATE TYPE cy AS (note text, h humeur, j jsonb);
CREATE TYPE cx AS (note text, x xml);
CREATE TABLE "lätin" ("grüße" text, h humeur, x xml, ha humeur[], xa xml[], bp char(4), j json,
	jb jsonb, c cy, nm name, cxx cx);
SELECT trialvault.protect('"lätin"');
INSERT INTO "lätin" VALUES ('é', 'très', '<?xml version="1.0" encoding="LATIN1"?><a>é</a>', '{très,bof}',
	ARRAY['<?xml version="1.0" encoding="LATIN1"?><b>ü</b>'::xml], 'ü', '{"é":1}', '{"é":1}', NULL,
	'ñame', NULL);
INSERT INTO "lätin" VALUES ('e', 'bof', '<a>x</a>', NULL, NULL, NULL, NULL, NULL, ROW('ñ', 'très', '["ü"]'),
	NULL, NULL);
SQL
DB=latin1
export PGCLIENTENCODING=UTF8
agree 'public."lätin"' "1: a LATIN1 database"
is "$X_OK:$X_ROWS" "true:2" "1: ... verifies, both rows"
q $CL latin1 "INSERT INTO \"lätin\" (cxx) VALUES (ROW('n', '<c/>'))" >/dev/null
vx_export 'public."lätin"' "$VXD/latin1.tvx"
vx_into "$VXD/latin1.tvx"
like "$X_RC:$X_ERR" "^2:.*column cxx \\(public\\.cx\\): xml is hashed as its text output" \
	"1: ... xml inside a composite there: not independently verifiable, exit 2"

# jsonpath and refcursor there: hashed as their text output in the
# database's encoding, whatever the client's (inserted from a UTF8 session);
# and rows hashed the 0.5 way, in their send forms, which follow the
# client_encoding of the session that hashed them: LATIN1 here, the one the
# export has.
tv_psql $CL -d latin1 >/dev/null <<SQL
$LG05_SQL
SQL
tv_psql $CL -d latin1 >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE TYPE cjp AS (jp jsonpath, rc refcursor);
CREATE TABLE t_jp (note text, jp jsonpath, rc refcursor, jps jsonpath[], c cjp);
SELECT trialvault.protect('t_jp');
CREATE TABLE jp_stage AS SELECT * FROM t_jp WITH NO DATA;
ALTER TABLE jp_stage ADD n serial;
CREATE FUNCTION lg05.cjp(c cjp) RETURNS bytea LANGUAGE sql STABLE STRICT
	AS $$ SELECT lg05.tagged('c', coalesce(int4send(1) || lg05.jp(c.jp), '') ||
	                              coalesce(int4send(2) || lg05.rc(c.rc), '')) $$;
CREATE FUNCTION lg05.content(t jp_stage) RETURNS bytea LANGUAGE sql STABLE STRICT
	AS $$ SELECT digest('TVROW1'::bytea || lg05.col('c', lg05.cjp(t.c)) ||
	                    lg05.col('jp', lg05.jp(t.jp)) || lg05.col('jps', lg05.jps(t.jps)) ||
	                    lg05.col('note', lg05.txt(t.note)) || lg05.col('rc', lg05.rc(t.rc)), 'sha256') $$;
INSERT INTO jp_stage (note, jp, rc, jps, c)
	VALUES ('é', '$."é" ? (@ like_regex "ü")', 'curseur_ü', '{"$.\"ñ\"", NULL}', ROW('$."ß"', 'ç'));
SET client_encoding = 'LATIN1';
SET trialvault.restore_mode = on;
INSERT INTO t_jp (note, jp, rc, jps, c, tv_seq, tv_prev_seqs, tv_prev_hash, tv_hash)
SELECT s.note, s.jp, s.rc, s.jps, s.c, ch.k, ch.ps, ch.prev, ch.h
  FROM jp_stage s JOIN lg05.chain(ARRAY(SELECT lg05.content(x) FROM jp_stage x ORDER BY x.n)) ch
       ON ch.k = s.n;
RESET trialvault.restore_mode;
RESET client_encoding;
INSERT INTO t_jp SELECT note, jp, rc, jps, c FROM jp_stage;
SQL
export PGCLIENTENCODING=LATIN1
agree t_jp "1: jsonpath and refcursor with non-ASCII letters in a LATIN1 database, hashed the 0.5 way and now"
is "$X_OK:$X_ROWS" "true:2" "1: ... verifies, both rows"
export PGCLIENTENCODING=UTF8
verify_into $CL latin1 t_jp
is "$V_OK:$V_BAD_ROWS" "f:1" \
	"1: ... verify() from a UTF8 session rejects the row hashed the 0.5 way in a LATIN1 one (documented)"
unset PGCLIENTENCODING
DB=postgres

# The extension's own tables: name, xml, bytea, inet, timestamptz, identities.
tv_psql $CL -d postgres >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE ROLE dora LOGIN;
SELECT trialvault.create_study('VX1', 'Verifier study');
SELECT trialvault.require_signatures('VX1', false);
SELECT trialvault.add_site('VX1', 'A', 'Site A');
SELECT trialvault.grant_role('dora', 'VX1', 'A', 'site_staff');
SQL
tv_psql $CL -d postgres -U dora -At >/dev/null <<'SQL'
SELECT trialvault.load_document('VX1', 'A', 'source', true, '<doc><visit>1</visit></doc>',
                                convert_to('PHI scan', 'UTF8'));
SELECT trialvault.load_document('VX1', 'A', 'protocol', false, '<doc><visit>0</visit></doc>',
                                convert_to('protocol', 'UTF8'));
SELECT trialvault.open_study('VX1') \gset
SELECT length(trialvault.open_document(1));
SQL
own=$(q $CL postgres "SELECT string_agg(table_name::text, ' ' ORDER BY table_name::text)
                        FROM trialvault.protected_tables WHERE table_name::text LIKE 'trialvault.%'")
for t in $own; do
	if [ "$(q $CL postgres "SELECT count(*) > 0 FROM $t")" = t ]; then
		agree "$t" "1: the extension's own table $t"
	fi
done

tv_psql $CL -d postgres >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE TABLE t_empty (note text);
SELECT trialvault.protect('t_empty');
SQL
agree t_empty "1: an empty table (no rows, no heads)"

# A forked chain: three transactions overlap; their first rows all refer to
# the same head, two commit (two heads), the third commits (three heads),
# and the next row refers to all three.
tv_psql $CL -d postgres >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE TABLE t_forked (who text, n int);
SELECT trialvault.protect('t_forked');
INSERT INTO t_forked VALUES ('setup', 0);
SQL
sess_open $CL postgres s1
sess_open $CL postgres s2
sess_open $CL postgres s3
sess_run s1 "BEGIN; INSERT INTO t_forked VALUES ('s1', 1);"
sess_run s2 "BEGIN; INSERT INTO t_forked VALUES ('s2', 1);"
sess_run s3 "BEGIN; INSERT INTO t_forked VALUES ('s3', 1);"
sess_run s1 "INSERT INTO t_forked VALUES ('s1', 2); COMMIT;"
sess_run s2 "COMMIT;"
agree t_forked "1: forked chain, two transactions committed, one open"
is "$X_HEADS" 2 "1: ... two heads"
sess_run s3 "INSERT INTO t_forked VALUES ('s3', 2); COMMIT;"
agree t_forked "1: forked chain, three heads"
is "$X_HEADS" 3 "1: ... three heads"
sess_run s1 "BEGIN; INSERT INTO t_forked VALUES ('s1', 3);"
sess_run s2 "BEGIN; INSERT INTO t_forked VALUES ('s2', 3); COMMIT;"
sess_run s1 "COMMIT;"
q $CL postgres "INSERT INTO t_forked VALUES ('joiner', 9)" >/dev/null
for s in s1 s2 s3; do sess_close $s; done
is "$(q $CL postgres "SELECT max(cardinality(tv_prev_seqs)) FROM t_forked")" 3 \
	"1: a row of the forked chain has three predecessors"
agree t_forked "1: forked chain joined again"
is "$X_OK:$X_HEADS" "true:1" "1: ... verifies with one head"

# --- 2. tables changed behind the guards' back -------------------------------------

make_linear t_upd
guards t_upd D
q $CL postgres "UPDATE t_upd SET body = 'changed' WHERE body = 'original body 5'" >/dev/null
guards t_upd A
agree t_upd "2: a row updated behind the guards"
like "$X_FIRST_BAD" "^row tv_seq=[0-9]+ ctid=\\([0-9]+,[0-9]+\\): contents do not match tv_hash" \
	"2: ... the verifier names the changed row"
is "$X_RC" 1 "2: ... and exits 1"

make_linear t_del
s4=$(seq_of t_del 'original body 4')
s5=$(seq_of t_del 'original body 5')
guards t_del D
q $CL postgres "DELETE FROM t_del WHERE body = 'original body 4'" >/dev/null
guards t_del A
agree t_del "2: a row deleted from the middle"
like "$X_FIRST_BAD" "^row tv_seq=$s5 ctid=\\([0-9]+,[0-9]+\\): its predecessor tv_seq=$s4 is missing" \
	"2: ... the verifier names the row that referred to it"

# A middle row rewritten with a freshly computed tv_hash (canon.c's 0.6
# encoding of one text column, chain.c's row hash): its own hash fits, the
# next row's tv_prev_hash does not.
make_linear t_rehash
s6=$(seq_of t_rehash 'original body 6')
guards t_rehash D
q $CL postgres "UPDATE t_rehash SET body = 'forged',
	tv_hash = digest('TVHASH1'::bytea || int8send(tv_seq) || tv_prev_hash ||
		digest('TVROW2'::bytea || int4send(4) || 'body'::bytea || int4send('text'::regtype::oid::int) ||
			'r'::bytea || int4send(octet_length('forged')) || convert_to('forged', 'UTF8'), 'sha256'),
		'sha256')
	WHERE body = 'original body 5'" >/dev/null
guards t_rehash A
agree t_rehash "2: a middle row rewritten with a fresh tv_hash"
like "$X_FIRST_BAD" "^row tv_seq=$s6 ctid=\\([0-9]+,[0-9]+\\): tv_prev_hash does not match its predecessors" \
	"2: ... the verifier names the row after it"

# Damaged chain columns, every kind verify() tells apart (NOT NULL lifted in
# pg_attribute): a NULL tv_seq, a short tv_hash, tv_prev_seqs NULL, with two
# dimensions, with a NULL, pointing forward, descending.
make_linear t_damage
guards t_damage D
q $CL postgres "UPDATE pg_attribute SET attnotnull = false
                 WHERE attrelid = 't_damage'::regclass AND attname IN ('tv_seq', 'tv_prev_seqs')" >/dev/null
tv_psql $CL -d postgres >/dev/null <<'SQL'
UPDATE t_damage SET tv_seq = NULL WHERE body = 'original body 2';
UPDATE t_damage SET tv_hash = '\x00' WHERE body = 'original body 4';
UPDATE t_damage SET tv_prev_seqs = NULL WHERE body = 'original body 5';
UPDATE t_damage SET tv_prev_seqs = '{{4},{4}}' WHERE body = 'original body 6';
UPDATE t_damage SET tv_prev_seqs = '{NULL}' WHERE body = 'original body 7';
UPDATE t_damage SET tv_prev_seqs = ARRAY[tv_seq + 1] WHERE body = 'original body 8';
UPDATE t_damage SET tv_prev_seqs = ARRAY[tv_seq - 1, tv_seq - 2] WHERE body = 'original body 9';
SQL
guards t_damage A
agree t_damage "2: damaged chain columns, one row's tv_seq NULL"
like "$X_FIRST_BAD" "^row ctid=\\([0-9]+,[0-9]+\\): tv_seq is NULL$" "2: ... the verifier names the row without tv_seq"
guards t_damage D
q $CL postgres "UPDATE t_damage SET tv_seq = (SELECT min(tv_seq) + 1 FROM t_damage)
                 WHERE body = 'original body 2'" >/dev/null
guards t_damage A
agree t_damage "2: damaged chain columns, tv_seq back"
like "$X_FIRST_BAD" "tv_hash or tv_prev_hash is NULL or not 32 bytes$" "2: ... the verifier names the short tv_hash"

# Duplicates, out of tv_seq order in the table: of two rows with the same
# tv_seq, verify() names the one that PostgreSQL's qsort puts second.
make_linear t_dup 50
guards t_dup D
# (the unique index protect() puts on tv_seq would refuse the copies: a
# tamperer drops it first, which the guards allow, as indexes change no rows)
q $CL postgres "DROP INDEX t_dup_tv_seq_idx" >/dev/null
q $CL postgres "INSERT INTO t_dup SELECT * FROM t_dup
                 WHERE body IN ('original body 3', 'original body 17', 'original body 40')" >/dev/null
q $CL postgres "INSERT INTO t_dup SELECT * FROM t_dup WHERE body = 'original body 17' LIMIT 1" >/dev/null
guards t_dup A
agree t_dup "2: rows duplicated (chain columns and all; one of them twice)"
like "$X_FIRST_BAD" "^row tv_seq=$(seq_of t_dup 'original body 3' | head -n 1) ctid=\\([0-9]+,[0-9]+\\): another row has the same tv_seq$" \
	"2: ... the verifier names a copy of the first duplicated row"
is "$X_BAD_ROWS" 4 "2: ... and counts 4 bad rows (one per extra copy)"

# bad_rows counts rows, not problems: row 5, changed and its predecessor
# removed, fails two checks and counts once; two rows without tv_seq count
# one each (and the row after them has lost its predecessor).
make_linear t_twice
guards t_twice D
q $CL postgres "UPDATE pg_attribute SET attnotnull = false
                 WHERE attrelid = 't_twice'::regclass AND attname = 'tv_seq'" >/dev/null
tv_psql $CL -d postgres >/dev/null <<'SQL'
UPDATE t_twice SET body = 'changed' WHERE body = 'original body 5';
DELETE FROM t_twice WHERE body = 'original body 4';
UPDATE t_twice SET tv_seq = NULL WHERE body IN ('original body 8', 'original body 9');
SQL
guards t_twice A
agree t_twice "2: a row failing two checks, two rows without tv_seq"
is "$X_BAD_ROWS:$V_BAD_ROWS" "4:4" "2: ... 4 bad rows in both (the row failing two checks counted once)"

# A column retyped in pg_attribute behind the guards' back, between types
# whose values have the same bytes (int4 and float4, text and bytea): the
# type identity in the encoding shows it in every row hashed by 0.6 with a
# value there.  The first row was hashed by 0.5 (restored, in the 0.5
# encoding computed in SQL) with the same values as the second: 0.5's
# encoding carries no types, so it still verifies, in both (a row hashed by
# 0.6 does not pass as one: the 0.5 encoding of the retyped row is the
# same bytes, but its tv_hash is of the 0.6 one).  The 0.5 row holds only
# plain columns: the 0.5 encoding is tried for every row.
tv_psql $CL -d postgres >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE TABLE t_retype (n int4, s text);
SELECT trialvault.protect('t_retype');
SET trialvault.restore_mode = on;
INSERT INTO t_retype (n, s, tv_seq, tv_prev_seqs, tv_prev_hash, tv_hash)
SELECT 7, 'seven', ch.k, ch.ps, ch.prev, ch.h
  FROM lg05.chain(ARRAY[digest('TVROW1'::bytea || lg05.col('n', lg05.tagged('b', int4send(7))) ||
                               lg05.col('s', lg05.txt('seven')), 'sha256')]) AS ch;
RESET trialvault.restore_mode;
INSERT INTO t_retype VALUES (7, 'seven');
INSERT INTO t_retype VALUES (NULL, 'n is NULL');
SQL
retype() {
	q $CL postgres "UPDATE pg_attribute SET atttypid = '$3'::regtype
	                 WHERE attrelid = '$1'::regclass AND attname = '$2'" >/dev/null
}
agree t_retype "2: a row hashed by 0.5 (plain columns only) before two hashed now"
is "$X_OK:$X_ROWS" "true:3" "2: ... verifies"
retype t_retype n float4
agree t_retype "2: an int4 column retyped to float4 in pg_attribute"
is "$X_OK:$X_BAD_ROWS" "false:1" "2: ... the row hashed now with a value there is bad, the 0.5 one not"
like "$X_FIRST_BAD" "^row tv_seq=2 ctid=\\([0-9]+,[0-9]+\\): contents do not match tv_hash" \
	"2: ... named"
retype t_retype n int4
retype t_retype s bytea
agree t_retype "2: a text column retyped to bytea in pg_attribute"
is "$X_OK:$X_BAD_ROWS" "false:2" "2: ... both rows hashed now are bad"
retype t_retype s text
agree t_retype "2: the column types put back"
is "$X_OK:$X_ROWS" "true:3" "2: ... verifies again"

# The same with a composite's attribute, as a column, in an array, and as a
# range's bounds.
tv_psql $CL -d postgres >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE TYPE ua2 AS (unit text, amount int4);
CREATE TYPE ua2range AS RANGE (subtype = ua2);
CREATE TABLE t_cretype (note text, c ua2, cs ua2[], cr ua2range);
SELECT trialvault.protect('t_cretype');
SET trialvault.restore_mode = on;
INSERT INTO t_cretype (note, c, tv_seq, tv_prev_seqs, tv_prev_hash, tv_hash)
SELECT 'composite', ROW('mg', 5)::ua2, ch.k, ch.ps, ch.prev, ch.h
  FROM lg05.chain(ARRAY[digest('TVROW1'::bytea ||
                               lg05.col('c', lg05.tagged('c', int4send(1) || lg05.txt('mg') ||
                                                              int4send(2) || lg05.tagged('b', int4send(5)))) ||
                               lg05.col('note', lg05.txt('composite')), 'sha256')]) AS ch;
RESET trialvault.restore_mode;
INSERT INTO t_cretype (note, c, cs, cr) VALUES
	('composite', ROW('mg', 5), NULL, NULL),
	('amount NULL', ROW('mg', NULL), ARRAY[ROW('µg', NULL)::ua2], NULL),
	('in an array', NULL, ARRAY[NULL, ROW('g', 2)::ua2], NULL),
	('in a range', NULL, NULL, '["(mg,1)","(mg,5)")');
SQL
agree t_cretype "2: composites in a column, an array and a range, and a row hashed by 0.5"
is "$X_OK:$X_ROWS" "true:5" "2: ... verifies"
retype ua2 amount float4
agree t_cretype "2: a composite's int4 attribute retyped to float4 in pg_attribute"
is "$X_OK:$X_BAD_ROWS" "false:3" "2: ... the 3 rows hashed now with a value there are bad, the 0.5 one not"
like "$X_FIRST_BAD" "^row tv_seq=2 ctid=\\([0-9]+,[0-9]+\\): contents do not match tv_hash" \
	"2: ... named"
retype ua2 amount int4
agree t_cretype "2: the attribute's type put back"
is "$X_OK:$X_ROWS" "true:5" "2: ... verifies again"

# An array column retyped in pg_attribute: every array names the element
# type it was stored with, which is then not the column's; trialvault
# encodes such an array as a marker naming that type ('x'), in either
# encoding, and binary COPY sends the type too.  So every row with a value
# there is bad, in both, also the one hashed by 0.5 (in the 0.5 encoding
# computed in SQL), whichever the two types (int4[] to float4[] or int8[],
# text[] to bytea[], an int4[] attribute of a composite to float4[]).
tv_psql $CL -d postgres >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE TYPE ia AS (xs int4[]);
CREATE TABLE t_aretype (note text, a int4[], ts text[], c ia);
SELECT trialvault.protect('t_aretype');
SET trialvault.restore_mode = on;
INSERT INTO t_aretype (note, a, ts, c, tv_seq, tv_prev_seqs, tv_prev_hash, tv_hash)
SELECT '0.5', '{7,NULL}', '{x,NULL}', ROW('{8}')::ia, ch.k, ch.ps, ch.prev, ch.h
  FROM lg05.chain(ARRAY[digest('TVROW1'::bytea ||
           lg05.col('a', lg05.tagged('a', int4send(1) || int4send(2) || int4send(1) ||
                                          lg05.tagged('b', int4send(7)) || 'n'::bytea)) ||
           lg05.col('c', lg05.tagged('c', int4send(1) ||
                                          lg05.tagged('a', int4send(1) || int4send(1) ||
                                                           int4send(1) ||
                                                           lg05.tagged('b', int4send(8))))) ||
           lg05.col('note', lg05.txt('0.5')) ||
           lg05.col('ts', lg05.tagged('a', int4send(1) || int4send(2) || int4send(1) ||
                                           lg05.txt('x') || 'n'::bytea)), 'sha256')]) AS ch;
RESET trialvault.restore_mode;
INSERT INTO t_aretype VALUES ('0.6', '{7,NULL}', '{x,NULL}', ROW('{8}')),
	('only a', '[0:1]={1,2}', NULL, NULL), ('no arrays', NULL, NULL, ROW(NULL));
SQL
agree t_aretype "2: arrays, an array in a composite, and a row hashed by 0.5"
is "$X_OK:$X_ROWS" "true:4" "2: ... verifies"
retype t_aretype a 'float4[]'
agree t_aretype "2: an int4[] column retyped to float4[] in pg_attribute"
is "$X_RC:$X_OK:$X_BAD_ROWS" "1:false:3" \
	"2: ... the 3 rows with a value there are bad, the one hashed by 0.5 too"
like "$X_FIRST_BAD" "^row tv_seq=1 ctid=\\([0-9]+,[0-9]+\\): contents do not match tv_hash" \
	"2: ... named"
pat="note: column a \\(real\\[\\]\\): real\\[\\] values whose elements are stored as integer, "
like "$X_ERR" "${pat}in 3 row\\(s\\), the first in row tv_seq=1 " \
	"2: ... and the verifier notes the arrays stored as int4[]"
retype t_aretype a 'int8[]'
agree t_aretype "2: an int4[] column retyped to int8[] in pg_attribute"
is "$X_RC:$X_OK:$X_BAD_ROWS" "1:false:3" "2: ... the 3 rows with a value there are bad"
retype t_aretype a 'int4[]'
retype t_aretype ts 'bytea[]'
agree t_aretype "2: a text[] column retyped to bytea[] in pg_attribute"
is "$X_OK:$X_BAD_ROWS" "false:2" "2: ... both rows with a value there are bad"
retype t_aretype ts 'text[]'
retype ia xs 'float4[]'
agree t_aretype "2: a composite's int4[] attribute retyped to float4[] in pg_attribute"
is "$X_OK:$X_BAD_ROWS" "false:2" "2: ... both rows with a value there are bad"
retype ia xs 'int4[]'
agree t_aretype "2: the types put back"
is "$X_RC:$X_OK:$X_ROWS:$X_ERR" "0:true:4:" "2: ... verifies again, without a note"

# An array copied, after the retype, into a new row keeps the element type
# it was stored with: trialvault refuses the insert (the value can only
# come from a catalog edited behind the guards' back); the row inserted
# before is bad in both.
tv_psql $CL -d postgres >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE TABLE t_acopy (note text, a int4[]);
SELECT trialvault.protect('t_acopy');
INSERT INTO t_acopy VALUES ('inserted', '{1,NULL,3}');
UPDATE pg_attribute SET atttypid = 'float4[]'::regtype
 WHERE attrelid = 't_acopy'::regclass AND attname = 'a';
SQL
like "$(tv_psql $CL -d postgres -v VERBOSITY=verbose -c "INSERT INTO t_acopy SELECT 'copied', a FROM t_acopy" 2>&1 || true)" \
	"XX001: a value in column \"a\" is of type integer\\[\\]|XX001: a value in column \"a\" is of type integer" \
	"2: an int4[] column retyped to float4[]: copying one of its arrays into a new row is refused"
agree t_acopy "2: ... and the table"
is "$X_OK:$X_BAD_ROWS" "false:1" "2: ... whose one row is bad, in both"

# Arrays of types exported as text (arrays of an enum, of jsonb, of citext)
# do not show the element type they were stored with, and trialvault's
# marker names it: the export checks it with array_cat and fails where it is
# not the column's, naming both, rather than read the elements as the
# column's element type (int4 read as jsonb crashed the server).
tv_psql $CL -d postgres >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE TYPE mood2 AS ENUM ('a', 'b', 'c', 'd');
CREATE DOMAIN moods AS mood[];
CREATE TABLE t_tretype (note text, e mood[], ed moods, j int4[], ct text[]);
SELECT trialvault.protect('t_tretype');
INSERT INTO t_tretype VALUES ('arrays', '{low,NULL,ok}', '{high}', '{1,2}', '{x,y}');
SQL
agree t_tretype "2: arrays of an enum (also through a domain), int4 and text"
is "$X_OK:$X_ROWS" "true:1" "2: ... verifies"
# tretype COLUMN TYPE WHAT: retype COLUMN to TYPE; verify() finds the row,
# the export fails naming both element types.
tretype() {
	local out rc
	retype t_tretype "$1" "$2"
	verify_into $CL "$DB" t_tretype
	out=$("$PY" "$VX" export --psql "$PGBIN/psql" -d "$CONN$DB" t_tretype \
		-o "$VXD/tretype.tvx" 2>&1) && rc=0 || rc=$?
	like "$V_OK:$V_BAD_ROWS:$rc:$out" "^f:1:2:.*cannot concatenate incompatible arrays.*$4" \
		"2: $3: verify() finds the row, the export fails"
}
tretype e 'mood2[]' "an enum's array retyped to another enum's" \
	"types public\\.mood and public\\.mood2 "
retype t_tretype e 'mood[]'
tretype j 'jsonb[]' "an int4[] column retyped to jsonb[]" "types integer and jsonb "
retype t_tretype j 'int4[]'
tretype ct 'citext[]' "a text[] column retyped to citext[]" "types text and public\\.citext "
retype t_tretype ct 'text[]'
agree t_tretype "2: the types put back"
is "$X_OK:$X_ROWS" "true:1" "2: ... verifies again"

# An array of composites retyped to an array of another composite type, the
# stored one described in the export (ua2, the type of column c) or not
# (ua3): the array names its stored element type, so every row with a value
# there is bad, in both.
tv_psql $CL -d postgres >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE TYPE ua2b AS (label text, dose int4);
CREATE TYPE ua3 AS (unit text, amount int4);
CREATE TABLE t_csretype (cs ua3[]);
SELECT trialvault.protect('t_csretype');
INSERT INTO t_csretype VALUES (ARRAY[ROW('mg', 5)::ua3]);
UPDATE pg_attribute SET atttypid = 'ua2b[]'::regtype
 WHERE attrelid IN ('t_cretype'::regclass, 't_csretype'::regclass) AND attname = 'cs';
SQL
agree t_cretype "2: composites' array retyped to another composite's, the stored one described"
is "$X_OK:$X_BAD_ROWS" "false:2" "2: ... the 2 rows with a value there are bad"
agree t_csretype "2: the same, the stored type not described"
is "$X_RC:$X_OK:$X_BAD_ROWS" "1:false:1" "2: ... the row is bad (no longer exit 2)"
pat="note: column cs \\(public\\.ua2b\\[\\]\\): public\\.ua2b\\[\\] values whose elements"
like "$X_ERR" "$pat are stored as type [0-9]+, in 1 row" "2: ... noted, with the stored OID"
retype t_cretype cs 'ua2[]'
agree t_cretype "2: the array's type put back"
is "$X_OK:$X_ROWS" "true:5" "2: ... verifies again"

# A composite column retyped in pg_attribute to another composite type, and
# a range column and a multirange column to other range types: trialvault
# encodes each value as the marker naming its stored type, so every row with
# a value there is bad, also the one hashed by 0.5 (but for its multirange:
# 0.5's encoding takes it as its text output, which prints it as the type it
# names, without a marker, and the row still verifies).  Binary COPY does not
# send that type, only the stored type's attribute types and the bounds in
# the stored subtype's send form: the verifier finds the values whose
# attributes are of other types, or whose bounds are of another size than
# the column type's subtype's (int4 to int8), and agrees.  Where they are
# not, it encodes them as the column's type (documented): a composite type
# with the same attribute types under other names gives another encoding in
# 0.6's form (the row hashed by 0.6 is bad), but not in 0.5's (by position:
# the row hashed by 0.5 passes); one with the same names and types, or a
# range type whose bounds read the same, gives the same (the rows pass).
tv_psql $CL -d postgres >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE TYPE cdose AS (dose int4, unit text);
CREATE TYPE camount AS (amount int4, unit text);
CREATE TYPE cdose8 AS (dose int8, unit text);
CREATE TYPE cdose2 AS (dose int4, unit text);
CREATE TYPE r4 AS RANGE (subtype = int4, multirange_type_name = r4m);
CREATE TYPE r8 AS RANGE (subtype = int8, multirange_type_name = r8m);
CREATE TYPE r4b AS RANGE (subtype = int4, multirange_type_name = r4bm);
CREATE TABLE t_ctretype (note text, c cdose, r r4, m r4m);
SELECT trialvault.protect('t_ctretype');
SET trialvault.restore_mode = on;
INSERT INTO t_ctretype (note, c, m, tv_seq, tv_prev_seqs, tv_prev_hash, tv_hash)
SELECT '0.5', ROW(5, 'mg')::cdose, '{[1,2),[4,5]}', ch.k, ch.ps, ch.prev, ch.h
  FROM lg05.chain(ARRAY[digest('TVROW1'::bytea ||
                               lg05.col('c', lg05.tagged('c', int4send(1) ||
                                                              lg05.tagged('b', int4send(5)) ||
                                                              int4send(2) || lg05.txt('mg'))) ||
                               lg05.col('m', lg05.mr('{[1,2),[4,5]}'::r4m)) ||
                               lg05.col('note', lg05.txt('0.5')), 'sha256')]) AS ch;
RESET trialvault.restore_mode;
INSERT INTO t_ctretype (note, c) VALUES ('0.6', ROW(5, 'mg'));
INSERT INTO t_ctretype (note, r, m) VALUES ('ranges', '[1,5)', '{[1,2),[4,5]}');
INSERT INTO t_ctretype (note) VALUES ('no values');
SQL
agree t_ctretype "2: a composite, a range and a multirange column, a row hashed by 0.5"
is "$X_OK:$X_ROWS" "true:4" "2: ... verifies"
retype t_ctretype c cdose8
agree t_ctretype "2: a composite column retyped to a composite type with other attribute types"
is "$X_RC:$X_OK:$X_BAD_ROWS" "1:false:2" "2: ... both rows with a value there are bad"
pat="note: column c \\(public\\.cdose8\\): public\\.cdose8 values stored as another composite"
like "$X_ERR" "${pat} type, with 2 attribute\\(s\\) of type\\(s\\) integer, text, in 2 row" \
	"2: ... and noted"
retype t_ctretype c camount
verify_into $CL "$DB" t_ctretype
is "$V_OK:$V_BAD_ROWS" "f:2" \
	"2: retyped to one with the same attribute types, other names: verify() finds both rows"
vx_export t_ctretype "$VXD/ctretype.tvx"
vx_into "$VXD/ctretype.tvx"
is "$X_RC:$X_OK:$X_BAD_ROWS" "1:false:1" "2: ... the verifier one (documented)"
like "$X_FIRST_BAD" "^row tv_seq=2 ctid=\\(0,2\\): contents do not match tv_hash" \
	"2: ... the row hashed by 0.6"
retype t_ctretype c cdose2
verify_into $CL "$DB" t_ctretype
is "$V_OK:$V_BAD_ROWS" "f:2" \
	"2: retyped to one with the same attribute names and types: verify() finds both rows"
vx_export t_ctretype "$VXD/ctretype.tvx"
vx_into "$VXD/ctretype.tvx"
is "$X_RC:$X_OK:$X_BAD_ROWS" "0:true:0" "2: ... the verifier neither (documented)"
retype t_ctretype c cdose
retype t_ctretype r r8
retype t_ctretype m r8m
agree t_ctretype "2: range and multirange columns retyped to those of int8 (from int4)"
is "$X_RC:$X_OK:$X_BAD_ROWS" "1:false:1" \
	"2: ... the row hashed by 0.6 with values there is bad, the multirange hashed by 0.5 not"
like "$X_FIRST_BAD" "^row tv_seq=3 ctid=\\(0,3\\): contents do not match tv_hash" \
	"2: ... named"
pat="note: column m \\(public\\.r8m\\): public\\.r8 values stored as another range type"
like "$X_ERR" "$pat, with bounds of 4 bytes, in 2 row\\(s\\), the first in row tv_seq=1 " \
	"2: ... and noted (also in the row hashed by 0.5)"
retype t_ctretype r r4
agree t_ctretype "2: the multirange column alone"
is "$X_RC:$X_OK:$X_BAD_ROWS" "1:false:1" "2: ... the row hashed by 0.6 is bad"
retype t_ctretype m r4m
retype t_ctretype r r8
agree t_ctretype "2: the range column alone"
is "$X_RC:$X_OK:$X_BAD_ROWS" "1:false:1" "2: ... the row is bad"
retype t_ctretype r r4b
verify_into $CL "$DB" t_ctretype
is "$V_OK:$V_BAD_ROWS" "f:1" \
	"2: a range column retyped to a range type of the same subtype: verify() finds the row"
vx_export t_ctretype "$VXD/ctretype.tvx"
vx_into "$VXD/ctretype.tvx"
is "$X_RC:$X_OK:$X_BAD_ROWS" "0:true:0" "2: ... the verifier does not (documented)"
retype t_ctretype r r4
agree t_ctretype "2: the column types put back"
is "$X_OK:$X_ROWS" "true:4" "2: ... verifies again"

# A composite copied into a new row after its column was retyped: refused
# by trialvault, as an array is.
retype t_ctretype c cdose8
like "$(tv_psql $CL -d postgres -v VERBOSITY=verbose -c "INSERT INTO t_ctretype (note, c)
                SELECT 'copied', c FROM t_ctretype WHERE note = '0.6'" 2>&1 || true)" \
	"XX001: a value in column \"c\" is of type" \
	"2: a composite copied into a new row after its column was retyped is refused"

# --- 3. the export itself; anchors -----------------------------------------------

make_linear t_file
vx_export t_file "$VXD/file.tvx"
s7=$(seq_of t_file 'original body 7')
perl -e 'open(my $f, "+<:raw", $ARGV[0]) or die; local $/; my $d = <$f>;
	$d =~ s/original body 7/original body 8/ or die "not found"; seek($f, 0, 0); print $f $d;' "$VXD/file.tvx"
vx_into "$VXD/file.tvx"
is "$X_RC:$X_OK:$X_BAD_ROWS" "1:false:1" "3: one value byte changed in the export: not ok, one bad row"
like "$X_FIRST_BAD" "^row tv_seq=$s7 ctid=\\([0-9]+,[0-9]+\\): contents do not match tv_hash" \
	"3: ... first_bad names the row"

vx_export t_file "$VXD/file.tvx"
size=$(stat -c %s "$VXD/file.tvx")
head -c $((size / 2)) "$VXD/file.tvx" >"$VXD/cut.tvx"
vx_into "$VXD/cut.tvx"
is "$X_RC" 2 "3: an export cut in the middle is refused (exit 2)"
like "$X_ERR" "truncated" "3: ... as truncated"
head -c $((size - 2)) "$VXD/file.tvx" >"$VXD/cut.tvx"
vx_into "$VXD/cut.tvx"
is "$X_RC" 2 "3: an export missing only its last 2 bytes (the COPY trailer) is refused"

# Rows removed from the end: no link is broken.
make_linear t_tail
vx_export t_tail "$VXD/tail-before.tvx"
vx_into "$VXD/tail-before.tvx" --save-anchor "$VXD/tail.anchor"
is "$X_RC" 0 "3: anchor saved"
verify_into $CL postgres t_tail
is "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["head_digest"])' "$VXD/tail.anchor")" \
	"$V_DIGEST" "3: the anchor's head_digest is verify()'s"
guards t_tail D
q $CL postgres "DELETE FROM t_tail WHERE body IN ('original body 9', 'original body 10')" >/dev/null
guards t_tail A
agree t_tail "3: the newest two rows removed"
is "$X_OK:$X_ROWS" "true:8" "3: ... not detectable without an anchor (documented limit)"
vx_into "$AGREED_FILE" --anchor "$VXD/tail.anchor"
is "$X_RC" 1 "3: ... detected with the anchor (exit 1)"
like "$X_ANCHOR" "^FAILED: anchored head tv_seq=[0-9]+ is missing" "3: ... which names the missing head"

# Legitimate growth after the anchor.
make_linear t_grow 3
vx_export t_grow "$VXD/grow.tvx"
vx_into "$VXD/grow.tvx" --save-anchor "$VXD/grow.anchor"
q $CL postgres "INSERT INTO t_grow VALUES ('later 1')" >/dev/null
q $CL postgres "INSERT INTO t_grow VALUES ('later 2')" >/dev/null
vx_export t_grow "$VXD/grow.tvx"
vx_into "$VXD/grow.tvx" --anchor "$VXD/grow.anchor"
is "$X_RC:$X_OK:$X_ROWS" "0:true:5" "3: rows inserted after the anchor: the anchor still holds"
like "$X_ANCHOR" "^ok" "3: ... anchor: ok"

# Re-chained: a superuser changes row 4 and recomputes the hashes of it and
# of every later row (chain.c's and canon.c's formulas, as in 40_tamper d).
make_linear t_rechain
vx_export t_rechain "$VXD/rechain-before.tvx"
vx_into "$VXD/rechain-before.tvx" --save-anchor "$VXD/rechain.anchor"
guards t_rechain D
tv_psql $CL -d postgres >/dev/null <<'SQL'
DO $$
DECLARE
	r record;
	k bigint := (SELECT tv_seq FROM t_rechain WHERE body = 'original body 4');
BEGIN
	FOR r IN SELECT tv_seq, tv_prev_seqs FROM t_rechain WHERE tv_seq >= k ORDER BY tv_seq LOOP
		UPDATE t_rechain SET
			body = CASE WHEN tv_seq = k THEN 'forged body 4' ELSE body END,
			tv_prev_hash = (SELECT digest('TVPREV1'::bytea ||
			                              string_agg(int8send(p.tv_seq) || p.tv_hash, ''::bytea ORDER BY p.tv_seq),
			                              'sha256')
			                  FROM t_rechain p WHERE p.tv_seq = ANY (r.tv_prev_seqs))
		 WHERE tv_seq = r.tv_seq;
		UPDATE t_rechain SET tv_hash = digest('TVHASH1'::bytea || int8send(tv_seq) || tv_prev_hash ||
			digest('TVROW2'::bytea || int4send(4) || 'body'::bytea || int4send('text'::regtype::oid::int) ||
			       'r'::bytea || int4send(octet_length(body)) || convert_to(body, 'UTF8'), 'sha256'),
			'sha256')
		 WHERE tv_seq = r.tv_seq;
	END LOOP;
END $$;
SQL
guards t_rechain A
is "$(q $CL postgres "SELECT count(*) FROM t_rechain WHERE body = 'forged body 4'")" 1 "3: row 4 was rewritten"
agree t_rechain "3: re-chained from row 4 onward"
is "$X_OK:$V_OK" "true:t" "3: ... passes verify() and the verifier without an anchor"
vx_into "$AGREED_FILE" --anchor "$VXD/rechain.anchor"
is "$X_RC" 1 "3: ... fails with the anchor saved before (exit 1)"
like "$X_ANCHOR" "^FAILED: anchored head tv_seq=[0-9]+ has another tv_hash" "3: ... which names the head"

# --- 4. unusable input ------------------------------------------------------------

vx_into "$VXD/no-such-file.tvx"
is "$X_RC" 2 "4: missing file: exit 2"
like "$X_ERR" "cannot read .*no-such-file.tvx: No such file" "4: ... with the reason"
: >"$VXD/empty.tvx"
vx_into "$VXD/empty.tvx"
is "$X_RC:$X_ERR" "2:trialvault-verify-export: $VXD/empty.tvx is empty" "4: empty file: exit 2"
head -c 3000 /dev/urandom >"$VXD/garbage.tvx"
vx_into "$VXD/garbage.tvx"
is "$X_RC" 2 "4: garbage: exit 2"
like "$X_ERR" "not a trialvault-verify-export file" "4: ... not an export"
cp "$VXD/file.tvx" "$VXD/trailing.tvx"
printf 'x' >>"$VXD/trailing.tvx"
vx_into "$VXD/trailing.tvx"
is "$X_RC" 2 "4: a byte after the data: exit 2"
like "$X_ERR" "unexpected bytes after the data" "4: ... named"

perl -pe 's/"typtype"/"typtypX"/g' "$VXD/file.tvx" >"$VXD/renamed.tvx"
vx_into "$VXD/renamed.tvx"
is "$X_RC" 2 "4: a description with a field renamed: exit 2 (not 1, not a traceback)"
like "$X_ERR" "malformed input, the description does not have the expected fields" "4: ... malformed input"

# Description of one table, data of another.
split_at_data() {
	python3 -c 'import sys; d = open(sys.argv[1], "rb").read(); s = b"PGCOPY\n\xff\r\n\x00"
i = d.index(s, 1); open(sys.argv[2], "wb").write(d[:i] if sys.argv[3] == "desc" else d[i:])' "$@"
}
tv_psql $CL -d postgres >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE TABLE t_shape1 (a int, b text);
CREATE TABLE t_shape2 (a text, b int);
SELECT trialvault.protect('t_shape1'), trialvault.protect('t_shape2');
INSERT INTO t_shape1 VALUES (1, 'one');
INSERT INTO t_shape2 VALUES ('one', 1);
SQL
vx_export t_shape1 "$VXD/shape1.tvx"
vx_export t_shape2 "$VXD/shape2.tvx"
split_at_data "$VXD/shape1.tvx" "$VXD/d1" desc
split_at_data "$VXD/shape2.tvx" "$VXD/d2" data
cat "$VXD/d1" "$VXD/d2" >"$VXD/mixed.tvx"
vx_into "$VXD/mixed.tvx"
is "$X_RC" 2 "4: description of t_shape1 with the data of t_shape2: exit 2"
like "$X_ERR" "does not match the data" "4: ... the description does not match the data"
split_at_data "$VXD/file.tvx" "$VXD/d3" data
cat "$VXD/d1" "$VXD/d3" >"$VXD/mixed.tvx"
vx_into "$VXD/mixed.tvx"
is "$X_RC" 2 "4: description of t_shape1 with the data of t_file (other column count): exit 2"
like "$X_ERR" "fields where the description says" "4: ... named"

# The description's format: format 1 (before base_type) still verifies, an
# unknown one is refused, and so is a base_type that the types' catalog
# fields contradict.
# redesc IN OUT PYTHON: export IN with its description (the JSON, as d)
# changed by PYTHON, written to OUT.
redesc() {
	python3 - "$@" <<'PY'
import json, struct, sys
src, dst, code = sys.argv[1:4]
data = open(src, "rb").read()
sig = b"PGCOPY\n\xff\r\n\x00"
i = data.index(sig, 1)
off = len(sig) + 8 + struct.unpack_from(">I", data, len(sig) + 4)[0]
(n,) = struct.unpack_from(">i", data, off + 2)
d = json.loads(data[off + 6:off + 6 + n])
exec(code)
j = json.dumps(d).encode()
open(dst, "wb").write(data[:off] + struct.pack(">hi", 1, len(j)) + j + b"\xff\xff" + data[i:])
PY
}
vx_into "$VXD/t_cretype.tvx"
want="$X_RC:$X_OK:$X_ROWS:$X_DIGEST"
redesc "$VXD/t_cretype.tvx" "$VXD/format1.tvx" 'd["format"] = "trialvault-verify-export 1"
for c in d["columns"]: del c["base_type"]
for t in d["types"].values():
    for a in t["attrs"] or []: del a["base_type"]'
vx_into "$VXD/format1.tvx"
is "$X_RC:$X_OK:$X_ROWS:$X_DIGEST" "$want" "4: an export in format 1 (no base_type) verifies as its format 2 does"
redesc "$VXD/t_cretype.tvx" "$VXD/format9.tvx" 'd["format"] = "trialvault-verify-export 9"'
vx_into "$VXD/format9.tvx"
like "$X_RC:$X_ERR" "^2:.*format is 'trialvault-verify-export 9'; this verifier reads" \
	"4: an unknown format: exit 2"
redesc "$VXD/t_cretype.tvx" "$VXD/base.tvx" 'for t in d["types"].values():
    for a in t["attrs"] or []:
        if a["name"] == "amount": a["base_type"] = 700'
vx_into "$VXD/base.tvx"
like "$X_RC:$X_ERR" "^2:.*gives attribute amount of public\\.ua2 the type 700 after domains" \
	"4: a composite attribute's base_type other than its type's: exit 2"
redesc "$VXD/t_cretype.tvx" "$VXD/base.tvx" 'for c in d["columns"]:
    if c["name"] == "note": c["base_type"] = 17'
vx_into "$VXD/base.tvx"
like "$X_RC:$X_ERR" "^2:.*gives column note the type 17 after domains" \
	"4: a column's base_type other than its type's: exit 2"

# Types whose encoding the verifier cannot reproduce: fine while NULL.
tv_psql $CL -d postgres >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE TYPE withtsv AS (label text, words tsvector);
CREATE TYPE withacl AS (label text, acl aclitem);
CREATE TABLE t_unsup (note text, rc regclass, w withtsv, wa withacl);
SELECT trialvault.protect('t_unsup');
INSERT INTO t_unsup (note) VALUES ('only NULLs in rc and w');
SQL
agree t_unsup "4: reg* and tsvector- or aclitem-in-composite columns that are NULL: verifiable"
q $CL postgres "INSERT INTO t_unsup VALUES ('a regclass', 'pg_class', NULL)" >/dev/null
q $CL postgres "INSERT INTO t_unsup VALUES ('a tsvector', NULL, ROW('w', 'a b'))" >/dev/null
q $CL postgres "INSERT INTO t_unsup (note, wa) VALUES ('an aclitem', ROW('a', 'postgres=r/postgres'))" >/dev/null
vx_export t_unsup "$VXD/unsup.tvx"
vx_into "$VXD/unsup.tvx"
is "$X_RC" 2 "4: values of unsupported types: exit 2"
like "$X_ERR" "not independently verifiable" "4: ... not independently verifiable"
like "$X_ERR" "column rc \\(regclass\\): " "4: ... names the reg* column"
like "$X_ERR" "column w \\(public\\.withtsv\\): tsvector is hashed as its text output" \
	"4: ... names the composite column and the nested type"
like "$X_ERR" "column wa \\(public\\.withacl\\): aclitem is hashed as its text output" \
	"4: ... and an aclitem inside a composite (it has no binary form at all)"

# --- 5. the by-hand export -------------------------------------------------------

sed -n '/^<!-- begin export.sql -->$/,/^<!-- end export.sql -->$/p' "$ROOT/docs/independent-verification.md" |
	sed '1,2d;$d' | sed '$d' >"$VXD/doc-export.sql"
"$PY" "$VX" sql >"$VXD/script-export.sql"
check "5: the SQL in docs/independent-verification.md is what the script runs" \
	cmp -s "$VXD/doc-export.sql" "$VXD/script-export.sql"
tv_psql $CL -d postgres -v tbl=public.t_del -f "$VXD/doc-export.sql" >"$VXD/by-hand.tvx"
vx_into "$VXD/by-hand.tvx"
by_hand="$X_OK $X_ROWS [$X_FIRST_BAD] $X_BAD_ROWS $X_HEADS $X_DIGEST"
vx_export public.t_del "$VXD/by-script.tvx"
vx_into "$VXD/by-script.tvx"
is "$by_hand" "$X_OK $X_ROWS [$X_FIRST_BAD] $X_BAD_ROWS $X_HEADS $X_DIGEST" \
	"5: the by-hand export gives the script's result"
split_at_data "$VXD/by-hand.tvx" "$VXD/h" data
split_at_data "$VXD/by-script.tvx" "$VXD/s" data
check "5: ... and the same rows, byte for byte" cmp -s "$VXD/h" "$VXD/s"
json_ok=$("$PY" "$VX" verify --json "$VXD/by-script.tvx" |
	python3 -c 'import json, sys; r = json.load(sys.stdin); print(r["ok"], r["rows_checked"], r["head_digest"])' || true)
is "$json_ok" "False 9 $X_DIGEST" "5: --json prints the same result"

# --- 6. verify() replaced by a superuser ------------------------------------------

make_linear t_fake
guards t_fake D
q $CL postgres "UPDATE t_fake SET body = 'falsified' WHERE body = 'original body 6'" >/dev/null
guards t_fake A
s6=$(seq_of t_fake falsified)
q $CL postgres "UPDATE pg_catalog.pg_proc
                   SET prolang = (SELECT oid FROM pg_language WHERE lanname = 'sql'), probin = NULL,
                       prosrc = 'SELECT true, 10::bigint, NULL::text, 0::bigint, 1::bigint,
                                        ''\\x00''::bytea, ''intact''::text'
                 WHERE oid = 'trialvault.verify(regclass)'::regprocedure" >/dev/null
verify_into $CL postgres t_fake
is "$V_OK:$V_BAD_ROWS:$V_GUARD" "t:0:intact" "6: verify() replaced in pg_proc now reports the tampered table ok"
vx_export t_fake "$VXD/fake.tvx"
vx_into "$VXD/fake.tvx"
is "$X_RC:$X_OK:$X_BAD_ROWS" "1:false:1" "6: the verifier is not fooled: not ok, one bad row"
like "$X_FIRST_BAD" "^row tv_seq=$s6 ctid=\\([0-9]+,[0-9]+\\): contents do not match tv_hash" \
	"6: ... and names the falsified row"

done_testing

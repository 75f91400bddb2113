#!/usr/bin/env bash
# 78_verify_toast.sh: verify() reads out-of-line values in storage order,
# alongside its scan of the table, and its verdict is the same as reading
# them through the TOAST index.
#
# A full verify scans the TOAST relation in step with the table
# (extension/toastscan.c) and takes a value from that scan only when all of
# its chunks are found close by, each once and of the right size; anything
# else is detoasted the usual way.  verify's DEBUG1 line says how many
# values went each way; each case checks that count, and that the verdict
# agrees field by field with scripts/trialvault-verify-export (which reads
# every value through PostgreSQL's own detoasting):
#
#   1. values of one writer, in order: all read in step; values that are
#      compressed, larger than 1 MB or inline are not (and still verified);
#   2. rows stored out of the order their values were written in (space
#      freed by VACUUM after an aborted insert is reused);
#   3. three writers interleaving, in open transactions;
#   4. a value changed behind the guards (a new value, stored at the end),
#      and another row's value copied over a row's: both found;
#   5. a copy restored with pg_dump | psql: read in step;
#   6. verify(since => digest) reads the new rows' values in step too;
#   7. values whose short last chunk is stored on an earlier page (after
#      VACUUM): kept from where the scan passed it, or looked up apart;
#   8. the new values of a check since a digest 2 MB apart: the scan jumps.
set -euo pipefail
source "$(dirname "$0")/../lib/cluster.sh"
source "$(dirname "$0")/lib/helpers.sh"

CL=c78
DB=postgres

tv_cluster_start $CL "trialvault.audit_logins = off"
source "$(dirname "$0")/lib/vx.sh"

q $CL $DB "SET client_min_messages = warning; CREATE EXTENSION trialvault CASCADE" >/dev/null
random_bytes_function $CL $DB

# in_step TABLE [DIGEST]: "READ LOOKED_UP PATCHED" from the DEBUG1 line of
# verify(TABLE) (or of verify(TABLE, since => DIGEST)), or "none": values
# read in step, looked up through the index, and of the first, those with
# chunks stored apart (looked up one by one).
in_step() {
	local line call="trialvault.verify('$1')"
	[ $# -lt 2 ] || call="trialvault.verify('$1', since => :'d')"
	line=$(tv_psql $CL -d $DB -At -v d="${2:-}" 2>&1 <<SQL | sed -n 's/.*DEBUG:  trialvault verify read \([0-9]*\) out-of-line values of "[^"]*" in storage order and looked up \([0-9]*\) through the TOAST index; \([0-9]*\) of those .*/\1 \2 \3/p'
SET client_min_messages = debug1;
SELECT ok FROM $call;
SQL
)
	echo "${line:-none}"
}

# --- 1. one writer -------------------------------------------------------------------
tv_psql $CL -d $DB >/dev/null <<'SQL'
CREATE TABLE t_docs (n int, note text, body bytea);
SELECT trialvault.protect('t_docs');
INSERT INTO t_docs (n, body) SELECT g, rnd(5000) FROM generate_series(1, 60) g;
SQL
is "$(in_step t_docs)" "60 0 0" "1: 60 values of 5000 bytes, one writer: all read in step"
is "$(q $CL $DB "SELECT ok, rows_checked FROM trialvault.verify('t_docs')")" "t|60" "1: ... intact"
agree t_docs "1: ... and the export verifier agrees"

tv_psql $CL -d $DB >/dev/null <<'SQL'
-- compressed, and still out of line: a 4000-character pattern repeated
INSERT INTO t_docs (n, note) SELECT 61, repeat(encode(rnd(2000), 'hex'), 50);
-- larger than what is assembled from the scan
INSERT INTO t_docs (n, body) SELECT 62, rnd(1500000);
-- inline
INSERT INTO t_docs (n, note, body) VALUES (63, 'short', '\x00ff');
INSERT INTO t_docs (n, body) SELECT g, rnd(5000) FROM generate_series(64, 70) g;
SQL
is "$(q $CL $DB "SELECT pg_column_compression(note) IS NOT NULL, pg_column_size(note) > 2032 FROM t_docs WHERE n = 61")" "t|t" \
	"1: row 61's note is compressed and stored out of line"
is "$(in_step t_docs)" "67 2 0" "1: ... it and the value of 1.5 MB are looked up, the other 67 read in step"
is "$(q $CL $DB "SELECT ok, rows_checked FROM trialvault.verify('t_docs')")" "t|70" "1: ... intact"
agree t_docs "1: ... and the export verifier agrees"

# --- 2. rows stored out of the order of their values --------------------------------
tv_psql $CL -d $DB >/dev/null <<'SQL'
CREATE TABLE t_ord (n int, body bytea);
SELECT trialvault.protect('t_ord');
ALTER TABLE t_ord SET (autovacuum_enabled = off);
INSERT INTO t_ord SELECT g, rnd(5000) FROM generate_series(1, 10) g;
BEGIN;
INSERT INTO t_ord SELECT g, 'small' FROM generate_series(100, 120) g;
ROLLBACK;
INSERT INTO t_ord SELECT g, rnd(5000) FROM generate_series(11, 20) g;
VACUUM t_ord;
INSERT INTO t_ord SELECT g, rnd(5000) FROM generate_series(21, 25) g;
SQL
is "$(q $CL $DB "SELECT (SELECT ctid FROM t_ord WHERE n = 21) < (SELECT ctid FROM t_ord WHERE n = 11)")" t \
	"2: rows 21 to 25 are stored before rows 11 to 20, their values after"
is "$(in_step t_ord)" "25 0 0" "2: ... all 25 values read in step (the ones read ahead of their rows kept)"
is "$(q $CL $DB "SELECT ok, rows_checked FROM trialvault.verify('t_ord')")" "t|25" "2: ... intact"
agree t_ord "2: ... and the export verifier agrees"

# --- 3. three writers interleaving ----------------------------------------------------
q $CL $DB "CREATE TABLE t_conc (w text, body bytea); SELECT trialvault.protect('t_conc')" >/dev/null
for s in a b c; do sess_open $CL $DB $s -At; done
for i in $(seq 1 12); do
	for s in a b c; do sess_run $s "BEGIN; INSERT INTO t_conc SELECT '$s', rnd(3000 + 1000 * ($i % 3));"; done
	for s in c a b; do sess_run $s "INSERT INTO t_conc SELECT '$s', rnd(9000); COMMIT;"; done
done
for s in a b c; do sess_close $s; done
is "$(q $CL $DB "SELECT count(*) > 0 FROM t_conc WHERE cardinality(tv_prev_seqs) > 1")" t \
	"3: three writers, 72 rows, the chain forks"
is "$(in_step t_conc)" "72 0 0" "3: ... all 72 values read in step"
is "$(q $CL $DB "SELECT ok, rows_checked FROM trialvault.verify('t_conc')")" "t|72" "3: ... intact"
agree t_conc "3: ... and the export verifier agrees"

# --- 4. values changed behind the guards -----------------------------------------------
guards t_docs D
q $CL $DB "UPDATE t_docs SET body = rnd(5000) WHERE n = 30" >/dev/null
guards t_docs A
SEQ30=$(q $CL $DB "SELECT tv_seq FROM t_docs WHERE n = 30")
verify_into $CL $DB t_docs
is "$V_OK" f "4: a row's value replaced (a new value, at the end of the TOAST relation): not ok"
like "$V_FIRST_BAD" "^row tv_seq=$SEQ30 ctid=\\([0-9]+,[0-9]+\\): contents do not match tv_hash" "4: ... the row named"
agree t_docs "4: ... and the export verifier agrees"
guards t_docs D
q $CL $DB "UPDATE t_docs SET body = (SELECT body FROM t_docs WHERE n = 5) WHERE n = 4" >/dev/null
guards t_docs A
verify_into $CL $DB t_docs
SEQ4=$(q $CL $DB "SELECT tv_seq FROM t_docs WHERE n = 4")
is "$V_BAD_ROWS" 2 "4: ... and another row's value copied over row 4's: rows 4 and 30 bad"
like "$V_FIRST_BAD" "^row tv_seq=$SEQ4 ctid=\\([0-9]+,[0-9]+\\): contents do not match tv_hash" "4: ... row 4 first"
agree t_docs "4: ... and the export verifier agrees"

# --- 5. a restored copy -----------------------------------------------------------------
q $CL postgres "CREATE DATABASE restored" >/dev/null
tv_as_pg "$PGBIN/pg_dump" -h "$(tv_dir $CL)" -p "$(tv_port $CL)" -U postgres -d $DB -t t_conc -t t_ord >"$VXD/dump.sql"
q $CL restored "SET client_min_messages = warning; CREATE EXTENSION trialvault CASCADE" >/dev/null
tv_psql $CL -d restored -v ON_ERROR_STOP=1 -q -f "$VXD/dump.sql" >/dev/null 2>&1
DB=restored
is "$(in_step t_conc)" "72 0 0" "5: restored: all 72 values of t_conc read in step"
is "$(q $CL $DB "SELECT ok, rows_checked FROM trialvault.verify('t_conc')")" "t|72" "5: ... intact"
is "$(q $CL $DB "SELECT ok, rows_checked FROM trialvault.verify('t_ord')")" "t|25" "5: ... and t_ord"
agree t_conc "5: ... and the export verifier agrees"

# --- 6. the daily check ------------------------------------------------------------------
DB=postgres
DIG=$(q $CL $DB "SELECT trialvault.signed_digest('t_conc')")
q $CL $DB "INSERT INTO t_conc SELECT 'late', rnd(5000) FROM generate_series(1, 20)" >/dev/null
is "$(in_step t_conc "$DIG")" "20 0 0" "6: verify(since => digest): the 20 new rows' values read in step"
is "$(q $CL $DB "SELECT ok, rows_checked, rows_not_rehashed FROM trialvault.verify('t_conc', since => \$\$$DIG\$\$)")" "t|20|72" \
	"6: ... intact, 20 rows rehashed, 72 not"
guards t_conc D
q $CL $DB "UPDATE t_conc SET body = rnd(5000) WHERE tv_seq = (SELECT max(tv_seq) - 5 FROM t_conc)" >/dev/null
guards t_conc A
like "$(q $CL $DB "SELECT ok, first_bad FROM trialvault.verify('t_conc', since => \$\$$DIG\$\$)")" \
	"^f\|row tv_seq=[0-9]+ ctid=\([0-9]+,[0-9]+\): contents do not match tv_hash" "6: ... a new row's value replaced: found"

# --- 7. chunks stored apart from their value's others ------------------------------------
# A value of 7992 bytes is four full chunks and a short one: the full ones
# fill a page, and the short one goes wherever there is room, after VACUUM
# on an earlier page.
tv_psql $CL -d $DB >/dev/null <<'SQL'
CREATE TABLE t_tail (n int, body bytea);
SELECT trialvault.protect('t_tail');
ALTER TABLE t_tail SET (autovacuum_enabled = off);
INSERT INTO t_tail SELECT g, substring(rnd(8000) FROM 1 FOR 7992) FROM generate_series(1, 40) g;
VACUUM t_tail;
SQL
DIG=$(q $CL $DB "SELECT trialvault.signed_digest('t_tail')")
q $CL $DB "INSERT INTO t_tail SELECT g, substring(rnd(8000) FROM 1 FOR 7992) FROM generate_series(41, 80) g" >/dev/null
TOAST=$(q $CL $DB "SELECT reltoastrelid::regclass FROM pg_class WHERE oid = 't_tail'::regclass")
is "$(q $CL $DB "WITH c AS (SELECT chunk_id, chunk_seq, (ctid::text::point)[0] AS blk FROM $TOAST)
                 SELECT count(DISTINCT a.chunk_id) > 20 FROM c a JOIN c b ON a.chunk_id = b.chunk_id AND b.chunk_seq = 0
                  WHERE a.blk < b.blk")" t "7: after VACUUM, the new values' short chunks are stored on earlier pages"
is "$(in_step t_tail)" "80 0 0" "7: a full verify reads all 80 in step (the short chunks kept from where the scan passed them)"
is "$(in_step t_tail "$DIG")" "40 0 40" "7: verify(since) reads the 40 new ones in step, each short chunk looked up apart"
is "$(q $CL $DB "SELECT ok, rows_checked FROM trialvault.verify('t_tail', since => \$\$$DIG\$\$)")" "t|40" "7: ... intact"
VERIFY_SET="SET min_parallel_table_scan_size = 0;" verify_into $CL $DB t_tail
PARALLEL="ok=$V_OK rows=$V_ROWS heads=$V_HEADS digest=$V_DIGEST"
VERIFY_SET="SET trialvault.verify_workers = 0;" verify_into $CL $DB t_tail
is "$PARALLEL" "ok=$V_OK rows=$V_ROWS heads=$V_HEADS digest=$V_DIGEST" "7: parallel workers (their parts starting mid-relation) agree with one scan"
is "$V_OK|$V_ROWS" "t|80" "7: ... intact, 80 rows"
agree t_tail "7: ... and the export verifier agrees"

# --- 8. the new rows' values far apart ---------------------------------------------------
# A row in flight when the digest is taken is above its floor, so checked
# again since; its value is stored 10 MB before the rows added after.  The
# check starts reading the TOAST relation where that value is, finds none
# of the next values within 1 MB (each looked up through the index), and at
# the 8th such value in a row moves on to where it is stored rather than
# read the 10 MB between.
q $CL $DB "CREATE TABLE t_far (n int, body bytea); SELECT trialvault.protect('t_far');
           INSERT INTO t_far SELECT g, rnd(4000) FROM generate_series(1, 10) g" >/dev/null
sess_open $CL $DB f -At
sess_run f "BEGIN; INSERT INTO t_far SELECT 0, rnd(4000);"
q $CL $DB "INSERT INTO t_far SELECT g, rnd(4000) FROM generate_series(11, 2510) g" >/dev/null
DIG=$(q $CL $DB "SELECT trialvault.signed_digest('t_far')")
sess_run f "COMMIT;"
sess_close f
q $CL $DB "INSERT INTO t_far SELECT g, rnd(4000) FROM generate_series(2511, 2550) g" >/dev/null
is "$(in_step t_far "$DIG")" "34 7 0" \
	"8: verify(since): the row in flight and the last 33 new values read in step, 7 looked up before the scan moved on"
is "$(q $CL $DB "SELECT ok, rows_checked FROM trialvault.verify('t_far', since => \$\$$DIG\$\$)")" "t|41" "8: ... intact, 41 rows"
is "$(in_step t_far)" "2551 0 0" "8: ... and a full verify reads all 2551 in step"

done_testing

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
#   5. tv_seq renumbered by a restore (pg_dump | psql): read in step.
set -euo pipefail
source "$(dirname "$0")/../lib/cluster.sh"
source "$(dirname "$0")/lib/helpers.sh"

CL=c78
DB=postgres

tv_cluster_start $CL "trialvault.audit_logins = off"
source "$(dirname "$0")/lib/vx.sh"

q $CL $DB "SET client_min_messages = warning; CREATE EXTENSION trialvault CASCADE" >/dev/null
random_bytes_function $CL $DB

# in_step TABLE: "READ LOOKED_UP" from verify's DEBUG1 line, or "none".
in_step() {
	local line
	line=$(tv_psql $CL -d $DB -At 2>&1 <<SQL | sed -n 's/.*DEBUG:  trialvault verify read \([0-9]*\) out-of-line values of "[^"]*" in storage order and looked up \([0-9]*\) through the TOAST index$/\1 \2/p'
SET client_min_messages = debug1;
SELECT ok FROM trialvault.verify('$1');
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
is "$(in_step t_docs)" "60 0" "1: 60 values of 5000 bytes, one writer: all read in step"
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
is "$(in_step t_docs)" "67 2" "1: ... it and the value of 1.5 MB are looked up, the other 67 read in step"
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
is "$(in_step t_ord)" "25 0" "2: ... all 25 values read in step (the ones read ahead of their rows kept)"
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
is "$(in_step t_conc)" "72 0" "3: ... all 72 values read in step"
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
is "$(in_step t_conc)" "72 0" "5: restored: all 72 values of t_conc read in step"
is "$(q $CL $DB "SELECT ok, rows_checked FROM trialvault.verify('t_conc')")" "t|72" "5: ... intact"
is "$(q $CL $DB "SELECT ok, rows_checked FROM trialvault.verify('t_ord')")" "t|25" "5: ... and t_ord"
agree t_conc "5: ... and the export verifier agrees"

done_testing

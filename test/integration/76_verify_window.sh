#!/usr/bin/env bash
# 76_verify_window.sh: verify() in bounded memory gives the same verdict as
# with every row in memory, whatever the order the rows are stored in.
#
# verify() keeps only the last trialvault.verify_window rows it scanned
# (plus the unreferenced ones, and rows waiting for predecessors).  With a
# window of 16 rows, every way a predecessor can be out of the window is
# made to happen, and checked to have happened (verify's DEBUG1 summary):
#
#   1. forks: overlapping transactions (rows with two predecessors, and
#      rows referred to by two rows);
#   2. a row stored before its predecessor: space freed by VACUUM after an
#      aborted bulk insert is reused by later rows, whose predecessors are
#      stored after them (rows wait until the scan reaches those);
#   3. a predecessor far back, referred to twice: a transaction open while
#      more rows than the window were inserted commits, and two
#      transactions then both refer to its row (the second reference finds
#      it only in a second scan);
#   4. the same tables changed behind the guards: a row removed whose
#      successor is stored before it, contents changed, an old row
#      duplicated at the end;
#   3b. the chain state rebuilt after a restart (the first insert) uses the
#      same scan: the new row refers to exactly the heads there were;
#   5. verify_digest follows the chain back through the tv_seq index (on
#      the reordered, forked table), and says so when the index is gone;
#   6. the setting refuses values out of range.
#
# Every verdict is compared field by field three ways: window 16, the
# default window, and scripts/trialvault-verify-export on an export.
set -euo pipefail
source "$(dirname "$0")/../lib/cluster.sh"
source "$(dirname "$0")/lib/helpers.sh"

CL=c76
DB=postgres

tv_cluster_start $CL "trialvault.audit_logins = off"
VXD=$(tv_dir $CL)/vx
mkdir -p "$VXD"
CONN="host=$(tv_dir $CL) port=$(tv_port $CL) user=postgres dbname="
source "$(dirname "$0")/lib/vx.sh"

q $CL postgres "SET client_min_messages = warning; CREATE EXTENSION trialvault CASCADE" >/dev/null

# agree3 TABLE DESC: window 16, the default window and the export agree.
agree3() {
	local tbl=$1 desc=$2 small
	VERIFY_SET="SET trialvault.verify_window = 16;" verify_into $CL $DB "$tbl"
	small="ok=$V_OK rows=$V_ROWS bad_rows=$V_BAD_ROWS heads=$V_HEADS digest=$V_DIGEST first_bad=[$V_FIRST_BAD]"
	verify_into $CL $DB "$tbl"
	is "$small" "ok=$V_OK rows=$V_ROWS bad_rows=$V_BAD_ROWS heads=$V_HEADS digest=$V_DIGEST first_bad=[$V_FIRST_BAD]" \
		"$desc: window 16 and the default window agree"
	agree "$tbl" "$desc: ... and so does the export verifier"
}

# summary TABLE: verify's DEBUG1 summary with a window of 16 rows.
summary() {
	tv_psql $CL -d $DB -At 2>&1 <<SQL | sed -n 's/.*DEBUG:  trialvault verify of [^:]*: //p'
SET trialvault.verify_window = 16;
SET client_min_messages = debug1;
SELECT ok FROM trialvault.verify('$1');
SQL
}

# Rows stored before a predecessor of theirs (by ctid).
stored_before() {
	q $CL $DB "SELECT count(*) FROM $1 r JOIN $1 p ON p.tv_seq = ANY (r.tv_prev_seqs) WHERE p.ctid > r.ctid"
}

# --- 1. forks ---------------------------------------------------------------------
q $CL $DB "CREATE TABLE t_fork (body text); SELECT trialvault.protect('t_fork')" >/dev/null
sess_open $CL $DB a -At
sess_open $CL $DB b -At
for i in $(seq 1 30); do
	sess_run a "BEGIN; INSERT INTO t_fork VALUES ('a $i');"
	sess_run b "BEGIN; INSERT INTO t_fork VALUES ('b $i');"
	sess_run a "COMMIT;"
	sess_run b "INSERT INTO t_fork VALUES ('b $i again'); COMMIT;"
done
is "$(q $CL $DB "SELECT count(*) > 0 FROM t_fork WHERE cardinality(tv_prev_seqs) > 1")" t \
	"1: the chain forks and joins (rows with two predecessors)"
agree3 t_fork "1: forks"
is "$(q $CL $DB "SELECT ok, rows_checked FROM trialvault.verify('t_fork')")" "t|90" "1: ... intact, 90 rows"
like "$(summary t_fork)" "^90 rows, a window of 16 rows, " "1: ... verify's summary names the window"

# --- 2. rows stored before their predecessors ---------------------------------------
tv_psql $CL -d $DB >/dev/null <<'SQL'
CREATE TABLE t_reuse (body text);
SELECT trialvault.protect('t_reuse');
ALTER TABLE t_reuse SET (autovacuum_enabled = off);
SQL
ins() { # ins TABLE FIRST LAST: one transaction per row
	local i
	for i in $(seq "$2" "$3"); do echo "INSERT INTO $1 VALUES (repeat('r$i ', 100));"; done | tv_psql $CL -d $DB >/dev/null
}
ins t_reuse 1 40
q $CL $DB "BEGIN; INSERT INTO t_reuse SELECT repeat('aborted', 60) FROM generate_series(1, 400); ROLLBACK" >/dev/null
ins t_reuse 41 80
q $CL $DB "VACUUM t_reuse" >/dev/null
ins t_reuse 81 120
between 1 "$(stored_before t_reuse)" 200 &&
	ok "2: rows reuse freed space, stored before a predecessor ($(stored_before t_reuse) such links)" ||
	not_ok "2: rows reuse freed space, stored before a predecessor ($(stored_before t_reuse) such links)"
agree3 t_reuse "2: rows stored before their predecessors"
S=$(summary t_reuse)
like "$S" "^120 rows, a window of 16 rows, [1-9][0-9]* rows waited for predecessors outside it, in one scan$" \
	"2: ... rows waited for predecessors stored after them ($S)"
is "$(q $CL $DB "SELECT ok FROM trialvault.verify('t_reuse')")" t "2: ... and the table verifies"

# --- 3. a predecessor far back, referred to twice ------------------------------------
q $CL $DB "CREATE TABLE t_long (body text); SELECT trialvault.protect('t_long')" >/dev/null
ins t_long 1 5
sess_run a "BEGIN; INSERT INTO t_long VALUES ('long');"
ins t_long 6 60
sess_run a "COMMIT;"
sess_run a "BEGIN; INSERT INTO t_long VALUES ('after a');"
sess_run b "BEGIN; INSERT INTO t_long VALUES ('after b');"
sess_run a "COMMIT;"
sess_run b "COMMIT;"
ins t_long 61 80
is "$(q $CL $DB "SELECT count(*) FROM t_long r, t_long l WHERE l.body = 'long' AND l.tv_seq = ANY (r.tv_prev_seqs)")" 2 \
	"3: the long transaction's row is referred to by two rows, 56 rows after it"
agree3 t_long "3: a predecessor far back"
S=$(summary t_long)
like "$S" "^83 rows, a window of 16 rows, [1-9][0-9]* rows waited for predecessors outside it, with a second scan of the chain columns$" \
	"3: ... the second reference waited for a second scan ($S)"
is "$(q $CL $DB "SELECT ok, heads FROM trialvault.verify('t_long')")" "t|1" "3: ... and the table verifies, one head"
sess_close a
sess_close b

# --- 3b. the chain state rebuilt after a restart, in the same bounded memory ----------
# The first insert after a restart rebuilds the table's heads from the table
# with verify()'s scan (window 16 here): the new row must refer to exactly
# the heads there were, and leave one.
# t_lhead: one of its two heads is stored 40 rows before the other (a
# transaction open meanwhile), so the rebuild finds it among the rows that
# left the window unreferenced.
q $CL $DB "CREATE TABLE t_lhead (body text); SELECT trialvault.protect('t_lhead')" >/dev/null
ins t_lhead 1 3
sess_open $CL $DB a -At
sess_run a "BEGIN; INSERT INTO t_lhead VALUES ('long head');"
ins t_lhead 4 43
sess_run a "COMMIT;"
sess_close a
declare -A H0
for t in t_fork t_reuse t_long t_lhead; do H0[$t]=$(q $CL $DB "SELECT heads FROM trialvault.verify('$t')"); done
is "${H0[t_lhead]}" 2 "3b: t_lhead has two heads, 40 rows apart"
tv_cluster_stop $CL
tv_cluster_restart $CL
for t in t_fork t_reuse t_long t_lhead; do
	q $CL $DB "SET trialvault.verify_window = 16; INSERT INTO $t VALUES ('after the restart')" >/dev/null
	is "$(q $CL $DB "SELECT cardinality(tv_prev_seqs) FROM $t WHERE body = 'after the restart'"):$(q $CL $DB "SELECT ok, heads FROM trialvault.verify('$t')")" \
		"${H0[$t]}:t|1" "3b: $t after a restart: the first row refers to all ${H0[$t]} heads the rebuild found, and verifies"
done
like "$(summary t_fork)" "^91 rows" "3b: (t_fork has its row)"

# --- 5. verify_digest follows the chain back through the index ------------------------
DIG=$(q $CL $DB "SELECT trialvault.signed_digest('t_reuse')")
ins t_reuse 121 130
printf '%s' "$DIG" >"$VXD/dig"
extends() { tv_psql $CL -d $DB -At -F ' | ' -v d="$(cat "$VXD/dig")" <<<"${VERIFY_SET:-}SELECT extends, detail FROM trialvault.verify_digest('$1', :'d')"; }
is "$(VERIFY_SET="SET trialvault.verify_window = 16;" extends t_reuse)" \
	"t | every one of the 121 rows the digest covered is present and unchanged; 10 rows were added since" \
	"5: verify_digest on the reordered table, window 16"
DIG=$(q $CL $DB "SELECT trialvault.signed_digest('t_fork')")
printf '%s' "$DIG" >"$VXD/dig"
ins t_fork 1 3
is "$(extends t_fork)" \
	"t | every one of the 91 rows the digest covered is present and unchanged; 3 rows were added since" \
	"5: verify_digest on the forked table"
q $CL $DB "DROP INDEX t_fork_tv_seq_idx" >/dev/null
like "$(extends t_fork)" "^f \| table t_fork has no ascending B-tree index on tv_seq, which following the chain back from the digest's heads needs \(CREATE UNIQUE INDEX ON t_fork \(tv_seq\)" \
	"5: ... without the tv_seq index it does not vouch, and says why"
is "$(q $CL $DB "SELECT ok FROM trialvault.verify('t_fork')")" t "5: ... verify() itself needs no index"
q $CL $DB "CREATE INDEX t_fork_by_hash ON t_fork USING hash (tv_seq)" >/dev/null
like "$(extends t_fork)" "^f \| table t_fork has no ascending B-tree index on tv_seq" "5: ... a hash index does not do"
q $CL $DB "CREATE INDEX t_fork_desc ON t_fork (tv_seq DESC)" >/dev/null
like "$(extends t_fork)" "^f \| table t_fork has no ascending B-tree index on tv_seq" "5: ... nor a descending one"
q $CL $DB "CREATE UNIQUE INDEX ON t_fork (tv_seq)" >/dev/null
like "$(extends t_fork)" "^t \| every one of the 91 rows" "5: ... recreated, it vouches again"

# --- 4. changed behind the guards --------------------------------------------------
guards t_reuse D
# The successor of the removed row is stored before it.
GONE=$(q $CL $DB "SELECT p.tv_seq FROM t_reuse r JOIN t_reuse p ON p.tv_seq = ANY (r.tv_prev_seqs)
                   WHERE p.ctid > r.ctid ORDER BY p.tv_seq LIMIT 1")
q $CL $DB "DELETE FROM t_reuse WHERE tv_seq = $GONE" >/dev/null
guards t_reuse A
agree3 t_reuse "4: a row removed whose successor is stored before it"
like "$V_FIRST_BAD" "its predecessor tv_seq=$GONE is missing" "4: ... named as missing"
guards t_reuse D
q $CL $DB "UPDATE t_reuse SET body = 'changed' WHERE body LIKE 'r3 %'" >/dev/null
guards t_reuse A
agree3 t_reuse "4: ... and a row changed"
guards t_long D
q $CL $DB "DROP INDEX t_long_tv_seq_idx" >/dev/null
q $CL $DB "INSERT INTO t_long SELECT * FROM t_long WHERE body IN ('long', repeat('r2 ', 100), repeat('r7 ', 100))" >/dev/null
guards t_long A
agree3 t_long "4: old rows duplicated at the end"
is "$V_BAD_ROWS" 3 "4: ... each copy counted"
like "$V_FIRST_BAD" "^row tv_seq=$(q $CL $DB "SELECT min(tv_seq) FROM t_long WHERE body = repeat('r2 ', 100)") ctid=\\([0-9]+,[0-9]+\\): another row has the same tv_seq$" \
	"4: ... the first copy by ctid is the row, the later one named"

# --- 6. the setting --------------------------------------------------------------
is "$(q $CL $DB "SHOW trialvault.verify_window")" 65536 "6: the default window is 65536 rows"
is "$(sqlstate_of $CL $DB "SET trialvault.verify_window = 15")" 22023 "6: fewer than 16 rows: 22023"
is "$(sqlstate_of $CL $DB "SET trialvault.verify_window = 'many'")" 22023 "6: not a number: 22023"
is "$(sqlstate_of $CL $DB "SET trialvault.verify_window = 10000001")" 22023 "6: more than 10 million: 22023"

done_testing

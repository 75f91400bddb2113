#!/usr/bin/env bash
# 79_verify_parallel.sh: verify() with parallel workers gives the same
# verdict as without, whatever the table looks like and however the work
# is shared, and fails closed when the workers cannot finish.
#
# With trialvault.verify_workers > 0 and a table of at least
# min_parallel_table_scan_size (0 here, so small tables are cut into parts
# of one block), workers read and hash parts of the table and the leader
# links the rows in storage order.  Each verdict is compared field by field
# with verify_workers = 0 (and, for the tampered tables, with the export
# verifier):
#
#   1. a table of many parts with 4 KB values, intact, then tampered in
#      several parts (a changed row, a removed row, a duplicated row);
#   2. forks, and rows stored before their predecessors (space reused);
#   3. rows inserted in the verifying transaction itself, a repeatable read
#      snapshot that does not see rows committed after it, and verify called
#      from statements that write (INSERT ... SELECT signed_digest(), a
#      data-modifying WITH);
#   4. no workers to be had (max_parallel_workers = 0): verified alone;
#      statement_timeout cancels a parallel verify and the next one works;
#      verify in a subtransaction rolled back; a worker terminated, and one
#      killed with SIGKILL (the server restarts): no verdict, the next whole;
#   5. the setting refuses values out of range.
set -euo pipefail
source "$(dirname "$0")/../lib/cluster.sh"
source "$(dirname "$0")/lib/helpers.sh"

CL=c79
DB=postgres

tv_cluster_start $CL "trialvault.audit_logins = off" "max_worker_processes = 16" "max_parallel_workers = 8"
source "$(dirname "$0")/lib/vx.sh"

q $CL $DB "SET client_min_messages = warning; CREATE EXTENSION trialvault CASCADE" >/dev/null
random_bytes_function $CL $DB

PAR="SET min_parallel_table_scan_size = 0; SET trialvault.verify_workers = 2;"

# verdict SETTINGS TABLE: verify's result as one line.
verdict() {
	VERIFY_SET="$1" verify_into $CL $DB "$2"
	echo "ok=$V_OK rows=$V_ROWS bad_rows=$V_BAD_ROWS heads=$V_HEADS digest=$V_DIGEST first_bad=[$V_FIRST_BAD]"
}

# workers TABLE: how many parallel workers verify's DEBUG1 line says it used.
workers() {
	tv_psql $CL -d $DB -At 2>&1 <<SQL | sed -n 's/.*DEBUG:  trialvault verify read "[^"]*" with \([0-9]*\) parallel workers, in parts of \([0-9]*\) blocks$/\1 workers, parts of \2/p'
$PAR
SET client_min_messages = debug1;
SELECT ok FROM trialvault.verify('$1');
SQL
}

# same TABLE DESC: parallel and alone agree.
same() {
	local alone
	alone=$(verdict "SET trialvault.verify_workers = 0;" "$1")
	is "$(verdict "$PAR" "$1")" "$alone" "$2: with parallel workers and alone, the same verdict"
}

# --- 1. many parts, 4 KB values --------------------------------------------------------
tv_psql $CL -d $DB >/dev/null <<'SQL'
CREATE TABLE t_big (n int, subject text, body bytea);
SELECT trialvault.protect('t_big');
INSERT INTO t_big SELECT g, 'S-' || g, rnd(4000) FROM generate_series(1, 1500) g;
SQL
is "$(q $CL $DB "SELECT pg_relation_size('t_big') / 8192 >= 8")" t "1: t_big has at least 8 blocks"
is "$(workers t_big)" "2 workers, parts of 1" "1: verify used 2 parallel workers, in parts of one block"
is "$(q $CL $DB "$PAR SELECT ok, rows_checked FROM trialvault.verify('t_big')")" "t|1500" "1: intact, 1500 rows"
same t_big "1: intact"
is "$(tv_psql $CL -d $DB -At 2>&1 <<SQL | grep -c 'looked up 0 through the TOAST index'
$PAR
SET client_min_messages = debug1;
SELECT ok FROM trialvault.verify('t_big');
SQL
)" 1 "1: ... every value read in step by the workers"

guards t_big D
q $CL $DB "UPDATE t_big SET subject = 'changed' WHERE n IN (1400, 700)" >/dev/null
q $CL $DB "DELETE FROM t_big WHERE n = 1000" >/dev/null
q $CL $DB "DROP INDEX t_big_tv_seq_idx; INSERT INTO t_big SELECT * FROM t_big WHERE n = 300" >/dev/null
guards t_big A
VERDICT=$(verdict "$PAR" t_big)
like "$VERDICT" "^ok=f rows=1500 bad_rows=4 " "1: tampered in several parts: 4 rows bad (2 changed, the successor of a removed one, a copy)"
like "$VERDICT" "first_bad=\\[row tv_seq=$(q $CL $DB "SELECT min(tv_seq) FROM t_big WHERE n = 300") ctid=\\([0-9]+,[0-9]+\\): another row has the same tv_seq\\]" \
	"1: ... the first by tv_seq named: the copy of row 300"
same t_big "1: tampered"
VERIFY_SET="$PAR" agree t_big "1: ... and the export verifier agrees"

# --- 2. forks, and rows stored before their predecessors --------------------------------
q $CL $DB "CREATE TABLE t_fork (body text); SELECT trialvault.protect('t_fork'); ALTER TABLE t_fork SET (autovacuum_enabled = off)" >/dev/null
sess_open $CL $DB a -At
sess_open $CL $DB b -At
for i in $(seq 1 25); do
	sess_run a "BEGIN; INSERT INTO t_fork SELECT repeat('a $i ', 50) FROM generate_series(1, 10);"
	sess_run b "BEGIN; INSERT INTO t_fork SELECT repeat('b $i ', 50) FROM generate_series(1, 10);"
	sess_run a "COMMIT;"
	sess_run b "COMMIT;"
done
sess_close a
sess_close b
q $CL $DB "BEGIN; INSERT INTO t_fork SELECT repeat('aborted', 60) FROM generate_series(1, 300); ROLLBACK" >/dev/null
q $CL $DB "VACUUM t_fork" >/dev/null
for i in $(seq 1 40); do echo "INSERT INTO t_fork VALUES (repeat('late $i ', 40));"; done | tv_psql $CL -d $DB >/dev/null
is "$(q $CL $DB "SELECT count(*) > 0 FROM t_fork r JOIN t_fork p ON p.tv_seq = ANY (r.tv_prev_seqs) WHERE p.ctid > r.ctid")" t \
	"2: rows stored before a predecessor"
is "$(q $CL $DB "SELECT count(*) > 0 FROM t_fork WHERE cardinality(tv_prev_seqs) > 1")" t "2: ... and forks"
like "$(workers t_fork)" "^2 workers, parts of 1$" "2: ... verified by 2 parallel workers"
is "$(q $CL $DB "$PAR SELECT ok, rows_checked FROM trialvault.verify('t_fork')")" "t|540" "2: ... intact, 540 rows"
same t_fork "2: forks and reused space"
guards t_fork D
q $CL $DB "DELETE FROM t_fork WHERE tv_seq = (SELECT p.tv_seq FROM t_fork r JOIN t_fork p ON p.tv_seq = ANY (r.tv_prev_seqs) WHERE p.ctid > r.ctid ORDER BY 1 LIMIT 1)" >/dev/null
guards t_fork A
same t_fork "2: a row removed whose successor is stored before it"

# --- 3. the verifying transaction's own rows, and its snapshot ---------------------------
is "$(q $CL $DB "BEGIN; INSERT INTO t_big (n, subject, body) SELECT 9000 + g, 'new', rnd(4000) FROM generate_series(1, 50) g;
                 $PAR SELECT rows_checked FROM trialvault.verify('t_big'); ROLLBACK" | tail -n 1)" 1550 \
	"3: rows inserted by the verifying transaction are verified by the workers too"
sess_open $CL $DB r -At
sess_run r "$PAR BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM t_fork;"
q $CL $DB "INSERT INTO t_fork SELECT repeat('after', 10) FROM generate_series(1, 30)" >/dev/null
is "$(sess_query r "SELECT rows_checked FROM trialvault.verify('t_fork');")" 539 \
	"3: a repeatable read snapshot: the workers do not see rows committed after it"
sess_run r "COMMIT;"
sess_close r

# Called from a statement that writes: the workers start and end within it.
q $CL $DB "CREATE TABLE digests (d text); CREATE TABLE t_ok (n int, body text); SELECT trialvault.protect('t_ok');
           INSERT INTO t_ok SELECT g, repeat('ok ', 50) FROM generate_series(1, 2000) g" >/dev/null
like "$(q $CL $DB "$PAR SET client_min_messages = debug1; INSERT INTO digests SELECT trialvault.signed_digest('t_ok')" 2>&1)" \
	"trialvault verify read \"t_ok\" with 2 parallel workers" "3: signed_digest in an INSERT ... SELECT: verified with 2 workers"
is "$(q $CL $DB "SELECT count(*) FROM digests WHERE d LIKE '%head-digest: %' AND d LIKE '%rows: 2000%'")" 1 "3: ... and the digest is stored"
is "$(q $CL $DB "$PAR WITH ins AS (INSERT INTO digests VALUES ('x') RETURNING 1)
                 SELECT v.ok, v.rows_checked FROM ins, trialvault.verify('t_ok') v")" "t|2000" \
	"3: verify beside a data-modifying WITH: the same verdict"

# --- 4. no workers, cancelled, rolled back -----------------------------------------------
is "$(q $CL $DB "$PAR SET max_parallel_workers = 0; SELECT ok, rows_checked FROM trialvault.verify('t_big')" | tail -n 1)" "f|1500" \
	"4: no workers to be had: verified alone, same verdict"
is "$(q $CL $DB "$PAR SET max_parallel_workers = 0; SET client_min_messages = debug1; SELECT ok FROM trialvault.verify('t_big')" 2>&1 | grep -c 'parallel workers')" 0 \
	"4: ... and it says of no parallel workers"
q $CL $DB "CREATE TABLE t_huge (body bytea); SELECT trialvault.protect('t_huge');
           INSERT INTO t_huge SELECT rnd(4000) FROM generate_series(1, 20000)" >/dev/null
T0=$(date +%s%N)
is "$(q $CL $DB "$PAR SELECT ok, rows_checked FROM trialvault.verify('t_huge')")" "t|20000" "4: t_huge, 20000 rows of 4 KB: intact"
MS=$((($(date +%s%N) - T0) / 1000000))
is "$(sqlstate_of $CL $DB "$PAR SET statement_timeout = '$((MS / 4 + 1))ms'; SELECT trialvault.verify('t_huge')")" 57014 \
	"4: statement_timeout at a quarter of its time ($((MS / 4 + 1)) ms) cancels a parallel verify (57014)"
is "$(q $CL $DB "$PAR SELECT ok, rows_checked FROM trialvault.verify('t_huge')")" "t|20000" "4: ... and the next one works"
is "$(q $CL $DB "$PAR BEGIN; SAVEPOINT s; SELECT rows_checked FROM trialvault.verify('t_big'); ROLLBACK TO s;
                 SELECT rows_checked FROM trialvault.verify('t_fork'); COMMIT" | tail -n 1)" 569 \
	"4: in a subtransaction rolled back, and again after it"
is "$(q $CL $DB "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'parallel worker'")" 0 "4: no worker left running"

# A worker stopped mid-verify (terminated, then killed with SIGKILL): the
# verify fails and returns no verdict; the next one is whole.
worker_pid() {
	q $CL $DB "SELECT pid FROM pg_stat_activity WHERE backend_type = 'parallel worker' LIMIT 1"
}
has_worker() {
	[ -n "$(worker_pid)" ]
}
server_up() {
	q $CL $DB "SELECT 1" >/dev/null 2>&1
}
session_ended() {
	! kill -0 "${TV_SESS_PID[v]}" 2>/dev/null
}
# (By process title, among this cluster's processes: a lookup through SQL
# may find a worker that has ended.)
stop_worker() {
	local postmaster
	postmaster=$(head -n 1 "$(tv_dir $CL)/data/postmaster.pid" 2>/dev/null || true)
	if [ -n "$postmaster" ]; then
		if [ "$1" = terminated ]; then
			pkill -TERM -P "$postmaster" -f 'parallel worker for PID' 2>/dev/null || true
		else
			pkill -KILL -P "$postmaster" -f 'parallel worker for PID' 2>/dev/null || true
		fi
	fi
	sleep 0.05
	session_ended
}
for how in terminated killed; do
	sess_open $CL $DB v -At
	sess_send v "$PAR SELECT 'verdicts', sum((trialvault.verify('t_huge')).rows_checked) FROM generate_series(1, 50);"
	check "4: a parallel worker of verify is running" wait_until "a parallel worker" 30 has_worker
	# Each verify has its own workers: stop whichever is running, until one
	# is caught while it runs and the session ends.
	check "4: ... $how: the verifying session ends with an error" wait_until "the session to end" 60 stop_worker $how
	sess_close v || true
	OUT=$(cat "$(sess_outfile v)")
	if [ $how = terminated ]; then
		like "$OUT" "ERROR:  57P01: terminating background worker \"parallel worker\" due to administrator command" "4: ... the worker's error, raised by verify"
	else
		like "$OUT" "terminat|closed the connection" "4: ... the server restarted all sessions"
		check "4: ... the server is back" wait_until "the server to accept connections" 60 server_up
	fi
	check "4: ... no verdict returned" lacks "$OUT" "verdicts"
	is "$(q $CL $DB "$PAR SELECT ok, rows_checked FROM trialvault.verify('t_huge')")" "t|20000" "4: ... the next verify is whole"
done

# --- 5. the setting ------------------------------------------------------------------------
is "$(q $CL $DB "SHOW trialvault.verify_workers")" 2 "5: 2 workers by default"
is "$(sqlstate_of $CL $DB "SET trialvault.verify_workers = -1")" 22023 "5: negative: 22023"
is "$(sqlstate_of $CL $DB "SET trialvault.verify_workers = 65")" 22023 "5: more than 64: 22023"
is "$(sqlstate_of $CL $DB "SET trialvault.verify_workers = 'two'")" 22023 "5: not a number: 22023"

done_testing

#!/usr/bin/env bash
# 20_crash.sh: crashes in the middle of concurrent inserts.
#
# The chain state (heads, last tv_seq) lives only in shared memory and is
# rebuilt from the table on first use after a restart, so a crash at any
# moment, with transactions in flight, some of them committed
# asynchronously, must leave a table that verifies, and inserts after the
# restart must join the heads found in the table.
#
#   1. pgbench (synchronous and synchronous_commit = off clients, some
#      transactions rolling back, some rows TOASTed) and an open
#      transaction, then an immediate stop; after the restart verify ok,
#      and the first new row joins exactly the rows no row refers to;
#   2. more load, a second crash, the same checks again.
set -euo pipefail
source "$(dirname "$0")/../lib/cluster.sh"
source "$(dirname "$0")/lib/helpers.sh"

tv_cluster_start c2
q c2 postgres "CREATE EXTENSION trialvault CASCADE" >/dev/null 2>&1
tv_psql c2 -d postgres >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE TABLE obs (
	id bigserial PRIMARY KEY,
	client int NOT NULL,
	doomed boolean NOT NULL,
	body text
);
SELECT trialvault.protect('obs');
INSERT INTO obs (client, doomed, body) VALUES (0, false, 'before any crash');
SQL

work=$(tv_dir c2)/pgbench
mkdir -p "$work"
# 1-3 rows, every 10th transaction with a large incompressible (TOASTed)
# body, a fifth rolled back, a savepoint rolled back now and then.
cat >"$work/insert.sql" <<'EOF'
\set n random(1, 3)
\set r random(1, 100)
\set doomed case when :r <= 20 then 1 else 0 end
\set big case when :r % 10 = 0 then 1 else 0 end
BEGIN;
INSERT INTO obs (client, doomed, body) SELECT :client_id, :doomed::int::boolean, CASE WHEN :big = 1 THEN (SELECT string_agg(md5(g::text || random()::text), '') FROM generate_series(1, 200) g) ELSE 'row ' || s END FROM generate_series(1, :n) s;
\if :r > 90
SAVEPOINT s;
INSERT INTO obs (client, doomed, body) VALUES (:client_id, true, 'in savepoint');
ROLLBACK TO SAVEPOINT s;
INSERT INTO obs (client, doomed, body) VALUES (:client_id, :doomed::int::boolean, 'after savepoint');
\endif
\if :doomed
ROLLBACK;
\else
COMMIT;
\endif
EOF

PGB_PIDS=()
start_load() {
	local secs=$1
	PGB_PIDS=()
	"$PGBIN/pgbench" -h "$(tv_dir c2)" -p "$(tv_port c2)" -U postgres -n -c 3 -j 1 -T "$secs" \
		-f "$work/insert.sql" postgres >"$work/pgbench-sync.out" 2>&1 &
	PGB_PIDS+=($!)
	PGOPTIONS="-c synchronous_commit=off" \
		"$PGBIN/pgbench" -h "$(tv_dir c2)" -p "$(tv_port c2)" -U postgres -n -c 3 -j 1 -T "$secs" \
		-f "$work/insert.sql" postgres >"$work/pgbench-async.out" 2>&1 &
	PGB_PIDS+=($!)
}

# The pgbench clients lose their connections at the crash: their exit
# status says nothing here.
reap_load() {
	local p
	for p in "${PGB_PIDS[@]}"; do wait "$p" || true; done
}

rows_at_least() {
	[ "$(q c2 postgres "SELECT count(*) >= $1 FROM obs" 2>/dev/null)" = t ]
}

# The heads as the table shows them: rows no row refers to.
table_heads() {
	q c2 postgres "SELECT coalesce(array_agg(tv_seq ORDER BY tv_seq), '{}')::text FROM obs o
	                WHERE NOT EXISTS (SELECT 1 FROM obs r WHERE o.tv_seq = ANY (r.tv_prev_seqs))"
}

crash_count=0
crash() {
	crash_count=$((crash_count + 1))
	tv_cluster_crash c2
	reap_load
	check "crash $crash_count: the server is down" [ ! -f "$(tv_dir c2)/data/postmaster.pid" ]
}

restart() {
	tv_cluster_restart c2
	# The log names the recovery, so this really was a crash.
	is "$(grep -c 'was not properly shut down; automatic recovery' "$(tv_dir c2)/server.log" || true)" \
		"$crash_count" "crash $crash_count: the restart ran crash recovery"
}

after_crash_checks() {
	local label=$1 count heads max_before newseq
	count=$(q c2 postgres "SELECT count(*) FROM obs")
	verify_into c2 postgres obs
	is "$V_OK" t "$label: verify ok after the crash"
	is "$V_ROWS" "$count" "$label: rows_checked = count(*) ($count)"
	is "$V_BAD_ROWS" 0 "$label: bad_rows = 0"
	is "$V_GUARD" intact "$label: guard intact"
	check "$label: 1 <= heads ($V_HEADS) <= 7 (6 clients + 1 session)" between 1 "$V_HEADS" 7
	is "$(q c2 postgres "SELECT count(*) FROM obs WHERE doomed")" 0 "$label: no row of an aborted transaction survived"
	is "$(q c2 postgres "SELECT count(*) FROM obs WHERE body = 'open at crash'")" 0 \
		"$label: the transaction open at the crash is gone"

	heads=$(table_heads)
	max_before=$(q c2 postgres "SELECT max(tv_seq) FROM obs")

	# The first insert after the restart rebuilds the chain state from the
	# table; its transaction rolls back, which must not disturb that state.
	q c2 postgres "BEGIN; INSERT INTO obs (client, doomed, body) VALUES (0, true, 'first after restart'); ROLLBACK;"
	q c2 postgres "INSERT INTO obs (client, doomed, body) VALUES (0, false, '$label probe')"
	is "$(q c2 postgres "SELECT tv_prev_seqs::text FROM obs WHERE body = '$label probe'")" "$heads" \
		"$label: the first row after the restart is chained to every head in the table ($heads)"
	newseq=$(q c2 postgres "SELECT tv_seq FROM obs WHERE body = '$label probe'")
	check "$label: its tv_seq ($newseq) continues after the largest one in the table ($max_before)" \
		[ "$newseq" -gt "$max_before" ]
	verify_into c2 postgres obs
	is "$V_OK:$V_HEADS" "t:1" "$label: verify ok with one head after the probe row"
}

# --- 1. first crash -----------------------------------------------------------

start_load 60
check "the load inserted 1000 rows" wait_until "load to insert 1000 rows" 60 rows_at_least 1000
sess_open c2 postgres open
check "a session holds inserted rows uncommitted" sess_run open \
	"BEGIN; INSERT INTO obs (client, doomed, body) VALUES (-1, true, 'open at crash');"
sleep 1
crash
sess_close open || true
restart
after_crash_checks "crash 1"

# --- 2. load again, second crash ------------------------------------------------

count_before=$(q c2 postgres "SELECT count(*) FROM obs")
start_load 60
check "the load runs on after the first crash (1000 more rows)" \
	wait_until "load to insert 1000 more rows" 60 rows_at_least $((count_before + 1000))
crash
restart
after_crash_checks "crash 2"

# --- 3. a clean run to the end after the crashes ----------------------------

start_load 3
reap_load
count=$(q c2 postgres "SELECT count(*) FROM obs")
verify_into c2 postgres obs
is "$V_OK:$V_ROWS:$V_BAD_ROWS" "t:$count:0" "after more load: verify ok, rows_checked = count(*) ($count)"
is "$(q c2 postgres "SELECT count(*) = count(DISTINCT tv_seq) FROM obs")" t "tv_seq values are unique across the crashes"
toast=$(q c2 postgres "SELECT reltoastrelid::regclass FROM pg_class WHERE oid = 'obs'::regclass")
toasted=$(q c2 postgres "SELECT count(DISTINCT chunk_id) FROM $toast")
check "rows with TOASTed bodies were part of it ($toasted TOAST values)" [ "$toasted" -gt 0 ]

done_testing

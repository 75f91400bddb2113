#!/usr/bin/env bash
# bench/backup_bench.sh: the backup shipper against a second local cluster
# (the repository), 4 KB documents in a protected table.  Three parts:
#
#   lag        documents inserted at a steady BENCH_RATE rows/s (pgbench -R)
#              for BENCH_LAG_SECONDS with the shipper running; a row's lag is
#              the time from its INSERT to the repository's commit of the
#              batch that holds it (batches.received_at, the same machine's
#              clock).  Target: p95 <= BENCH_LAG_TARGET seconds.
#   throughput inserts as fast as BENCH_CLIENTS clients go, the shipper on
#              (trialvault.backup_conninfo set, caught up when the run
#              starts) against off (empty: no shipper runs), alternating run
#              by run, BENCH_ROUNDS rounds of BENCH_SECONDS per side.  Target:
#              on/off >= BENCH_TARGET (ratio of medians and paired ratio).
#              A saturated server is "busy": the shipper holds rows back for
#              up to trialvault.backup_max_defer (BENCH_MAX_DEFER), so each
#              on run also prints the rows left to ship at its end and how
#              long the shipper then took to ship them.
#   catch-up   the repository stopped for BENCH_OUTAGE seconds while rows
#              come at BENCH_RATE rows/s, then started, the inserts going
#              on: the rows shipped per second until the shipper has caught
#              up.  Target: >= 5 x BENCH_RATE.
#
# The shipper runs with trialvault.backup_naptime = BENCH_NAPTIME and the
# default backup_batch_rows (1000).  PASS/FAIL is printed per part; the
# script exits 0 unless something went wrong (a row missing on the
# repository, pgbench errors).
#
# Usage (as root, from anywhere):
#   bash bench/backup_bench.sh            full run (about 6 minutes)
#   bash bench/backup_bench.sh --quick    about 2 minutes
#
# Environment (defaults; --quick ones in brackets):
#   BENCH_RATE=500             rows/s for the lag and catch-up parts
#   BENCH_LAG_SECONDS=30 [15]  length of the lag part
#   BENCH_LAG_TARGET=1.0       p95 lag target, seconds
#   BENCH_NAPTIME=200ms        trialvault.backup_naptime
#   BENCH_SECONDS=10 [5]       length of each throughput run, per side
#   BENCH_ROUNDS=5 [2]         throughput rounds; each runs both sides once
#   BENCH_CLIENTS=4            throughput clients
#   BENCH_TARGET=0.9           minimum throughput on/off
#   BENCH_OUTAGE=60 [20]       seconds the repository is down
#   BENCH_MAX_DEFER=60s        trialvault.backup_max_defer: how long the shipper
#                              may hold rows back while the server is busy
#                              (0 measures the shipper working through a
#                              saturated server)
#   BENCH_NICE                 trialvault.backup_nice (unset: the default)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
# shellcheck source=bench/common.sh
source "$HERE/common.sh"
CMDLINE=$(command_line BENCH_RATE BENCH_LAG_SECONDS BENCH_LAG_TARGET BENCH_NAPTIME BENCH_SECONDS BENCH_ROUNDS \
	BENCH_CLIENTS BENCH_TARGET BENCH_OUTAGE BENCH_MAX_DEFER BENCH_NICE -- "$0" "$@")

parse_common_args "$(basename "$0")" "$@"
if [ -n "$quick" ]; then
	: "${BENCH_LAG_SECONDS:=15}" "${BENCH_SECONDS:=5}" "${BENCH_ROUNDS:=2}" "${BENCH_OUTAGE:=20}"
fi
: "${BENCH_RATE:=500}" "${BENCH_LAG_SECONDS:=30}" "${BENCH_LAG_TARGET:=1.0}" "${BENCH_NAPTIME:=200ms}"
: "${BENCH_SECONDS:=10}" "${BENCH_ROUNDS:=5}" "${BENCH_CLIENTS:=4}" "${BENCH_TARGET:=0.9}" "${BENCH_OUTAGE:=60}"
: "${BENCH_MAX_DEFER:=60s}"
for v in BENCH_RATE BENCH_LAG_SECONDS BENCH_SECONDS BENCH_ROUNDS BENCH_CLIENTS BENCH_OUTAGE; do
	if ! [[ ${!v} =~ ^[0-9]+$ ]] || [ "${!v}" -lt 1 ]; then
		echo "backup_bench.sh: $v must be a positive integer, not '${!v}'" >&2
		exit 2
	fi
done
SIDES=(on off)

# shellcheck source=test/lib/cluster.sh
source "$REPO/test/lib/cluster.sh"
# shellcheck source=test/lib/backups.sh
source "$REPO/test/lib/backups.sh"

CONF=(
	"shared_buffers = 256MB"
	"max_wal_size = 4GB"
	"checkpoint_timeout = 30min"
	"synchronous_commit = on"
	"autovacuum = off"
	"trialvault.audit_logins = off"
	"trialvault.backup_naptime = '$BENCH_NAPTIME'"
	"trialvault.backup_max_defer = '$BENCH_MAX_DEFER'"
	${BENCH_NICE:+"trialvault.backup_nice = $BENCH_NICE"}
)
est=$((BENCH_LAG_SECONDS + BENCH_ROUNDS * 2 * (BENCH_SECONDS + 4) + BENCH_OUTAGE * 2 + 60))

echo "# trialvault backup shipping benchmark"
echo "# command:    $CMDLINE"
bench_context
echo "# settings:   BENCH_RATE=$BENCH_RATE BENCH_LAG_SECONDS=$BENCH_LAG_SECONDS BENCH_LAG_TARGET=$BENCH_LAG_TARGET BENCH_NAPTIME=$BENCH_NAPTIME BENCH_SECONDS=$BENCH_SECONDS BENCH_ROUNDS=$BENCH_ROUNDS BENCH_CLIENTS=$BENCH_CLIENTS BENCH_TARGET=$BENCH_TARGET BENCH_OUTAGE=$BENCH_OUTAGE BENCH_MAX_DEFER=$BENCH_MAX_DEFER"
echo "# servers:    two fresh local clusters (the second is the repository, prepared by trialvault-remote-init), unix sockets, fsync = on"
echo "# workload:   INSERT of one 4 KB document (base64 of random bytes) per transaction into a protected table"
echo "# estimated:  ~$((est / 60)) min $((est % 60)) s"
note_other_load
echo

tv_backup_setup "$REPO"
tv_cluster_start bench "${CONF[@]}" "trialvault.backup_public_key_file = '$KEYDIR/backup-public.asc'"
tv_use bench
DIR=$(tv_dir bench)
echo "== setup: a protected table of 4 KB documents"
sql >/dev/null <<-'SQL'
	SET client_min_messages = warning;
	CREATE EXTENSION trialvault CASCADE;
	CREATE TABLE docs (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp(), body text NOT NULL);
	SELECT trialvault.protect('docs');
SQL
echo "INSERT INTO docs (body) VALUES (encode(gen_random_bytes(1024) || gen_random_bytes(1024) || gen_random_bytes(1024), 'base64'));" >"$DIR/insert.sql"
rq() { tv_psql repo -d postgres -At -c "$1"; }
# wait_in_session CLUSTER SECONDS CONDITION INTERVAL: wait, in one session
# of CLUSTER, until the SQL boolean CONDITION holds (false after SECONDS).
wait_in_session() {
	tv_psql "$1" -d postgres -X -q -v ON_ERROR_STOP=1 -c "SET statement_timeout = '${2}s'" \
		-c "DO \$\$ BEGIN WHILE NOT coalesce($3, false) LOOP PERFORM pg_sleep($4); END LOOP; END \$\$" >/dev/null 2>&1
}
SYS=$(sql -At -c "SELECT system_identifier FROM pg_control_system()").postgres

# shipping SIDE: turn the shipper on (the repository configured) or off.
shipping() {
	if [ "$1" = on ]; then
		sql -c "ALTER SYSTEM SET trialvault.backup_conninfo = '$REMOTE'" -c "SELECT pg_reload_conf()" >/dev/null
		wait_until "a shipper" 40 bash -c "[ \"\$($PGBIN/psql -X -At -h $DIR -p $(tv_port bench) -U postgres -d postgres -c \"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'trialvault backup shipper'\")\" = 1 ]" ||
			die "no shipper started"
	else
		sql -c "ALTER SYSTEM SET trialvault.backup_conninfo = ''" -c "SELECT pg_reload_conf()" >/dev/null
		wait_until "no shipper" 20 bash -c "[ \"\$($PGBIN/psql -X -At -h $DIR -p $(tv_port bench) -U postgres -d postgres -c \"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'trialvault backup shipper'\")\" = 0 ]" ||
			die "the shipper did not stop"
	fi
}
caught_up() {
	[ "$(sql -At -c "SELECT lag_rows FROM trialvault.backup_status WHERE table_name = 'docs'::regclass")" = 0 ]
}
# pgbench_run ARGS...: pgbench with the insert script; sets TPS.
pgbench_run() {
	local out
	if ! out=$("$PGBIN/pgbench" -n -f "$DIR/insert.sql" "$@" postgres 2>&1); then
		echo "$out" >&2
		die "pgbench failed"
	fi
	TPS=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)$/\1/p' <<<"$out")
	[ -n "$TPS" ] || TPS=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' <<<"$out" | head -1)
}

# --- lag ------------------------------------------------------------------------------
echo "== lag: $BENCH_RATE rows/s for ${BENCH_LAG_SECONDS}s, the shipper on (naptime $BENCH_NAPTIME)"
shipping on
wait_until "the shipper to catch up" 60 caught_up || die "the shipper did not catch up before the lag run"
FIRST=$(sql -At -c "SELECT coalesce(max(tv_seq), 0) FROM docs")
pgbench_run -R "$BENCH_RATE" -c 2 -j 2 -T "$BENCH_LAG_SECONDS"
wait_until "the shipper to catch up" 60 caught_up || die "the shipper did not catch up after the lag run"
rq "SELECT first_seq, last_seq, received_at FROM trialvault_repo.batches WHERE system_id = '$SYS' AND table_name = 'public.docs' AND last_seq > $FIRST" >"$DIR/batches.txt"
chmod 644 "$DIR/batches.txt"
read -r NROWS MISSING P50 P95 MAXLAG < <(sql -At -F ' ' <<-SQL
	CREATE TEMP TABLE b (first_seq bigint, last_seq bigint, received_at timestamptz);
	COPY b FROM '$DIR/batches.txt' (FORMAT text, DELIMITER '|');
	WITH l AS (SELECT d.tv_seq, extract(epoch FROM b.received_at - d.at) AS lag
	           FROM docs d LEFT JOIN b ON d.tv_seq BETWEEN b.first_seq AND b.last_seq WHERE d.tv_seq > $FIRST)
	SELECT count(*), count(*) FILTER (WHERE lag IS NULL),
	       round(percentile_cont(0.5) WITHIN GROUP (ORDER BY lag)::numeric, 3),
	       round(percentile_cont(0.95) WITHIN GROUP (ORDER BY lag)::numeric, 3),
	       round(max(lag)::numeric, 3) FROM l;
SQL
)
[ "$MISSING" = 0 ] || die "$MISSING of $NROWS rows are in no batch on the repository"
printf '   %d rows at %.1f rows/s: lag p50 %.3f s, p95 %.3f s, max %.3f s\n' "$NROWS" "$TPS" "$P50" "$P95" "$MAXLAG"

# --- throughput -------------------------------------------------------------------------------
echo "== throughput: $BENCH_CLIENTS clients, $BENCH_ROUNDS rounds x ${BENCH_SECONDS}s per side, sides alternating"
declare -A RUNS=([on]="" [off]="")
for ((r = 1; r <= BENCH_ROUNDS; r++)); do
	line=$(printf '   round %d/%d:' "$r" "$BENCH_ROUNDS")
	for s in "${SIDES[@]}"; do
		shipping "$s"
		# Each "on" run starts from a shipper that has caught up, so that it
		# measures shipping as the rows come, not the previous run's backlog.
		if [ "$s" = on ]; then
			wait_until "the shipper to catch up" 300 caught_up || die "the shipper did not catch up before an on run"
		fi
		sql -c "CHECKPOINT" >/dev/null
		pgbench_run -c "$BENCH_CLIENTS" -j "$BENCH_CLIENTS" -T "$BENCH_SECONDS"
		RUNS[$s]+=" $TPS"
		line+=$(printf '  %s %.1f' "$s" "$TPS")
		if [ "$s" = on ]; then
			# What the shipper held back while the server was busy, and how
			# long it then took to ship it (backup_max_defer bounds the wait).
			HELD=$(sql -At -c "SELECT lag_rows FROM trialvault.backup_status WHERE table_name = 'docs'::regclass")
			T0=$(date +%s.%N)
			wait_until "the shipper to catch up" 300 caught_up || die "the shipper did not catch up after an on run"
			line+=$(printf ' (%d rows to ship at its end, shipped %.1f s later)' "$HELD" \
				"$(awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')")
		fi
	done
	echo "$line"
done
# shellcheck disable=SC2086
MED_ON=$(median ${RUNS[on]})
# shellcheck disable=SC2086
MED_OFF=$(median ${RUNS[off]})
TR=$(ratio "$MED_ON" "$MED_OFF")
TP=$(paired_ratio "${RUNS[on]}" "${RUNS[off]}")

# --- catch-up -----------------------------------------------------------------------------------
echo "== catch-up: the repository down for ${BENCH_OUTAGE}s at $BENCH_RATE rows/s, then up, the inserts going on"
shipping on
wait_until "the shipper to catch up" 300 caught_up || die "the shipper did not catch up before the outage"
# As before each throughput run: the previous part's dirty buffers are not
# this part's to write out.
sql -c "CHECKPOINT" >/dev/null
tv_cluster_stop repo
"$PGBIN/pgbench" -n -f "$DIR/insert.sql" -R "$BENCH_RATE" -c 2 -j 2 -T $((BENCH_OUTAGE + 120)) postgres >"$DIR/catchup.out" 2>&1 &
PGB=$!
sleep "$BENCH_OUTAGE"
BACKLOG=$(sql -At -c "SELECT lag_rows FROM trialvault.backup_status WHERE table_name = 'docs'::regclass")
tv_cluster_restart repo
UP=$(date +%s.%N)
# From the shipper's first batch after the outage (it retries with a capped
# back-off, so it may take a few seconds to notice the repository is back).
# Both waits poll from one session, in the server: a psql started every
# 50 ms (a backend forked and logged in each time) took a good part of the
# CPU the shipper catches up with.
SHIPPED="SELECT coalesce(sum(row_count), 0) FROM trialvault_repo.batches WHERE system_id = '$SYS' AND table_name = 'public.docs'"
SHIPPED_BEFORE=$(rq "$SHIPPED")
wait_in_session repo 30 "($SHIPPED) <> $SHIPPED_BEFORE" 0.05 ||
	die "nothing was shipped within 30 s of the repository's return"
START=$(date +%s.%N)
RESUMED=$(awk -v a="$UP" -v b="$START" 'BEGIN { printf "%.1f", b - a }')
SHIPPED0=$(rq "$SHIPPED")
wait_in_session bench 110 "(SELECT lag_rows < $BENCH_RATE FROM trialvault.backup_status WHERE table_name = 'docs'::regclass)" 0.1 ||
	die "the shipper did not catch up within 110 s"
END=$(date +%s.%N)
SHIPPED1=$(rq "SELECT coalesce(sum(row_count), 0) FROM trialvault_repo.batches WHERE system_id = '$SYS' AND table_name = 'public.docs'")
kill "$PGB" 2>/dev/null || true
wait "$PGB" 2>/dev/null || true
SECS=$(awk -v a="$START" -v b="$END" 'BEGIN { printf "%.2f", b - a }')
CRATE=$(awk -v n="$((SHIPPED1 - SHIPPED0))" -v s="$SECS" 'BEGIN { printf "%.1f", n / s }')
CX=$(ratio "$CRATE" "$BENCH_RATE")
printf '   backlog after the outage: %d rows; shipping resumed %s s after the repository was back;\n' "$BACKLOG" "$RESUMED"
printf '   then caught up in %s s, shipping %d rows: %s rows/s (%s x the insert rate)\n' \
	"$SECS" "$((SHIPPED1 - SHIPPED0))" "$CRATE" "$CX"
wait_until "the shipper to catch up" 120 caught_up || die "the shipper did not catch up at the end"
[ "$(rq "SELECT coalesce(sum(row_count), 0) FROM trialvault_repo.batches WHERE system_id = '$SYS' AND table_name = 'public.docs'")" = \
	"$(sql -At -c "SELECT count(*) FROM docs")" ] || die "the repository does not hold every row of docs exactly once"
echo "   the repository holds every row of docs, once"

echo
echo "== results"
v1=FAIL; at_least "$BENCH_LAG_TARGET" "$P95" && v1=PASS
v2=FAIL; at_least "$TR" "$BENCH_TARGET" && at_least "$TP" "$BENCH_TARGET" && v2=PASS
v3=FAIL; at_least "$CX" 5 && v3=PASS
printf '%-12s %-58s %s\n' part figure result
printf '%-12s %-58s %s\n' lag "p95 $P95 s at $BENCH_RATE rows/s (target <= $BENCH_LAG_TARGET s)" "$v1"
printf '%-12s %-58s %s\n' throughput "on/off $TR (medians $MED_ON / $MED_OFF tps), paired $TP (target >= $BENCH_TARGET)" "$v2"
printf '%-12s %-58s %s\n' catch-up "$CX x the insert rate after ${BENCH_OUTAGE}s down (target >= 5)" "$v3"
note_other_load "the end"
echo "# finished: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
exit 0

#!/usr/bin/env bash
# bench/login_bench.sh: the cost of recording every login.  Connection rate
# (pgbench -C: a new connection for every transaction, one trivial query)
# with trialvault.audit_logins on against off, on the same cluster, in the
# same run.
#
#   on    every connection waits, before it is let in, until its login is
#         committed to trialvault.audit_events by the log writer (one group
#         commit for the connections waiting at that moment, fsync = on)
#   off   nothing is recorded
#
# The role "app" connects over the unix socket with a password
# (scram-sha-256, as a hospital's pg_hba.conf would have it; BENCH_AUTH=trust
# measures the harder case, where the connection itself costs less).  The
# sides run alternately, one run each per round (on, off, on, off, ...),
# the setting switched by ALTER SYSTEM and a reload between runs, each run
# after a CHECKPOINT, for BENCH_ROUNDS rounds at each client count; the report
# gives the median of the rounds per side, the ratio on/off and the paired
# ratio (median over rounds of the ratio within one round).  Target (the
# issue): on/off >= 0.8 at 1 and 8 clients.  PASS/FAIL is printed; the script
# exits 0 unless something went wrong (pgbench errors, logins on record that
# do not match the connections made).
#
# Usage (as root, from anywhere):
#   bash bench/login_bench.sh            full run (about 3 minutes)
#   bash bench/login_bench.sh --quick    about 40 seconds
#
# Environment (defaults; --quick ones in brackets):
#   BENCH_SECONDS=5 [2]    length of each measured run, per side
#   BENCH_ROUNDS=5 [2]     rounds; each round runs both sides once
#   BENCH_CLIENTS="1 8"    client counts
#   BENCH_AUTH=scram-sha-256   pg_hba.conf method for app (or trust)
#   BENCH_TARGET=0.8       minimum on/off at every client count
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
# shellcheck source=bench/common.sh
source "$HERE/common.sh"
CMDLINE=$(command_line BENCH_SECONDS BENCH_ROUNDS BENCH_CLIENTS BENCH_AUTH BENCH_TARGET -- "$0" "$@")

parse_common_args "$(basename "$0")" "$@"
if [ -n "$quick" ]; then
	: "${BENCH_SECONDS:=2}" "${BENCH_ROUNDS:=2}"
fi
: "${BENCH_SECONDS:=5}" "${BENCH_ROUNDS:=5}" "${BENCH_CLIENTS:=1 8}"
: "${BENCH_AUTH:=scram-sha-256}" "${BENCH_TARGET:=0.8}"

for v in BENCH_SECONDS BENCH_ROUNDS; do
	if ! [[ ${!v} =~ ^[0-9]+$ ]] || [ "${!v}" -lt 1 ]; then
		echo "login_bench.sh: $v must be a positive integer, not '${!v}'" >&2
		exit 2
	fi
done
case $BENCH_AUTH in scram-sha-256 | trust) ;; *)
	echo "login_bench.sh: BENCH_AUTH must be scram-sha-256 or trust, not '$BENCH_AUTH'" >&2
	exit 2
	;;
esac
read -r -a CLIENTS <<<"$BENCH_CLIENTS"
for c in "${CLIENTS[@]}"; do
	if ! [[ $c =~ ^[0-9]+$ ]] || [ "$c" -lt 1 ] || [ "$c" -gt 16 ]; then
		echo "login_bench.sh: client counts must be 1 to 16, not '$c'" >&2
		exit 2
	fi
done
SIDES=(on off)

# shellcheck source=test/lib/cluster.sh
source "$REPO/test/lib/cluster.sh"

CONF=(
	"shared_buffers = 256MB"
	"max_wal_size = 4GB"
	"checkpoint_timeout = 30min"
	"synchronous_commit = on"
	"autovacuum = off"
	"password_encryption = 'scram-sha-256'"
)
est=$((BENCH_ROUNDS * 2 * ${#CLIENTS[@]} * (BENCH_SECONDS + 2) + 15))

echo "# trialvault login recording benchmark"
echo "# command:    $CMDLINE"
bench_context
echo "# settings:   BENCH_SECONDS=$BENCH_SECONDS BENCH_ROUNDS=$BENCH_ROUNDS BENCH_CLIENTS=\"$BENCH_CLIENTS\" BENCH_AUTH=$BENCH_AUTH BENCH_TARGET=$BENCH_TARGET"
echo "# server:     fresh cluster, unix socket, fsync = on, $(printf '%s, ' "${CONF[@]}" | sed 's/, $//')"
echo "# workload:   pgbench -n -C as app ($BENCH_AUTH), SELECT 1 per connection (tps = connections/s)"
echo "# sides:      trialvault.audit_logins = on | off (ALTER SYSTEM and a reload between runs), CHECKPOINT before every run"
echo "# estimated:  ~$((est / 60)) min $((est % 60)) s"
note_other_load
echo

tv_cluster_start bench "${CONF[@]}"
tv_use bench
DIR=$(tv_dir bench)

echo "== setup: the role app, pg_hba.conf"
sql >/dev/null <<-'SQL'
	SET client_min_messages = warning;
	CREATE EXTENSION trialvault CASCADE;
	CREATE ROLE app LOGIN PASSWORD 'Bench#Login1';
SQL
sed -i "1i local all app $BENCH_AUTH" "$DIR/data/pg_hba.conf"
sql -c "SELECT pg_reload_conf()" >/dev/null
echo "SELECT 1;" >"$DIR/select1.sql"

logins() { sql -At -c "SELECT count(*) FROM trialvault.login_attempts WHERE role_name = 'app' AND succeeded"; }

# set_side SIDE: trialvault.audit_logins for the connections to come.
set_side() {
	sql -c "ALTER SYSTEM SET trialvault.audit_logins = $1" -c "SELECT pg_reload_conf()" >/dev/null
	wait_until "audit_logins = $1 in new sessions" 5 \
		bash -c "[ \"\$(PGPASSWORD='Bench#Login1' $PGBIN/psql -X -h $DIR -p $(tv_port bench) -U app -d postgres -At -c 'SHOW trialvault.audit_logins')\" = $1 ]" ||
		die "trialvault.audit_logins did not become $1"
}

# run_side SIDE CLIENTS: one pgbench -C run; sets TPS and CONNS.
run_side() {
	local side=$1 clients=$2 out
	set_side "$side"
	sql -c "CHECKPOINT" >/dev/null
	if ! out=$(PGPASSWORD='Bench#Login1' "$PGBIN/pgbench" -n -C -U app -c "$clients" -j "$clients" \
		-T "$BENCH_SECONDS" -f "$DIR/select1.sql" postgres 2>&1); then
		echo "$out" >&2
		die "pgbench failed for $side at $clients clients"
	fi
	if grep -q '^number of failed transactions: [1-9]' <<<"$out"; then
		echo "$out" >&2
		die "pgbench reported failed transactions for $side"
	fi
	TPS=$(sed -n 's/^tps = \([0-9.]*\) (including reconnection times)$/\1/p' <<<"$out")
	CONNS=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' <<<"$out")
	[ -n "$TPS" ] && [ -n "$CONNS" ] || {
		echo "$out" >&2
		die "could not read pgbench's result"
	}
}

echo "== warm-up: one run per side at 1 client (not counted)"
for s in "${SIDES[@]}"; do
	run_side "$s" 1
	printf '   %-4s %8.1f connections/s\n' "$s" "$TPS"
done

declare -A MED=() ALL=()
expected_on=0
before_on=$(logins)
for c in "${CLIENTS[@]}"; do
	echo "== $c client(s): $BENCH_ROUNDS rounds x ${BENCH_SECONDS}s per side, sides alternating"
	declare -A RUNS=([on]="" [off]="")
	for ((r = 1; r <= BENCH_ROUNDS; r++)); do
		line=$(printf '   round %d/%d:' "$r" "$BENCH_ROUNDS")
		for s in "${SIDES[@]}"; do
			run_side "$s" "$c"
			RUNS[$s]+=" $TPS"
			[ "$s" = on ] && expected_on=$((expected_on + CONNS))
			line+=$(printf '  %s %.1f' "$s" "$TPS")
		done
		echo "$line"
	done
	for s in "${SIDES[@]}"; do
		# shellcheck disable=SC2086
		MED[$s,$c]=$(median ${RUNS[$s]})
		ALL[$s,$c]=${RUNS[$s]}
	done
	unset RUNS
done
set_side on

echo "== sanity checks"
# Each measured 'on' connection is one login on record (set_side's own
# check connections and the warm-up's are counted apart).
got=$(($(logins) - before_on))
[ "$got" -ge "$expected_on" ] ||
	die "$got logins of app on record, but the 'on' runs made $expected_on connections"
echo "   every measured connection of the 'on' runs is on record ($expected_on; $got with the setting checks)"
ok=$(sql -At -c "SELECT ok FROM trialvault.verify('trialvault.audit_events')")
[ "$ok" = t ] || die "trialvault.audit_events does not verify"
echo "   trialvault.audit_events verifies"

echo
echo "== results: median of $BENCH_ROUNDS rounds, connections/s (target on/off >= $BENCH_TARGET)"
echo "   ratio = median(on) / median(off); paired = median over rounds of on/off"
printf '%-8s %10s %10s %6s %6s %6s\n' clients off on ratio paired result
overall=PASS
for c in "${CLIENTS[@]}"; do
	off=${MED[off,$c]}
	on=${MED[on,$c]}
	rq=$(ratio "$on" "$off")
	pq=$(paired_ratio "${ALL[on,$c]}" "${ALL[off,$c]}")
	if at_least "$rq" "$BENCH_TARGET" && at_least "$pq" "$BENCH_TARGET"; then verdict=PASS; else verdict=FAIL overall=FAIL; fi
	printf '%-8s %10.1f %10.1f %6s %6s %6s\n' "$c" "$off" "$on" "$rq" "$pq" "$verdict"
done
echo "overall: $overall (on/off >= $BENCH_TARGET at every client count, both ratios)"
note_other_load "the end"
echo "# finished: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
exit 0

#!/usr/bin/env bash
# bench/verify_bench.sh: time trialvault.verify() on a large protected table
# against hashing the same rows in plain SQL.
#
# Loads ROWS rows (1,000,000 by default) into a protected table shaped like
# the documents of insert_bench.sh, but with a smaller payload (256 random
# bytes by default; the 4 KB documents would make a ~5 GB table that takes
# long to load here).  The load goes through the chain trigger, row by row,
# in INSERT ... SELECT generate_series batches of BATCH rows.  Then, after a
# VACUUM (so no run pays for hint bits) and one untimed run of each, these two
# are timed alternately, ROUNDS times each:
#
#   verify    SELECT ok, rows_checked FROM trialvault.verify('docs')
#   sha256    SELECT sum(get_byte(sha256(convert_to(t::text, 'UTF8')), 0))
#             FROM docs t          (every row's whole text form hashed)
#
#   openssl   openssl speed -evp sha256 -bytes B -seconds 3: OpenSSL's
#             SHA-256 on its own, on blocks of B bytes (the rows' average
#             size), in bytes/s
#
# The report gives the medians and the ratio sha256 time / verify time;
# verify's throughput (the bytes of the rows' values: payload, meta as
# text, subject and the fixed-size columns, summed once after the load)
# as a fraction of OpenSSL's; and verify's peak memory: the largest
# anonymous resident memory (RssAnon, which leaves out shared buffers) of
# its backend, sampled every 50 ms during each run, and the same for a
# session that only connects and runs SELECT 1, so the difference is what
# verify holds.  Targets: ratio >= BENCH_TARGET (verify at least as fast as
# plain SQL hashing); fraction >= BENCH_TARGET_SHA (issue 17: 0.5) for rows
# of 4 KB (BENCH_PAYLOAD=4096); verify must return ok = t with rows_checked
# = ROWS.  verify uses VERIFY_WORKERS parallel workers (trialvault.verify_workers,
# 2 by default; 0: the session alone), and the plain SQL side as many
# (max_parallel_workers_per_gather = BASELINE_PARALLEL, VERIFY_WORKERS by
# default).  The memory reported is the session's: each worker holds its
# own, bounded too (a row, and at most 16 MB of out-of-line chunks read
# ahead).  PASS or
# FAIL is printed; the script exits 0 unless something went wrong (verify
# not ok counts as something going wrong).
#
# Then the daily check (issue 17): a signed digest is taken, SINCE_ROWS more
# rows (1 % of ROWS by default) are loaded the same way, and ROUNDS times
# each, alternately:
#
#   since     SELECT ... FROM trialvault.verify('docs', since => <digest>)
#   since0    the same with a digest taken after the new rows (nothing to
#             rehash: what every verify pays whatever the rows, the checks
#             of the guards and of the extension's own objects)
#   full      SELECT ... FROM trialvault.verify('docs')
#
# reporting the medians, full time / since time, and the time per row
# rehashed: since's beyond since0's per new row, full's per row.  A check
# since the digest should cost the new rows, not the table (target: its time
# per new row within BENCH_TARGET_SINCE, 2 by default, of the full verify's
# time per row).  SINCE_ROWS=0 skips it.
#
# Usage (as root, from anywhere):
#   bash bench/verify_bench.sh            full run (1M rows, a few minutes)
#   bash bench/verify_bench.sh --quick    100,000 rows
#
# Environment (defaults; --quick ones in brackets):
#   ROWS=1000000 [100000]  rows in the table
#   BENCH_PAYLOAD=256      payload bytes per row (random; a pool of 1000 values)
#   ROUNDS=3               timed runs of each side
#   BATCH=100000           rows per INSERT during the load
#   VERIFY_WORKERS=2       trialvault.verify_workers for verify's sides
#   BASELINE_PARALLEL=VERIFY_WORKERS  parallel workers allowed to the plain SQL side
#   BENCH_TARGET=1.0       minimum sha256-time / verify-time ratio
#   BENCH_TARGET_SHA=0.5   minimum verify throughput / OpenSSL SHA-256 throughput
#   SINCE_ROWS=ROWS/100    rows added after the digest for the daily check (0: skip)
#   BENCH_TARGET_SINCE=2   maximum since-time-per-new-row / full-time-per-row
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
# shellcheck source=bench/common.sh
source "$HERE/common.sh"
CMDLINE=$(command_line ROWS BENCH_PAYLOAD ROUNDS BATCH VERIFY_WORKERS BASELINE_PARALLEL BENCH_TARGET BENCH_TARGET_SHA SINCE_ROWS BENCH_TARGET_SINCE -- "$0" "$@")

parse_common_args "$(basename "$0")" "$@"
if [ -n "$quick" ]; then
	: "${ROWS:=100000}"
fi
: "${ROWS:=1000000}" "${BENCH_PAYLOAD:=256}" "${ROUNDS:=3}" "${BATCH:=100000}"
: "${VERIFY_WORKERS:=2}"
: "${BASELINE_PARALLEL:=$VERIFY_WORKERS}" "${BENCH_TARGET:=1.0}" "${BENCH_TARGET_SHA:=0.5}"
: "${SINCE_ROWS:=$((ROWS / 100))}" "${BENCH_TARGET_SINCE:=2}"
POOL=1000

for v in ROWS BENCH_PAYLOAD ROUNDS BATCH; do
	if ! [[ ${!v} =~ ^[0-9]+$ ]] || [ "${!v}" -lt 1 ]; then
		echo "verify_bench.sh: $v must be a positive integer, not '${!v}'" >&2
		exit 2
	fi
done
if ! [[ $SINCE_ROWS =~ ^[0-9]+$ ]]; then
	echo "verify_bench.sh: SINCE_ROWS must be a number of rows, not '$SINCE_ROWS'" >&2
	exit 2
fi
if ! [[ $VERIFY_WORKERS =~ ^[0-9]+$ ]] || [ "$VERIFY_WORKERS" -gt 64 ]; then
	echo "verify_bench.sh: VERIFY_WORKERS must be a number of workers (0 to 64), not '$VERIFY_WORKERS'" >&2
	exit 2
fi
if ! [[ $BASELINE_PARALLEL =~ ^[0-9]+$ ]]; then
	echo "verify_bench.sh: BASELINE_PARALLEL must be a number of workers, not '$BASELINE_PARALLEL'" >&2
	exit 2
fi

# shellcheck source=test/lib/cluster.sh
source "$REPO/test/lib/cluster.sh"

CONF=(
	"shared_buffers = 512MB"
	"max_wal_size = 4GB"
	"checkpoint_timeout = 30min"
	"synchronous_commit = on"
	"maintenance_work_mem = 256MB"
	"work_mem = 64MB"
)

echo "# trialvault verify benchmark"
echo "# command:    $CMDLINE"
bench_context
echo "# settings:   ROWS=$ROWS BENCH_PAYLOAD=$BENCH_PAYLOAD ROUNDS=$ROUNDS BATCH=$BATCH VERIFY_WORKERS=$VERIFY_WORKERS BASELINE_PARALLEL=$BASELINE_PARALLEL"
echo "#             BENCH_TARGET=$BENCH_TARGET BENCH_TARGET_SHA=$BENCH_TARGET_SHA SINCE_ROWS=$SINCE_ROWS BENCH_TARGET_SINCE=$BENCH_TARGET_SINCE"
echo "# server:     fresh cluster, unix socket, fsync = on, $(printf '%s, ' "${CONF[@]}" | sed 's/, $//')"
echo "# row:        id bigint identity PK, study_id int, site_id int, subject text, meta xml (~70 bytes),"
echo "#             payload bytea ($BENCH_PAYLOAD random bytes, one of $POOL), created timestamptz,"
echo "#             + the chain columns tv_seq, tv_prev_seqs, tv_prev_hash, tv_hash"
echo "# verify:     SELECT ok, rows_checked FROM trialvault.verify('docs')  (trialvault.verify_workers = $VERIFY_WORKERS)"
echo "# sha256:     SELECT sum(get_byte(sha256(convert_to(t::text, 'UTF8')), 0)) FROM docs t  (max_parallel_workers_per_gather = $BASELINE_PARALLEL)"
echo "# openssl:    openssl speed -evp sha256 -bytes <average row bytes> -seconds 3  ($(openssl version))"
note_other_load
echo

tv_cluster_start bench "${CONF[@]}"


now() {
	date +%s.%N
}

elapsed() {
	awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f\n", b - a }'
}

echo "== setup: payload pool ($POOL x $BENCH_PAYLOAD random bytes), protected table docs"
sql >/dev/null <<-SQL
	CREATE EXTENSION trialvault CASCADE;
	CREATE TABLE payload_pool (id int PRIMARY KEY, payload bytea NOT NULL);
	INSERT INTO payload_pool
		SELECT i, substring(string_agg(gen_random_bytes(1024), ''::bytea) FROM 1 FOR $BENCH_PAYLOAD)
		FROM generate_series(1, $POOL) i, generate_series(1, ($BENCH_PAYLOAD + 1023) / 1024) k
		GROUP BY i;
	CREATE TABLE docs (
		id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
		study_id int NOT NULL,
		site_id int NOT NULL,
		subject text NOT NULL,
		meta xml NOT NULL,
		payload bytea NOT NULL,
		created timestamptz NOT NULL DEFAULT now()
	);
	SELECT trialvault.protect('docs');
SQL

# load FIRST LAST: rows FIRST..LAST, in batches of BATCH.
load() {
	local lo hi
	for ((lo = $1; lo <= $2; lo += BATCH)); do
		hi=$((lo + BATCH - 1))
		[ "$hi" -gt "$2" ] && hi=$2
		sql >/dev/null <<-SQL
			INSERT INTO docs (study_id, site_id, subject, meta, payload)
			SELECT 1 + g % 20, 1 + g % 200, 'S' || (1 + g % 200) || '-' || (g % 99999),
				('<meta><visit>' || (1 + g % 12) || '</visit><page>' || (1 + g % 60)
				 || '</page><form>CRF-07</form></meta>')::xml,
				p.payload
			FROM generate_series($lo, $hi) g
			JOIN payload_pool p ON p.id = 1 + (g::bigint * 7919) % $POOL;
		SQL
	done
}

echo "== load: $ROWS rows in batches of $BATCH (through the chain trigger)"
t0=$(now)
load 1 "$ROWS"
t1=$(now)
load_s=$(elapsed "$t0" "$t1")
echo "   loaded in ${load_s} s ($(awk -v n="$ROWS" -v s="$load_s" 'BEGIN { printf "%.0f", n / s }') rows/s)"
t0=$(now)
sql -c "VACUUM (FREEZE, ANALYZE) docs" -c "CHECKPOINT" >/dev/null
echo "   VACUUM (FREEZE, ANALYZE) + CHECKPOINT in $(elapsed "$t0" "$(now)") s"
sql -Atc "SELECT '   table: ' || pg_size_pretty(pg_table_size('docs')) || ' heap+toast, '
	|| pg_size_pretty(pg_total_relation_size('docs')) || ' with indexes, '
	|| (SELECT count(*) FROM docs) || ' rows'"
# The bytes of the rows' values, what verify hashes at the least (its
# canonical encoding adds column names and lengths, about 100 bytes a row).
BYTES=$(sql -Atc "SELECT sum(length(payload) + octet_length(meta::text) + octet_length(subject) + 8 + 4 + 4 + 8) FROM docs")
ROWBYTES=$((BYTES / ROWS))
echo "   values: $BYTES bytes, $ROWBYTES a row on average"

# The sampling below forks nothing: a process started 50 times a second
# took a tenth of a core from the parallel workers it was measuring.
# rss_anon PID: sets RSS to the process's anonymous resident memory in kB
# (0 once gone).
rss_anon() {
	local k v rest
	RSS=0
	{
		while read -r k v rest; do
			if [ "$k" = RssAnon: ]; then
				RSS=$v
				break
			fi
		done <"/proc/$1/status"
	} 2>/dev/null || true
}

# nap SECONDS: sleep without starting a process (a read that times out on
# a pipe this shell holds both ends of).
exec {NAPFD}<> <(:)
nap() {
	read -r -t "$1" -u "$NAPFD" _ || true
}

# peak_of_session SQL: run SQL in a new session after it printed its
# backend's pid; sets PEAK_KB (the largest RssAnon seen, every 50 ms) and
# SESSION_OUT (what it printed, the pid line left out).
peak_of_session() {
	local f pid="" p peak=0 bg
	f=$(mktemp)
	printf 'SELECT pg_backend_pid();\n\\o /dev/null\nSELECT pg_sleep(0.2);\n\\o\n%s\n' "$1" | sql -AtF ' ' >"$f" 2>&1 &
	bg=$!
	while [ -z "$pid" ] && kill -0 "$bg" 2>/dev/null; do
		read -r pid <"$f" || true
		[[ $pid =~ ^[0-9]+$ ]] || pid=""
		nap 0.01
	done
	while kill -0 "$bg" 2>/dev/null; do
		if [ -n "$pid" ]; then
			rss_anon "$pid"
			p=$RSS
			[ "$p" -gt "$peak" ] && peak=$p
		fi
		nap 0.05
	done
	wait "$bg" || {
		cat "$f" >&2
		rm -f "$f"
		die "a session failed"
	}
	PEAK_KB=$peak
	SESSION_OUT=$(tail -n +2 "$f")
	rm -f "$f"
}

# timed SIDE: run one side once in its own psql session; sets MS (elapsed
# milliseconds as psql's \timing saw them) and OUT (the query's result).
timed() {
	local side=$1 q out
	case $side in
	verify | full) q="SET trialvault.verify_workers = $VERIFY_WORKERS;
SELECT ok, rows_checked, coalesce(first_bad, '-') FROM trialvault.verify('docs')" ;;
	since | since0) q="\\set d \`cat $DIGEST${side#since}\`
SELECT ok, rows_checked, coalesce(first_bad, '-') FROM trialvault.verify('docs', since => :'d')" ;;
	sha256) q="SET max_parallel_workers_per_gather = $BASELINE_PARALLEL;
SELECT sum(get_byte(sha256(convert_to(t::text, 'UTF8')), 0)), count(*) FROM docs t" ;;
	esac
	peak_of_session "$(printf '\\timing on\n%s;' "$q")"
	out=$SESSION_OUT
	PEAK=$PEAK_KB
	MS=$(sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' <<<"$out" | tail -n 1)
	OUT=$(grep -v '^Time: ' <<<"$out" | grep -v '^SET$' || true)
	if [ -z "$MS" ]; then
		echo "$out" >&2
		echo "verify_bench.sh: no timing for $side" >&2
		exit 1
	fi
	if [ "$side" != sha256 ]; then
		local ok checked first_bad
		read -r ok checked first_bad <<<"$OUT"
		if [ "$ok" != t ] || [ "$checked" != "${EXPECT:-$ROWS}" ]; then
			echo "verify_bench.sh: $side: verify('docs') returned ok=$ok rows_checked=$checked first_bad=$first_bad (expected ok=t, rows_checked=${EXPECT:-$ROWS})" >&2
			exit 1
		fi
	else
		local sum count
		read -r sum count <<<"$OUT"
		if [ "$count" != "$ROWS" ] || [ -z "$sum" ]; then
			echo "verify_bench.sh: the sha256 query returned '$OUT'" >&2
			exit 1
		fi
	fi
}

# openssl_speed: OpenSSL's SHA-256 on blocks of the rows' average size, in
# bytes per second (it prints thousands of bytes per second).
openssl_speed() {
	local kb
	kb=$(openssl speed -evp sha256 -bytes "$ROWBYTES" -seconds 3 2>/dev/null | awk '$1 == "sha256" { sub(/k$/, "", $NF); print $NF }')
	[ -n "$kb" ] || die "could not read openssl speed's result"
	BPS=$(awk -v k="$kb" 'BEGIN { printf "%.0f", k * 1000 }')
}

echo "== untimed first run of each"
timed verify
printf '   verify  %9.1f ms  (ok=t, rows_checked=%s)\n' "$MS" "$ROWS"
timed sha256
printf '   sha256  %9.1f ms\n' "$MS"
peak_of_session "SELECT 1;"
IDLE_KB=$PEAK_KB
echo "   a session that runs SELECT 1: RssAnon peak $IDLE_KB kB"

echo "== $ROUNDS rounds, alternating"
V=()
S=()
O=()
P=()
for ((r = 1; r <= ROUNDS; r++)); do
	timed verify
	V+=("$MS")
	P+=("$PEAK")
	vms=$MS
	vpeak=$PEAK
	timed sha256
	S+=("$MS")
	openssl_speed
	O+=("$BPS")
	printf '   round %d/%d:  verify %9.1f ms (RssAnon peak %s kB)   sha256 %9.1f ms   openssl %.1f MB/s\n' \
		"$r" "$ROUNDS" "$vms" "$vpeak" "$MS" "$(awk -v b="$BPS" 'BEGIN { print b / 1e6 }')"
done

mv=$(median "${V[@]}")
ms=$(median "${S[@]}")
rt=$(ratio "$ms" "$mv")
if at_least "$rt" "$BENCH_TARGET"; then verdict=PASS; else verdict=FAIL; fi
echo
echo "== results: median of $ROUNDS rounds, $ROWS rows ($BENCH_PAYLOAD-byte payload)"
printf '%-10s %12s %14s\n' side "median ms" "rows/s"
printf '%-10s %12.1f %14.0f\n' verify "$mv" "$(awk -v n="$ROWS" -v m="$mv" 'BEGIN { print n / (m / 1000) }')"
printf '%-10s %12.1f %14.0f\n' sha256 "$ms" "$(awk -v n="$ROWS" -v m="$ms" 'BEGIN { print n / (m / 1000) }')"
echo "ratio sha256/verify: $rt  $verdict (target >= $BENCH_TARGET; verify ok=t, rows_checked=$ROWS every run)"
mo=$(median "${O[@]}")
vbps=$(awk -v b="$BYTES" -v m="$mv" 'BEGIN { printf "%.0f", b / (m / 1000) }')
frac=$(ratio "$vbps" "$mo")
if at_least "$frac" "$BENCH_TARGET_SHA"; then fverdict=PASS; else fverdict=FAIL; fi
printf 'verify throughput: %.1f MB/s of values; OpenSSL SHA-256 on %s-byte blocks: %.1f MB/s (median)\n' \
	"$(awk -v b="$vbps" 'BEGIN { print b / 1e6 }')" "$ROWBYTES" "$(awk -v b="$mo" 'BEGIN { print b / 1e6 }')"
echo "fraction of SHA-256 speed: $frac  $fverdict (target >= $BENCH_TARGET_SHA, issue 17, for 4 KB rows)"
mp=$(printf '%s\n' "${P[@]}" | sort -n | tail -n 1)
echo "verify's memory: RssAnon peak $mp kB (largest of the rounds), $((mp - IDLE_KB)) kB above an idle session's $IDLE_KB kB: $(awk -v a="$mp" -v b="$IDLE_KB" -v n="$ROWS" 'BEGIN { printf "%.0f", (a - b) * 1024 / n }') bytes a row"

if [ "$SINCE_ROWS" -gt 0 ]; then
	echo
	echo "== the daily check: a digest, then $SINCE_ROWS more rows"
	DIGEST=$(tv_dir bench)/digest.txt
	sql -Atc "SELECT trialvault.signed_digest('docs')" >"$DIGEST"
	chmod 644 "$DIGEST"
	load $((ROWS + 1)) $((ROWS + SINCE_ROWS))
	sql -c "VACUUM (FREEZE, ANALYZE) docs" -c "CHECKPOINT" >/dev/null
	sql -Atc "SELECT trialvault.signed_digest('docs')" >"${DIGEST}0"
	chmod 644 "${DIGEST}0"
	EXPECT=$SINCE_ROWS timed since
	printf '   untimed:  since %9.1f ms  (ok=t, rows_checked=%s)\n' "$MS" "$SINCE_ROWS"
	SN=()
	S0=()
	FU=()
	for ((r = 1; r <= ROUNDS; r++)); do
		EXPECT=$SINCE_ROWS timed since
		SN+=("$MS")
		sms=$MS
		speak=$PEAK
		EXPECT=0 timed since0
		S0+=("$MS")
		s0ms=$MS
		EXPECT=$((ROWS + SINCE_ROWS)) timed full
		FU+=("$MS")
		printf '   round %d/%d:  since %9.1f ms (RssAnon peak %s kB)   since0 %9.1f ms   full %9.1f ms\n' \
			"$r" "$ROUNDS" "$sms" "$speak" "$s0ms" "$MS"
	done
	msn=$(median "${SN[@]}")
	ms0=$(median "${S0[@]}")
	mfu=$(median "${FU[@]}")
	per_since=$(awk -v m="$msn" -v z="$ms0" -v n="$SINCE_ROWS" 'BEGIN { d = m - z; if (d < 0) d = 0; printf "%.3f", d * 1000 / n }')
	per_full=$(awk -v m="$mfu" -v n="$((ROWS + SINCE_ROWS))" 'BEGIN { printf "%.3f", m * 1000 / n }')
	per_ratio=$(ratio "$per_since" "$per_full")
	if at_least "$BENCH_TARGET_SINCE" "$per_ratio"; then sverdict=PASS; else sverdict=FAIL; fi
	echo "since: median $msn ms for $SINCE_ROWS new rows, of which $ms0 ms with none to rehash ($per_since us a new row beyond that); full: median $mfu ms for $((ROWS + SINCE_ROWS)) rows ($per_full us a row)"
	echo "full/since time: $(ratio "$mfu" "$msn"); since's time per new row / full's per row: $per_ratio  $sverdict (target <= $BENCH_TARGET_SINCE)"
fi
note_other_load "the end"
echo "# finished: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
exit 0

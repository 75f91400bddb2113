#!/usr/bin/env bash
# bench/insert_bench.sh: insert throughput of a protected table against a
# plain table of the same shape (and, for reference, a naive chain).
#
# Rows are shaped like source documents: a random payload (4 KB by default)
# picked from a pool of pre-generated random values, a little XML metadata,
# a few ids, an identity primary key and a created timestamp.  pgbench runs
# one INSERT per transaction (so tps = rows/s) against three tables:
#
#   plain      docs_plain: no triggers
#   protected  docs_protected: trialvault.protect()ed (insert-only, chained)
#   naive      docs_naive: a plpgsql BEFORE INSERT trigger that locks a
#              chain_tip row FOR UPDATE, hashes prev || row text and updates
#              the tip; the tip lock is held until commit, so writers queue.
#   control    docs_control: a second plain table (off by default; add it
#              to BENCH_SIDES for an A/A run that shows the noise floor and
#              any bias from the run order)
#   storage    docs_storage: no trigger, but the chain's four columns with
#              the types and sizes a protected row has (filled by defaults)
#              and a unique index on tv_seq: what storing the chain costs,
#              apart from computing it (off by default)
#   minimal    docs_minimal: no trigger, only a sequence number (unique
#              index) and one 32-byte hash: about the least any chain with a
#              hash per row could store (off by default)
#
# The sides run alternately, one run each per round (plain, protected,
# naive, plain, protected, naive, ...), each run after a CHECKPOINT, for
# BENCH_ROUNDS rounds at each client count; the report gives the median of
# the rounds per side and the ratio to plain.  Target (issue 17):
# protected/plain >= 0.95 at every client count, both as the ratio of the
# medians and as the paired ratio (median of protected/plain within a round).
# PASS/FAIL is printed, but this is a benchmark, not a test: the script exits
# 0 unless something went wrong.
#
# Usage (as root, from anywhere):
#   bash bench/insert_bench.sh            full run (~20 minutes with defaults)
#   bash bench/insert_bench.sh --quick    short runs, for trying it out
#
# Environment (defaults; --quick ones in brackets):
#   BENCH_SECONDS=6 [3]    length of each measured run, per side
#   BENCH_ROUNDS=15 [3]    rounds; each round runs every side once
#   BENCH_WARMUP=10 [2]    seconds of warm-up per side before measuring
#   BENCH_CLIENTS="1 2 8"  client counts
#   BENCH_PAYLOAD=4096     payload bytes per row
#   BENCH_POOL=1000        number of distinct random payloads
#   BENCH_SIDES="plain protected naive"   sides, in run order
#   BENCH_PROTOCOL=prepared               pgbench -M (simple|extended|prepared)
#   BENCH_TARGET=0.95      minimum protected/plain ratio (medians and paired)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
# shellcheck source=bench/common.sh
source "$HERE/common.sh"
CMDLINE=$(command_line BENCH_SECONDS BENCH_ROUNDS BENCH_WARMUP BENCH_CLIENTS BENCH_PAYLOAD BENCH_POOL BENCH_SIDES BENCH_PROTOCOL BENCH_TARGET -- "$0" "$@")

parse_common_args "$(basename "$0")" "$@"
if [ -n "$quick" ]; then
	: "${BENCH_SECONDS:=3}" "${BENCH_ROUNDS:=3}" "${BENCH_WARMUP:=2}"
fi
: "${BENCH_SECONDS:=6}" "${BENCH_ROUNDS:=15}" "${BENCH_WARMUP:=10}"
: "${BENCH_CLIENTS:=1 2 8}" "${BENCH_PAYLOAD:=4096}" "${BENCH_POOL:=1000}"
: "${BENCH_SIDES:=plain protected naive}" "${BENCH_PROTOCOL:=prepared}"
: "${BENCH_TARGET:=0.95}"

for v in BENCH_SECONDS BENCH_ROUNDS BENCH_WARMUP BENCH_PAYLOAD BENCH_POOL; do
	if ! [[ ${!v} =~ ^[0-9]+$ ]] || [ "${!v}" -lt 1 ]; then
		echo "insert_bench.sh: $v must be a positive integer, not '${!v}'" >&2
		exit 2
	fi
done
read -r -a CLIENTS <<<"$BENCH_CLIENTS"
read -r -a SIDES <<<"$BENCH_SIDES"
for s in "${SIDES[@]}"; do
	case $s in plain | protected | naive | control | storage | minimal) ;; *)
		echo "insert_bench.sh: unknown side '$s' (plain, protected, naive, control, storage, minimal)" >&2
		exit 2
		;;
	esac
done
[[ " ${SIDES[*]} " == *" plain "* ]] || {
	echo "insert_bench.sh: BENCH_SIDES must include plain (the baseline)" >&2
	exit 2
}

# shellcheck source=test/lib/cluster.sh
source "$REPO/test/lib/cluster.sh"

CONF=(
	"shared_buffers = 512MB"
	"max_wal_size = 4GB"
	"checkpoint_timeout = 30min"
	"synchronous_commit = on"
)

runs_per_point=$((BENCH_ROUNDS * ${#SIDES[@]}))
est=$(((runs_per_point * ${#CLIENTS[@]} * (BENCH_SECONDS + 2)) + ${#SIDES[@]} * (BENCH_WARMUP + 2) + 30))

echo "# trialvault insert benchmark"
echo "# command:    $CMDLINE"
bench_context
echo "# settings:   BENCH_SECONDS=$BENCH_SECONDS BENCH_ROUNDS=$BENCH_ROUNDS BENCH_WARMUP=$BENCH_WARMUP"
echo "#             BENCH_CLIENTS=\"$BENCH_CLIENTS\" BENCH_SIDES=\"$BENCH_SIDES\" BENCH_PROTOCOL=$BENCH_PROTOCOL"
echo "#             BENCH_PAYLOAD=$BENCH_PAYLOAD BENCH_POOL=$BENCH_POOL BENCH_TARGET=$BENCH_TARGET"
echo "# server:     fresh cluster, unix socket, fsync = on, $(printf '%s, ' "${CONF[@]}" | sed 's/, $//')"
echo "#             autovacuum off on the document tables (so it cannot land in one side's runs)"
echo "# row:        id bigint identity PK, study_id int, site_id int, subject text,"
echo "#             meta xml (~70 bytes), payload bytea ($BENCH_PAYLOAD random bytes, one of $BENCH_POOL), created timestamptz default now()"
echo "# workload:   pgbench -n -M $BENCH_PROTOCOL, one INSERT per transaction (tps = rows/s), CHECKPOINT before every run"
echo "# estimated:  ~$((est / 60)) min $((est % 60)) s"
note_other_load
echo

tv_cluster_start bench "${CONF[@]}"
tv_use bench
DIR=$(tv_dir bench)


doc_table() {
	local name=$1 extra=${2:-}
	cat <<-SQL
		CREATE TABLE $name (
			id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
			study_id int NOT NULL,
			site_id int NOT NULL,
			subject text NOT NULL,
			meta xml NOT NULL,
			payload bytea NOT NULL,
			created timestamptz NOT NULL DEFAULT now()$extra
		) WITH (autovacuum_enabled = off, toast.autovacuum_enabled = off);
	SQL
}

echo "== setup: payload pool ($BENCH_POOL x $BENCH_PAYLOAD random bytes) and tables"
{
	echo "CREATE EXTENSION trialvault CASCADE;"
	# Kept inline (STORAGE PLAIN) when it fits a page, so fetching a payload
	# is a plain heap read, as cheap as receiving it from a client.
	cat <<-SQL
		CREATE TABLE payload_pool (id int PRIMARY KEY, payload bytea NOT NULL);
		ALTER TABLE payload_pool ALTER payload SET STORAGE $([ "$BENCH_PAYLOAD" -le 8000 ] && echo PLAIN || echo EXTERNAL);
		INSERT INTO payload_pool
			SELECT i, substring(string_agg(gen_random_bytes(1024), ''::bytea) FROM 1 FOR $BENCH_PAYLOAD)
			FROM generate_series(1, $BENCH_POOL) i, generate_series(1, ($BENCH_PAYLOAD + 1023) / 1024) k
			GROUP BY i;
		VACUUM ANALYZE payload_pool;
		DO \$\$
		BEGIN
			IF (SELECT count(DISTINCT payload) FROM payload_pool) <> $BENCH_POOL
			   OR (SELECT min(length(payload)) FROM payload_pool) <> $BENCH_PAYLOAD THEN
				RAISE EXCEPTION 'payload pool is not $BENCH_POOL distinct values of $BENCH_PAYLOAD bytes';
			END IF;
		END \$\$;
	SQL
	doc_table docs_plain
	doc_table docs_control
	doc_table docs_protected
	echo "SELECT trialvault.protect('docs_protected');"
	# The chain's columns without the chain: tv_seq follows the identity
	# (defaults are evaluated in column order, so currval is this row's id,
	# increasing as tv_seq does), one predecessor and two 32-byte hashes.
	doc_table docs_storage ",
			tv_seq bigint NOT NULL DEFAULT currval('docs_storage_id_seq'),
			tv_prev_seqs bigint[] NOT NULL DEFAULT '{1}',
			tv_prev_hash bytea NOT NULL DEFAULT sha256('prev'),
			tv_hash bytea NOT NULL DEFAULT sha256('row')"
	echo "CREATE UNIQUE INDEX ON docs_storage (tv_seq);"
	doc_table docs_minimal ",
			tv_seq bigint NOT NULL DEFAULT currval('docs_minimal_id_seq'),
			tv_hash bytea NOT NULL DEFAULT sha256('row')"
	echo "CREATE UNIQUE INDEX ON docs_minimal (tv_seq);"
	doc_table docs_naive ",
			nc_seq bigint,
			nc_prev_hash bytea,
			nc_hash bytea"
	cat <<-'SQL'
		-- The naive chain: one tip row per table, locked by every insert until
		-- its transaction ends.
		CREATE TABLE chain_tip (
			tbl regclass PRIMARY KEY,
			seq bigint NOT NULL,
			hash bytea NOT NULL
		) WITH (fillfactor = 10);
		INSERT INTO chain_tip VALUES ('docs_naive', 0, sha256(''::bytea));
		CREATE FUNCTION naive_chain() RETURNS trigger LANGUAGE plpgsql AS $$
		DECLARE
			tip_seq bigint;
			tip_hash bytea;
		BEGIN
			SELECT seq, hash INTO STRICT tip_seq, tip_hash
				FROM chain_tip WHERE tbl = TG_RELID::regclass FOR UPDATE;
			NEW.nc_seq := tip_seq + 1;
			NEW.nc_prev_hash := tip_hash;
			NEW.nc_hash := sha256(tip_hash || convert_to(NEW::text, 'UTF8'));
			UPDATE chain_tip SET seq = NEW.nc_seq, hash = NEW.nc_hash
				WHERE tbl = TG_RELID::regclass;
			RETURN NEW;
		END $$;
		CREATE TRIGGER naive_chain BEFORE INSERT ON docs_naive
			FOR EACH ROW EXECUTE FUNCTION naive_chain();
	SQL
} | sql >/dev/null

for s in plain protected naive control storage minimal; do
	cat >"$DIR/insert_$s.sql" <<-SQL
		\set r random(1, $BENCH_POOL)
		\set study random(1, 20)
		\set site random(1, 200)
		\set subj random(1, 99999)
		\set visit random(1, 12)
		\set page random(1, 60)
		INSERT INTO docs_$s (study_id, site_id, subject, meta, payload) VALUES (:study::int, :site::int, 'S' || :site::int || '-' || :subj::int, ('<meta><visit>' || :visit::int || '</visit><page>' || :page::int || '</page><form>CRF-07</form></meta>')::xml, (SELECT payload FROM payload_pool WHERE id = :r::int));
	SQL
done

declare -A PROCESSED=()
for s in "${SIDES[@]}"; do PROCESSED[$s]=0; done

# run_side SIDE CLIENTS SECONDS: one pgbench run; sets TPS (not run in a
# subshell, so that PROCESSED keeps count).
run_side() {
	local side=$1 clients=$2 secs=$3 jobs out tps n
	jobs=$((clients < $(nproc) ? clients : $(nproc)))
	sql -c "CHECKPOINT" >/dev/null
	if ! out=$("$PGBIN/pgbench" -n -M "$BENCH_PROTOCOL" -c "$clients" -j "$jobs" -T "$secs" \
		-f "$DIR/insert_$side.sql" postgres 2>&1); then
		echo "$out" >&2
		echo "insert_bench.sh: pgbench failed for $side at $clients clients" >&2
		return 1
	fi
	tps=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)$/\1/p' <<<"$out")
	n=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' <<<"$out")
	if [ -z "$tps" ] || [ -z "$n" ]; then
		echo "$out" >&2
		echo "insert_bench.sh: could not read pgbench's result" >&2
		return 1
	fi
	if grep -q '^number of failed transactions: [1-9]' <<<"$out"; then
		echo "$out" >&2
		echo "insert_bench.sh: pgbench reported failed transactions for $side" >&2
		return 1
	fi
	PROCESSED[$side]=$((PROCESSED[$side] + n))
	TPS=$tps
}

maxc=0
for c in "${CLIENTS[@]}"; do [ "$c" -gt "$maxc" ] && maxc=$c; done
echo "== warm-up: ${BENCH_WARMUP}s per side at $maxc clients"
for s in "${SIDES[@]}"; do
	run_side "$s" "$maxc" "$BENCH_WARMUP"
	printf '   %-10s %10.1f tps (not counted)\n' "$s" "$TPS"
done

declare -A MED=() ALL=()
for c in "${CLIENTS[@]}"; do
	echo "== $c client(s): $BENCH_ROUNDS rounds x ${BENCH_SECONDS}s per side, sides alternating"
	declare -A RUNS=()
	for s in "${SIDES[@]}"; do RUNS[$s]=""; done
	for ((r = 1; r <= BENCH_ROUNDS; r++)); do
		line=$(printf '   round %d/%d:' "$r" "$BENCH_ROUNDS")
		for s in "${SIDES[@]}"; do
			run_side "$s" "$c" "$BENCH_SECONDS"
			RUNS[$s]+=" $TPS"
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

echo "== sanity checks"
for s in "${SIDES[@]}"; do
	rows=$(sql -Atc "SELECT count(*) FROM docs_$s")
	if [ "$rows" != "${PROCESSED[$s]}" ]; then
		echo "insert_bench.sh: docs_$s has $rows rows but pgbench committed ${PROCESSED[$s]}" >&2
		exit 1
	fi
	size=$(sql -Atc "SELECT pg_size_pretty(pg_total_relation_size('docs_$s')) || ', heap ' || (pg_relation_size('docs_$s') / greatest($rows, 1)) || ' B a row, indexes ' || (pg_indexes_size('docs_$s') / greatest($rows, 1)) || ' B a row'")
	echo "   docs_$s: $rows rows ($size), as many as pgbench committed"
done
if [[ " ${SIDES[*]} " == *" protected "* ]]; then
	t0=$(date +%s.%N)
	res=$(sql -AtF ' ' -c "SELECT ok, rows_checked, heads, coalesce(first_bad, '-') FROM trialvault.verify('docs_protected')")
	t1=$(date +%s.%N)
	read -r ok checked heads first_bad <<<"$res"
	if [ "$ok" != t ] || [ "$checked" != "${PROCESSED[protected]}" ]; then
		echo "insert_bench.sh: verify(docs_protected): ok=$ok rows_checked=$checked (expected ${PROCESSED[protected]}) first_bad=$first_bad" >&2
		exit 1
	fi
	printf '   verify(docs_protected): ok, %s rows checked, %s head(s), %.1f s\n' \
		"$checked" "$heads" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')"
fi
if [[ " ${SIDES[*]} " == *" naive "* ]]; then
	res=$(sql -Atc "SELECT (SELECT seq FROM chain_tip) = count(*) AND count(DISTINCT nc_seq) = count(*) FROM docs_naive")
	[ "$res" = t ] || {
		echo "insert_bench.sh: the naive chain is not one unbroken sequence" >&2
		exit 1
	}
	echo "   docs_naive: chain_tip.seq = row count, nc_seq unique (one serial chain)"
fi



echo
echo "== results: median of $BENCH_ROUNDS rounds, rows/s (target protected/plain >= $BENCH_TARGET, ratio and paired)"
echo "   ratio = median(side) / median(plain); paired = median over rounds of side/plain in the same round"
hdr=$(printf '%-8s %10s' clients plain)
has_side protected && hdr+=$(printf ' | %10s %6s %6s %6s' protected ratio paired result)
has_side naive && hdr+=$(printf ' | %10s %6s %6s' "naive(ref)" ratio paired)
for s in control storage minimal; do
	has_side $s && hdr+=$(printf ' | %10s %6s %6s' "$s" ratio paired)
done
echo "$hdr"
overall=PASS
for c in "${CLIENTS[@]}"; do
	p=${MED[plain,$c]}
	line=$(printf '%-8s %10.1f' "$c" "$p")
	if has_side protected; then
		pq=${MED[protected,$c]}
		rq=$(ratio "$pq" "$p")
		pr=$(paired_ratio "${ALL[protected,$c]}" "${ALL[plain,$c]}")
		if at_least "$rq" "$BENCH_TARGET" && at_least "$pr" "$BENCH_TARGET"; then
			verdict=PASS
		else
			verdict=FAIL overall=FAIL
		fi
		line+=$(printf ' | %10.1f %6s %6.3f %6s' "$pq" "$rq" "$pr" "$verdict")
	fi
	for s in naive control storage minimal; do
		has_side $s || continue
		n=${MED[$s,$c]}
		line+=$(printf ' | %10.1f %6s %6.3f' "$n" "$(ratio "$n" "$p")" "$(paired_ratio "${ALL[$s,$c]}" "${ALL[plain,$c]}")")
	done
	echo "$line"
done
echo "   each round's side/plain, smallest first (how far the rounds spread):"
for c in "${CLIENTS[@]}"; do
	for s in "${SIDES[@]}"; do
		[ "$s" = plain ] && continue
		printf '   %2d clients, %-10s %s\n' "$c" "$s:" "$(round_ratios "${ALL[$s,$c]}" "${ALL[plain,$c]}")"
	done
done
if has_side protected; then
	echo "overall: $overall (protected/plain >= $BENCH_TARGET at every client count, as ratio and paired)"
fi
note_other_load "the end"
echo "# finished: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
exit 0

#!/usr/bin/env bash
# bench/step_up_bench.sh: open_document by a stepped-up monitor against the
# same call in the build before the second factor existed, in the same run.
#
# Two clusters, set up alike:
#   base  the build BENCH_BASE (default 8054a34, the last commit before the
#         second factor), built and installed with a copy of the system
#         PostgreSQL into the run's temporary directory (install_build)
#   ext   the build installed on this machine (this tree's), where a
#         monitor must have stepped up with a one-time code before
#         open_document shows PHI
# In each: a study BENCH with one site S1, staff (site_staff) who loads
# BENCH_DOCS PHI documents of BENCH_PAYLOAD random bytes, an investigator
# who authorizes the monitors for S1, and a login role "mon".
#
# pgbench runs as mon, one call per transaction (tps = calls/s):
#   SELECT length(trialvault.open_document(:id))   on a random document
# Each pgbench client first (once per connection) SETs ROLE to a monitor of
# its own, opens the study and, in ext, steps up with a code oathtool
# computed for the current 30-second step just before the run.  A code is
# taken once per member and step, so every connection of every run has its
# own monitor (m<run>_<client>), enrolled and confirmed during the setup;
# base gets the same roles and does the same minus the step-up.  The
# step-up is part of the measured time (one call per connection).
#
# The sides run alternately, one run each per round, in the order base,
# ext in odd rounds and ext, base in even ones (so that a drift during a
# round favours neither), each after a CHECKPOINT, for BENCH_ROUNDS rounds
# at each client count.  The report gives the median of the rounds per side,
# ext/base, and the paired ratio (median over rounds of the ratio within one
# round); the target (the issue) is ext/base >= BENCH_TARGET at every client
# count, judged, as in the other benchmarks, on the ratio of the medians.
# BENCH_BASE=HEAD runs the same build on both sides: its ratios show the
# noise floor of the machine (0.97 to 1.09 here).  PASS/FAIL is printed; the script exits 0 unless something
# went wrong (build, pgbench errors, log rows or step-ups that do not match
# the calls and connections made, a broken log chain).
#
# Usage (as root, from anywhere; the system install must be this tree's:
# make install, or scripts/test.sh / scripts/demo.sh):
#   bash bench/step_up_bench.sh            full run (about 7 minutes)
#   bash bench/step_up_bench.sh --quick    about 1.5 minutes
#
# Environment (defaults; --quick ones in brackets):
#   BENCH_SECONDS=4 [2]    length of each measured run, per side
#   BENCH_ROUNDS=8 [2]     rounds; each round runs every side once
#   BENCH_WARMUP=5 [1]     seconds of warm-up per side before measuring
#   BENCH_CLIENTS="1 2 8"  client counts
#   BENCH_PAYLOAD=4096     document bytes
#   BENCH_DOCS=200         number of documents
#   BENCH_BASE=8054a34     the commit the baseline is built from
#                          (BENCH_BASE=HEAD: the same code on both sides, an
#                          A/A check of the harness; both step up)
#   BENCH_PROTOCOL=prepared                pgbench -M (simple|extended|prepared)
#   BENCH_TARGET=0.95      minimum ext/base at every client count
#   BENCH_MALLOC=glibc.malloc.trim_threshold=67108864
#                          GLIBC_TUNABLES for both servers ("" for glibc's
#                          defaults).  With the defaults, glibc raises a
#                          process's trim and mmap thresholds after it frees
#                          a large block, and until then gives freed heap
#                          back with brk() on every call: in this workload
#                          the step-up happened to raise them, the baseline
#                          never did, and the baseline's backends spent a
#                          quarter of their time in brk() and the page
#                          faults after it (ext/base up to 1.8 at 8
#                          clients).  A fixed threshold on both sides
#                          compares the code, not the heap's history.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
# shellcheck source=bench/common.sh
source "$HERE/common.sh"
CMDLINE=$(command_line BENCH_SECONDS BENCH_ROUNDS BENCH_WARMUP BENCH_CLIENTS BENCH_PAYLOAD BENCH_DOCS BENCH_BASE BENCH_PROTOCOL BENCH_TARGET BENCH_MALLOC -- "$0" "$@")

parse_common_args "$(basename "$0")" "$@"
if [ -n "$quick" ]; then
	: "${BENCH_SECONDS:=2}" "${BENCH_ROUNDS:=2}" "${BENCH_WARMUP:=1}"
fi
: "${BENCH_SECONDS:=4}" "${BENCH_ROUNDS:=8}" "${BENCH_WARMUP:=5}"
: "${BENCH_CLIENTS:=1 2 8}" "${BENCH_PAYLOAD:=4096}" "${BENCH_DOCS:=200}"
: "${BENCH_BASE:=8054a34}" "${BENCH_PROTOCOL:=prepared}" "${BENCH_TARGET:=0.95}"
: "${BENCH_MALLOC=glibc.malloc.trim_threshold=67108864}"

for v in BENCH_SECONDS BENCH_ROUNDS BENCH_WARMUP BENCH_PAYLOAD BENCH_DOCS; do
	if ! [[ ${!v} =~ ^[0-9]+$ ]] || [ "${!v}" -lt 1 ]; then
		echo "step_up_bench.sh: $v must be a positive integer, not '${!v}'" >&2
		exit 2
	fi
done
read -r -a CLIENTS <<<"$BENCH_CLIENTS"
for c in "${CLIENTS[@]}"; do
	if ! [[ $c =~ ^[0-9]+$ ]] || [ "$c" -lt 1 ] || [ "$c" -gt 16 ]; then
		echo "step_up_bench.sh: client counts must be 1 to 16 (max_connections), not '$c'" >&2
		exit 2
	fi
done
git -C "$REPO" rev-parse -q --verify "$BENCH_BASE^{commit}" >/dev/null || {
	echo "step_up_bench.sh: BENCH_BASE '$BENCH_BASE' is not a commit of this repository" >&2
	exit 2
}
command -v oathtool >/dev/null || {
	echo "step_up_bench.sh: oathtool is missing (bash scripts/install-deps.sh)" >&2
	exit 2
}
SIDES=(base ext)

# shellcheck source=test/lib/cluster.sh
source "$REPO/test/lib/cluster.sh"
SYSBIN=$PGBIN

CONF=(
	"shared_buffers = 256MB"
	"max_wal_size = 4GB"
	"checkpoint_timeout = 30min"
	"synchronous_commit = on"
	"autovacuum = off"
)

maxc=${CLIENTS[0]}
for c in "${CLIENTS[@]}"; do
	[ "$c" -gt "$maxc" ] && maxc=$c
done
# The runs of one side in order, by client count: the warm-up, then the
# rounds.  Run k's clients are monitors m<k>_0 .. m<k>_<clients - 1>.
PLAN=("$maxc")
for c in "${CLIENTS[@]}"; do
	for ((r = 1; r <= BENCH_ROUNDS; r++)); do PLAN+=("$c"); done
done
NROLES=1
for c in "${PLAN[@]}"; do NROLES=$((NROLES + c)); done
est=$((${#PLAN[@]} * 2 * (BENCH_SECONDS + 3) + NROLES / 4 + 90))

echo "# trialvault step-up benchmark: open_document by a stepped-up monitor, against the build before the second factor"
echo "# command:    $CMDLINE"
bench_context
echo "# baseline:   $(git -C "$REPO" log -1 --format='%h %s' "$BENCH_BASE" | cut -c1-100)"
echo "# settings:   BENCH_SECONDS=$BENCH_SECONDS BENCH_ROUNDS=$BENCH_ROUNDS BENCH_WARMUP=$BENCH_WARMUP"
echo "#             BENCH_CLIENTS=\"$BENCH_CLIENTS\" BENCH_PROTOCOL=$BENCH_PROTOCOL BENCH_TARGET=$BENCH_TARGET"
echo "#             BENCH_PAYLOAD=$BENCH_PAYLOAD BENCH_DOCS=$BENCH_DOCS"
echo "# servers:    two fresh clusters, unix sockets, fsync = on, $(printf '%s, ' "${CONF[@]}" | sed 's/, $//')"
echo "#             GLIBC_TUNABLES=${BENCH_MALLOC:-(unset: the glibc defaults)}"
echo "# workload:   pgbench -n -M $BENCH_PROTOCOL as mon; per connection SET ROLE to its own monitor, open_study"
echo "#             (ext: and step_up); then SELECT length(trialvault.open_document(:id)), one call per transaction"
echo "# monitors:   $NROLES per cluster, one per connection of every run"
echo "# estimated:  ~$((est / 60)) min $((est % 60)) s (with the baseline's build)"
note_other_load
echo

echo "== building the baseline ($BENCH_BASE) into $(tv_dir base-build)"
t0=$SECONDS
BASEBIN=$(install_build "$BENCH_BASE" "$(tv_dir base-build)") || die "the baseline did not build"
echo "   built and installed in $((SECONDS - t0)) s: $BASEBIN"

GLIBC_TUNABLES=$BENCH_MALLOC PGBIN=$BASEBIN tv_cluster_start base "${CONF[@]}"
GLIBC_TUNABLES=$BENCH_MALLOC tv_cluster_start ext "${CONF[@]}"

# psql against database postgres of cluster SIDE.
on() {
	local side=$1
	shift
	tv_psql "$side" -d postgres "$@"
}

echo "== setup in each cluster: study, site, staff, investigator, $NROLES monitors, $BENCH_DOCS documents"
monitors=$(echo msanity; for ((k = 0; k < ${#PLAN[@]}; k++)); do
	for ((c = 0; c < PLAN[k]; c++)); do printf 'm%d_%d\n' "$k" "$c"; done
done)
for side in "${SIDES[@]}"; do
	on "$side" -v payload="$BENCH_PAYLOAD" -v ndocs="$BENCH_DOCS" >/dev/null <<-'SQL'
		SET client_min_messages = warning;
		CREATE EXTENSION trialvault CASCADE;
		CREATE ROLE staff LOGIN;
		CREATE ROLE inv LOGIN;
		CREATE ROLE mon LOGIN;
		SELECT trialvault.create_study('BENCH', 'bench');
		SELECT trialvault.require_signatures('BENCH', false);
		SELECT trialvault.add_site('BENCH', 'S1', 'Site 1');
		SELECT trialvault.grant_role('staff', 'BENCH', 'S1', 'site_staff');
		SELECT trialvault.grant_role('inv', 'BENCH', 'S1', 'investigator');

		CREATE TABLE bench_plain (n int PRIMARY KEY, content bytea NOT NULL);
		INSERT INTO bench_plain
			SELECT i, substring(string_agg(gen_random_bytes(1024), ''::bytea) FROM 1 FOR :payload)
			FROM generate_series(1, :ndocs) i, generate_series(1, (:payload + 1023) / 1024) k
			GROUP BY i;
		GRANT SELECT ON bench_plain TO PUBLIC;
		CREATE TABLE bench_ids (n int PRIMARY KEY, doc_id bigint NOT NULL UNIQUE);
		GRANT SELECT, INSERT ON bench_ids TO staff;
		GRANT SELECT ON bench_ids TO PUBLIC;
		SET ROLE staff;
		DO $$
		DECLARE
			r record;
		BEGIN
			FOR r IN SELECT n, content FROM bench_plain ORDER BY n LOOP
				INSERT INTO bench_ids VALUES (r.n, trialvault.load_document('BENCH', 'S1', 'source', true,
					format('<meta><visit>%s</visit><page>%s</page><form>CRF-07</form></meta>', r.n % 12 + 1, r.n)::xml,
					r.content));
			END LOOP;
		END $$;
		RESET ROLE;

		-- The code each connection steps up with, written just before its
		-- run (ext only), and the secrets they are computed from.
		CREATE TABLE bench_codes (member name PRIMARY KEY, code text NOT NULL);
		GRANT SELECT ON bench_codes TO mon;
		CREATE TABLE bench_secrets (member name PRIMARY KEY, secret text NOT NULL);

		-- Once per connection, as mon: become this client's monitor, open
		-- the study and, where there is a second factor, step up.
		CREATE FUNCTION bench_enter(member name) RETURNS void LANGUAGE plpgsql AS $$
		DECLARE
			c text;
		BEGIN
			SELECT code INTO c FROM bench_codes WHERE bench_codes.member = bench_enter.member;
			EXECUTE format('SET ROLE %I', member);
			PERFORM trialvault.open_study('BENCH');
			IF to_regprocedure('trialvault.step_up(text)') IS NOT NULL THEN
				PERFORM trialvault.step_up(c);
			END IF;
		END $$;
		CREATE FUNCTION bench_enter(k int, client int) RETURNS void LANGUAGE sql
			AS $$ SELECT bench_enter(format('m%s_%s', k, client)::name) $$;

		-- totp(secret, at): oathtool's code for the step of epoch second at.
		CREATE FUNCTION totp(secret text, at bigint) RETURNS text LANGUAGE plpgsql AS $$
		DECLARE
			c text;
		BEGIN
			IF to_regclass('pg_temp.totp_out') IS NULL THEN
				CREATE TEMP TABLE totp_out (code text);
			END IF;
			DELETE FROM totp_out;
			EXECUTE format('COPY totp_out FROM PROGRAM %L',
						   format('oathtool --totp -b -N @%s %s', at, secret));
			SELECT code INTO c FROM totp_out;
			RETURN c;
		END $$;

		-- enrol(member), as superuser: enrol and confirm with the previous
		-- step's code, so that any later step's code steps up.
		CREATE FUNCTION enrol(member name) RETURNS void LANGUAGE plpgsql AS $$
		DECLARE
			uri text;
			t bigint;
			c text;
		BEGIN
			EXECUTE format('SET ROLE %I', member);
			uri := trialvault.enroll_second_factor();
			RESET ROLE;
			INSERT INTO bench_secrets VALUES (member, substring(uri FROM 'secret=([A-Z2-7]+)'));
			WHILE extract(epoch FROM clock_timestamp())::bigint % 30 > 25 LOOP
				PERFORM pg_sleep(0.5);
			END LOOP;
			t := extract(epoch FROM clock_timestamp())::bigint;
			c := totp((SELECT secret FROM bench_secrets s WHERE s.member = enrol.member), t - 30);
			EXECUTE format('SET ROLE %I', member);
			PERFORM trialvault.confirm_second_factor(c);
			RESET ROLE;
		END $$;

		-- codes_for(pattern), as superuser: the codes of the monitors whose
		-- names are LIKE pattern, for the current step (taken until the end
		-- of the next one).
		CREATE FUNCTION codes_for(pattern text) RETURNS bigint LANGUAGE plpgsql AS $$
		DECLARE
			t bigint := extract(epoch FROM clock_timestamp())::bigint;
		BEGIN
			DELETE FROM bench_codes;
			INSERT INTO bench_codes
				SELECT member, totp(secret, t) FROM bench_secrets WHERE member::text LIKE pattern;
			RETURN (SELECT count(*) FROM bench_codes);
		END $$;
	SQL
	{
		echo "BEGIN;"
		while read -r m; do
			echo "CREATE ROLE $m LOGIN; GRANT $m TO mon;"
			echo "SELECT trialvault.grant_role('$m', 'BENCH', NULL, 'monitor');"
			echo "SET ROLE inv; SELECT trialvault.authorize_monitor('$m', 'BENCH', 'S1', now() + interval '1 day'); RESET ROLE;"
		done <<<"$monitors"
		echo "COMMIT;"
		echo "VACUUM ANALYZE;"
	} | on "$side" >/dev/null
done
# The sides with a second factor (ext; base too when BENCH_BASE has it, as
# in an A/A check of the harness with BENCH_BASE=HEAD) enrol every monitor.
declare -A FACTOR=()
for side in "${SIDES[@]}"; do
	FACTOR[$side]=$(on "$side" -At -c "SELECT to_regprocedure('trialvault.step_up(text)') IS NOT NULL")
	[ "${FACTOR[$side]}" = t ] || continue
	t0=$SECONDS
	while read -r m; do
		echo "SELECT enrol('$m');"
	done <<<"$monitors" | PGOPTIONS="-c client_min_messages=warning" on "$side" >/dev/null
	echo "   $side: $NROLES monitors enrolled and confirmed in $((SECONDS - t0)) s"
done
[ "${FACTOR[ext]}" = t ] || die "ext: the installed build has no trialvault.step_up (make install this tree first)"

read -r LO HI NIDS < <(on ext -At -F ' ' -c "SELECT min(doc_id), max(doc_id), count(*) FROM bench_ids")
read -r lo hi n < <(on base -At -F ' ' -c "SELECT min(doc_id), max(doc_id), count(*) FROM bench_ids")
[ "$lo $hi $n" = "$LO $HI $NIDS" ] || die "document ids differ between the clusters: base $lo..$hi ($n), ext $LO..$HI ($NIDS)"
if [ "$NIDS" != "$BENCH_DOCS" ] || [ $((HI - LO + 1)) != "$BENCH_DOCS" ]; then
	die "document ids are not one contiguous range: $LO..$HI for $NIDS documents"
fi

# Sanity, with a monitor of its own (msanity): in ext, refused before the
# step-up; after it, every document opens to its plaintext, in base
# likewise without a step-up.
for side in "${SIDES[@]}"; do
	[ "${FACTOR[$side]}" = t ] || continue
	on "$side" -c "SELECT codes_for('msanity')" >/dev/null
	check=$(on "$side" -U mon -At -v ON_ERROR_STOP=0 2>&1 <<-'SQL'
		SET ROLE msanity;
		SELECT trialvault.open_study('BENCH');
		SELECT trialvault.open_document((SELECT min(doc_id) FROM bench_ids));
	SQL
	) || true
	grep -q 'second_factor_required' <<<"$check" || {
		echo "$check" >&2
		die "$side: a monitor without a step-up was not refused with second_factor_required"
	}
done
for side in "${SIDES[@]}"; do
	got=$(on "$side" -U mon -At <<-'SQL'
		\o /dev/null
		SELECT bench_enter('msanity');
		\o
		SELECT count(*) FILTER (WHERE trialvault.open_document(i.doc_id) = p.content)
		FROM bench_ids i JOIN bench_plain p USING (n);
	SQL
	)
	[ "$got" = "$NIDS" ] || die "$side: a stepped-up monitor opened $got of $NIDS documents to their plaintext"
done
echo "   documents $LO..$HI; ext refuses a monitor without a step-up; as monitor, identical plaintext from base and ext ($NIDS/$NIDS)"

granted() {
	on "$1" -At -c "SELECT count(*) FROM trialvault.decryption_log WHERE study = 'BENCH' AND reason = 'monitor' AND granted"
}
step_ups() {
	on "$1" -At -c "SELECT count(*) FROM trialvault.audit_events WHERE event = 'second_factor_step_up'"
}
declare -A LOG0=() PROCESSED=()
for side in "${SIDES[@]}"; do
	LOG0[$side]=$(granted "$side")
	PROCESSED[$side]=0
done
declare -A SU0=() CONNECTIONS=()
for side in "${SIDES[@]}"; do
	[ "${FACTOR[$side]}" = t ] && SU0[$side]=$(step_ups "$side")
	CONNECTIONS[$side]=0
done

cat >"$(tv_dir ext)/open.sql" <<-SQL
	\if :entered = 0
	SELECT bench_enter(:k, :client_id);
	\set entered 1
	\endif
	\set id random($LO, $HI)
	SELECT length(trialvault.open_document(:id));
SQL
cp "$(tv_dir ext)/open.sql" "$(tv_dir base)/open.sql"
chmod a+r "$(tv_dir ext)/open.sql" "$(tv_dir base)/open.sql"

# run_side SIDE K CLIENTS SECONDS: pgbench against SIDE's cluster with run
# K's monitors; sets TPS.
run_side() {
	local side=$1 k=$2 clients=$3 secs=$4 jobs out tps n dir
	jobs=$((clients < $(nproc) ? clients : $(nproc)))
	dir=$(tv_dir "$side")
	on "$side" -c "CHECKPOINT" >/dev/null
	if [ "${FACTOR[$side]}" = t ]; then
		n=$(on "$side" -At -c "SELECT codes_for('m${k}\\_%')")
		[ "$n" = "$clients" ] || die "$side: $n codes for run $k's $clients monitors"
	fi
	if ! out=$(PGHOST=$dir PGPORT=$(tv_port "$side") "$SYSBIN/pgbench" -n -D entered=0 -D k="$k" \
		-M "$BENCH_PROTOCOL" -c "$clients" -j "$jobs" -T "$secs" -U mon -f "$dir/open.sql" postgres 2>&1); then
		echo "$out" >&2
		die "pgbench failed for $side at $clients clients (run $k)"
	fi
	tps=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)$/\1/p' <<<"$out")
	n=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' <<<"$out")
	if [ -z "$tps" ] || [ -z "$n" ]; then
		echo "$out" >&2
		die "could not read pgbench's result"
	fi
	if grep -q '^number of failed transactions: [1-9]' <<<"$out"; then
		echo "$out" >&2
		die "pgbench reported failed transactions for $side"
	fi
	PROCESSED[$side]=$((PROCESSED[$side] + n))
	CONNECTIONS[$side]=$((CONNECTIONS[$side] + clients))
	TPS=$tps
}

echo "== warm-up: ${BENCH_WARMUP}s per side at $maxc clients"
k=0
for s in "${SIDES[@]}"; do
	run_side "$s" "$k" "$maxc" "$BENCH_WARMUP"
	printf '   %-4s %10.1f calls/s (not counted)\n' "$s" "$TPS"
done

declare -A MED=() ALL=()
for c in "${CLIENTS[@]}"; do
	echo "== $c client(s): $BENCH_ROUNDS rounds x ${BENCH_SECONDS}s per side, sides alternating"
	declare -A RUNS=([base]="" [ext]="")
	for ((r = 1; r <= BENCH_ROUNDS; r++)); do
		k=$((k + 1))
		line=$(printf '   round %d/%d:' "$r" "$BENCH_ROUNDS")
		# base first in odd rounds, ext first in even ones: a drift of the
		# machine's speed during a round favours neither side.
		order=(base ext)
		[ $((r % 2)) = 0 ] && order=(ext base)
		for s in "${order[@]}"; do
			run_side "$s" "$k" "$c" "$BENCH_SECONDS"
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
	rows=$(granted "$s")
	want=$((LOG0[$s] + PROCESSED[$s]))
	[ "$rows" = "$want" ] || die "$s: $rows granted monitor log rows, expected $want (${LOG0[$s]} before + ${PROCESSED[$s]} calls pgbench committed)"
	echo "   $s: $rows granted monitor log rows = ${LOG0[$s]} before + ${PROCESSED[$s]} calls committed by pgbench"
	refused=$(on "$s" -At -c "SELECT count(*) FROM trialvault.decryption_log WHERE NOT granted AND requester::text LIKE 'm%' AND requester <> 'mon'")
	want=0
	[ "${FACTOR[$s]}" = t ] && want=1
	[ "$refused" = "$want" ] || die "$s: $refused refused monitor calls, expected $want (the sanity check's)"
	res=$(on "$s" -AtF ' ' -c "SELECT ok, rows_checked FROM trialvault.verify('trialvault.decryption_log')")
	[ "${res%% *}" = t ] || die "$s: verify(trialvault.decryption_log): $res"
	echo "   $s: verify(trialvault.decryption_log) ok, ${res#* } rows; refused monitor calls: $refused"
done
for s in "${SIDES[@]}"; do
	[ "${FACTOR[$s]}" = t ] || continue
	su=$(($(step_ups "$s") - SU0[$s]))
	[ "$su" = "${CONNECTIONS[$s]}" ] || die "$s: $su step-ups recorded for ${CONNECTIONS[$s]} connections"
	echo "   $s: $su step-ups recorded, one per connection"
done

echo
echo "== results: median of $BENCH_ROUNDS rounds, calls/s"
echo "   ratio = median(ext) / median(base); paired = median over rounds of ext/base in the same round"
echo "   target: ext/base >= $BENCH_TARGET at every client count (the ratio of the medians)"
printf '%-8s %10s %10s %6s %6s %6s\n' clients base ext ratio paired result
overall=PASS
for c in "${CLIENTS[@]}"; do
	rt=$(ratio "${MED[ext,$c]}" "${MED[base,$c]}")
	pr=$(paired_ratio "${ALL[ext,$c]}" "${ALL[base,$c]}")
	verdict=PASS
	at_least "$rt" "$BENCH_TARGET" || verdict=FAIL overall=FAIL
	printf '%-8s %10.1f %10.1f %6s %6s %6s\n' "$c" "${MED[base,$c]}" "${MED[ext,$c]}" "$rt" "$pr" "$verdict"
done
echo "overall: $overall"
note_other_load "the end"
echo "# finished: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
exit 0

#!/usr/bin/env bash
# bench/open_bench.sh: open_document with its durable decryption log, on
# 4 KB documents, against two plpgsql baselines that return the same
# plaintext after writing the same log row, in the same run.
#
# A study BENCH with one site S1 and a login role "staff" (site_staff at
# S1), who loads BENCH_DOCS PHI documents of BENCH_PAYLOAD random bytes
# (encrypted under the study's key).  The same plaintexts are stored plainly
# under the same ids in base_docs for the baselines.  pgbench runs, as
# staff, one call per transaction (tps = calls/s) on a random document id:
#
#   ext   SELECT length(trialvault.open_document(:id))   (after open_study, once per connection)
#         access decision, AES-256-GCM decryption, and the log row committed
#         (synchronous_commit = on) by the log writer before the call returns
#   a     SELECT length(base_open_a(:id))
#         plpgsql SECURITY DEFINER: one indexed membership lookup, INSERT of
#         the log row into base_log_a in the caller's own transaction, return
#         the content.  Fast, but the row is lost on ROLLBACK.
#   b     SELECT length(base_open_b(:id))
#         the same, but the log row goes into base_log_b through dblink_exec
#         on a persistent named loopback connection ('loop', opened on the
#         first call of a session), i.e. committed in its own transaction
#         before the value is returned: the usual autonomous-transaction
#         workaround.
#
# base_log_a/b have the columns and indexes of trialvault.decryption_log
# (without its chain).  The baselines take the requester from session_user
# (a SECURITY DEFINER function cannot see its caller's current_user).
#
# The sides run alternately, one run each per round (ext, a, b, ext, a, b,
# ...), each run after a CHECKPOINT, for BENCH_ROUNDS rounds at each client
# count; the report gives the median of the rounds per side, the ratios
# ext/a and ext/b and paired ratios (median over rounds of the ratio within
# one round), and the log writer's average batch (records per commit) in the
# ext runs.  Targets (the issue): ext/a >= 1 at 8 clients (group commit makes
# durability free under load) and ext/b >= 0.9 at 1 client.  PASS/FAIL is
# printed; the script exits 0 unless something went wrong (pgbench errors,
# log row counts that do not match the calls made, a broken log chain).
#
# Usage (as root, from anywhere):
#   bash bench/open_bench.sh            full run (about 5 minutes)
#   bash bench/open_bench.sh --quick    about 50 seconds
#
# Environment (defaults; --quick ones in brackets):
#   BENCH_SECONDS=5 [2]    length of each measured run, per side
#   BENCH_ROUNDS=5 [2]     rounds; each round runs every side once
#   BENCH_WARMUP=5 [1]     seconds of warm-up per side before measuring
#   BENCH_CLIENTS="1 2 8"  client counts
#   BENCH_PAYLOAD=4096     document bytes
#   BENCH_DOCS=200         number of documents
#   BENCH_SIDES="ext a b"  sides, in run order (ext is required)
#   BENCH_PROTOCOL=prepared                pgbench -M (simple|extended|prepared)
#   BENCH_TARGET_A=1.0     minimum ext/a at the largest client count
#   BENCH_TARGET_B=0.9     minimum ext/b at the smallest client count
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
# shellcheck source=bench/common.sh
source "$HERE/common.sh"
CMDLINE=$(command_line BENCH_SECONDS BENCH_ROUNDS BENCH_WARMUP BENCH_CLIENTS BENCH_PAYLOAD BENCH_DOCS BENCH_SIDES BENCH_PROTOCOL BENCH_TARGET_A BENCH_TARGET_B -- "$0" "$@")

parse_common_args "$(basename "$0")" "$@"
if [ -n "$quick" ]; then
	: "${BENCH_SECONDS:=2}" "${BENCH_ROUNDS:=2}" "${BENCH_WARMUP:=1}"
fi
: "${BENCH_SECONDS:=5}" "${BENCH_ROUNDS:=5}" "${BENCH_WARMUP:=5}"
: "${BENCH_CLIENTS:=1 2 8}" "${BENCH_PAYLOAD:=4096}" "${BENCH_DOCS:=200}"
: "${BENCH_SIDES:=ext a b}" "${BENCH_PROTOCOL:=prepared}"
: "${BENCH_TARGET_A:=1.0}" "${BENCH_TARGET_B:=0.9}"

for v in BENCH_SECONDS BENCH_ROUNDS BENCH_WARMUP BENCH_PAYLOAD BENCH_DOCS; do
	if ! [[ ${!v} =~ ^[0-9]+$ ]] || [ "${!v}" -lt 1 ]; then
		echo "open_bench.sh: $v must be a positive integer, not '${!v}'" >&2
		exit 2
	fi
done
read -r -a CLIENTS <<<"$BENCH_CLIENTS"
read -r -a SIDES <<<"$BENCH_SIDES"
for c in "${CLIENTS[@]}"; do
	if ! [[ $c =~ ^[0-9]+$ ]] || [ "$c" -lt 1 ] || [ "$c" -gt 16 ]; then
		echo "open_bench.sh: client counts must be 1 to 16 (max_connections), not '$c'" >&2
		exit 2
	fi
done
for s in "${SIDES[@]}"; do
	case $s in ext | a | b) ;; *)
		echo "open_bench.sh: unknown side '$s' (ext, a, b)" >&2
		exit 2
		;;
	esac
done
[[ " ${SIDES[*]} " == *" ext "* ]] || {
	echo "open_bench.sh: BENCH_SIDES must include ext" >&2
	exit 2
}

# shellcheck source=test/lib/cluster.sh
source "$REPO/test/lib/cluster.sh"

# autovacuum off: the log tables only grow, and an autovacuum of one of
# them (insert threshold) must not land in another side's run.
CONF=(
	"shared_buffers = 256MB"
	"max_wal_size = 4GB"
	"checkpoint_timeout = 30min"
	"synchronous_commit = on"
	"autovacuum = off"
)

minc=${CLIENTS[0]} maxc=${CLIENTS[0]}
for c in "${CLIENTS[@]}"; do
	[ "$c" -gt "$maxc" ] && maxc=$c
	[ "$c" -lt "$minc" ] && minc=$c
done
runs_per_point=$((BENCH_ROUNDS * ${#SIDES[@]}))
est=$(((runs_per_point * ${#CLIENTS[@]} * (BENCH_SECONDS + 1)) + ${#SIDES[@]} * (BENCH_WARMUP + 1) + 15))

echo "# trialvault open_document benchmark"
echo "# command:    $CMDLINE"
bench_context
echo "# settings:   BENCH_SECONDS=$BENCH_SECONDS BENCH_ROUNDS=$BENCH_ROUNDS BENCH_WARMUP=$BENCH_WARMUP"
echo "#             BENCH_CLIENTS=\"$BENCH_CLIENTS\" BENCH_SIDES=\"$BENCH_SIDES\" BENCH_PROTOCOL=$BENCH_PROTOCOL"
echo "#             BENCH_PAYLOAD=$BENCH_PAYLOAD BENCH_DOCS=$BENCH_DOCS BENCH_TARGET_A=$BENCH_TARGET_A BENCH_TARGET_B=$BENCH_TARGET_B"
echo "# server:     fresh cluster, unix socket, fsync = on, $(printf '%s, ' "${CONF[@]}" | sed 's/, $//')"
echo "# documents:  $BENCH_DOCS PHI documents of $BENCH_PAYLOAD random bytes loaded by staff (site_staff of BENCH/S1)"
echo "# ext:        SELECT length(trialvault.open_document(:id))   (log row committed by the log writer)"
echo "# a:          SELECT length(base_open_a(:id))   (plpgsql, log row inserted in the caller's transaction)"
echo "# b:          SELECT length(base_open_b(:id))   (plpgsql, log row via dblink_exec on a persistent loopback connection)"
echo "# workload:   pgbench -n -M $BENCH_PROTOCOL as staff, one call per transaction (tps = calls/s), CHECKPOINT before every run"
echo "# estimated:  ~$((est / 60)) min $((est % 60)) s"
note_other_load
echo

tv_cluster_start bench "${CONF[@]}"
tv_use bench
DIR=$(tv_dir bench)
PORT=$(tv_port bench)



echo "== setup: study, site, staff, $BENCH_DOCS documents, baselines"
sql -v payload="$BENCH_PAYLOAD" -v ndocs="$BENCH_DOCS" -v loop="dbname=postgres user=postgres host=$DIR port=$PORT" >/dev/null <<-'SQL'
	CREATE EXTENSION trialvault CASCADE;
	CREATE EXTENSION dblink;
	CREATE ROLE staff LOGIN;
	SELECT trialvault.create_study('BENCH', 'bench');
	SELECT trialvault.require_signatures('BENCH', false);
	SELECT trialvault.add_site('BENCH', 'S1', 'Site 1');
	SELECT trialvault.grant_role('staff', 'BENCH', 'S1', 'site_staff');

	-- The plaintexts, generated once.
	CREATE TABLE bench_plain (n int PRIMARY KEY, content bytea NOT NULL);
	INSERT INTO bench_plain
		SELECT i, substring(string_agg(gen_random_bytes(1024), ''::bytea) FROM 1 FOR :payload)
		FROM generate_series(1, :ndocs) i, generate_series(1, (:payload + 1023) / 1024) k
		GROUP BY i;
	GRANT SELECT ON bench_plain TO staff;

	-- staff loads them (PHI: stored encrypted); ids in load order.
	CREATE TABLE bench_ids (n int PRIMARY KEY, doc_id bigint NOT NULL UNIQUE);
	GRANT SELECT, INSERT ON bench_ids TO staff;
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

	-- Baselines: the same plaintexts under the same ids, stored plainly,
	-- a membership table and two log tables shaped like decryption_log.
	CREATE TABLE base_docs (id bigint PRIMARY KEY, study text NOT NULL, site text NOT NULL,
		content bytea NOT NULL);
	INSERT INTO base_docs SELECT i.doc_id, 'BENCH', 'S1', p.content
		FROM bench_ids i JOIN bench_plain p USING (n);
	CREATE TABLE base_members (study text NOT NULL, site text NOT NULL, member name NOT NULL,
		study_role text NOT NULL, PRIMARY KEY (member, study, site, study_role));
	INSERT INTO base_members VALUES ('BENCH', 'S1', 'staff', 'site_staff');
	CREATE TABLE base_log_a (
		log_id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
		doc_id bigint,
		study text,
		site text,
		requester name NOT NULL,
		session_user_name name NOT NULL,
		requested_at timestamptz NOT NULL,
		granted boolean NOT NULL,
		reason text NOT NULL,
		emergency boolean NOT NULL DEFAULT false,
		emergency_reason text,
		client_addr inet,
		application_name text,
		backend_pid integer NOT NULL,
		logged_at timestamptz NOT NULL DEFAULT now()
	);
	CREATE INDEX ON base_log_a (study, site, requested_at);
	CREATE INDEX ON base_log_a (doc_id);
	CREATE TABLE base_log_b (LIKE base_log_a INCLUDING ALL);
	CREATE INDEX ON base_log_b (study, site, requested_at);
	CREATE INDEX ON base_log_b (doc_id);
	CREATE TABLE base_conf (loop_conn text NOT NULL);
	INSERT INTO base_conf VALUES (:'loop');

	-- (a): the log row in the caller's transaction.
	CREATE FUNCTION base_open_a(p_id bigint) RETURNS bytea
		LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
	DECLARE
		d record;
		ok boolean;
	BEGIN
		SELECT study, site, content INTO d FROM base_docs WHERE id = p_id;
		ok := FOUND AND EXISTS (SELECT 1 FROM base_members m
			WHERE m.member = session_user AND m.study = d.study AND m.site = d.site
			  AND m.study_role IN ('site_staff', 'investigator'));
		INSERT INTO base_log_a (doc_id, study, site, requester, session_user_name, requested_at,
			granted, reason, client_addr, application_name, backend_pid)
		VALUES (p_id, d.study, d.site, session_user, session_user, clock_timestamp(),
			ok, CASE WHEN ok THEN 'site_staff' ELSE 'not_entitled' END,
			inet_client_addr(), current_setting('application_name'), pg_backend_pid());
		IF NOT ok THEN
			RAISE EXCEPTION 'permission denied to open document %', p_id USING ERRCODE = 'insufficient_privilege';
		END IF;
		RETURN d.content;
	END $$;

	-- (b): the log row committed in its own transaction through a
	-- persistent loopback dblink connection, before the value is returned.
	CREATE FUNCTION base_open_b(p_id bigint) RETURNS bytea
		LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
	DECLARE
		d record;
		ok boolean;
	BEGIN
		SELECT study, site, content INTO d FROM base_docs WHERE id = p_id;
		ok := FOUND AND EXISTS (SELECT 1 FROM base_members m
			WHERE m.member = session_user AND m.study = d.study AND m.site = d.site
			  AND m.study_role IN ('site_staff', 'investigator'));
		IF NOT coalesce('loop' = ANY (dblink_get_connections()), false) THEN
			PERFORM dblink_connect('loop', (SELECT loop_conn FROM base_conf));
		END IF;
		PERFORM dblink_exec('loop', format(
			'INSERT INTO base_log_b (doc_id, study, site, requester, session_user_name, requested_at,'
			' granted, reason, client_addr, application_name, backend_pid)'
			' VALUES (%s, %L, %L, %L, %L, %L, %L, %L, %L, %L, %s)',
			p_id, d.study, d.site, session_user, session_user, clock_timestamp(),
			ok, CASE WHEN ok THEN 'site_staff' ELSE 'not_entitled' END,
			inet_client_addr(), current_setting('application_name'), pg_backend_pid()));
		IF NOT ok THEN
			RAISE EXCEPTION 'permission denied to open document %', p_id USING ERRCODE = 'insufficient_privilege';
		END IF;
		RETURN d.content;
	END $$;
	REVOKE EXECUTE ON FUNCTION base_open_a(bigint), base_open_b(bigint) FROM PUBLIC;
	GRANT EXECUTE ON FUNCTION base_open_a(bigint), base_open_b(bigint) TO staff;
	VACUUM ANALYZE;
SQL

read -r LO HI NIDS < <(sql -At -F ' ' -c "SELECT min(doc_id), max(doc_id), count(*) FROM bench_ids")
if [ "$NIDS" != "$BENCH_DOCS" ] || [ $((HI - LO + 1)) != "$BENCH_DOCS" ]; then
	die "document ids are not one contiguous range: $LO..$HI for $NIDS documents"
fi

# Sanity: as staff, every side returns the same plaintext for every
# document, and each call leaves its log row (ext: also after ROLLBACK).
read -r EXT_OK A_OK B_OK < <(tv_psql bench -d postgres -U staff -At -F ' ' <<-'SQL'
	\o /dev/null
	SELECT trialvault.open_study('BENCH');
	\o
	SELECT count(*) FILTER (WHERE trialvault.open_document(i.doc_id) = p.content),
		count(*) FILTER (WHERE base_open_a(i.doc_id) = p.content),
		count(*) FILTER (WHERE base_open_b(i.doc_id) = p.content)
	FROM bench_ids i JOIN bench_plain p USING (n)
SQL
)
echo "   documents $LO..$HI; as staff, identical plaintext from ext $EXT_OK/$NIDS, a $A_OK/$NIDS, b $B_OK/$NIDS"
if [ "$EXT_OK" != "$NIDS" ] || [ "$A_OK" != "$NIDS" ] || [ "$B_OK" != "$NIDS" ]; then
	die "a side did not return the loaded plaintext for every document"
fi
tv_psql bench -d postgres -U staff -At >/dev/null <<-SQL
	SELECT trialvault.open_study('BENCH');
	BEGIN;
	SELECT length(trialvault.open_document($LO));
	SELECT length(base_open_a($LO));
	SELECT length(base_open_b($LO));
	ROLLBACK;
SQL
# Log rows so far, per side (all from the checks above).
logcount() {
	case $1 in
	ext) sql -At -c "SELECT count(*) FROM trialvault.decryption_log WHERE study = 'BENCH' AND requester = 'staff' AND granted" ;;
	a) sql -At -c "SELECT count(*) FROM base_log_a WHERE requester = 'staff' AND granted" ;;
	b) sql -At -c "SELECT count(*) FROM base_log_b WHERE requester = 'staff' AND granted" ;;
	esac
}
declare -A LOG0=() PROCESSED=()
for s in ext a b; do
	LOG0[$s]=$(logcount $s)
	PROCESSED[$s]=0
done
echo "   log rows after ${NIDS} calls + 1 rolled back: ext ${LOG0[ext]}, a ${LOG0[a]}, b ${LOG0[b]} (durable: ext and b keep the rolled-back call's row, a does not)"
if [ "${LOG0[ext]}" != $((NIDS + 1)) ] || [ "${LOG0[a]}" != "$NIDS" ] || [ "${LOG0[b]}" != $((NIDS + 1)) ]; then
	die "unexpected log row counts after the sanity calls"
fi

for s in ext a b; do
	case $s in
	ext) call="trialvault.open_document(:id)" ;;
	a) call="base_open_a(:id)" ;;
	b) call="base_open_b(:id)" ;;
	esac
	# The application opens the study once per session (ext only needs it;
	# every side does it, so that the sides stay alike): pgbench keeps
	# "opened" per client across transactions.
	cat >"$DIR/open_$s.sql" <<-SQL
		\if :opened = 0
		SELECT trialvault.open_study('BENCH');
		\set opened 1
		\endif
		\set id random($LO, $HI)
		SELECT length($call);
	SQL
done

# writer_counts: "written batches" of the log writer since server start.
writer_counts() {
	sql -At -F ' ' -c "SELECT written, batches FROM trialvault.log_writer_status()"
}

# wal_syncs: WAL flushes (fsync/fdatasync calls) since server start.
wal_syncs() {
	sql -At -c "SELECT wal_sync FROM pg_stat_wal"
}

# run_side SIDE CLIENTS SECONDS: one pgbench run; sets TPS and, for ext,
# BATCH (records per log writer commit during the run).
run_side() {
	local side=$1 clients=$2 secs=$3 jobs out tps n w0 b0 w1 b1
	jobs=$((clients < $(nproc) ? clients : $(nproc)))
	sql -c "CHECKPOINT" >/dev/null
	[ "$side" = ext ] && read -r w0 b0 < <(writer_counts)
	s0=$(wal_syncs)
	if ! out=$("$PGBIN/pgbench" -n -D opened=0 -M "$BENCH_PROTOCOL" -c "$clients" -j "$jobs" -T "$secs" \
		-U staff -f "$DIR/open_$side.sql" postgres 2>&1); then
		echo "$out" >&2
		die "pgbench failed for $side at $clients clients"
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
	# Processes report their WAL statistics at most once a second (the log
	# writer when it goes idle): wait for this run's to be in.
	sleep 1.5
	SYNCS=$(ratio $(($(wal_syncs) - s0)) "$n")
	TPS=$tps
	BATCH=
	if [ "$side" = ext ]; then
		read -r w1 b1 < <(writer_counts)
		BATCH=$(ratio $((w1 - w0)) $((b1 - b0)))
		W_DELTA=$((w1 - w0)) B_DELTA=$((b1 - b0))
	fi
}

echo "== warm-up: ${BENCH_WARMUP}s per side at $maxc clients"
for s in "${SIDES[@]}"; do
	run_side "$s" "$maxc" "$BENCH_WARMUP"
	printf '   %-4s %10.1f calls/s (not counted)\n' "$s" "$TPS"
done

declare -A MED=() ALL=() BMED=()
for c in "${CLIENTS[@]}"; do
	echo "== $c client(s): $BENCH_ROUNDS rounds x ${BENCH_SECONDS}s per side, sides alternating"
	read -r ws0 bs0 < <(writer_counts)
	echo "   log_writer_status before: written $ws0, batches $bs0"
	declare -A RUNS=()
	BATCHES=""
	for s in "${SIDES[@]}"; do RUNS[$s]=""; done
	for ((r = 1; r <= BENCH_ROUNDS; r++)); do
		line=$(printf '   round %d/%d:' "$r" "$BENCH_ROUNDS")
		for s in "${SIDES[@]}"; do
			run_side "$s" "$c" "$BENCH_SECONDS"
			RUNS[$s]+=" $TPS"
			line+=$(printf '  %s %.1f [%s flushes/call]' "$s" "$TPS" "$SYNCS")
			if [ "$s" = ext ]; then
				BATCHES+=" $BATCH"
				line+=$(printf ' (%d records in %d commits)' "$W_DELTA" "$B_DELTA")
			fi
		done
		echo "$line"
	done
	read -r ws1 bs1 < <(writer_counts)
	echo "   log_writer_status after:  written $ws1, batches $bs1: $((ws1 - ws0)) records in $((bs1 - bs0)) commits, $(ratio $((ws1 - ws0)) $((bs1 - bs0))) per commit"
	for s in "${SIDES[@]}"; do
		# shellcheck disable=SC2086
		MED[$s,$c]=$(median ${RUNS[$s]})
		ALL[$s,$c]=${RUNS[$s]}
	done
	# shellcheck disable=SC2086
	BMED[$c]=$(median $BATCHES)
	unset RUNS
done

echo "== sanity checks"
for s in "${SIDES[@]}"; do
	rows=$(logcount "$s")
	want=$((LOG0[$s] + PROCESSED[$s]))
	[ "$rows" = "$want" ] || die "$s: $rows granted log rows, expected $want (${LOG0[$s]} before + ${PROCESSED[$s]} calls pgbench committed)"
	echo "   $s: $rows granted log rows = ${LOG0[$s]} before + ${PROCESSED[$s]} calls committed by pgbench"
done
read -r failed queued < <(sql -At -F ' ' -c "SELECT failed, queued FROM trialvault.log_writer_status()")
[ "$failed" = 0 ] || die "the log writer reports $failed failed records"
t0=$(date +%s.%N)
res=$(sql -AtF ' ' -c "SELECT ok, rows_checked, coalesce(first_bad, '-') FROM trialvault.verify('trialvault.decryption_log')")
t1=$(date +%s.%N)
read -r ok checked first_bad <<<"$res"
[ "$ok" = t ] || die "verify(trialvault.decryption_log): ok=$ok rows_checked=$checked first_bad=$first_bad"
printf '   verify(trialvault.decryption_log): ok, %s rows checked, %.1f s; log writer: 0 failed, %s queued\n' \
	"$checked" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" "$queued"



echo
echo "== results: median of $BENCH_ROUNDS rounds, calls/s"
echo "   ratio = median(ext) / median(baseline); paired = median over rounds of ext/baseline in the same round"
echo "   targets: ext/a >= $BENCH_TARGET_A at $maxc clients, ext/b >= $BENCH_TARGET_B at $minc client(s)"
hdr=$(printf '%-8s %10s %8s' clients ext "batch")
has_side a && hdr+=$(printf ' | %10s %6s %6s %6s' "a" ratio paired result)
has_side b && hdr+=$(printf ' | %10s %6s %6s %6s' "b" ratio paired result)
echo "$hdr"
overall=PASS
for c in "${CLIENTS[@]}"; do
	e=${MED[ext,$c]}
	line=$(printf '%-8s %10.1f %8s' "$c" "$e" "${BMED[$c]}")
	for s in a b; do
		has_side $s || continue
		m=${MED[$s,$c]}
		rt=$(ratio "$e" "$m")
		verdict=-
		if [ $s = a ] && [ "$c" = "$maxc" ]; then
			if at_least "$rt" "$BENCH_TARGET_A"; then verdict=PASS; else verdict=FAIL overall=FAIL; fi
		fi
		if [ $s = b ] && [ "$c" = "$minc" ]; then
			if at_least "$rt" "$BENCH_TARGET_B"; then verdict=PASS; else verdict=FAIL overall=FAIL; fi
		fi
		line+=$(printf ' | %10.1f %6s %6.3f %6s' "$m" "$rt" "$(paired_ratio "${ALL[ext,$c]}" "${ALL[$s,$c]}")" "$verdict")
	done
	echo "$line"
done
echo "(batch: median over the ext runs of log records per log writer commit)"
echo "overall: $overall"
note_other_load "the end"
echo "# finished: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
exit 0

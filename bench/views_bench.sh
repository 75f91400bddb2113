#!/usr/bin/env bash
# bench/views_bench.sh: a site staff member listing their site's recent
# documents through the secured view trialvault.my_documents, against the
# same query run by the table owner on trialvault.documents, in the same run.
#
# Data (fresh cluster, generated at every run):
#   BENCH_STUDIES studies ST01, ST02, ... with BENCH_SITES sites in all
#   (S01, S02, ... in each study), made with create_study() and add_site().
#   Login roles, each given its study role with grant_role(): per site
#   stNN_sMM_staff (site_staff) and stNN_sMM_inv (investigator), per study
#   stNN_monitor (monitor).
#   BENCH_DOCS documents, INSERTed by the superuser in one INSERT ... SELECT
#   straight into trialvault.documents: load_document() would validate,
#   encrypt and log each one, at 1 to 2 thousand a second.  The table's
#   chain trigger, CHECK and foreign key constraints still apply to every
#   row.  Document i (1..BENCH_DOCS, in load order) belongs to study
#   (i - 1) % studies + 1 and to site (i - 1) / studies % sites-per-study + 1,
#   so consecutive documents go round all sites and every site gets
#   BENCH_DOCS / BENCH_SITES of them.  loaded_at = now() - BENCH_DAYS days +
#   (i - 1) * BENCH_DAYS days / BENCH_DOCS: evenly over the BENCH_DAYS days before the
#   setup, in load order.  doc_type is 60 % source, 20 % eform, 10 % sae,
#   10 % other.  contains_phi is false (nothing to encrypt); content is 32
#   random bytes, metadata a small XML document
#   (<meta><visit>v</visit><page>p</page><form>CRF-07</form></meta>), both
#   one of 720 pre-generated pairs, with metadata_sha256 from
#   trialvault.metadata_sha256() and content_sha256 = sha256(content).
#   loaded_by is the site's staff role.  Then VACUUM (ANALYZE) and a
#   CHECKPOINT, so no run sets hint bits or writes.
#
# Sides: one pgbench client (-n -M prepared, tps = queries/s) each, the same
# column list and order:
#
#   view    as BENCH_STUDY's BENCH_SITE staff role (site_staff there only),
#           after SELECT trialvault.open_study(study) once per connection:
#             SELECT doc_id, site, doc_type, loaded_at, content_length
#             FROM trialvault.my_documents
#             WHERE loaded_at > now() - interval 'BENCH_WINDOW days'
#             ORDER BY loaded_at DESC
#   base    as the superuser (owner of the table), no open_study:
#             SELECT <same columns> FROM trialvault.documents
#             WHERE study = '<study>' AND site = '<site>'
#               AND loaded_at > now() - interval 'BENCH_WINDOW days'
#             ORDER BY loaded_at DESC
#   filter  (information) as the staff role, after open_study:
#             SELECT trialvault._session_study(), trialvault._session_scope('documents')
#           the two functions the view filters by (initplans: once per query)
#   select1 (information) as the staff role: SELECT 1, the round trip alone
#
# Before measuring, the script checks that the view and the base query
# return the same rows, that the view is empty before open_study, and that
# the staff role cannot read trialvault.documents itself; it prints
# EXPLAIN (ANALYZE, BUFFERS) of both queries as pgbench runs them (a
# prepared statement: the generic plan), the view's as the staff role in a
# session that opened the study, and says whether each plan uses the
# documents_site_time index (reported, not a failure).
#
# The sides run alternately, one run each per round (view, base, filter,
# select1, view, ...), each run after a CHECKPOINT, for BENCH_ROUNDS rounds;
# the report gives the median tps and ms per query of each side and the
# ratio time(view) / time(base) = tps(base) / tps(view) of the medians, and
# paired (the median over rounds of that ratio within a round).  Target (the
# issue): at most BENCH_TARGET.  PASS/FAIL is printed; the script exits 0
# unless something went wrong.
#
# Usage (as root, from anywhere):
#   bash bench/views_bench.sh            full run (about 4 minutes)
#   bash bench/views_bench.sh --quick    100k documents, short runs (about 40 seconds)
#
# Environment (defaults; --quick ones in brackets):
#   BENCH_SECONDS=6 [2]      length of each measured run, per side
#   BENCH_ROUNDS=7 [3]       rounds; each round runs every side once
#   BENCH_WARMUP=3 [1]       seconds of warm-up per side before measuring
#   BENCH_DOCS=1000000 [100000]   documents
#   BENCH_STUDIES=20         studies
#   BENCH_SITES=200          sites in all (a multiple of BENCH_STUDIES)
#   BENCH_DAYS=365           days the documents' loaded_at spread over
#   BENCH_WINDOW=30          the query's window, days
#   BENCH_STUDY=7 BENCH_SITE=3   which study and site (numbers) the staff member is at
#   BENCH_SIDES="view base filter select1"   sides, in run order (view and base are required)
#   BENCH_PROTOCOL=prepared  pgbench -M (simple|extended|prepared)
#   BENCH_TARGET=1.3         maximum time(view) / time(base)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
# shellcheck source=bench/common.sh
source "$HERE/common.sh"
CMDLINE=$(command_line BENCH_SECONDS BENCH_ROUNDS BENCH_WARMUP BENCH_DOCS BENCH_STUDIES BENCH_SITES BENCH_DAYS BENCH_WINDOW BENCH_STUDY BENCH_SITE BENCH_SIDES BENCH_PROTOCOL BENCH_TARGET -- "$0" "$@")

parse_common_args "$(basename "$0")" "$@"
if [ -n "$quick" ]; then
	: "${BENCH_SECONDS:=2}" "${BENCH_ROUNDS:=3}" "${BENCH_WARMUP:=1}" "${BENCH_DOCS:=100000}"
fi
: "${BENCH_SECONDS:=6}" "${BENCH_ROUNDS:=7}" "${BENCH_WARMUP:=3}" "${BENCH_DOCS:=1000000}"
: "${BENCH_STUDIES:=20}" "${BENCH_SITES:=200}" "${BENCH_DAYS:=365}" "${BENCH_WINDOW:=30}"
: "${BENCH_STUDY:=7}" "${BENCH_SITE:=3}"
: "${BENCH_SIDES:=view base filter select1}" "${BENCH_PROTOCOL:=prepared}"
: "${BENCH_TARGET:=1.3}"

for v in BENCH_SECONDS BENCH_ROUNDS BENCH_WARMUP BENCH_DOCS BENCH_STUDIES BENCH_SITES BENCH_DAYS BENCH_WINDOW BENCH_STUDY BENCH_SITE; do
	if ! [[ ${!v} =~ ^[0-9]+$ ]] || [ "${!v}" -lt 1 ]; then
		echo "views_bench.sh: $v must be a positive integer, not '${!v}'" >&2
		exit 2
	fi
done
if [ $((BENCH_SITES % BENCH_STUDIES)) -ne 0 ] || [ "$BENCH_STUDIES" -gt 99 ] || [ $((BENCH_SITES / BENCH_STUDIES)) -gt 99 ]; then
	echo "views_bench.sh: BENCH_SITES must be a multiple of BENCH_STUDIES, with at most 99 studies and 99 sites per study" >&2
	exit 2
fi
PER_STUDY=$((BENCH_SITES / BENCH_STUDIES))
if [ "$BENCH_STUDY" -gt "$BENCH_STUDIES" ] || [ "$BENCH_SITE" -gt "$PER_STUDY" ]; then
	echo "views_bench.sh: BENCH_STUDY must be at most $BENCH_STUDIES and BENCH_SITE at most $PER_STUDY" >&2
	exit 2
fi
read -r -a SIDES <<<"$BENCH_SIDES"
for s in "${SIDES[@]}"; do
	case $s in view | base | filter | select1) ;; *)
		echo "views_bench.sh: unknown side '$s' (view, base, filter, select1)" >&2
		exit 2
		;;
	esac
done
[[ " ${SIDES[*]} " == *" view "* && " ${SIDES[*]} " == *" base "* ]] || {
	echo "views_bench.sh: BENCH_SIDES must include view and base" >&2
	exit 2
}

STUDY=$(printf 'ST%02d' "$BENCH_STUDY")
SITE=$(printf 'S%02d' "$BENCH_SITE")
STAFF=$(printf 'st%02d_s%02d_staff' "$BENCH_STUDY" "$BENCH_SITE")
COLS="doc_id, site, doc_type, loaded_at, content_length"
WINDOW="loaded_at > now() - interval '$BENCH_WINDOW days'"
Q_VIEW="SELECT $COLS FROM trialvault.my_documents WHERE $WINDOW ORDER BY loaded_at DESC"
Q_BASE="SELECT $COLS FROM trialvault.documents WHERE study = '$STUDY' AND site = '$SITE' AND $WINDOW ORDER BY loaded_at DESC"
Q_FILTER="SELECT trialvault._session_study(), trialvault._session_scope('documents')"
Q_SELECT1="SELECT 1"

# shellcheck source=test/lib/cluster.sh
source "$REPO/test/lib/cluster.sh"

# autovacuum off: after the setup's VACUUM ANALYZE nothing changes but a
# few audit rows (open_study), and an autovacuum or autoanalyze must not
# land in one side's runs.
CONF=(
	"shared_buffers = 1GB"
	"max_wal_size = 4GB"
	"checkpoint_timeout = 30min"
	"autovacuum = off"
)

est=$((BENCH_ROUNDS * ${#SIDES[@]} * BENCH_SECONDS + BENCH_ROUNDS * ${#SIDES[@]} / 2 + ${#SIDES[@]} * BENCH_WARMUP + 10 + BENCH_DOCS * 35 / 1000000))

echo "# trialvault secured view benchmark"
echo "# command:    $CMDLINE"
bench_context
echo "# settings:   BENCH_SECONDS=$BENCH_SECONDS BENCH_ROUNDS=$BENCH_ROUNDS BENCH_WARMUP=$BENCH_WARMUP BENCH_PROTOCOL=$BENCH_PROTOCOL"
echo "#             BENCH_DOCS=$BENCH_DOCS BENCH_STUDIES=$BENCH_STUDIES BENCH_SITES=$BENCH_SITES BENCH_DAYS=$BENCH_DAYS BENCH_WINDOW=$BENCH_WINDOW"
echo "#             BENCH_STUDY=$BENCH_STUDY BENCH_SITE=$BENCH_SITE BENCH_SIDES=\"$BENCH_SIDES\" BENCH_TARGET=$BENCH_TARGET"
echo "# server:     fresh cluster, unix socket, fsync = on, $(printf '%s, ' "${CONF[@]}" | sed 's/, $//')"
echo "# data:       $BENCH_DOCS documents over $BENCH_STUDIES studies x $PER_STUDY sites ($((BENCH_DOCS / BENCH_SITES)) a site), loaded_at evenly over $BENCH_DAYS days,"
echo "#             INSERT ... SELECT by the superuser (chained); studies, sites and roles through the extension's functions"
echo "# view:       as $STAFF (site_staff of $STUDY/$SITE), open_study('$STUDY') once per connection, then"
echo "#             $Q_VIEW"
echo "# base:       as postgres (table owner)"
echo "#             $Q_BASE"
echo "# filter:     as $STAFF, after open_study: $Q_FILTER   (information)"
echo "# select1:    as $STAFF: $Q_SELECT1   (information: the round trip)"
echo "# workload:   pgbench -n -M $BENCH_PROTOCOL -c 1, one query per transaction (tps = queries/s), CHECKPOINT before every run"
echo "# estimated:  ~$((est / 60)) min $((est % 60)) s"
note_other_load
echo

tv_cluster_start bench "${CONF[@]}"
tv_use bench
DIR=$(tv_dir bench)



# elapsed T0: seconds since T0 (from date +%s.%N), one decimal.
elapsed() {
	awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'
}

echo "== setup: $BENCH_STUDIES studies, $BENCH_SITES sites, $((BENCH_SITES * 2 + BENCH_STUDIES)) members (create_study, add_site, grant_role)"
t0=$(date +%s.%N)
sql -v nstudies="$BENCH_STUDIES" -v persite="$PER_STUDY" >/dev/null <<-'SQL'
	SET client_min_messages = warning;
	CREATE EXTENSION trialvault CASCADE;
	SELECT set_config('bench.nstudies', :'nstudies', false), set_config('bench.persite', :'persite', false);
	DO $$
	DECLARE
		s int;
		t int;
		sc text;
		tc text;
		who text;
	BEGIN
		FOR s IN 1..current_setting('bench.nstudies')::int LOOP
			sc := format('ST%s', lpad(s::text, 2, '0'));
			PERFORM trialvault.create_study(sc, 'Benchmark study ' || s);
			PERFORM trialvault.require_signatures(sc, false);
			EXECUTE format('CREATE ROLE %I LOGIN', lower(sc) || '_monitor');
			PERFORM trialvault.grant_role(lower(sc) || '_monitor', sc, NULL, 'monitor');
			FOR t IN 1..current_setting('bench.persite')::int LOOP
				tc := format('S%s', lpad(t::text, 2, '0'));
				PERFORM trialvault.add_site(sc, tc, 'Site ' || t || ' of ' || sc);
				who := lower(sc || '_' || tc);
				EXECUTE format('CREATE ROLE %I LOGIN', who || '_staff');
				EXECUTE format('CREATE ROLE %I LOGIN', who || '_inv');
				PERFORM trialvault.grant_role(who || '_staff', sc, tc, 'site_staff');
				PERFORM trialvault.grant_role(who || '_inv', sc, tc, 'investigator');
			END LOOP;
		END LOOP;
	END $$;
SQL
echo "   done in $(elapsed "$t0") s"

echo "== setup: $BENCH_DOCS documents (INSERT ... SELECT into trialvault.documents, chained), VACUUM (ANALYZE), CHECKPOINT"
t0=$(date +%s.%N)
sql -v ndocs="$BENCH_DOCS" -v nstudies="$BENCH_STUDIES" -v persite="$PER_STUDY" -v days="$BENCH_DAYS" >/dev/null <<-'SQL'
	-- 720 (metadata, content) pairs, with their fingerprints.
	CREATE TABLE bench_pool AS
		SELECT k, m, trialvault.metadata_sha256(m) AS m_sha, c, sha256(c) AS c_sha
		FROM (SELECT k, format('<meta><visit>%s</visit><page>%s</page><form>CRF-07</form></meta>',
							   k % 12 + 1, k / 12 + 1)::xml AS m,
					 gen_random_bytes(32) AS c
			  FROM generate_series(0, 719) k) x;
	ALTER TABLE bench_pool ADD PRIMARY KEY (k);
	ANALYZE bench_pool;
	INSERT INTO trialvault.documents (study, site, doc_type, contains_phi, metadata, metadata_sha256,
		content, content_enc, content_length, content_sha256, loaded_by, loaded_at)
	SELECT st, si, (ARRAY['source', 'source', 'source', 'source', 'source', 'source',
						  'eform', 'eform', 'sae', 'other'])[i % 10 + 1],
		   false, p.m, p.m_sha, p.c, NULL, length(p.c), p.c_sha,
		   lower(st || '_' || si) || '_staff',
		   g.t0 + (i - 1) * (make_interval(days => :days) / :ndocs)
	FROM (SELECT now() - make_interval(days => :days) AS t0) g,
		 generate_series(1, :ndocs) i
		 CROSS JOIN LATERAL (SELECT format('ST%s', lpad(((i - 1) % :nstudies + 1)::text, 2, '0')) AS st,
									format('S%s', lpad(((i - 1) / :nstudies % :persite + 1)::text, 2, '0')) AS si) x
		 JOIN bench_pool p ON p.k = i % 720
	ORDER BY i;
	VACUUM (ANALYZE) trialvault.documents;
	ANALYZE;
	CHECKPOINT;
SQL
read -r ndocs nsites minper maxper tsize < <(sql -At -F ' ' -c "
	SELECT sum(n), count(*), min(n), max(n), pg_size_pretty(pg_total_relation_size('trialvault.documents'))
	FROM (SELECT count(*) AS n FROM trialvault.documents GROUP BY study, site) x")
echo "   done in $(elapsed "$t0") s: $ndocs documents at $nsites sites ($minper to $maxper a site), trialvault.documents $tsize with indexes"
if [ "$ndocs" != "$BENCH_DOCS" ] || [ "$nsites" != "$BENCH_SITES" ]; then
	die "expected $BENCH_DOCS documents at $BENCH_SITES sites"
fi

# as_staff SQL...: psql as the staff role, in a session that opened the study.
as_staff() {
	tv_psql bench -d postgres -U "$STAFF" -At -F ' ' <<-SQL
		\\o /dev/null
		SELECT trialvault.open_study('$STUDY');
		\\o
		$*
	SQL
}

echo "== sanity checks"
read -r vn vsum < <(as_staff "SELECT count(*), md5(coalesce(string_agg(x::text, ',' ORDER BY n), '')) FROM (SELECT x, row_number() OVER () AS n FROM ($Q_VIEW) x) y;")
read -r bn bsum < <(sql -At -F ' ' -c "SELECT count(*), md5(coalesce(string_agg(x::text, ',' ORDER BY n), '')) FROM (SELECT x, row_number() OVER () AS n FROM ($Q_BASE) x) y")
site_total=$(sql -At -c "SELECT count(*) FROM trialvault.documents WHERE study = '$STUDY' AND site = '$SITE'")
echo "   view as $STAFF: $vn rows; base as postgres: $bn rows ($(awk -v a="$bn" -v b="$site_total" 'BEGIN { printf "%.1f", 100 * a / b }') % of the site's $site_total documents)"
if [ "$vn" != "$bn" ] || [ "$vsum" != "$bsum" ] || [ "$vn" -lt 1 ]; then
	die "the view and the base query do not return the same (non-empty) list"
fi
echo "   same rows in the same order (md5 of the rows as text: $vsum)"
unopened=$(tv_psql bench -d postgres -U "$STAFF" -At -c "SELECT count(*) FROM trialvault.my_documents")
[ "$unopened" = 0 ] || die "my_documents shows $unopened rows before open_study"
echo "   before open_study the view is empty"
if err=$(tv_psql bench -d postgres -U "$STAFF" -At -c "SELECT count(*) FROM trialvault.documents" 2>&1); then
	die "$STAFF can read trialvault.documents directly: $err"
fi
echo "   $STAFF cannot read trialvault.documents: $(head -n 1 <<<"$err")"

for s in view base filter select1; do
	case $s in
	view) query=$Q_VIEW ;;
	base) query=$Q_BASE ;;
	filter) query=$Q_FILTER ;;
	select1) query=$Q_SELECT1 ;;
	esac
	{
		# The application opens the study once per session (pgbench keeps
		# "opened" per client across transactions); the owner's base side
		# holds no study role and does not.
		if [ $s = view ] || [ $s = filter ]; then
			printf '%s\n' '\if :opened = 0' "SELECT trialvault.open_study('$STUDY');" '\set opened 1' '\endif'
		fi
		echo "$query;"
	} >"$DIR/views_$s.sql"
done

# run_side SIDE SECONDS: one pgbench run; sets TPS.
run_side() {
	local side=$1 secs=$2 user=$STAFF out tps
	[ "$side" = base ] && user=postgres
	sql -c "CHECKPOINT" >/dev/null
	if ! out=$("$PGBIN/pgbench" -n -D opened=0 -M "$BENCH_PROTOCOL" -c 1 -j 1 -T "$secs" \
		-U "$user" -f "$DIR/views_$side.sql" postgres 2>&1); then
		echo "$out" >&2
		die "pgbench failed for $side"
	fi
	tps=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)$/\1/p' <<<"$out")
	if [ -z "$tps" ]; then
		echo "$out" >&2
		die "could not read pgbench's result"
	fi
	if grep -q '^number of failed transactions: [1-9]' <<<"$out"; then
		echo "$out" >&2
		die "pgbench reported failed transactions for $side"
	fi
	TPS=$tps
}

echo "== warm-up: ${BENCH_WARMUP}s per side"
for s in "${SIDES[@]}"; do
	run_side "$s" "$BENCH_WARMUP"
	printf '   %-8s %10.1f queries/s (not counted)\n' "$s" "$TPS"
done

# Plans as pgbench runs them: a prepared statement without parameters, so
# the generic plan (the same one every execution), after two executions in
# the session (the first one also fills the session's caches).
echo "== plans: EXPLAIN (ANALYZE, BUFFERS) EXECUTE of the prepared statements"
echo "-- view, as $STAFF after open_study('$STUDY'):"
PLAN_VIEW=$(as_staff "\o /dev/null
PREPARE q AS $Q_VIEW;
EXECUTE q;
EXECUTE q;
\o
EXPLAIN (ANALYZE, BUFFERS) EXECUTE q;")
printf '   %s\n' "${PLAN_VIEW//$'\n'/$'\n'   }"
echo "-- base, as postgres:"
PLAN_BASE=$(sql -At <<-SQL
	\\o /dev/null
	PREPARE q AS $Q_BASE;
	EXECUTE q;
	EXECUTE q;
	\\o
	EXPLAIN (ANALYZE, BUFFERS) EXECUTE q;
SQL
)
printf '   %s\n' "${PLAN_BASE//$'\n'/$'\n'   }"

# index_use PLAN: which node of PLAN reads documents_site_time ("" if none).
index_use() {
	grep -oE '(Index Scan|Index Scan Backward|Index Only Scan|Index Only Scan Backward|Bitmap Index Scan) (using|on) documents_site_time( on documents)?' <<<"$1" | head -n 1 || true
}
IDX_VIEW=$(index_use "$PLAN_VIEW")
IDX_BASE=$(index_use "$PLAN_BASE")
echo "   index use: view: ${IDX_VIEW:-NONE (no documents_site_time in the plan)}; base: ${IDX_BASE:-NONE (no documents_site_time in the plan)}"
if [ -n "$IDX_VIEW" ]; then
	if grep -qE 'Index Cond: .*study = \$[0-9]+.*site = ANY \(\$[0-9]+\)' <<<"$PLAN_VIEW" &&
		grep -qE 'InitPlan' <<<"$PLAN_VIEW"; then
		if grep -qE 'Index Cond: .*loaded_at >' <<<"$PLAN_VIEW"; then
			echo "   the view's study, site and time conditions are all index conditions"
		else
			echo "   NOTE: the view's study and site conditions are index conditions, the time window is not"
		fi
	else
		echo "   NOTE: the view's study/site filter is not an index condition"
	fi
else
	echo "   NOTE: the view's plan does not use documents_site_time"
fi

declare -A RUNS=()
for s in "${SIDES[@]}"; do RUNS[$s]=""; done
echo "== $BENCH_ROUNDS rounds x ${BENCH_SECONDS}s per side, sides alternating (queries/s)"
for ((r = 1; r <= BENCH_ROUNDS; r++)); do
	line=$(printf '   round %d/%d:' "$r" "$BENCH_ROUNDS")
	for s in "${SIDES[@]}"; do
		run_side "$s" "$BENCH_SECONDS"
		RUNS[$s]+=" $TPS"
		line+=$(printf '  %s %.1f' "$s" "$TPS")
	done
	echo "$line"
done
declare -A MED=()
for s in "${SIDES[@]}"; do
	# shellcheck disable=SC2086
	MED[$s]=$(median ${RUNS[$s]})
done

# paired: median over the rounds of tps(base) / tps(view) in the same round.
PAIRED=$(paired_ratio "${RUNS[base]}" "${RUNS[view]}")
RATIO=$(ratio "${MED[base]}" "${MED[view]}")

ms() {
	awk -v t="$1" 'BEGIN { if (t + 0 == 0) print "nan"; else printf "%.3f\n", 1000 / t }'
}


echo
echo "== results: median of $BENCH_ROUNDS rounds, 1 client; ms = 1000 / tps (pgbench round trip included)"
printf '   %-8s %10s %9s\n' side queries/s ms/query
for s in "${SIDES[@]}"; do
	printf '   %-8s %10.1f %9s\n' "$s" "${MED[$s]}" "$(ms "${MED[$s]}")"
done
if at_least "$BENCH_TARGET" "$RATIO"; then verdict=PASS; else verdict=FAIL; fi
echo "   rows per query: $vn"
echo "   time(view) / time(base) = $RATIO (paired $PAIRED): $verdict (target <= $BENCH_TARGET)"
extra=$(awk -v v="${MED[view]}" -v b="${MED[base]}" 'BEGIN { printf "%.3f", 1000 / v - 1000 / b }')
echo "   the view costs $extra ms a query more than the base query"
if has_side filter && has_side select1; then
	fcost=$(awk -v f="${MED[filter]}" -v o="${MED[select1]}" 'BEGIN { printf "%.3f", 1000 / f - 1000 / o }')
	echo "   _session_study() + _session_scope('documents') take $fcost ms a query (filter minus select1)"
fi
echo "   index use: view: ${IDX_VIEW:-NONE}; base: ${IDX_BASE:-NONE}"
echo "overall: $verdict"
note_other_load "the end"
echo "# finished: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
exit 0

#!/usr/bin/env bash
# XPath over metadata (meta_text and friends, XPath screening rules) cannot be
# interrupted while libxml2 evaluates it.  Each evaluation has a budget of
# steps (trialvault.xpath_max_steps), so statement_timeout, pg_cancel_backend
# and pg_terminate_backend take effect within a second, and only that
# backend ends.  On 0.5 a costly XPath ignored all three; only kill -9 ended
# it, which restarts the whole cluster.
set -euo pipefail
source "$(dirname "$0")/../lib/cluster.sh"
source "$(dirname "$0")/lib/helpers.sh"

tv_cluster_start xp >/dev/null
tv_psql xp >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION trialvault CASCADE;
CREATE ROLE anyone LOGIN;
-- 100 elements: each evaluation of the expression below takes about 16 ms;
-- 1000 elements: one evaluation would take about 15 s, far beyond the budget.
CREATE TABLE docs AS
	SELECT n, xmlelement(name r, (SELECT xmlagg(xmlelement(name a, 'x')) FROM generate_series(1, n))) AS doc
	FROM (VALUES (100), (1000)) v(n);
GRANT SELECT ON docs TO anyone;
SQL
COSTLY="count(//a[count(//a[count(//a) > 0]) > 0])"
MANY="SELECT count(trialvault.meta_text(d.doc, '$COSTLY')) FROM docs d, generate_series(1, 5000) WHERE d.n = 100"
ONE="SELECT trialvault.meta_text(d.doc, '$COSTLY') FROM docs d WHERE d.n = 1000"
# The same costly evaluation again and again, each stopped by the budget.
LONG="DO \$\$ BEGIN LOOP BEGIN PERFORM trialvault.meta_text(d.doc, '$COSTLY') FROM docs d WHERE d.n = 1000;
	EXCEPTION WHEN program_limit_exceeded THEN NULL; END; END LOOP; END \$\$"
now_ms() { date +%s%3N; }

# --- statement_timeout ------------------------------------------------------------
t0=$(now_ms)
out=$(tv_psql xp -U anyone -d postgres -v VERBOSITY=verbose -c "SET statement_timeout = '300ms'" -c "$MANY" 2>&1 || true)
elapsed=$(($(now_ms) - t0))
like "$out" "57014" "statement_timeout (300 ms) cancels a query of many costly XPath evaluations"
check "within a second of the timeout (took $elapsed ms in all)" [ "$elapsed" -lt 1300 ]

t0=$(now_ms)
out=$(tv_psql xp -U anyone -d postgres -v VERBOSITY=verbose -c "SET statement_timeout = '50ms'" -c "$ONE" 2>&1 || true)
elapsed=$(($(now_ms) - t0))
like "$out" "57014" "statement_timeout (50 ms) cancels one XPath that would run for 15 s: the cancel, not the budget, is reported"
check "within a second (took $elapsed ms)" [ "$elapsed" -lt 1050 ]

out=$(tv_psql xp -U anyone -d postgres -v VERBOSITY=verbose -c "$ONE" 2>&1 || true)
like "$out" "54000: XPath expression needs more than [0-9]+ steps" \
	"without a timeout the same XPath stops at trialvault.xpath_max_steps (54000)"

# --- pg_cancel_backend and pg_terminate_backend from another session ---------------
# Starts $LONG in the background as role anyone; sets BG_PID (the psql) and
# BACKEND (the server process running it).
start_long() {
	tv_psql xp -U anyone -d postgres -v VERBOSITY=verbose -c "SET application_name = 'xpath_long'" -c "$LONG" \
		>"$TV_TMP/long.out" 2>&1 &
	BG_PID=$!
	BACKEND=""
	for _ in $(seq 1 100); do
		BACKEND=$(q xp postgres "SELECT max(pid) FROM pg_stat_activity WHERE application_name = 'xpath_long' AND state = 'active'")
		[ -n "$BACKEND" ] && break
		sleep 0.05
	done
	sleep 0.5
}
# Sets WAIT_MS: milliseconds until the background psql has finished (it must
# run in this shell, not in $(...), to wait for its own child).
wait_long() {
	local t0
	t0=$(now_ms)
	wait "$BG_PID" || true
	WAIT_MS=$(($(now_ms) - t0))
}

start_long
check "costly XPath evaluations run one after another (backend $BACKEND)" [ -n "$BACKEND" ]
is "$(q xp postgres "SELECT pg_cancel_backend($BACKEND)")" t "pg_cancel_backend() is sent"
wait_long
check "the query ends within a second of the cancel (took $WAIT_MS ms)" [ "$WAIT_MS" -lt 1000 ]
like "$(cat "$TV_TMP/long.out")" "57014" "it was cancelled (57014)"

start_long
postmaster_start=$(q xp postgres "SELECT pg_postmaster_start_time()")
is "$(q xp postgres "SELECT pg_terminate_backend($BACKEND)")" t "pg_terminate_backend() is sent"
wait_long
check "the backend ends within a second of the terminate (took $WAIT_MS ms)" [ "$WAIT_MS" -lt 1000 ]
like "$(cat "$TV_TMP/long.out")" "57P01|terminating connection" "it was terminated (57P01)"
is "$(q xp postgres "SELECT pg_postmaster_start_time()")" "$postmaster_start" \
	"and only that backend: the server did not restart"
is "$(q xp postgres "SELECT trialvault.meta_int('<m><v>7</v></m>', '/m/v')")" 7 "other sessions go on"

done_testing

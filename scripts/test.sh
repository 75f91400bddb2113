#!/usr/bin/env bash
# scripts/test.sh: install what is needed, build, and run every test:
# pg_regress (sql/, expected/), pgTAP suites through pg_prove (test/pgtap/),
# and the shell-driven integration tests (test/integration/).  Each suite
# runs on throwaway clusters it starts and always stops.  Ends with the line
# "N passed, N failed" and exits non-zero if anything failed.
#
#   bash scripts/test.sh                 everything
#   bash scripts/test.sh regress pgtap   only some suites (regress, pgtap, integration)
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

bash scripts/install-deps.sh || { echo "0 passed, 1 failed"; exit 1; }
export PATH="/usr/lib/postgresql/15/bin:$PATH"

SUITES=("$@")
[ ${#SUITES[@]} -eq 0 ] && SUITES=(regress pgtap integration)
want() { [[ " ${SUITES[*]} " == *" $1 "* ]]; }

PASSED=0
FAILED=0
FAILURES=()
LOGDIR=$(mktemp -d /tmp/trialvault-testlog.XXXXXX)

# count_tap NAME LOGFILE EXITCODE: add a TAP stream's results to the totals.
# Tests planned but never run, and a non-zero exit with no failed test, count
# as failures, so a script that dies early cannot pass.
count_tap() {
	local name=$1 log=$2 rc=$3
	local plan pass fail
	plan=$(grep -E '^1\.\.[0-9]+' "$log" | tail -n 1 | sed 's/^1\.\.//')
	pass=$(grep -cE '^ok [0-9]+' "$log")
	fail=$(grep -cE '^not ok [0-9]+' "$log")
	if [ -z "$plan" ]; then
		fail=$((fail + 1))
	elif [ $((pass + fail)) -lt "$plan" ]; then
		fail=$((fail + plan - pass - fail))
	fi
	if [ "$rc" -ne 0 ] && [ "$fail" -eq 0 ]; then
		fail=1
	fi
	PASSED=$((PASSED + pass))
	FAILED=$((FAILED + fail))
	if [ "$fail" -gt 0 ]; then
		FAILURES+=("$name ($fail failed; log: $log)")
	fi
	printf '%-40s %4d passed, %d failed\n' "$name" "$pass" "$fail"
}

if want regress; then
	echo "== pg_regress"
	# `make installcheck` starts its own throwaway instance (REGRESS_OPTS
	# in the Makefile), which PostgreSQL refuses to run as root: run it as
	# the postgres OS user, in a copy of what it reads that this user owns
	# (the checkout itself may not even be readable by it).
	RWORK=$(mktemp -d /tmp/trialvault-regress.XXXXXX)
	mkdir -p "$RWORK/test"
	cp -r Makefile trialvault.control sql expected "$RWORK/"
	cp test/regress.conf "$RWORK/test/"
	chown -R postgres "$RWORK"
	runuser -u postgres -- make -C "$RWORK" -s installcheck \
		PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config >"$LOGDIR/regress.log" 2>&1
	rc=$?
	cp "$RWORK/regression.diffs" "$LOGDIR/" 2>/dev/null
	cp "$RWORK/tmp_check/log/postmaster.log" "$LOGDIR/regress-postmaster.log" 2>/dev/null
	rm -rf "$RWORK"
	p=$(grep -cE '^(ok|test) .* \.\.\. ok|^ok [0-9]+ +- ' "$LOGDIR/regress.log")
	f=$(grep -cE '^(not ok|test) .* \.\.\. FAILED|^not ok [0-9]+ +- ' "$LOGDIR/regress.log")
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
	PASSED=$((PASSED + p))
	FAILED=$((FAILED + f))
	printf '%-40s %4d passed, %d failed\n' "pg_regress" "$p" "$f"
	if [ "$f" -gt 0 ]; then
		FAILURES+=("pg_regress (see $LOGDIR/regress.log and $LOGDIR/regression.diffs)")
		head -n 60 "$LOGDIR/regression.diffs" 2>/dev/null
	fi
fi

if want pgtap; then
	echo "== pgTAP (pg_prove)"
	(
		source test/lib/cluster.sh
		tv_cluster_start pgtap >/dev/null
		tv_psql pgtap -c "CREATE EXTENSION pgtap" -c "CREATE EXTENSION trialvault CASCADE" >/dev/null 2>&1
		tv_use pgtap
		for f in test/pgtap/*.sql; do
			PGOPTIONS='-c client_min_messages=warning' pg_prove -v "$f" >"$LOGDIR/pgtap-$(basename "$f" .sql).log" 2>&1
			echo $? >"$LOGDIR/pgtap-$(basename "$f" .sql).rc"
		done
	) >"$LOGDIR/pgtap.log" 2>&1
	for f in test/pgtap/*.sql; do
		b=$(basename "$f" .sql)
		rc=$(cat "$LOGDIR/pgtap-$b.rc" 2>/dev/null || echo 1)
		[ -f "$LOGDIR/pgtap-$b.log" ] || echo "not ok 1 - suite did not run" >"$LOGDIR/pgtap-$b.log"
		count_tap "pgtap/$b" "$LOGDIR/pgtap-$b.log" "$rc"
	done
fi

if want integration; then
	echo "== integration"
	for t in test/integration/*.sh; do
		[ -f "$t" ] || continue
		b=$(basename "$t" .sh)
		start=$(date +%s)
		timeout 600 bash "$t" >"$LOGDIR/int-$b.log" 2>&1
		rc=$?
		count_tap "integration/$b ($(($(date +%s) - start))s)" "$LOGDIR/int-$b.log" "$rc"
		grep -E '^not ok' "$LOGDIR/int-$b.log" | head -n 5
	done
fi

echo
if [ ${#FAILURES[@]} -gt 0 ]; then
	echo "Failures:"
	printf '  %s\n' "${FAILURES[@]}"
else
	rm -rf "$LOGDIR"
fi
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ] && [ "$PASSED" -gt 0 ]

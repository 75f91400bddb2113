#!/usr/bin/env bash
# 89_busy_server.sh: the backup shipper on a busy server
# (trialvault.backup_max_defer, docs/backups.md "Never in the way").
#
# Busy: more client backends running a statement than the machine has
# CPUs.  The test makes the server busy with one session more than that in
# pg_sleep(), which count as running statements (the shipper cannot tell
# a sleeping statement from a working one, and need not: the bound holds).
#
#   1. an idle server, or one running as many statements as it has CPUs:
#      a new row is shipped at once;
#   2. busy: a new row is held back (backup_status shows it waiting, with
#      no error), and shipped once it has waited backup_max_defer, the
#      server still busy;
#   3. backup_max_defer = 0: busy or not, rows are shipped at once; the
#      change is recorded in the security trail;
#   4. the setting takes no negative value and no value over a day, and
#      only the configuration sets it.
set -euo pipefail
source "$(dirname "$0")/../lib/cluster.sh"
source "$(dirname "$0")/lib/helpers.sh"
source "$(dirname "$0")/../lib/backups.sh"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)

NCPU=$(nproc)
NBUSY=$((NCPU + 1))
tv_backup_setup "$ROOT"
tv_cluster_start src \
	"trialvault.backup_public_key_file = '$KEYDIR/backup-public.asc'" \
	"trialvault.backup_naptime = 100" \
	"trialvault.backup_max_defer = '8s'" \
	"trialvault.audit_logins = off" \
	"max_connections = $((NCPU + 40))"
q src postgres "CREATE EXTENSION trialvault CASCADE" >/dev/null
q src postgres "CREATE TABLE t (id int PRIMARY KEY, body text)" >/dev/null
q src postgres "SELECT trialvault.protect('t')" >/dev/null 2>&1
q src postgres "ALTER SYSTEM SET trialvault.backup_conninfo = '$REMOTE'" >/dev/null
q src postgres "SELECT pg_reload_conf()" >/dev/null

shipped() { q repo postgres "SELECT coalesce(sum(row_count), 0) FROM trialvault_repo.batches WHERE table_name = 'public.t'"; }
ships() { [ "$(shipped)" = "$1" ]; }
sleepers() { q src postgres "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE 'SELECT pg_sleep(%'"; }
busy_for() { # busy_for SECONDS [N]: N (NBUSY) sessions running pg_sleep(SECONDS), in the background
	local i n=${2:-$NBUSY}
	for ((i = 0; i < n; i++)); do
		tv_psql src -d postgres -c "SELECT pg_sleep($1)" >/dev/null 2>&1 &
	done
	wait_until "the sleepers" 20 bash -c "[ \"\$($PGBIN/psql -X -At -h $(tv_dir src) -p $(tv_port src) -U postgres -d postgres -c \"SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE 'SELECT pg_sleep(%'\")\" = $n ]"
}
wake() {
	q src postgres "SELECT count(pg_cancel_backend(pid)) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(%' AND pid <> pg_backend_pid()" >/dev/null
	wait || true
}
trap 'wake 2>/dev/null; tv_cleanup' EXIT

# --- 1. idle ----------------------------------------------------------------------------
q src postgres "INSERT INTO t VALUES (1, 'idle')" >/dev/null
check "1: an idle server: a new row is shipped at once" wait_until "shipping" 30 ships 1

# As many statements running as there are CPUs is not busy yet: a shipper
# catching up keeps backends running longer, and must not take that for a
# busy server.
check "1: $NCPU sessions running statements" busy_for 40 "$NCPU"
q src postgres "INSERT INTO t VALUES (4, 'as many as CPUs')" >/dev/null
check "1: ... is not busy: a new row is shipped at once" wait_until "shipping" 5 ships 2
wake

# --- 2. busy ----------------------------------------------------------------------------
check "2: $NBUSY sessions running statements ($NCPU CPUs)" busy_for 40
T0=$(date +%s)
q src postgres "INSERT INTO t VALUES (2, 'busy')" >/dev/null
sleep 3
is "$(shipped)" 2 "2: busy: the new row is held back"
is "$(q src postgres "SELECT lag_rows || ' ' || coalesce(last_error, 'no error') FROM trialvault.backup_status WHERE table_name = 't'::regclass")" \
	"1 no error" "2: backup_status shows it waiting, and no error"
check "2: once it has waited backup_max_defer (8 s), it is shipped" wait_until "the held row" 30 ships 3
WAITED=$(($(date +%s) - T0))
check "2: ... not before (it waited ${WAITED} s)" between 6 "$WAITED" 30
is "$(sleepers)" "$NBUSY" "2: ... the server still busy"

# --- 3. backup_max_defer = 0 ------------------------------------------------------------
q src postgres "ALTER SYSTEM SET trialvault.backup_max_defer = 0" >/dev/null
q src postgres "SELECT pg_reload_conf()" >/dev/null
sleep 1
T0=$(date +%s)
q src postgres "INSERT INTO t VALUES (3, 'busy, no deferral')" >/dev/null
check "3: backup_max_defer = 0: busy, a new row is shipped at once" wait_until "shipping" 5 ships 4
is "$(sleepers)" "$NBUSY" "3: ... the server busy all along"
recorded() { [ "$(q src postgres "SELECT count(*) FROM trialvault.account_changes WHERE kind = 'setting_changed' AND detail LIKE '%trialvault.backup_max_defer changed from 8 to 0 (configuration reloaded)%'")" = 1 ]; }
check "3: the change is in the security trail, as a changed setting" wait_until "the record" 20 recorded
wake
is "$(sleepers)" 0 "3: the sleepers are gone"

# --- 4. the setting's range -------------------------------------------------------------
is "$(sqlstate_of src postgres "ALTER SYSTEM SET trialvault.backup_max_defer = -1")" 22023 "4: a negative backup_max_defer is refused"
is "$(sqlstate_of src postgres "ALTER SYSTEM SET trialvault.backup_max_defer = '2d'")" 22023 "4: more than a day is refused"
q src postgres "CREATE ROLE member LOGIN" >/dev/null
is "$(sqlstate_of src postgres "SET trialvault.backup_max_defer = 0")" 55P02 "4: a session cannot change it for itself"
like "$(tv_psql src -d postgres -U member -v VERBOSITY=verbose -c "ALTER SYSTEM SET trialvault.backup_max_defer = 86400" 2>&1 || true)" \
	"ERROR: +42501" "4: an ordinary role cannot ALTER SYSTEM it"
is "$(q src postgres "SELECT count(*) FROM t")" 4 "4: every row is there"
is "$(shipped)" 4 "4: ... and shipped, once"

done_testing

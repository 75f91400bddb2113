#!/usr/bin/env bash
# 89_busy_server.sh: the backup shipper on a busy server
# (trialvault.backup_max_defer, docs/backups.md "Never in the way").
#
# Busy: as many client backends running a statement as the machine has
# CPUs.  The test makes the server busy with that many sessions in
# pg_sleep(), which count as running statements (the shipper cannot tell
# a sleeping statement from a working one, and need not: the bound holds).
#
#   1. an idle server: a new row is shipped at once;
#   2. busy: a new row is held back (backup_status shows it waiting, with
#      no error), and shipped once it has waited backup_max_defer, the
#      server still busy;
#   3. backup_max_defer = 0: busy or not, rows are shipped at once; the
#      change is recorded in the security trail;
#   4. the setting takes no negative value and no value over a day.
set -euo pipefail
source "$(dirname "$0")/../lib/cluster.sh"
source "$(dirname "$0")/lib/helpers.sh"
source "$(dirname "$0")/../lib/backups.sh"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)

NCPU=$(nproc)
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
busy_for() { # busy_for SECONDS: NCPU sessions running pg_sleep(SECONDS), in the background
	local i
	for ((i = 0; i < NCPU; i++)); do
		tv_psql src -d postgres -c "SELECT pg_sleep($1)" >/dev/null 2>&1 &
	done
	wait_until "the sleepers" 20 bash -c "[ \"\$($PGBIN/psql -X -At -h $(tv_dir src) -p $(tv_port src) -U postgres -d postgres -c \"SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE 'SELECT pg_sleep(%'\")\" = $NCPU ]"
}
wake() {
	q src postgres "SELECT count(pg_cancel_backend(pid)) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(%' AND pid <> pg_backend_pid()" >/dev/null
	wait || true
}
trap 'wake 2>/dev/null; tv_cleanup' EXIT

# --- 1. idle ----------------------------------------------------------------------------
q src postgres "INSERT INTO t VALUES (1, 'idle')" >/dev/null
check "1: an idle server: a new row is shipped at once" wait_until "shipping" 30 ships 1

# --- 2. busy ----------------------------------------------------------------------------
check "2: $NCPU sessions running statements ($NCPU CPUs)" busy_for 40
T0=$(date +%s)
q src postgres "INSERT INTO t VALUES (2, 'busy')" >/dev/null
sleep 3
is "$(shipped)" 1 "2: busy: the new row is held back"
is "$(q src postgres "SELECT lag_rows || ' ' || coalesce(last_error, 'no error') FROM trialvault.backup_status WHERE table_name = 't'::regclass")" \
	"1 no error" "2: backup_status shows it waiting, and no error"
check "2: once it has waited backup_max_defer (8 s), it is shipped" wait_until "the held row" 30 ships 2
WAITED=$(($(date +%s) - T0))
check "2: ... not before (it waited ${WAITED} s)" between 6 "$WAITED" 30
is "$(sleepers)" "$NCPU" "2: ... the server still busy"

# --- 3. backup_max_defer = 0 ------------------------------------------------------------
q src postgres "ALTER SYSTEM SET trialvault.backup_max_defer = 0" >/dev/null
q src postgres "SELECT pg_reload_conf()" >/dev/null
sleep 1
T0=$(date +%s)
q src postgres "INSERT INTO t VALUES (3, 'busy, no deferral')" >/dev/null
check "3: backup_max_defer = 0: busy, a new row is shipped at once" wait_until "shipping" 5 ships 3
is "$(sleepers)" "$NCPU" "3: ... the server busy all along"
recorded() { [ "$(q src postgres "SELECT count(*) FROM trialvault.account_changes WHERE kind = 'setting_changed' AND detail LIKE '%trialvault.backup_max_defer changed from 8 to 0 (configuration reloaded)%'")" = 1 ]; }
check "3: the change is in the security trail, as a changed setting" wait_until "the record" 20 recorded
wake
is "$(sleepers)" 0 "3: the sleepers are gone"

# --- 4. the setting's range -------------------------------------------------------------
is "$(sqlstate_of src postgres "ALTER SYSTEM SET trialvault.backup_max_defer = -1")" 22023 "4: a negative backup_max_defer is refused"
is "$(sqlstate_of src postgres "ALTER SYSTEM SET trialvault.backup_max_defer = '2d'")" 22023 "4: more than a day is refused"
is "$(q src postgres "SELECT count(*) FROM t")" 3 "4: every row is there"
is "$(shipped)" 3 "4: ... and shipped, once"

done_testing

#!/usr/bin/env bash
# 94_lockout.sh: lockout after consecutive failed logins (issue 14), on a
# real cluster, over the unix socket and over TCP (127.0.0.1).
#
#   1. failed logins are counted (trialvault.lockouts); a login with the
#      right password starts the count again; failures that cannot lead to
#      a login (a role that does not exist, a client leaving at the prompt)
#      are not counted, and unknown names take no entry;
#   2. after trialvault.lockout_threshold (5) consecutive wrong passwords
#      the role is refused even with the right password, with the message a
#      wrong password gets (the client learns nothing); the server log says
#      why, and the trail has the lockout (role_locked) and every refused
#      attempt as locked out;
#   3. the counters survive a restart, and a kill -9 of the postmaster:
#      the locked role stays locked, another role's count stays;
#   4. trialvault.unlock_role: refused to non-administrators, NULL and
#      unknown roles refused with their SQLSTATEs; an administrator's ends
#      the lockout at once, is on record even when the caller rolls back,
#      and a restart does not bring the lockout back;
#   5. a superuser locked out over TCP still gets in over the local socket;
#   6. a lockout ends by itself after trialvault.lockout_duration, and a
#      session cannot change the settings.
set -euo pipefail
source "$(dirname "$0")/../lib/cluster.sh"
source "$(dirname "$0")/lib/helpers.sh"

tv_cluster_start lk "password_encryption = 'scram-sha-256'" "listen_addresses = '127.0.0.1'"
DIR=$(tv_dir lk)
PORT=$(tv_port lk)
cat >"$DIR/data/pg_hba.conf" <<'EOF'
local all postgres trust
local all all scram-sha-256
host all all 127.0.0.1/32 scram-sha-256
EOF
q lk postgres "SELECT pg_reload_conf()" >/dev/null
q lk postgres "SET client_min_messages = warning; CREATE EXTENSION trialvault CASCADE" >/dev/null
q lk postgres "CREATE ROLE lk_ann LOGIN PASSWORD 'Ann#Pass123';
               CREATE ROLE lk_bob LOGIN PASSWORD 'Bob#Pass123';
               CREATE ROLE lk_cat LOGIN PASSWORD 'Cat#Pass123';
               CREATE ROLE lk_dba LOGIN SUPERUSER PASSWORD 'Dba#Pass123';
               CREATE ROLE lk_admin LOGIN PASSWORD 'Adm#Pass123' IN ROLE trialvault_admin" >/dev/null

# login ROLE PASSWORD [HOST]: connect and print current_user, or the error.
login() {
	PGPASSWORD=$2 PGCONNECT_TIMEOUT=10 "$PGBIN/psql" -X -w -h "${3:-$DIR}" -p "$PORT" -U "$1" -d postgres \
		-At -c "SELECT current_user" 2>&1 || true
}
state() {	# state ROLE: failures|locked (t/f), or "none"
	local s
	s=$(q lk postgres "SELECT failures || '|' || (locked_until IS NOT NULL) FROM trialvault.lockouts WHERE role_name = '$1'")
	echo "${s:-none}"
}
fail_n() {	# fail_n ROLE N [HOST]: N wrong passwords
	local i
	for ((i = 0; i < $2; i++)); do login "$1" "Wrong#$i" "${3:-}" >/dev/null; done
}

# --- 1. counting -------------------------------------------------------------------
fail_n lk_ann 4
is "$(state lk_ann)" "4|false" "1: four wrong passwords are counted"
is "$(login lk_ann 'Ann#Pass123')" lk_ann "1: the right password still lets the role in"
is "$(state lk_ann)" none "1: ... and starts the count again"
login lk_ghost 'Any#Pass123' >/dev/null
"$PGBIN/psql" -X -w -h "$DIR" -p "$PORT" -U lk_cat -d postgres -c "SELECT 1" >/dev/null 2>&1 || true
is "$(q lk postgres "SELECT count(*) FROM trialvault.lockouts")" 0 \
	"1: a role that does not exist and a client leaving at the prompt count nothing (and take no entry)"

# --- 2. locked out -----------------------------------------------------------------
fail_n lk_ann 5
is "$(state lk_ann)" "0|true" "2: five consecutive wrong passwords lock the role out"
wrong=$(login lk_ann 'Wrong#x')
locked=$(login lk_ann 'Ann#Pass123')
like "$locked" 'password authentication failed for user "lk_ann"' "2: the right password is refused now"
is "${locked//lk_ann/X}" "${wrong//lk_ann/X}" "2: ... with exactly what a wrong password gets (the client learns nothing)"
check "2: the server log says the role is locked out, and why" \
	grep -q 'Role "lk_ann" is locked out by trialvault until .* after 5 consecutive failed logins' "$DIR/server.log"
wait_until "the refusals on record" 10 bash -c "[ \"\$(PGHOST=$DIR PGPORT=$PORT $PGBIN/psql -X -U postgres -d postgres -At -c \"SELECT count(*) FROM trialvault.login_attempts WHERE role_name = 'lk_ann' AND reason LIKE 'locked out until %'\")\" -ge 2 ]" || true
is "$(q lk postgres "SELECT count(*) FROM trialvault.login_attempts WHERE role_name = 'lk_ann' AND reason LIKE 'locked out until %'")" 2 \
	"2: each refused attempt is on record as locked out"
like "$(q lk postgres "SELECT detail FROM trialvault.audit_events WHERE event = 'role_locked' AND actor = 'lk_ann'")" \
	'"reason": "locked out after 5 consecutive failed logins", "until": "' "2: the lockout itself is an audit event, with its end"
is "$(state lk_ann)" "0|true" "2: attempts while locked do not extend the count"

fail_n lk_bob 3
is "$(state lk_bob)" "3|false" "2: (another role with three failures)"

# --- 3. restart and kill -9 -----------------------------------------------------------
tv_cluster_stop lk
tv_cluster_restart lk
wait_until "lockout state loaded" 20 bash -c "[ \"\$(grep -c 'trialvault lockout state loaded' '$DIR/server.log')\" -ge 2 ]" || true
like "$(grep 'trialvault lockout state loaded' "$DIR/server.log" | tail -1)" '2 role\(s\) with failed logins, 1 locked out' \
	"3: after a restart the writer rebuilds the counters from the trail"
is "$(state lk_ann):$(state lk_bob)" "0|true:3|false" "3: ... the lock and the other role's count are back"
like "$(login lk_ann 'Ann#Pass123')" 'password authentication failed' "3: ... and the locked role is still refused"
pm=$(head -1 "$DIR/data/postmaster.pid")
kill -9 "$pm"
# The children notice their postmaster is gone and exit; until they have,
# the new postmaster refuses to start (its shared memory is in use).
for i in $(seq 1 30); do
	sleep 1
	tv_cluster_restart lk 2>/dev/null && break
done
wait_until "lockout state loaded again" 20 bash -c "[ \"\$(grep -c 'trialvault lockout state loaded' '$DIR/server.log')\" -ge 3 ]" || true
check "3: (the kill -9 was a crash: the restart ran recovery)" \
	grep -q 'was not properly shut down; automatic recovery in progress' "$DIR/server.log"
is "$(state lk_ann):$(state lk_bob)" "0|true:3|false" "3: after a kill -9 of the postmaster, the same"
like "$(login lk_ann 'Ann#Pass123')" 'password authentication failed' "3: ... the locked role is still refused"

# --- 4. unlock_role ----------------------------------------------------------------
is "$(sqlstate_of lk postgres "SET ROLE lk_bob; SELECT trialvault.unlock_role('lk_ann')")" 42501 \
	"4: a role that is not an administrator cannot unlock (42501)"
is "$(sqlstate_of lk postgres "SET ROLE lk_admin; SELECT trialvault.unlock_role(NULL)")" 22004 "4: unlock_role(NULL): 22004"
is "$(sqlstate_of lk postgres "SET ROLE lk_admin; SELECT trialvault.unlock_role('lk_nobody')")" 42704 "4: an unknown role: 42704"
is "$(q lk postgres "SET ROLE lk_admin; BEGIN; SELECT trialvault.unlock_role('lk_ann'); ROLLBACK;" | head -1)" t \
	"4: an administrator unlocks the role (in a transaction rolled back)"
is "$(state lk_ann)" none "4: ... at once"
is "$(login lk_ann 'Ann#Pass123')" lk_ann "4: ... the role logs in again"
is "$(q lk postgres "SELECT actor || ' ' || detail FROM trialvault.audit_events WHERE event = 'role_unlocked'")" \
	'lk_admin {"role" : "lk_ann"}' "4: the unlock is on record, by whom, though the caller rolled back"
fail_n lk_ann 5
is "$(state lk_ann)" "0|true" "4: (locked again)"
is "$(q lk postgres "SET ROLE lk_admin; SELECT trialvault.unlock_role('lk_ann')")" t "4: unlocked again"
tv_cluster_stop lk
tv_cluster_restart lk
wait_until "lockout state loaded" 20 bash -c "[ \"\$(grep -c 'trialvault lockout state loaded' '$DIR/server.log')\" -ge 4 ]" || true
is "$(state lk_ann)" none "4: a restart does not bring an ended lockout back"
is "$(login lk_ann 'Ann#Pass123')" lk_ann "4: ... the role still logs in"

# --- 5. a superuser and the local socket ---------------------------------------------
fail_n lk_dba 5 127.0.0.1
is "$(state lk_dba)" "0|true" "5: a superuser can be locked out (five wrong passwords over TCP)"
like "$(login lk_dba 'Dba#Pass123' 127.0.0.1)" 'password authentication failed' "5: ... and is refused over TCP"
is "$(login lk_dba 'Dba#Pass123')" lk_dba "5: ... but never over the local socket"

# --- 6. the end of a lockout, the settings -----------------------------------------------
q lk postgres "ALTER SYSTEM SET trialvault.lockout_duration = '2s'" >/dev/null
q lk postgres "SELECT pg_reload_conf()" >/dev/null
sleep 0.3
fail_n lk_cat 5
like "$(login lk_cat 'Cat#Pass123')" 'password authentication failed' "6: locked for trialvault.lockout_duration (2 s)"
sleep 2.2
is "$(login lk_cat 'Cat#Pass123')" lk_cat "6: ... then the role logs in again by itself"
like "$(PGPASSWORD='Bob#Pass123' "$PGBIN/psql" -X -w -h "$DIR" -p "$PORT" -U lk_bob -d postgres -At -c "SET trialvault.lockout_threshold = 0" 2>&1 || true)" \
	'cannot be changed now' "6: a session cannot change the threshold"
is "$(sqlstate_of lk postgres "SET ROLE lk_bob; SELECT * FROM trialvault.lockouts")" 42501 "6: only administrators read trialvault.lockouts"

tv_cluster_stop lk
done_testing

#!/usr/bin/env bash
# 93_logins.sh: every connection attempt to any database of the cluster is
# in the audit trail (issue 14, login attempts), on a real cluster with a
# restrictive pg_hba.conf, over the unix socket and over TCP (127.0.0.1).
#
#   1. before CREATE EXTENSION there is no trail: roles log in (nothing to
#      record into, nothing protected yet);
#   2. a login with the right password (scram, socket and TCP), a wrong
#      password, a role that does not exist, a role without a password, an
#      expired password, no pg_hba.conf entry, a pg_hba.conf "reject" line,
#      a database that does not exist, a NOLOGIN role, a role over its
#      connection limit, a client that leaves at the password prompt, a
#      role name that is not valid UTF-8, and a login to another database:
#      each is one row of trialvault.login_attempts, let in or not as it
#      was, with the method, the address and port over TCP, and the reason;
#   3. the log writer stopped (SIGSTOP, trialvault.log_timeout = 300 ms):
#      an ordinary role is refused and recorded as refused (never as let
#      in), a superuser is let in with a "trialvault login fallback:" line
#      in the server log, and the fallback is counted and on record;
#   4. the log writer terminated: the same, and the records kept meanwhile
#      reach the trail when the postmaster has restarted it;
#   5. trialvault.audit_logins = off records nothing; only administrators
#      read login_attempts.
set -euo pipefail
source "$(dirname "$0")/../lib/cluster.sh"
source "$(dirname "$0")/lib/helpers.sh"

tv_cluster_start lg "password_encryption = 'scram-sha-256'" "listen_addresses = '127.0.0.1'"
DIR=$(tv_dir lg)
PORT=$(tv_port lg)
cat >"$DIR/data/pg_hba.conf" <<'EOF'
local all postgres trust
local all lg_bob reject
local all lg_nopw,lg_cap,lg_ann,lg_old,lg_nologin,lg_ghost scram-sha-256
local all lg_ann,lg_admin scram-sha-256
host all lg_ann,lg_admin 127.0.0.1/32 scram-sha-256
EOF
q lg postgres "SELECT pg_reload_conf()" >/dev/null

# login ROLE PASSWORD [DB [HOST]]: connect and print current_user, or the error.
login() {
	PGPASSWORD=$2 PGCONNECT_TIMEOUT=10 "$PGBIN/psql" -X -w -h "${4:-$DIR}" -p "$PORT" -U "$1" -d "${3:-postgres}" \
		-At -c "SELECT current_user" 2>&1 || true
}
attempts() { q lg postgres "SELECT count(*) FROM trialvault.login_attempts"; }
wait_attempts() {	# wait_attempts N: until the trail has N attempts
	wait_until "$1 login attempts on record" 10 bash -c "[ \"\$(PGHOST=$DIR PGPORT=$PORT $PGBIN/psql -X -U postgres -d postgres -At -c 'SELECT count(*) FROM trialvault.login_attempts')\" -ge $1 ]" || true
}
row() {	# row ROLE: the newest attempt of ROLE as succeeded|database|method|reason
	q lg postgres "SELECT succeeded || '|' || database || '|' || coalesce(auth_method, '') || '|' || coalesce(reason, '')
	                 FROM trialvault.login_attempts WHERE role_name = '$1' ORDER BY event_id DESC LIMIT 1"
}

# --- 1. no trail yet ------------------------------------------------------------
q lg postgres "CREATE ROLE lg_ann LOGIN PASSWORD 'Ann#Pass123'" >/dev/null
is "$(login lg_ann 'Ann#Pass123')" lg_ann "1: before CREATE EXTENSION a role logs in (there is no trail yet)"
q lg postgres "SET client_min_messages = warning; CREATE EXTENSION trialvault CASCADE" >/dev/null
is "$(q lg postgres "SELECT count(*) FROM trialvault.login_attempts WHERE role_name = 'lg_ann'")" 0 \
	"1: ... and nothing was recorded before the trail existed"

# --- 2. every kind of attempt ------------------------------------------------------
q lg postgres "CREATE ROLE lg_bob LOGIN PASSWORD 'Bob#Pass123';
               CREATE ROLE lg_nopw LOGIN;
               CREATE ROLE lg_old LOGIN PASSWORD 'Old#Pass123' VALID UNTIL '2001-01-01';
               CREATE ROLE lg_nologin PASSWORD 'Nol#Pass123';
               CREATE ROLE lg_cap LOGIN PASSWORD 'Cap#Pass123' CONNECTION LIMIT 1;
               CREATE ROLE lg_admin LOGIN PASSWORD 'Adm#Pass123' IN ROLE trialvault_admin" >/dev/null
q lg postgres "CREATE DATABASE lg_other" >/dev/null
base=$(attempts)

is "$(login lg_ann 'Ann#Pass123')" lg_ann "2: the right password: let in"
wait_attempts $((base + 1))
is "$(row lg_ann)" "true|postgres|scram-sha-256|" "2: ... recorded as let in, with the method"
is "$(q lg postgres "SELECT client_addr IS NULL AND client_port IS NULL FROM trialvault.login_attempts WHERE role_name = 'lg_ann' ORDER BY event_id DESC LIMIT 1")" t \
	"2: ... over the unix socket: no client address"

like "$(login lg_ann 'wrong')" 'password authentication failed' "2: a wrong password: refused"
wait_attempts $((base + 2))
is "$(row lg_ann)" "false|postgres|scram-sha-256|wrong password" "2: ... recorded as a wrong password"

like "$(login lg_ghost 'Any#Pass123')" 'password authentication failed' "2: a role that does not exist: refused (as a wrong password, to the client)"
wait_attempts $((base + 3))
is "$(row lg_ghost)" "false|postgres|scram-sha-256|role does not exist" "2: ... recorded as a role that does not exist"

like "$(login lg_nopw 'Any#Pass123')" 'password authentication failed' "2: a role without a password: refused"
wait_attempts $((base + 4))
is "$(row lg_nopw)" "false|postgres|scram-sha-256|role has no password" "2: ... recorded so"

like "$(login lg_old 'Old#Pass123')" 'password authentication failed' "2: an expired password: refused"
wait_attempts $((base + 5))
is "$(row lg_old)" "false|postgres|scram-sha-256|password expired" "2: ... recorded as expired"

like "$(login lg_zed 'Any#Pass123')" 'no pg_hba.conf entry' "2: no pg_hba.conf entry: refused before authentication"
wait_attempts $((base + 6))
like "$(row lg_zed)" '^false\|postgres\|implicit reject\|no pg_hba.conf entry: ' "2: ... recorded (through emit_log_hook)"

like "$(login lg_bob 'Bob#Pass123')" 'pg_hba.conf rejects connection' "2: a pg_hba.conf reject line: refused"
wait_attempts $((base + 7))
like "$(row lg_bob)" '^false\|postgres\|reject\|rejected by pg_hba.conf: ' "2: ... recorded"

like "$(login lg_ann 'Ann#Pass123' lg_nowhere)" 'database "lg_nowhere" does not exist' "2: a database that does not exist: refused after authentication"
wait_attempts $((base + 8))
like "$(row lg_ann)" '^false\|lg_nowhere\|scram-sha-256\|database does not exist: ' "2: ... recorded as refused, not as let in"

like "$(login lg_nologin 'Nol#Pass123')" 'not permitted to log in' "2: a NOLOGIN role: refused"
wait_attempts $((base + 9))
like "$(row lg_nologin)" '^false\|postgres\|scram-sha-256\|role may not log in: ' "2: ... recorded"

sess_open lg postgres capsess -U postgres
sess_run capsess "SET ROLE postgres"
PGPASSWORD='Cap#Pass123' "$PGBIN/psql" -X -w -h "$DIR" -p "$PORT" -U lg_cap -d postgres -At -c "SELECT pg_sleep(3)" >/dev/null 2>&1 &
capper=$!
wait_until "lg_cap's first session" 10 bash -c "[ \"\$(PGHOST=$DIR PGPORT=$PORT $PGBIN/psql -X -U postgres -d postgres -At -c \"SELECT count(*) FROM pg_stat_activity WHERE usename = 'lg_cap'\")\" -ge 1 ]" || true
like "$(login lg_cap 'Cap#Pass123')" 'too many connections for role' "2: over the role's connection limit: refused"
wait "$capper" || true
sess_close capsess || true
wait_attempts $((base + 11))
like "$(row lg_cap)" '^false\|postgres\|scram-sha-256\|too many connections: ' "2: ... recorded as too many connections"

"$PGBIN/psql" -X -w -h "$DIR" -p "$PORT" -U lg_ann -d postgres -c "SELECT 1" >/dev/null 2>&1 || true
wait_attempts $((base + 12))
is "$(row lg_ann)" "false|postgres|scram-sha-256|the client closed the connection during authentication" \
	"2: a client that leaves at the password prompt: recorded, not as a wrong password"

like "$(login "$(printf 'lg_\xff\xfeX')" 'Any#Pass123')" 'no pg_hba.conf entry' "2: a role name that is not valid UTF-8: refused"
wait_attempts $((base + 13))
is "$(q lg postgres "SELECT role_name FROM trialvault.login_attempts WHERE role_name <> 'postgres' ORDER BY event_id DESC LIMIT 1")" 'lg_??X' \
	"2: ... and recorded, its invalid bytes shown as '?'"

is "$(login lg_ann 'Ann#Pass123' lg_other 127.0.0.1)" lg_ann "2: over TCP to another database: let in"
wait_attempts $((base + 14))
is "$(q lg postgres "SELECT succeeded || '|' || database || '|' || host(client_addr) || '|' || (client_port > 0)
                     FROM trialvault.login_attempts WHERE role_name = 'lg_ann' ORDER BY event_id DESC LIMIT 1")" \
	"true|lg_other|127.0.0.1|true" "2: ... recorded in the trail database, with the client's address and port"
is "$(q lg lg_other "SELECT count(*) FROM pg_extension WHERE extname = 'trialvault'")" 0 \
	"2: (the other database has no trialvault of its own)"
like "$(login lg_ann 'wrong' postgres 127.0.0.1)" 'password authentication failed' "2: a wrong password over TCP: refused"
wait_attempts $((base + 15))
is "$(q lg postgres "SELECT succeeded || '|' || host(client_addr) || '|' || reason FROM trialvault.login_attempts WHERE role_name <> 'postgres' ORDER BY event_id DESC LIMIT 1")" \
	"false|127.0.0.1|wrong password" "2: ... recorded with the address"
is "$(q lg postgres "SELECT count(*) FROM trialvault.login_attempts WHERE succeeded AND role_name IN ('lg_bob', 'lg_ghost', 'lg_nopw', 'lg_old', 'lg_zed', 'lg_nologin')")" 0 \
	"2: no refused role is ever recorded as let in"

# --- 3. the log writer stopped -----------------------------------------------------
q lg postgres "ALTER SYSTEM SET trialvault.log_timeout = 300" >/dev/null
q lg postgres "SELECT pg_reload_conf()" >/dev/null
sleep 0.3
wpid=$(q lg postgres "SELECT pid FROM trialvault.log_writer_status()")
mark=$(q lg postgres "SELECT max(event_id) FROM trialvault.audit_events")
kill -STOP "$wpid"
out=$(login lg_ann 'Ann#Pass123')
like "$out" 'the login of role "lg_ann" could not be put on record' "3: writer stopped: an ordinary role is refused"
like "$out" 'did not confirm the record within 300 ms' "3: ... saying why"
is "$(tv_psql lg -d postgres -At -c "SELECT 'in'" 2>&1)" in "3: ... a superuser is let in"
kill -CONT "$wpid"
check "3: ... with a line under the fixed prefix in the server log" \
	grep -q 'trialvault login fallback: superuser "postgres" let in to database "postgres"' "$DIR/server.log"
wait_until "the fallback on record" 10 bash -c "[ \"\$(PGHOST=$DIR PGPORT=$PORT $PGBIN/psql -X -U postgres -d postgres -At -c 'SELECT recorded FROM trialvault.login_fallbacks')\" -ge 1 ]" || true
is "$(q lg postgres "SELECT recorded || '|' || pending FROM trialvault.login_fallbacks")" "1|0" \
	"3: the fallback is counted, and on record once the writer resumed"
is "$(q lg postgres "SELECT string_agg(role_name || ':' || succeeded || ':' || fallback, ',' ORDER BY event_id)
                     FROM trialvault.login_attempts WHERE event_id > $mark AND (NOT succeeded OR fallback)")" \
	"lg_ann:false:false,postgres:true:true" "3: the refused login is on record as refused (not as let in), the superuser's as a fallback"

# --- 4. the log writer terminated --------------------------------------------------
kill -TERM "$wpid"
wait_until "the writer gone" 5 bash -c "! kill -0 $wpid 2>/dev/null" || true
like "$(login lg_ann 'Ann#Pass123')" 'the trialvault log writer is not running' "4: writer down: an ordinary role is refused"
is "$(tv_psql lg -d postgres -At -c "SELECT pending FROM trialvault.login_fallbacks" 2>&1)" 2 \
	"4: a superuser is let in; its login and the refusal are kept in shared memory meanwhile"
wait_until "the writer back" 20 bash -c "[ -n \"\$(PGHOST=$DIR PGPORT=$PORT $PGBIN/psql -X -U postgres -d postgres -At -c 'SELECT pid FROM trialvault.log_writer_status() WHERE pid IS NOT NULL')\" ]" || true
wait_until "the kept records written" 10 bash -c "[ \"\$(PGHOST=$DIR PGPORT=$PORT $PGBIN/psql -X -U postgres -d postgres -At -c 'SELECT pending FROM trialvault.login_fallbacks')\" = 0 ]" || true
# (every superuser connection while the writer is away is a fallback: the
# polls above made a few)
is "$(q lg postgres "SELECT (recorded >= 3) || '|' || pending FROM trialvault.login_fallbacks")" "true|0" \
	"4: once the postmaster restarted the writer, the kept records are on record"
like "$(q lg postgres "SELECT reason FROM trialvault.login_attempts WHERE role_name = 'lg_ann' AND NOT succeeded ORDER BY event_id DESC LIMIT 1")" \
	'^refused: the login could not be put on record$' "4: ... the ordinary role's as refused"
q lg postgres "ALTER SYSTEM RESET trialvault.log_timeout" >/dev/null

# --- 5. off, and who may read ----------------------------------------------------------
q lg postgres "ALTER SYSTEM SET trialvault.audit_logins = off" >/dev/null
q lg postgres "SELECT pg_reload_conf()" >/dev/null
sleep 0.3
before=$(attempts)
login lg_ann 'Ann#Pass123' >/dev/null
login lg_ann 'wrong' >/dev/null
sleep 0.5
is "$(attempts)" "$((before + 0))" "5: trialvault.audit_logins = off records nothing"
q lg postgres "ALTER SYSTEM RESET trialvault.audit_logins" >/dev/null
q lg postgres "SELECT pg_reload_conf()" >/dev/null
sleep 0.3
like "$(PGPASSWORD='Ann#Pass123' "$PGBIN/psql" -X -w -h "$DIR" -p "$PORT" -U lg_ann -d postgres -At -c "SELECT count(*) FROM trialvault.login_attempts" 2>&1 || true)" \
	'permission denied' "5: an ordinary role cannot read login_attempts"
like "$(PGPASSWORD='Adm#Pass123' "$PGBIN/psql" -X -w -h "$DIR" -p "$PORT" -U lg_admin -d postgres -At -c "SELECT count(*) > 10 FROM trialvault.login_attempts" 2>&1 || true)" \
	'^t$' "5: an administrator can"
like "$(PGPASSWORD='Ann#Pass123' "$PGBIN/psql" -X -w -h "$DIR" -p "$PORT" -U lg_ann -d postgres -At -c "SET trialvault.audit_logins = off" 2>&1 || true)" \
	'cannot be changed now' "5: a session cannot turn recording off"
like "$(PGOPTIONS='-c trialvault.audit_logins=off' PGPASSWORD='Ann#Pass123' "$PGBIN/psql" -X -w -h "$DIR" -p "$PORT" -U lg_ann -d postgres -At -c "SELECT 1" 2>&1 || true)" \
	'cannot be changed now' "5: ... nor a client at connection (PGOPTIONS): the connection is refused"
wait_until "that refusal on record" 10 bash -c "[ \"\$(PGHOST=$DIR PGPORT=$PORT $PGBIN/psql -X -U postgres -d postgres -At -c \"SELECT count(*) FROM trialvault.login_attempts WHERE role_name = 'lg_ann' AND reason LIKE 'refused: %audit_logins%'\")\" = 1 ]" || true
is "$(q lg postgres "SELECT count(*) FROM trialvault.login_attempts WHERE role_name = 'lg_ann' AND reason LIKE 'refused: %audit_logins%'")" 1 \
	"5: ... and on record as refused"
like "$(tv_psql lg -d postgres -c "ALTER ROLE lg_ann SET trialvault.audit_logins = off" 2>&1 || true)" \
	'cannot be (changed|set)' "5: nor can a role be exempted (ALTER ROLE ... SET)"

tv_cluster_stop lg
done_testing

#!/usr/bin/env bash
# 96_account_changes.sh: every change to an account is in the audit trail,
# and no password is anywhere it should not be (issue 14, account changes),
# on a real cluster with pg_stat_statements loaded after trialvault (so its
# hook runs first) and log_statement = all.
#
#   1. CREATE/ALTER/DROP ROLE (USER, GROUP), ALTER ROLE ... SET, RENAME,
#      ALTER GROUP ... ADD USER, GRANT/REVOKE of membership (with admin
#      option): each is one row of trialvault.account_changes with the
#      session user, the current user (a CREATEROLE role after SET ROLE),
#      the role changed and what changed (a password only as "password
#      changed"); in another database too, with its name;
#   2. what rolls back (ROLLBACK, ROLLBACK TO SAVEPOINT) is not recorded;
#      a refused statement (permission denied, a role that exists) is, as
#      account_change_refused, with PostgreSQL's message; a password the
#      rules refuse in another database is on record too;
#   3. the extension's own events are account changes too: study roles,
#      monitor authorizations, lockouts and unlocks;
#   4. the log writer stopped: an ordinary role's change is not made (its
#      transaction fails, saying why) and is recorded as refused once the
#      writer is back; a superuser's is made, with a "trialvault account
#      change fallback:" line, and recorded as a fallback;
#   5. no password (set by CREATE ROLE, ALTER ROLE with E'' and dollar
#      quotes, ENCRYPTED PASSWORD, in a failing statement) is in the server
#      log, pg_stat_statements (view and file), the trail, or the data
#      directory;
#   6. an auditor of a study sees in audit_trail the logins and account
#      changes of the study's members, and not those of others; only
#      administrators read account_changes.
set -euo pipefail
source "$(dirname "$0")/../lib/cluster.sh"
source "$(dirname "$0")/lib/helpers.sh"

tv_cluster_start ac "password_encryption = 'scram-sha-256'" \
	"shared_preload_libraries = 'trialvault, pg_stat_statements'" \
	"log_statement = 'all'" "pg_stat_statements.track_utility = on"
DIR=$(tv_dir ac)
PORT=$(tv_port ac)
q ac postgres "SET client_min_messages = warning; CREATE EXTENSION trialvault CASCADE; CREATE EXTENSION pg_stat_statements" >/dev/null
q ac postgres "CREATE DATABASE ac_other" >/dev/null
SECRETS=()

# change KIND TARGET: the newest account change of that kind and target, as
# session_user|current_user|detail.
change() {
	q ac postgres "SELECT session_user_name || '|' || current_user_name || '|' || coalesce(detail, '')
	                 FROM trialvault.account_changes WHERE kind = '$1' AND target_role = '$2'
	                ORDER BY event_id DESC LIMIT 1"
}
n_changes() { q ac postgres "SELECT count(*) FROM trialvault.account_changes WHERE target_role = '$1'"; }

# --- 1. every kind of change -------------------------------------------------------
SECRETS+=("Creat0r#Secret")
q ac postgres "CREATE ROLE ac_creator LOGIN CREATEROLE PASSWORD 'Creat0r#Secret'" >/dev/null
is "$(change role_created ac_creator)" "postgres|postgres|login, createrole, password changed (database postgres)" \
	"1: CREATE ROLE: who, to whom, which attributes (the password only as changed)"
SECRETS+=("Ann#First1")
q ac postgres "SET ROLE ac_creator; CREATE USER ac_ann PASSWORD 'Ann#First1' CONNECTION LIMIT 3 VALID UNTIL '2031-01-01'" >/dev/null
is "$(change role_created ac_ann)" "postgres|ac_creator|login, password changed, connection limit 3, valid until 2031-01-01 (database postgres)" \
	"1: CREATE USER after SET ROLE: the session user and the current user"
SECRETS+=("Ann#Second2")
q ac postgres "ALTER ROLE ac_ann PASSWORD E'Ann#Second2' NOLOGIN" >/dev/null
is "$(change role_altered ac_ann)" "postgres|postgres|password changed, nologin (database postgres)" "1: ALTER ROLE ... PASSWORD NOLOGIN"
q ac postgres "ALTER ROLE ac_ann PASSWORD NULL" >/dev/null
is "$(change role_altered ac_ann)" "postgres|postgres|password removed (database postgres)" "1: ALTER ROLE ... PASSWORD NULL"
q ac postgres "ALTER ROLE ac_ann SET work_mem = '8MB'" >/dev/null
is "$(change role_setting_changed ac_ann)" "postgres|postgres|set work_mem (database postgres)" "1: ALTER ROLE ... SET"
q ac postgres "ALTER ROLE ac_ann IN DATABASE ac_other RESET ALL" >/dev/null
is "$(change role_setting_changed ac_ann)" "postgres|postgres|reset all settings in database ac_other (database postgres)" "1: ALTER ROLE ... IN DATABASE ... RESET ALL"
q ac postgres "CREATE GROUP ac_grp" >/dev/null
q ac postgres "ALTER GROUP ac_grp ADD USER ac_ann" >/dev/null
is "$(change role_altered ac_grp)" "postgres|postgres|members: ac_ann (database postgres)" "1: ALTER GROUP ... ADD USER"
q ac postgres "GRANT ac_grp TO ac_creator WITH ADMIN OPTION" >/dev/null
is "$(change membership_granted ac_creator)" "postgres|postgres|member of ac_grp with admin option (database postgres)" "1: GRANT ... WITH ADMIN OPTION"
q ac postgres "REVOKE ac_grp FROM ac_creator" >/dev/null
is "$(change membership_revoked ac_creator)" "postgres|postgres|no longer member of ac_grp (database postgres)" "1: REVOKE membership"
q ac postgres "ALTER ROLE ac_grp RENAME TO ac_group" >/dev/null
is "$(change role_renamed ac_grp)" "postgres|postgres|renamed to ac_group (database postgres)" "1: ALTER ROLE ... RENAME"
q ac ac_other "CREATE ROLE ac_x; CREATE ROLE ac_y; DROP ROLE ac_x, ac_y" >/dev/null
is "$(change role_dropped ac_x):$(change role_dropped ac_y)" \
	"postgres|postgres| (database ac_other):postgres|postgres| (database ac_other)" \
	"1: in another database, DROP ROLE of two roles: one row each, with the database"

q ac postgres "ALTER SYSTEM SET trialvault.lockout_threshold = 7" >/dev/null
q ac postgres "ALTER SYSTEM SET trialvault.signing_key_command = 'echo Sekrit#Phrase9'" >/dev/null
q ac postgres "ALTER SYSTEM RESET trialvault.signing_key_command" >/dev/null
q ac postgres "ALTER SYSTEM RESET trialvault.lockout_threshold" >/dev/null
is "$(q ac postgres "SELECT string_agg(detail, ' | ' ORDER BY event_id) FROM trialvault.account_changes WHERE kind = 'setting_changed'")" \
	"ALTER SYSTEM SET trialvault.lockout_threshold = 7 (takes effect on reload or restart) (database postgres) | ALTER SYSTEM SET trialvault.signing_key_command = (a command, not recorded) (takes effect on reload or restart) (database postgres) | ALTER SYSTEM RESET trialvault.signing_key_command (takes effect on reload or restart) (database postgres) | ALTER SYSTEM RESET trialvault.lockout_threshold (takes effect on reload or restart) (database postgres)" \
	"1: ALTER SYSTEM of trialvault's settings is on record (a command's text, superuser-only, is not)"
is "$(q ac postgres "SELECT count(*) FROM trialvault.audit_events WHERE detail LIKE '%Sekrit%'")" 0 "1: ... nowhere in the trail"
q ac postgres "ALTER SYSTEM SET trialvault.lockout_threshold = 7" >/dev/null
q ac postgres "SELECT pg_reload_conf()" >/dev/null
wait_until "the reload on record" 10 bash -c "[ \"\$(PGHOST=$DIR PGPORT=$PORT $PGBIN/psql -X -U postgres -d postgres -At -c \"SELECT count(*) FROM trialvault.account_changes WHERE current_user_name = '(configuration)'\")\" = 1 ]" || true
is "$(q ac postgres "SELECT detail FROM trialvault.account_changes WHERE current_user_name = '(configuration)'")" \
	"trialvault.lockout_threshold changed from 5 to 7 (configuration reloaded)" \
	"1: a reload that changes a policy setting is on record, however it was changed"
q ac postgres "ALTER SYSTEM RESET trialvault.lockout_threshold" >/dev/null
q ac postgres "SELECT pg_reload_conf()" >/dev/null

# --- 2. rolled back, refused ------------------------------------------------------------
q ac postgres "BEGIN; CREATE ROLE ac_gone; ROLLBACK" >/dev/null
q ac postgres "BEGIN; CREATE ROLE ac_kept; SAVEPOINT s; CREATE ROLE ac_undone; ROLLBACK TO s; COMMIT" >/dev/null
is "$(n_changes ac_gone):$(n_changes ac_undone):$(n_changes ac_kept)" "0:0:1" \
	"2: what rolls back (a transaction, a savepoint) is not recorded; what commits is"
like "$(tv_psql ac -d postgres -c "SET ROLE ac_ann; CREATE ROLE ac_nope" 2>&1 || true)" 'permission denied to create role' \
	"2: a role without CREATEROLE cannot create one"
wait_until "the refusal on record" 10 bash -c "[ \"\$(PGHOST=$DIR PGPORT=$PORT $PGBIN/psql -X -U postgres -d postgres -At -c \"SELECT count(*) FROM trialvault.account_changes WHERE target_role = 'ac_nope'\")\" = 1 ]" || true
is "$(change account_change_refused ac_nope)" "postgres|ac_ann|CREATE ROLE refused: permission denied to create role (database postgres)" \
	"2: ... and the refusal is on record"
like "$(tv_psql ac -d postgres -c "CREATE ROLE ac_kept" 2>&1 || true)" 'already exists' "2: CREATE ROLE of a role that exists: refused"
wait_until "the refusal on record" 10 bash -c "[ \"\$(PGHOST=$DIR PGPORT=$PORT $PGBIN/psql -X -U postgres -d postgres -At -c \"SELECT count(*) FROM trialvault.account_changes WHERE target_role = 'ac_kept' AND kind = 'account_change_refused'\")\" = 1 ]" || true
like "$(change account_change_refused ac_kept)" 'role "ac_kept" already exists' "2: ... on record with PostgreSQL's message"
SECRETS+=("weakpw")
like "$(tv_psql ac -d ac_other -c "CREATE ROLE ac_weak PASSWORD 'weakpw'" 2>&1 || true)" 'breaks the password rules' \
	"2: a weak password in another database: refused"
wait_until "the refusal on record" 10 bash -c "[ \"\$(PGHOST=$DIR PGPORT=$PORT $PGBIN/psql -X -U postgres -d postgres -At -c \"SELECT count(*) FROM trialvault.account_changes WHERE target_role = 'ac_weak' AND kind = 'password_refused'\")\" = 1 ]" || true
is "$(q ac postgres "SELECT count(*) FROM trialvault.account_changes WHERE target_role = 'ac_weak' AND kind = 'password_refused'")" 1 \
	"2: ... and on record in the trail database, with the role"

# --- 3. the extension's own events ----------------------------------------------------------
q ac postgres "CREATE ROLE ac_mon LOGIN; CREATE ROLE ac_inv LOGIN; CREATE ROLE ac_aud LOGIN; CREATE ROLE ac_out LOGIN;
               SELECT trialvault.create_study('AC', 'Accounts');
               SELECT trialvault.add_site('AC', 'S1', 'Site 1');
               SELECT trialvault.grant_role('ac_inv', 'AC', 'S1', 'investigator');
               SELECT trialvault.grant_role('ac_mon', 'AC', NULL, 'monitor');
               SELECT trialvault.grant_role('ac_aud', 'AC', NULL, 'auditor');
               SET ROLE ac_inv; SELECT trialvault.authorize_monitor('ac_mon', 'AC', 'S1', now() + interval '1 day')" >/dev/null
is "$(q ac postgres "SELECT current_user_name || '|' || detail FROM trialvault.account_changes WHERE kind = 'role_granted' AND target_role = 'ac_inv'")" \
	"postgres|investigator to ac_inv" "3: a study role granted is an account change, with its member as target"
is "$(q ac postgres "SELECT current_user_name || '|' || target_role FROM trialvault.account_changes WHERE kind = 'monitor_authorized'")" \
	"ac_inv|ac_mon" "3: a monitor authorization too"
q ac postgres "SELECT trialvault.unlock_role('ac_out')" >/dev/null
is "$(q ac postgres "SELECT current_user_name || '|' || target_role FROM trialvault.account_changes WHERE kind = 'role_unlocked'")" \
	"postgres|ac_out" "3: an unlock too"

# --- 4. the log writer stopped ---------------------------------------------------------------
q ac postgres "ALTER SYSTEM SET trialvault.log_timeout = 300" >/dev/null
q ac postgres "SELECT pg_reload_conf()" >/dev/null
sleep 0.3
sess_open ac postgres crs -U ac_creator -v ON_ERROR_STOP=0
sess_open ac postgres sup -v ON_ERROR_STOP=0
wpid=$(q ac postgres "SELECT pid FROM trialvault.log_writer_status()")
kill -STOP "$wpid"
sess_run crs "CREATE ROLE ac_blocked;" || true
sess_run sup "CREATE ROLE ac_super_made;" || true
kill -CONT "$wpid"
sess_close crs || true
sess_close sup || true
like "$(sess_output crs)" 'the role change could not be put on record, so it is not made' "4: writer stopped: an ordinary role's change fails, saying why"
is "$(q ac postgres "SELECT count(*) FROM pg_roles WHERE rolname = 'ac_blocked'")" 0 "4: ... and is not made"
is "$(q ac postgres "SELECT count(*) FROM pg_roles WHERE rolname = 'ac_super_made'")" 1 "4: a superuser's is made"
check "4: ... with a line under the fixed prefix in the server log" \
	grep -q 'trialvault account change fallback: role_created by superuser "postgres"' "$DIR/server.log"
wait_until "both on record" 10 bash -c "[ \"\$(PGHOST=$DIR PGPORT=$PORT $PGBIN/psql -X -U postgres -d postgres -At -c \"SELECT count(*) FROM trialvault.account_changes WHERE target_role IN ('ac_blocked', 'ac_super_made')\")\" -ge 2 ]" || true
is "$(q ac postgres "SELECT string_agg(target_role || ':' || kind, ',' ORDER BY target_role) FROM trialvault.account_changes WHERE target_role IN ('ac_blocked', 'ac_super_made')")" \
	"ac_blocked:account_change_refused,ac_super_made:account_change_fallback" \
	"4: once the writer resumed: the ordinary role's as refused, the superuser's as a fallback"
q ac postgres "ALTER SYSTEM RESET trialvault.log_timeout" >/dev/null
q ac postgres "SELECT pg_reload_conf()" >/dev/null

# --- 5. no password anywhere -----------------------------------------------------------------
SECRETS+=("Dollar#Quoted3" "Encrypted#Four4" "Failing#Five5")
q ac postgres "ALTER ROLE ac_ann PASSWORD \$pw\$Dollar#Quoted3\$pw\$" >/dev/null
q ac postgres "ALTER ROLE ac_ann ENCRYPTED /* a comment */ PASSWORD 'Encrypted#Four4'" >/dev/null
tv_psql ac -d postgres -c "CREATE ROLE ac_kept PASSWORD 'Failing#Five5'" >/dev/null 2>&1 || true
check "5: (the server log has the statements, redacted: the search works)" \
	grep -q "statement: ALTER ROLE ac_ann ENCRYPTED /\* a comment \*/ PASSWORD '\*\*\*\*\*\*\*\*\*\*\*\*\*\*\*'" "$DIR/server.log"
check "5: (a failing statement's STATEMENT line is redacted too)" \
	grep -q "STATEMENT:  CREATE ROLE ac_kept PASSWORD '\*\*\*\*\*\*\*\*\*\*\*\*\*'" "$DIR/server.log"
is "$(q ac postgres "SELECT count(*) FROM pg_stat_statements WHERE query LIKE '%PASSWORD ''*%' AND query LIKE '%ac_ann%'")" 4 \
	"5: pg_stat_statements has the role statements, redacted"
q ac postgres "SELECT coalesce(string_agg(query, E'\n'), '') FROM pg_stat_statements" >"$DIR/pgss.txt"
q ac postgres "SELECT coalesce(string_agg(a::text, E'\n'), '') FROM trialvault.audit_events a" >"$DIR/trail.txt"
tv_cluster_stop ac
for secret in "${SECRETS[@]}"; do
	check "5: '${secret:0:4}...' is in neither the server log, pg_stat_statements, the trail nor the data directory" \
		bash -c '! grep -qF -- "$1" "$2" "$3" "$4" && ! grep -rqF -- "$1" "$5"' _ "$secret" \
		"$DIR/server.log" "$DIR/pgss.txt" "$DIR/trail.txt" "$DIR/data"
done
tv_cluster_restart ac

# --- 6. auditors and administrators -------------------------------------------------------------
q ac postgres "ALTER ROLE ac_mon NOSUPERUSER; ALTER ROLE ac_out NOSUPERUSER" >/dev/null
tv_psql ac -d postgres -U ac_mon -c "SELECT 1" >/dev/null
tv_psql ac -d postgres -U ac_out -c "SELECT 1" >/dev/null
aud() { tv_psql ac -d postgres -U ac_aud -At -c "SELECT trialvault.open_study('AC')" -c "$1" | tail -n 1; }
# (The login records are written by the log writer a moment after the logins.)
aud_sees_mon() { [ "$(aud "SELECT count(*) FILTER (WHERE event = 'login' AND actor = 'ac_mon') > 0 AND count(*) FILTER (WHERE event = 'role_altered' AND detail LIKE '%\"ac_mon\"%') = 1 FROM trialvault.audit_trail")" = t ]; }
check "6: an auditor sees the logins and account changes of the study's members in audit_trail" \
	wait_until "the login records" 15 aud_sees_mon
out_recorded() { [ "$(q ac postgres "SELECT count(*) > 0 FROM trialvault.audit_events WHERE event = 'login' AND actor = 'ac_out'")" = t ]; }
check "6: (ac_out's login is recorded)" wait_until "ac_out's login record" 15 out_recorded
is "$(aud "SELECT count(*) FROM trialvault.audit_trail WHERE actor = 'ac_out' OR detail LIKE '%\"ac_out\"%'")" 0 \
	"6: ... and nothing of a role outside the study"
is "$(sqlstate_of ac postgres "SET ROLE ac_ann; SELECT * FROM trialvault.account_changes")" 42501 "6: an ordinary role cannot read account_changes"
# A superuser who would hide someone's events from the auditors, or every
# login, by changing the objects they go through: refused.
for stmt in "CREATE OR REPLACE FUNCTION trialvault._event_subject(event text, actor name, detail text) RETURNS name LANGUAGE sql IMMUTABLE AS 'SELECT NULL::name'" \
	"CREATE OR REPLACE VIEW trialvault.login_attempts AS SELECT * FROM trialvault.login_attempts WHERE false" \
	"DROP VIEW trialvault.account_changes" \
	"CREATE RULE hide AS ON INSERT TO trialvault.audit_events WHERE NEW.event LIKE 'login%' DO INSTEAD NOTHING" \
	"DELETE FROM trialvault.audit_events WHERE event = 'login'"; do
	like "$(sqlstate_of ac postgres "$stmt")" '^(55000|2BP01)$' "6: refused to a superuser: ${stmt:0:60}..."
done
q ac postgres "CREATE ROLE ac_admin IN ROLE trialvault_admin" >/dev/null
is "$(q ac postgres "SET ROLE ac_admin; SELECT count(*) > 20 FROM trialvault.account_changes")" t "6: an administrator can"
is "$(q ac postgres "SET ROLE ac_admin; SELECT (SELECT count(*) FROM trialvault.lockouts) >= 0 AND (SELECT pending FROM trialvault.login_fallbacks) >= 0")" t \
	"6: ... and lockouts and login_fallbacks"

tv_cluster_stop ac
done_testing

#!/usr/bin/env bash
# 92_password_rules.sh: the password rules of check_password_hook (issue 14,
# first part), on a real cluster.
#
#   1. CREATE ROLE and ALTER ROLE ... PASSWORD with passwords that are too
#      short, lack an upper-case or lower-case letter, a digit or another
#      character, or contain the role's name (any case): refused with 22023
#      naming every rule broken, never the password; a password that keeps
#      every rule is accepted, and the role logs in with it (scram, over a
#      real password check);
#   2. a role changing its own password is held to the same rules, and
#      cannot relax them for its session (the settings are sighup);
#   3. a password sent already hashed (MD5 or SCRAM verifier) is refused by
#      default, accepted with an event when trialvault.password_accept_hashed
#      is on; trialvault.password_min_length = 12 refuses 11 characters;
#   4. every refusal is in the audit trail with the rules broken, and no
#      password text is in the server log (log_min_error_statement = error,
#      the default, would log the refused statement: it is kept out) or in
#      the trail.  (Accepted passwords under log_statement = all and in
#      pg_stat_statements: 96_account_changes.)
#   5. history: a password among the role's last 5 (trialvault.password_history)
#      is refused, in any database, after a restart too; rolled-back and
#      refused ones do not count; only salted PBKDF2 hashes are kept, in a
#      chained table nobody but the extension reads;
#   6. aging: a password set gets VALID UNTIL in trialvault.password_max_age
#      days, a later one is brought down, an earlier one kept; 0 turns it
#      off; password_expiry lists what expires within 14 days; no password
#      is in the server log, the trail or the data directory.
set -euo pipefail
source "$(dirname "$0")/../lib/cluster.sh"
source "$(dirname "$0")/lib/helpers.sh"

tv_cluster_start pw "password_encryption = 'scram-sha-256'"
PWDIR=$(tv_dir pw)
q pw postgres "SET client_min_messages = warning; CREATE EXTENSION trialvault CASCADE" >/dev/null
# Password logins over the socket, for the roles of this test only.
sed -i '1i local all pw_login scram-sha-256' "$PWDIR/data/pg_hba.conf"
q pw postgres "SELECT pg_reload_conf()" >/dev/null

state_of() { sqlstate_of pw postgres "$1"; }
msg_of() { tv_psql pw -d postgres -c "$1" 2>&1 | sed -n 's/^ERROR: *//p' || true; }
SECRETS=()
try_pw() {	# try_pw ROLE PASSWORD: CREATE ROLE with it; prints SQLSTATE
	SECRETS+=("$2")
	state_of "CREATE ROLE $1 LOGIN PASSWORD '$2'"
}

# --- 1. the rules --------------------------------------------------------------
is "$(try_pw pw_a 'Sh0rt!')" 22023 "1: 6 characters: refused"
like "$(msg_of "CREATE ROLE pw_a LOGIN PASSWORD 'Sh0rt!'")" \
	'the password for role "pw_a" breaks the password rules: shorter than 8 characters$' "1: ... naming the rule"
is "$(try_pw pw_a 'nocapital#1')" 22023 "1: no upper-case letter: refused"
is "$(try_pw pw_a 'NOLOWER#1X')" 22023 "1: no lower-case letter: refused"
is "$(try_pw pw_a 'NoDigits#here')" 22023 "1: no digit: refused"
is "$(try_pw pw_a 'NoOther1here')" 22023 "1: no character other than letters and digits: refused"
is "$(try_pw pw_a 'x1#PW_A-secret')" 22023 "1: containing the role's name in another case: refused"
like "$(msg_of "CREATE ROLE pw_a LOGIN PASSWORD 'password'")" \
	'shorter than 8 characters|no upper-case letter, no digit, no character other than letters and digits' \
	"1: every broken rule is named"
is "$(try_pw pw_login 'Tr1al#Vault')" none "1: a password that keeps every rule is accepted"
is "$(PGPASSWORD='Tr1al#Vault' "$PGBIN/psql" -X -h "$PWDIR" -p "$(tv_port pw)" -U pw_login -d postgres -At -c "SELECT current_user" 2>&1)" \
	pw_login "1: ... and the role logs in with it (scram-sha-256)"
is "$(PGPASSWORD='wrong' "$PGBIN/psql" -X -h "$PWDIR" -p "$(tv_port pw)" -U pw_login -d postgres -At -c "SELECT 1" 2>&1 | grep -c 'password authentication failed')" \
	1 "1: (a wrong one is refused: the check is real)"
SECRETS+=("Weak1")
is "$(state_of "ALTER ROLE pw_login PASSWORD 'Weak1'")" 22023 "1: ALTER ROLE ... PASSWORD to a weak one: refused"

# --- 2. a role changing its own password -----------------------------------------
SECRETS+=("mine")
is "$(sqlstate_of pw postgres "SET ROLE pw_login; ALTER ROLE pw_login PASSWORD 'mine'")" 22023 \
	"2: a role setting its own weak password: refused"
like "$(tv_psql pw -d postgres -c "SET ROLE pw_login; SET trialvault.password_min_length = 1" 2>&1 || true)" \
	'cannot be changed now|permission denied' "2: ... and it cannot relax the rules for its session"
SECRETS+=("Its0wn!Pass")
is "$(sqlstate_of pw postgres "SET ROLE pw_login; ALTER ROLE pw_login PASSWORD 'Its0wn!Pass'")" none \
	"2: a strong one is accepted"

# --- 3. hashed passwords, the minimum length ---------------------------------------
MD5="md5$(printf '%s' 'Hashed#Pass1pw_b' | md5sum | cut -c1-32)"
is "$(state_of "CREATE ROLE pw_b LOGIN PASSWORD '$MD5'")" 22023 "3: an MD5 verifier: refused by default"
like "$(msg_of "CREATE ROLE pw_b LOGIN PASSWORD '$MD5'")" "was sent already hashed" "3: ... saying why"
SCRAM=$(q pw postgres "SELECT rolpassword FROM pg_authid WHERE rolname = 'pw_login'")
like "$SCRAM" '^SCRAM-SHA-256\$' "3: (a SCRAM verifier to try)"
is "$(state_of "CREATE ROLE pw_c LOGIN PASSWORD '$SCRAM'")" 22023 "3: a SCRAM verifier: refused by default"
q pw postgres "ALTER SYSTEM SET trialvault.password_accept_hashed = on" >/dev/null
q pw postgres "SELECT pg_reload_conf()" >/dev/null
sleep 0.5
is "$(state_of "CREATE ROLE pw_c LOGIN PASSWORD '$SCRAM'")" none "3: with password_accept_hashed on: accepted"
q pw postgres "ALTER SYSTEM SET trialvault.password_min_length = 12" >/dev/null
q pw postgres "SELECT pg_reload_conf()" >/dev/null
sleep 0.5
is "$(try_pw pw_d 'Eleven#Ch1x')" 22023 "3: with password_min_length = 12: 11 characters refused"
is "$(try_pw pw_d 'Twelve#Char1')" none "3: ... 12 accepted"

# --- 4. on record, and nowhere in clear -----------------------------------------------
wait_until "the refusals on record" 10 bash -c \
	"[ \"\$(PGHOST=$PWDIR PGPORT=$(tv_port pw) $PGBIN/psql -X -U postgres -d postgres -At -c \"SELECT count(*) FROM trialvault.audit_events WHERE event = 'password_refused'\")\" -ge 14 ]" || true
is "$(q pw postgres "SELECT count(*) FROM trialvault.audit_events WHERE event = 'password_refused'")" 14 \
	"4: every refusal is in the audit trail"
like "$(q pw postgres "SELECT detail FROM trialvault.audit_events WHERE event = 'password_refused' ORDER BY event_id LIMIT 1")" \
	'^role pw_a: shorter than 8 characters$' "4: ... with the role and the rules broken"
is "$(q pw postgres "SELECT count(*) FROM trialvault.audit_events WHERE event = 'password_accepted_hashed'")" 1 \
	"4: an accepted hashed password is an event"
q pw postgres "SELECT coalesce(string_agg(a::text, E'\n'), '') FROM trialvault.audit_events a" >"$PWDIR/trail.txt"
check "4: the server log has the refusals (the search works)" grep -q 'breaks the password rules' "$PWDIR/server.log"
for secret in "${SECRETS[@]}"; do
	check "4: '${secret:0:3}...' is in neither the server log nor the trail" \
		bash -c '! grep -qF -- "$1" "$2" && ! grep -qF -- "$1" "$3"' _ "$secret" "$PWDIR/server.log" "$PWDIR/trail.txt"
done
# --- 5. password history -------------------------------------------------------------
q pw postgres "ALTER SYSTEM RESET trialvault.password_min_length" >/dev/null
q pw postgres "SELECT pg_reload_conf()" >/dev/null
sleep 0.5
HIST=()
setpw() {	# setpw DB ROLE PASSWORD: ALTER ROLE ... PASSWORD; prints SQLSTATE
	HIST+=("$3")
	sqlstate_of pw "$1" "ALTER ROLE $2 PASSWORD '$3'"
}
HIST+=("Hist#Pass01")
q pw postgres "CREATE ROLE pw_h LOGIN PASSWORD 'Hist#Pass01'" >/dev/null
for i in 02 03 04 05; do setpw postgres pw_h "Hist#Pass$i" >/dev/null; done
is "$(setpw postgres pw_h 'Hist#Pass01')" 22023 "5: one of the role's last 5 passwords: refused"
like "$(tv_psql pw -d postgres -c "ALTER ROLE pw_h PASSWORD 'Hist#Pass03'" 2>&1 || true)" \
	'the password for role "pw_h" was used before' "5: ... saying so"
q pw postgres "CREATE DATABASE pw_other" >/dev/null
is "$(setpw pw_other pw_h 'Hist#Pass04')" 22023 "5: ... in another database too"
is "$(setpw postgres pw_h 'Hist#Pass06')" none "5: a new one: accepted"
is "$(setpw postgres pw_h 'Hist#Pass01')" none "5: the sixth one back: accepted again"
is "$(sqlstate_of pw postgres "BEGIN; ALTER ROLE pw_h PASSWORD 'Roll#Back77'; ROLLBACK")" none "5: (a change rolled back)"
HIST+=("Roll#Back77")
is "$(setpw postgres pw_h 'Roll#Back77')" none "5: ... is not in the history"
HIST+=("Gone#Pass123")
is "$(sqlstate_of pw postgres "BEGIN; CREATE ROLE pw_gone LOGIN PASSWORD 'Gone#Pass123'; DROP ROLE pw_gone; COMMIT")" none \
	"5: a role created with a password and dropped in the same transaction: the commit goes through"
is "$(q pw postgres "SELECT count(*) || ':' || bool_and(length(hash) = 32 AND length(salt) = 16 AND iterations >= 100000) FROM trialvault.password_history WHERE role_name = 'pw_h'")" \
	"8:true" "5: the history keeps salted PBKDF2 hashes, one per password set (refused and rolled back ones not)"
is "$(q pw postgres "SELECT count(DISTINCT salt) FROM trialvault.password_history WHERE role_name = 'pw_h'")" 8 "5: ... each with its own salt"
is "$(q pw postgres "SELECT ok FROM trialvault.verify('trialvault.password_history')")" t "5: ... in a chained table that verifies"
q pw postgres "CREATE ROLE pw_hadm IN ROLE trialvault_admin" >/dev/null
is "$(sqlstate_of pw postgres "SET ROLE pw_hadm; SELECT count(*) FROM trialvault.password_history")" 42501 \
	"5: nobody but the extension reads it, administrators neither"
for stmt in "UPDATE trialvault.password_history SET hash = sha256(hash)" "DELETE FROM trialvault.password_history" \
	"TRUNCATE trialvault.password_history" "ALTER TABLE trialvault.password_history DISABLE TRIGGER USER"; do
	is "$(sqlstate_of pw postgres "$stmt")" 55000 "5: a superuser cannot rewrite the history either: ${stmt:0:45}..."
done
tv_cluster_stop pw
tv_cluster_restart pw
wait_until "the writer" 20 bash -c "[ -n \"\$(PGHOST=$PWDIR PGPORT=$(tv_port pw) $PGBIN/psql -X -U postgres -d postgres -At -c 'SELECT pid FROM trialvault.log_writer_status() WHERE pid IS NOT NULL')\" ]" || true
is "$(setpw postgres pw_h 'Hist#Pass06')" 22023 "5: after a restart the history is still there"

# --- 6. aging -------------------------------------------------------------------------
HIST+=("Age#Pass123" "Age#Pass456" "Age#Pass789")
q pw postgres "CREATE ROLE pw_age LOGIN PASSWORD 'Age#Pass123'" >/dev/null
is "$(q pw postgres "SELECT rolvaliduntil BETWEEN now() + interval '89 days 23 hours' AND now() + interval '90 days 1 hour' FROM pg_roles WHERE rolname = 'pw_age'")" t \
	"6: a password set without VALID UNTIL expires in trialvault.password_max_age (90) days"
like "$(tv_psql pw -d postgres -c "ALTER ROLE pw_age PASSWORD 'Age#Pass456' VALID UNTIL 'infinity'" 2>&1)" \
	'NOTICE: +VALID UNTIL brought down to' "6: VALID UNTIL 'infinity' with a password is brought down, with a notice"
is "$(q pw postgres "SELECT rolvaliduntil < now() + interval '91 days' FROM pg_roles WHERE rolname = 'pw_age'")" t "6: ... to 90 days"
q pw postgres "ALTER ROLE pw_age PASSWORD 'Age#Pass789' VALID UNTIL '$(date -u -d '+7 days' '+%Y-%m-%d')'" >/dev/null
is "$(q pw postgres "SELECT rolvaliduntil::date = current_date + 7 FROM pg_roles WHERE rolname = 'pw_age'")" t "6: an earlier VALID UNTIL is kept"
is "$(q pw postgres "SELECT string_agg(role_name || ':' || expired, ',') FROM trialvault.password_expiry WHERE role_name LIKE 'pw_%'")" \
	"pw_age:false" "6: password_expiry lists the role that expires within 14 days (not those with 90)"
like "$(q pw postgres "SELECT string_agg(kind || ': ' || detail, ' / ' ORDER BY event_id) FROM trialvault.account_changes WHERE target_role = 'pw_age'")" \
	'^role_created: login, password changed \(database postgres\) / role_altered: valid until [0-9]{4}-[^/]* \(database postgres\) / ' \
	"6: the account changes show the VALID UNTIL the role got, after its password"
q pw postgres "ALTER SYSTEM SET trialvault.password_max_age = 0" >/dev/null
q pw postgres "SELECT pg_reload_conf()" >/dev/null
sleep 0.5
HIST+=("NoAge#Pass1")
q pw postgres "CREATE ROLE pw_noage LOGIN PASSWORD 'NoAge#Pass1'" >/dev/null
is "$(q pw postgres "SELECT rolvaliduntil IS NULL FROM pg_roles WHERE rolname = 'pw_noage'")" t "6: trialvault.password_max_age = 0: no VALID UNTIL"
q pw postgres "SELECT coalesce(string_agg(a::text, E'\n'), '') FROM trialvault.audit_events a" >"$PWDIR/trail2.txt"
tv_cluster_stop pw
for secret in "${HIST[@]}"; do
	check "6: '${secret:0:4}...' is in neither the server log, the trail nor the data directory" \
		bash -c '! grep -qF -- "$1" "$2" "$3" && ! grep -rqF -- "$1" "$4"' _ "$secret" "$PWDIR/server.log" "$PWDIR/trail2.txt" "$PWDIR/data"
done

done_testing

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
tv_cluster_stop pw

done_testing

#!/usr/bin/env bash
# 94_second_factor.sh: one-time codes (issue 16, first part), checked by
# liboath, the codes computed by oathtool (the OATH Toolkit's command, an
# implementation apart from the library) from the secret of the URI
# enroll_second_factor() returns.
#
#   1. enrolment: a URI with a 32-character base32 secret; the secret kept
#      only wrapped (its bytes nowhere in the data directory, nor in the
#      server log or the trail); enrolling twice refused;
#   2. the clock window: the previous, the current and the next step's
#      codes taken; two steps away refused; a code taken once only, and none
#      older than the newest taken (also from a REPEATABLE READ transaction
#      whose snapshot predates the taking);
#   3. the step-up: bound to the role that stepped up (SET ROLE to another
#      does not carry it), ends after step_up_duration (2 s here), does not
#      survive a restart (the enrolment does);
#   4. wrong codes: counted, the fifth locks the factor, a right code is
#      then refused; an administrator resets it and the member enrols again;
#   5. bad input: NULL, empty, non-numeric, too long (10 MB) codes, a
#      step-up without enrolment or before confirmation, a second
#      confirmation, reset by a non-administrator, of a role without a
#      factor, of no role, the functions refused to roles outside
#      trialvault_user; each with its SQLSTATE, and every attempt recorded;
#   6. open_document: an authorized monitor is refused (second_factor_required
#      in the decryption log) until stepped up; one monitor's step-up does not
#      serve another after SET ROLE; a revoked role opens nothing though
#      stepped up; site staff need none until require_second_factor() names
#      them, and then at once in a session already open; its bad input; a
#      factor reset from another session ends the step-up in this one.
set -euo pipefail
source "$(dirname "$0")/../lib/cluster.sh"
source "$(dirname "$0")/lib/helpers.sh"

tv_cluster_start sf
DIR=$(tv_dir sf)
q sf postgres "SET client_min_messages = warning; CREATE EXTENSION trialvault CASCADE" >/dev/null
q sf postgres "CREATE ROLE sf_ann LOGIN IN ROLE trialvault_user;
               CREATE ROLE sf_bob LOGIN IN ROLE trialvault_user;
               CREATE ROLE sf_cat LOGIN IN ROLE trialvault_user;
               CREATE ROLE sf_dan LOGIN IN ROLE trialvault_user;
               CREATE ROLE sf_adm LOGIN IN ROLE trialvault_admin;
               CREATE ROLE sf_out LOGIN" >/dev/null

# as ROLE SQL: run SQL as ROLE (SET ROLE), one session, one transaction.
as() { q sf postgres "SET ROLE $1; $2"; }
state_as() { sqlstate_of sf postgres "SET ROLE $1; $2"; }
secret_of() { sed -n 's/.*[?&]secret=\([A-Z2-7]*\).*/\1/p' <<<"$1"; }
# code SECRET [OFFSET]: the code of the step OFFSET seconds from now.
code() { oathtool --totp -b -N "@$(($(date +%s) + ${2:-0}))" "$1"; }
# Wait until at most 18 s of the current 30-second step have passed, so that a
# code computed now still belongs to the step the server will see.
fresh_step() { while [ $(($(date +%s) % 30)) -gt 18 ]; do sleep 1; done; }
# Wait for the next 30-second step to begin: a code of the step after it is
# then newer than any taken before.
sleep_to_next_step() {
	local s=$(($(date +%s) / 30))
	while [ $(($(date +%s) / 30)) -eq "$s" ]; do sleep 0.5; done
}
# wrong SECRET: a code that is none of the previous, current and next step's.
wrong() {
	local s=$1 c
	for c in 000000 111111 222222 333333 444444; do
		if [ "$c" != "$(code "$s" -30)" ] && [ "$c" != "$(code "$s")" ] && [ "$c" != "$(code "$s" 30)" ]; then
			echo "$c"
			return
		fi
	done
}
events() {	# events MEMBER EVENT [REASON]: how many such events the trail holds
	q sf postgres "SELECT count(*) FROM trialvault.audit_events WHERE event = '$2'
	                 AND detail::jsonb ->> 'member' = '$1'${3:+ AND detail::jsonb ->> 'reason' = '$3'}"
}

# --- 1. enrolment -------------------------------------------------------------------
URI=$(as sf_ann "SELECT trialvault.enroll_second_factor()")
like "$URI" '^otpauth://totp/trialvault:sf_ann\?secret=[A-Z2-7]{32}&issuer=trialvault&algorithm=SHA1&digits=6&period=30$' \
	"1: enroll_second_factor returns an otpauth://totp URI with a 160-bit base32 secret"
ANN=$(secret_of "$URI")
HEX=$(python3 -c "import base64,sys; print(base64.b32decode(sys.argv[1]).hex())" "$ANN")
is "$(as sf_ann "SELECT enrolled, confirmed, locked, failures, stepped_up_until IS NULL FROM trialvault.second_factor_status()")" \
	"t|f|f|0|t" "1: enrolled, not confirmed yet"
is "$(q sf postgres "SELECT count(*), bool_and(length(secret) = 48), bool_and(position(decode('$HEX', 'hex') IN secret) = 0)
                     FROM trialvault.second_factors WHERE member = 'sf_ann'")" "1|t|t" \
	"1: the secret is kept wrapped (48 bytes: IV, tag, 20 bytes of ciphertext), not as itself"
is "$(state_as sf_ann "SELECT trialvault.enroll_second_factor()")" 42710 "1: enrolling twice is refused (42710)"
is "$(events sf_ann second_factor_refused already_enrolled)" 1 "1: ... and recorded"
is "$(state_as sf_ann "SELECT trialvault.step_up('$(code "$ANN")')")" 55000 "1: a step-up before confirmation is refused (55000)"

# --- 2. the clock window, replays ---------------------------------------------------
fresh_step
as sf_ann "SELECT trialvault.confirm_second_factor('$(code "$ANN" -30)')" >/dev/null
is "$(as sf_ann "SELECT confirmed FROM trialvault.second_factor_status()")" t "2: confirmed with the previous step's code"
is "$(events sf_ann second_factor_confirmed)" 1 "2: the confirmation is in the trail"
is "$(state_as sf_ann "SELECT trialvault.confirm_second_factor('$(code "$ANN")')")" 55000 "2: confirming again is refused (55000)"
fresh_step
NOW=$(code "$ANN")
like "$(as sf_ann "SELECT trialvault.step_up('$NOW')")" '^20[0-9]{2}-' "2: the current step's code steps up (step_up returns when it ends)"
NEXT=$(code "$ANN" 30)
like "$(as sf_ann "SELECT trialvault.step_up('$NEXT')")" '^20[0-9]{2}-' "2: the next step's code steps up"
is "$(state_as sf_ann "SELECT trialvault.step_up('$NEXT')")" 28000 "2: the same code again is refused (28000)"
is "$(state_as sf_ann "SELECT trialvault.step_up('$NOW')")" 28000 "2: an older code than the newest taken is refused (28000)"
is "$(events sf_ann second_factor_refused replayed_code)" 2 "2: both recorded as replayed"
fresh_step
is "$(state_as sf_ann "SELECT trialvault.step_up('$(code "$ANN" -60)')")" 28000 "2: the code of two steps ago is refused"
is "$(state_as sf_ann "SELECT trialvault.step_up('$(code "$ANN" 60)')")" 28000 "2: the code of two steps ahead is refused"
is "$(events sf_ann second_factor_refused wrong_code)" 2 "2: both recorded as wrong"
is "$(events sf_ann second_factor_step_up)" 2 "2: the two step-ups are in the trail"

# A transaction whose snapshot was taken before a code was taken elsewhere
# must still see that it was.
sleep_to_next_step
fresh_step
TWICE=$(code "$ANN" 30)
out=$(tv_psql sf -d postgres -At -v VERBOSITY=verbose <<-SQL 2>&1 || true
	SET ROLE sf_ann;
	BEGIN ISOLATION LEVEL REPEATABLE READ;
	SELECT count(*) > 0 FROM pg_catalog.pg_class;
	\! $PGBIN/psql -X -At -h $DIR -p $(tv_port sf) -U postgres -d postgres -c "SET ROLE sf_ann; SELECT 'other session: ' || (trialvault.step_up('$TWICE') IS NOT NULL)"
	SELECT trialvault.step_up('$TWICE');
	COMMIT;
SQL
)
like "$out" "other session: true" "2: another session takes a code"
like "$out" "ERROR: +28000: this one-time code was used already" \
	"2: a REPEATABLE READ transaction whose snapshot predates that does not take it again"

# --- 3. the step-up: role, duration, restart ----------------------------------------
URI=$(as sf_bob "SELECT trialvault.enroll_second_factor()")
BOB=$(secret_of "$URI")
fresh_step
as sf_bob "SELECT trialvault.confirm_second_factor('$(code "$BOB")')" >/dev/null
fresh_step
is "$(q sf postgres "SET ROLE sf_bob; SELECT trialvault.step_up('$(code "$BOB" 30)') IS NOT NULL;
                     SELECT stepped_up_until IS NOT NULL FROM trialvault.second_factor_status();
                     SET ROLE sf_ann; SELECT stepped_up_until IS NOT NULL FROM trialvault.second_factor_status();
                     SET ROLE sf_cat; SELECT stepped_up_until IS NOT NULL FROM trialvault.second_factor_status();
                     SET ROLE sf_bob; SELECT stepped_up_until IS NOT NULL FROM trialvault.second_factor_status()" | tr '\n' ' ')" \
	"t t f f t " "3: the step-up holds for the role that stepped up, not after SET ROLE to another"
is "$(q sf postgres "SET ROLE sf_bob; SELECT stepped_up_until IS NULL FROM trialvault.second_factor_status()")" t \
	"3: a new session is not stepped up"
tv_psql sf -d postgres -c "ALTER SYSTEM SET trialvault.step_up_duration = '2s'" -c "SELECT pg_reload_conf()" >/dev/null
duration_is() { [ "$(q sf postgres "SHOW trialvault.step_up_duration")" = "$1" ]; }
wait_until "step_up_duration to be reloaded" 30 duration_is 2s
sleep_to_next_step
fresh_step
is "$(q sf postgres "SET ROLE sf_bob; SELECT trialvault.step_up('$(code "$BOB" 30)') - now() < interval '3 s';
                     SELECT stepped_up_until IS NOT NULL FROM trialvault.second_factor_status();
                     SELECT pg_sleep(2.5);
                     SELECT stepped_up_until IS NULL FROM trialvault.second_factor_status()" | tr '\n' ' ')" \
	"t t  t " "3: with step_up_duration = 2s the step-up ends after 2 s"
is "$(q sf postgres "SELECT count(*) > 0 FROM trialvault.audit_events WHERE event = 'setting_changed' AND detail LIKE '%step_up_duration%'")" t \
	"3: the change of step_up_duration is in the trail"
is "$(state_as sf_bob "SET trialvault.step_up_duration = '1h'")" 55P02 "3: a session cannot lengthen its step-up (55P02)"
tv_psql sf -d postgres -c "ALTER SYSTEM RESET trialvault.step_up_duration" -c "SELECT pg_reload_conf()" >/dev/null
wait_until "step_up_duration to be reset" 30 duration_is 15min
tv_cluster_stop sf
tv_cluster_restart sf
is "$(as sf_bob "SELECT enrolled, confirmed, stepped_up_until IS NULL FROM trialvault.second_factor_status()")" "t|t|t" \
	"3: after a restart the enrolment holds and no session is stepped up"
sleep_to_next_step
fresh_step
like "$(as sf_bob "SELECT trialvault.step_up('$(code "$BOB" 30)')")" '^20[0-9]{2}-' "3: ... and the member steps up again"

# --- 4. wrong codes, the lock, the reset ---------------------------------------------
URI=$(as sf_cat "SELECT trialvault.enroll_second_factor()")
CAT=$(secret_of "$URI")
fresh_step
as sf_cat "SELECT trialvault.confirm_second_factor('$(code "$CAT")')" >/dev/null
for i in 1 2 3 4; do
	fresh_step
	is "$(state_as sf_cat "SELECT trialvault.step_up('$(wrong "$CAT")')")" 28000 "4: wrong code $i refused (28000)"
done
is "$(as sf_cat "SELECT failures, locked FROM trialvault.second_factor_status()")" "4|f" "4: four wrong codes in a row, not locked yet"
fresh_step
like "$(tv_psql sf -d postgres -At -c "SET ROLE sf_cat; SELECT trialvault.step_up('$(wrong "$CAT")')" 2>&1 || true)" \
	"is now locked" "4: the fifth wrong code locks the factor"
is "$(as sf_cat "SELECT locked FROM trialvault.second_factor_status()")" t "4: locked"
sleep_to_next_step
fresh_step
is "$(state_as sf_cat "SELECT trialvault.step_up('$(code "$CAT" 30)')")" 28000 "4: a right code is refused while locked (28000)"
is "$(events sf_cat second_factor_refused wrong_code):$(events sf_cat second_factor_locked):$(events sf_cat second_factor_refused locked)" \
	"5:1:1" "4: every attempt is in the trail: five wrong codes, the lock, the refusal while locked"
is "$(state_as sf_ann "SELECT trialvault.reset_second_factor('sf_cat')")" 42501 "4: a member cannot reset a factor (42501)"
as sf_adm "SELECT trialvault.reset_second_factor('sf_cat')" >/dev/null
is "$(q sf postgres "SELECT actor FROM trialvault.audit_events WHERE event = 'second_factor_reset' AND detail::jsonb ->> 'member' = 'sf_cat'")" \
	sf_adm "4: the reset is recorded with the administrator who made it"
is "$(as sf_cat "SELECT enrolled, locked FROM trialvault.second_factor_status()")" "f|f" "4: after the reset the member has no factor"
URI=$(as sf_cat "SELECT trialvault.enroll_second_factor()")
CAT2=$(secret_of "$URI")
check "4: the member enrols again, with a new secret" differ "$CAT2" "$CAT"
fresh_step
as sf_cat "SELECT trialvault.confirm_second_factor('$(code "$CAT2")')" >/dev/null
fresh_step
like "$(as sf_cat "SELECT trialvault.step_up('$(code "$CAT2" 30)')")" '^20[0-9]{2}-' "4: ... and steps up with it"
is "$(state_as sf_adm "SELECT trialvault.reset_second_factor('sf_dan')")" P0002 "4: resetting a role without a factor is refused (P0002)"
is "$(state_as sf_adm "SELECT trialvault.reset_second_factor('sf_nobody')")" 42704 "4: resetting no role is refused (42704)"
is "$(state_as sf_adm "SELECT trialvault.reset_second_factor(NULL)")" 22004 "4: reset_second_factor(NULL) is refused (22004)"

# --- 5. bad input -------------------------------------------------------------------
ANN_BEFORE=$(as sf_ann "SELECT failures, locked FROM trialvault.second_factor_status()")
is "$(state_as sf_dan "SELECT trialvault.step_up('123456')")" 55000 "5: a step-up without enrolment is refused (55000)"
is "$(events sf_dan second_factor_refused not_enrolled)" 1 "5: ... and recorded"
is "$(state_as sf_ann "SELECT trialvault.step_up(NULL)")" 22004 "5: a NULL code is refused (22004)"
is "$(state_as sf_ann "SELECT trialvault.step_up('')")" 22023 "5: an empty code is refused (22023)"
is "$(state_as sf_ann "SELECT trialvault.step_up('12a456')")" 22023 "5: a non-numeric code is refused (22023)"
is "$(state_as sf_ann "SELECT trialvault.step_up('1234567')")" 22023 "5: a seven-digit code is refused (22023)"
is "$(state_as sf_ann "SELECT trialvault.step_up(repeat('1', 10000000))")" 22023 "5: a 10 MB code is refused (22023)"
is "$(state_as sf_ann "SELECT trialvault.confirm_second_factor(' 12345')")" 22023 "5: a code with a space is refused (22023)"
is "$(events sf_ann second_factor_refused no_code):$(events sf_ann second_factor_refused empty_code):$(events sf_ann second_factor_refused malformed_code)" \
	"1:1:4" "5: each is recorded, and none counts towards the lock"
is "$(as sf_ann "SELECT failures, locked FROM trialvault.second_factor_status()")" "$ANN_BEFORE" "5: ... the member's failures stay as they were"
for fn in "enroll_second_factor()" "step_up('123456')" "confirm_second_factor('123456')" "second_factor_status()"; do
	is "$(state_as sf_out "SELECT trialvault.$fn")" 42501 "5: a role outside trialvault_user may not call $fn (42501)"
done
is "$(state_as sf_ann "SELECT * FROM trialvault.second_factors")" 42501 "5: members cannot read the wrapped secrets (42501)"

# No secret anywhere: not its bytes in the data directory (the WAL included),
# not its base32 text in the server log or the trail.
check "5: the secret's bytes are nowhere in the data directory (the WAL included)" no_raw_in_dir "$HEX" "$DIR/data"
check "5: the secret is not in the server log" absent_in "$DIR/server.log" "$ANN"
is "$(q sf postgres "SELECT count(*) FROM trialvault.audit_events WHERE detail LIKE '%$ANN%'")" 0 "5: the secret is not in the trail"

# --- 6. open_document: monitors (and the roles an administrator names) step up first --
q sf postgres "CREATE ROLE sf_mon LOGIN; CREATE ROLE sf_mon2 LOGIN; CREATE ROLE sf_inv LOGIN;
               CREATE ROLE sf_staff LOGIN; CREATE ROLE sf_spon LOGIN" >/dev/null
as sf_adm "SELECT trialvault.create_study('SF-1', 'Second factor study');
           SELECT trialvault.require_signatures('SF-1', false);
           SELECT trialvault.add_site('SF-1', 'A', 'Site A');
           SELECT trialvault.grant_role(m, 'SF-1', s, r) FROM (VALUES ('sf_mon', NULL, 'monitor'),
               ('sf_mon2', NULL, 'monitor'), ('sf_inv', 'A', 'investigator'), ('sf_staff', 'A', 'site_staff'),
               ('sf_spon', NULL, 'sponsor')) v(m, s, r)" >/dev/null
as sf_inv "SELECT trialvault.authorize_monitor(m, 'SF-1', 'A', now() + interval '1 day') FROM unnest(ARRAY['sf_mon', 'sf_mon2']) m" >/dev/null
DOC=$(as sf_inv "SELECT trialvault.load_document('SF-1', 'A', 'source', true, '<m><v>1</v></m>', convert_to('ECG of Jane Roe', 'UTF8'))")
open_as() {	# open_as ROLE [SQL before]: open_document(DOC) in the study, as ROLE: the plaintext, or the SQLSTATE
	local out
	out=$(tv_psql sf -d postgres -At -v VERBOSITY=verbose -c "SET ROLE $1; ${2:-} SELECT trialvault.open_study('SF-1');
	        SELECT convert_from(trialvault.open_document($DOC), 'UTF8')" 2>&1 || true)
	if [[ $out =~ ERROR:\ +([0-9A-Z]{5}) ]]; then echo "${BASH_REMATCH[1]}"; else tail -n 1 <<<"$out"; fi
}
last_reason() { q sf postgres "SELECT requester || ':' || granted || ':' || reason FROM trialvault.decryption_log ORDER BY log_id DESC LIMIT 1"; }
is "$(open_as sf_mon)" 42501 "6: an authorized monitor without a second factor is refused (42501)"
is "$(last_reason)" "sf_mon:false:second_factor_required" "6: ... with reason second_factor_required in the decryption log"
like "$(tv_psql sf -d postgres -c "SET ROLE sf_mon; SELECT trialvault.open_study('SF-1'); SELECT trialvault.open_document($DOC)" 2>&1 || true)" \
	"HINT: +Step up with trialvault.step_up" "6: the refusal says how to step up"
URI=$(as sf_mon "SELECT trialvault.enroll_second_factor()")
MON=$(secret_of "$URI")
fresh_step
as sf_mon "SELECT trialvault.confirm_second_factor('$(code "$MON")')" >/dev/null
sleep_to_next_step
fresh_step
is "$(open_as sf_mon "SELECT trialvault.step_up('$(code "$MON" 30)');")" "ECG of Jane Roe" "6: stepped up, the monitor opens the PHI document"
is "$(last_reason)" "sf_mon:true:monitor" "6: ... granted as monitor"
URI=$(as sf_mon2 "SELECT trialvault.enroll_second_factor()")
MON2=$(secret_of "$URI")
fresh_step
as sf_mon2 "SELECT trialvault.confirm_second_factor('$(code "$MON2")')" >/dev/null
sleep_to_next_step
fresh_step
is "$(open_as sf_mon "SELECT trialvault.step_up('$(code "$MON" 30)'); SET ROLE sf_mon2;")" 42501 \
	"6: one monitor's step-up does not serve another role after SET ROLE"
is "$(last_reason)" "sf_mon2:false:second_factor_required" "6: ... refused as second_factor_required"
# Stepped up, then the monitor role revoked from another session: refused at once.
sleep_to_next_step
fresh_step
out=$(tv_psql sf -d postgres -At -v VERBOSITY=verbose 2>&1 <<-SQL || true
	SET ROLE sf_mon2;
	SELECT trialvault.step_up('$(code "$MON2" 30)') IS NOT NULL AS stepped_up;
	SELECT trialvault.open_study('SF-1');
	SELECT 'first: ' || convert_from(trialvault.open_document($DOC), 'UTF8');
	\! $PGBIN/psql -X -q -h $DIR -p $(tv_port sf) -U postgres -d postgres -c "SET ROLE sf_adm; SELECT trialvault.revoke_role('sf_mon2', 'SF-1', NULL, 'monitor')" >/dev/null
	SELECT 'second: ' || convert_from(trialvault.open_document($DOC), 'UTF8');
SQL
)
like "$out" "first: ECG of Jane Roe" "6: a stepped-up monitor opens the document"
like "$out" "ERROR: +42501" "6: ... and once the monitor role is revoked, the step-up opens nothing"
is "$(last_reason)" "sf_mon2:false:membership_revoked" "6: ... refused as membership_revoked"

# Other roles: not required until an administrator says so; then at once.
is "$(open_as sf_staff)" "ECG of Jane Roe" "6: site staff open PHI without a step-up by default"
is "$(state_as sf_staff "SELECT trialvault.require_second_factor('SF-1', 'site_staff')")" 42501 \
	"6: require_second_factor is refused to members (42501)"
out=$(tv_psql sf -d postgres -At -v VERBOSITY=verbose 2>&1 <<-SQL || true
	SET ROLE sf_staff;
	SELECT trialvault.open_study('SF-1');
	SELECT 'before: ' || convert_from(trialvault.open_document($DOC), 'UTF8');
	\! $PGBIN/psql -X -At -h $DIR -p $(tv_port sf) -U postgres -d postgres -c "SET ROLE sf_adm; SELECT 'required: ' || trialvault.require_second_factor('SF-1', 'site_staff')"
	SELECT 'after: ' || convert_from(trialvault.open_document($DOC), 'UTF8');
SQL
)
like "$out" "before: ECG of Jane Roe" "6: a site staff session opens the document"
like "$out" "required: true" "6: an administrator requires a second factor of site staff in the study"
like "$out" "ERROR: +42501" "6: ... and the same session is refused at once (the cached requirements are renewed)"
is "$(last_reason)" "sf_staff:false:second_factor_required" "6: ... refused as second_factor_required"
is "$(as sf_adm "SELECT trialvault.require_second_factor('SF-1', 'site_staff')")" f "6: requiring it again changes nothing (false)"
is "$(as sf_adm "SELECT trialvault.require_second_factor('SF-1', 'monitor')")" f "6: monitors need it already (false)"
is "$(q sf postgres "SELECT count(*) FROM trialvault.audit_events WHERE event = 'step_up_required' AND study = 'SF-1'")" 1 \
	"6: the requirement is in the audit trail, once"
is "$(open_as sf_inv)" "ECG of Jane Roe" "6: investigators, not named, still open without a step-up"
is "$(state_as sf_adm "SELECT trialvault.require_second_factor('SF-1', 'sponsor')")" 22023 "6: a sponsor never sees PHI: refused (22023)"
is "$(state_as sf_adm "SELECT trialvault.require_second_factor('SF-1', 'nurse')")" 22023 "6: an unknown study role is refused (22023)"
is "$(state_as sf_adm "SELECT trialvault.require_second_factor('NO-SUCH', 'site_staff')")" 42704 "6: an unknown study is refused (42704)"
is "$(state_as sf_adm "SELECT trialvault.require_second_factor(NULL, 'site_staff')")" 22004 "6: a NULL study is refused (22004)"
is "$(state_as sf_adm "SELECT trialvault.require_second_factor('SF-1', repeat('x', 100000))")" 22023 "6: an oversized role is refused (22023)"

# Stepped up, then the factor reset by an administrator from another session:
# the step-up ends in this session too.
sleep_to_next_step
fresh_step
out=$(tv_psql sf -d postgres -At -v VERBOSITY=verbose 2>&1 <<-SQL || true
	SET ROLE sf_mon;
	SELECT trialvault.step_up('$(code "$MON" 30)') IS NOT NULL AS stepped_up;
	SELECT trialvault.open_study('SF-1');
	SELECT 'first: ' || convert_from(trialvault.open_document($DOC), 'UTF8');
	\! $PGBIN/psql -X -q -h $DIR -p $(tv_port sf) -U postgres -d postgres -c "SET ROLE sf_adm; SELECT trialvault.reset_second_factor('sf_mon')" >/dev/null
	SELECT 'second: ' || convert_from(trialvault.open_document($DOC), 'UTF8');
SQL
)
like "$out" "first: ECG of Jane Roe" "6: a stepped-up monitor opens the document"
like "$out" "ERROR: +42501" "6: ... and once an administrator resets the factor from another session, the step-up ends here too"
is "$(last_reason)" "sf_mon:false:second_factor_required" "6: ... refused as second_factor_required"

tv_cluster_stop sf
done_testing

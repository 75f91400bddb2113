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
#      trialvault_user; each with its SQLSTATE, and every attempt recorded.
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
sleep_to_next_step() { while [ $(($(date +%s) % 30)) -ne 1 ]; do sleep 0.5; done; }
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
sleep 0.5
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

tv_cluster_stop sf
done_testing

#!/usr/bin/env bash
# 94_activation.sh: new accounts activated only with two codes sent over two
# channels (issue 16, second part).
#
#   1. invite_member returns two 8-digit codes, different; only salted hashes
#      are kept (not the codes, in the table, the trail or the server log);
#      until activation the member holds nothing in the study: open_study and
#      open_document refused, the views empty;
#   2. swapped, wrong and malformed codes refused, each recorded; the fifth
#      wrong attempt voids the invitation (also when tried from savepoints
#      of one REPEATABLE READ transaction, whose snapshot does not see the
#      refusals); right codes are then refused too;
#   3. a new invitation, the right codes: the role is granted (as the
#      inviting administrator), the member opens the study; the codes are
#      not taken twice; rolled back, an activation leaves the invitation open;
#   4. an invitation expires after trialvault.activation_ttl (2 s here);
#   5. bad input: NULL, empty, non-numeric and oversized codes, no
#      invitation, invite_member by a non-administrator, for a role that does
#      not exist or cannot log in, a sponsor with a site, a role held already.
set -euo pipefail
source "$(dirname "$0")/../lib/cluster.sh"
source "$(dirname "$0")/lib/helpers.sh"

tv_cluster_start ac
DIR=$(tv_dir ac)
q ac postgres "SET client_min_messages = warning; CREATE EXTENSION trialvault CASCADE" >/dev/null
q ac postgres "CREATE ROLE ac_adm LOGIN IN ROLE trialvault_admin;
               CREATE ROLE ac_inv LOGIN; CREATE ROLE ac_new LOGIN; CREATE ROLE ac_late LOGIN;
               CREATE ROLE ac_rr LOGIN; CREATE ROLE ac_group NOLOGIN" >/dev/null
as() { q ac postgres "SET ROLE $1; $2"; }
state_as() { sqlstate_of ac postgres "SET ROLE $1; $2"; }
as ac_adm "SELECT trialvault.create_study('AC-1', 'Activation study');
           SELECT trialvault.require_signatures('AC-1', false);
           SELECT trialvault.add_site('AC-1', 'A', 'Site A');
           SELECT trialvault.grant_role('ac_inv', 'AC-1', 'A', 'investigator')" >/dev/null
DOC=$(as ac_inv "SELECT trialvault.load_document('AC-1', 'A', 'source', true, '<m><v>1</v></m>', convert_to('ECG of Jane Roe', 'UTF8'))")
events() {	# events MEMBER EVENT [REASON]
	q ac postgres "SELECT count(*) FROM trialvault.audit_events WHERE event = '$2'
	                 AND detail::jsonb ->> 'member' = '$1'${3:+ AND detail::jsonb ->> 'reason' = '$3'}"
}

# --- 1. the invitation ---------------------------------------------------------------
read -r EMAIL SMS < <(as ac_adm "SELECT email_code || ' ' || sms_code FROM trialvault.invite_member('ac_new', 'AC-1', 'A', 'site_staff')")
like "$EMAIL:$SMS" '^[0-9]{8}:[0-9]{8}$' "1: invite_member returns two 8-digit codes"
check "1: the two codes differ" differ "$EMAIL" "$SMS"
is "$(q ac postgres "SELECT count(*) FROM trialvault.invitations WHERE member = 'ac_new'
                       AND position('$EMAIL' IN encode(email_code_sha256, 'escape') || encode(sms_code_sha256, 'escape')) = 0
                       AND email_code_sha256 = sha256(salt || convert_to('$EMAIL', 'UTF8'))
                       AND sms_code_sha256 = sha256(salt || convert_to('$SMS', 'UTF8'))")" 1 \
	"1: only salted SHA-256 hashes of the codes are kept"
is "$(events ac_new invitation_created)" 1 "1: the invitation is in the audit trail"
is "$(q ac postgres "SELECT count(*) FROM trialvault.audit_events WHERE detail LIKE '%$EMAIL%' OR detail LIKE '%$SMS%'")" 0 \
	"1: the codes are not in the trail"
is "$(state_as ac_new "SELECT trialvault.open_study('AC-1')")" 42501 "1: before activation the member cannot open the study (42501)"
is "$(state_as ac_new "SELECT trialvault.open_document($DOC)")" 42501 "1: ... nor the document"
is "$(q ac postgres "SELECT reason FROM trialvault.decryption_log ORDER BY log_id DESC LIMIT 1")" not_a_member \
	"1: ... refused as not_a_member"
is "$(q ac postgres "SELECT count(*) FROM trialvault.current_memberships WHERE member = 'ac_new'")" 0 \
	"1: the member holds no study role yet"

# --- 2. wrong codes, the void --------------------------------------------------------
is "$(state_as ac_new "SELECT trialvault.activate_account('$SMS', '$EMAIL')")" 28000 "2: swapped codes are refused (28000)"
is "$(state_as ac_new "SELECT trialvault.activate_account('$EMAIL', '00000000')")" 28000 "2: a wrong SMS code is refused (28000)"
is "$(state_as ac_new "SELECT trialvault.activate_account('00000000', '$SMS')")" 28000 "2: a wrong e-mail code is refused (28000)"
is "$(state_as ac_new "SELECT trialvault.activate_account('1234', '$SMS')")" 22023 "2: a malformed code is refused (22023), not counted"
is "$(events ac_new invitation_refused wrong_codes):$(events ac_new invitation_refused malformed_code)" "3:1" \
	"2: every attempt is in the trail"
is "$(state_as ac_new "SELECT trialvault.activate_account('11111111', '22222222')")" 28000 "2: a fourth wrong attempt"
like "$(tv_psql ac -d postgres -c "SET ROLE ac_new; SELECT trialvault.activate_account('11111111', '33333333')" 2>&1 || true)" \
	"is now void" "2: the fifth wrong attempt voids the invitation"
is "$(state_as ac_new "SELECT trialvault.activate_account('$EMAIL', '$SMS')")" 55000 "2: the right codes are refused then (55000)"
is "$(q ac postgres "SELECT count(*) FROM trialvault.current_memberships WHERE member = 'ac_new'")" 0 "2: still no role"
is "$(events ac_new invitation_void)" 1 "2: the void is in the trail"

# Five wrong attempts from savepoints of one REPEATABLE READ transaction.
read -r E2 S2 < <(as ac_adm "SELECT email_code || ' ' || sms_code FROM trialvault.invite_member('ac_rr', 'AC-1', NULL, 'sponsor')")
out=$(tv_psql ac -d postgres -At -v ON_ERROR_STOP=0 2>&1 <<-SQL || true
	SET ROLE ac_rr;
	BEGIN ISOLATION LEVEL REPEATABLE READ;
	SELECT count(*) > 0 FROM pg_catalog.pg_class;
	SAVEPOINT a; SELECT trialvault.activate_account('11111111', '11111111'); ROLLBACK TO a;
	SAVEPOINT a; SELECT trialvault.activate_account('11111112', '11111111'); ROLLBACK TO a;
	SAVEPOINT a; SELECT trialvault.activate_account('11111113', '11111111'); ROLLBACK TO a;
	SAVEPOINT a; SELECT trialvault.activate_account('11111114', '11111111'); ROLLBACK TO a;
	SAVEPOINT a; SELECT trialvault.activate_account('11111115', '11111111'); ROLLBACK TO a;
	SAVEPOINT a; SELECT 'sixth: ' || trialvault.activate_account('$E2', '$S2'); ROLLBACK TO a;
	COMMIT;
SQL
)
like "$out" "is now void" "2: in one REPEATABLE READ transaction the fifth wrong attempt still voids the invitation"
like "$out" "ERROR:  the invitation of role \"ac_rr\" is void" "2: ... and the right codes after it are refused"

# --- 3. activation -------------------------------------------------------------------
read -r EMAIL SMS < <(as ac_adm "SELECT email_code || ' ' || sms_code FROM trialvault.invite_member('ac_new', 'AC-1', 'A', 'site_staff')")
is "$(tv_psql ac -d postgres -At -c "SET ROLE ac_new; BEGIN; SELECT trialvault.activate_account('$EMAIL', '$SMS'); ROLLBACK" 2>&1 | head -1)" \
	"AC-1/A:site_staff" "3: activate_account grants the role (here in a transaction rolled back)"
is "$(q ac postgres "SELECT count(*) FROM trialvault.current_memberships WHERE member = 'ac_new'")" 0 \
	"3: rolled back, the role is not granted"
is "$(as ac_new "SELECT trialvault.activate_account('$EMAIL', '$SMS')")" "AC-1/A:site_staff" \
	"3: ... and the invitation is still open: the right codes grant the role"
is "$(q ac postgres "SELECT study || '/' || site || ':' || study_role FROM trialvault.current_memberships WHERE member = 'ac_new'")" \
	"AC-1/A:site_staff" "3: the member holds the role"
is "$(q ac postgres "SELECT actor FROM trialvault.audit_events WHERE event = 'role_granted' AND detail = 'site_staff to ac_new'")" \
	ac_adm "3: granted as the inviting administrator"
is "$(events ac_new invitation_accepted)" 1 "3: the activation is in the trail"
is "$(as ac_new "SELECT trialvault.open_study('AC-1'); SELECT convert_from(trialvault.open_document($DOC), 'UTF8')" | tail -1)" \
	"ECG of Jane Roe" "3: the member opens the study and the document"
is "$(state_as ac_new "SELECT trialvault.activate_account('$EMAIL', '$SMS')")" 55000 "3: the codes are not taken twice (55000)"
is "$(state_as ac_adm "SELECT * FROM trialvault.invite_member('ac_new', 'AC-1', 'A', 'site_staff')")" 42710 \
	"3: inviting to a role held already is refused (42710)"

# --- 4. expiry -----------------------------------------------------------------------
tv_psql ac -d postgres -c "ALTER SYSTEM SET trialvault.activation_ttl = '2s'" -c "SELECT pg_reload_conf()" >/dev/null
ttl_is() { [ "$(q ac postgres "SHOW trialvault.activation_ttl")" = "$1" ]; }
wait_until "activation_ttl to be reloaded" 30 ttl_is 2s
read -r EMAIL SMS < <(as ac_adm "SELECT email_code || ' ' || sms_code FROM trialvault.invite_member('ac_late', 'AC-1', NULL, 'auditor')")
sleep 2.5
is "$(state_as ac_late "SELECT trialvault.activate_account('$EMAIL', '$SMS')")" 55000 "4: after activation_ttl the invitation has expired (55000)"
is "$(events ac_late invitation_refused expired)" 1 "4: ... recorded as expired"
is "$(state_as ac_late "SET trialvault.activation_ttl = '1d'")" 55P02 "4: a session cannot change activation_ttl (55P02)"
tv_psql ac -d postgres -c "ALTER SYSTEM RESET trialvault.activation_ttl" -c "SELECT pg_reload_conf()" >/dev/null
wait_until "activation_ttl to be reset" 30 ttl_is 1d

# --- 5. bad input --------------------------------------------------------------------
is "$(state_as ac_late "SELECT trialvault.activate_account(NULL, '12345678')")" 22004 "5: a NULL code is refused (22004)"
is "$(state_as ac_late "SELECT trialvault.activate_account('', '')")" 22023 "5: empty codes are refused (22023)"
is "$(state_as ac_late "SELECT trialvault.activate_account('1234567a', '12345678')")" 22023 "5: a non-numeric code is refused (22023)"
is "$(state_as ac_late "SELECT trialvault.activate_account(repeat('1', 10000000), '12345678')")" 22023 "5: a 10 MB code is refused (22023)"
is "$(state_as ac_inv "SELECT trialvault.activate_account('12345678', '12345678')")" 55000 "5: without an invitation: refused (55000)"
is "$(events ac_inv invitation_refused no_invitation)" 1 "5: ... and recorded"
is "$(state_as ac_inv "SELECT * FROM trialvault.invite_member('ac_late', 'AC-1', NULL, 'auditor')")" 42501 \
	"5: invite_member is refused to a non-administrator (42501)"
is "$(state_as ac_adm "SELECT * FROM trialvault.invite_member('ac_nobody', 'AC-1', NULL, 'auditor')")" 42704 \
	"5: inviting a role that does not exist is refused (42704)"
is "$(state_as ac_adm "SELECT * FROM trialvault.invite_member('ac_group', 'AC-1', NULL, 'auditor')")" 22023 \
	"5: inviting a role that cannot log in is refused (22023)"
is "$(state_as ac_adm "SELECT * FROM trialvault.invite_member('ac_late', 'AC-1', 'A', 'sponsor')")" 22023 \
	"5: a sponsor with a site is refused (22023)"
is "$(state_as ac_adm "SELECT * FROM trialvault.invite_member('ac_late', 'NO-SUCH', NULL, 'auditor')")" 42704 \
	"5: an unknown study is refused (42704)"
is "$(state_as ac_adm "SELECT * FROM trialvault.invite_member(NULL, 'AC-1', NULL, 'auditor')")" 22004 \
	"5: a NULL member is refused (22004)"
is "$(state_as ac_adm "SELECT * FROM trialvault.invite_member('ac_late', 'AC-1', NULL, repeat('x', 100000))")" 22023 \
	"5: an oversized study role is refused (22023)"
is "$(state_as ac_new "SELECT * FROM trialvault.invitations")" 42501 "5: members cannot read the invitations (42501)"
read -r EMAIL SMS < <(as ac_adm "SELECT email_code || ' ' || sms_code FROM trialvault.invite_member('ac_late', 'AC-1', NULL, 'auditor')")
# Attacks by a member: settings, and the internal functions behind the public ones.
is "$(state_as ac_new "SELECT set_config('trialvault.step_up_duration', '1h', false)")" 55P02 \
	"5: a member cannot lengthen the step-up with set_config (55P02)"
is "$(state_as ac_new "ALTER ROLE ac_new SET trialvault.activation_ttl = '30d'")" 55P02 \
	"5: a member cannot set activation_ttl for their role (55P02)"
is "$(state_as ac_new "SELECT trialvault._grant_role('ac_adm', 'ac_new', 'AC-1', NULL, 'monitor')")" 42501 \
	"5: a member cannot call the internal _grant_role as the administrator (42501)"
is "$(state_as ac_new "SELECT trialvault._require_second_factor('ac_adm', 'AC-1', 'site_staff')")" 42501 \
	"5: nor the internal _require_second_factor (42501)"
is "$(state_as ac_new "INSERT INTO trialvault.audit_events (event, actor, session_user_name, detail)
                       VALUES ('invitation_accepted', 'ac_late', 'ac_late', '{\"member\": \"ac_late\", \"invitation_id\": 1}')")" 42501 \
	"5: a member cannot write an invitation event into the trail (42501)"
check "5: the codes invite_member returns are not in the server log" absent_in "$DIR/server.log" "$EMAIL"
check "5: ... neither of them" absent_in "$DIR/server.log" "$SMS"

tv_cluster_stop ac
done_testing

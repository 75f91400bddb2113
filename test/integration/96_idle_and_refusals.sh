#!/usr/bin/env bash
# 96_idle_and_refusals.sh: automatic logoff of idle study members, and
# refusals on protected tables on record (issue 14), on a real cluster.
#
#   1. with trialvault.member_idle_timeout = 2 s, a study member's idle
#      session is ended, also one idle inside a transaction, also after the
#      member SET idle_session_timeout = 0 for itself; a role outside every
#      study and a superuser stay; each logoff is in the trail (with the
#      database and since when it was idle) and the server log; at 0 nobody
#      is logged off;
#   2. UPDATE, DELETE, TRUNCATE and DDL refused on a protected table are
#      events (protected_table_refused), though the statement fails and the
#      transaction rolls back, from any database of the cluster;
#   3. an auditor of the study sees the member's logoff and refusals in
#      audit_trail;
#   4. trialvault.audit_report: for the study's auditors (scoped to it and
#      its members) and administrators (the whole cluster), refused to
#      others, with clear errors for a NULL or reversed period and an unknown
#      study; it ends with each chain's verification, and names an altered
#      one.
set -euo pipefail
source "$(dirname "$0")/../lib/cluster.sh"
source "$(dirname "$0")/lib/helpers.sh"

tv_cluster_start ir
DIR=$(tv_dir ir)
PORT=$(tv_port ir)
q ir postgres "SET client_min_messages = warning; CREATE EXTENSION trialvault CASCADE" >/dev/null
q ir postgres "CREATE DATABASE ir_other" >/dev/null
q ir ir_other "SET client_min_messages = warning; CREATE EXTENSION trialvault CASCADE" >/dev/null
q ir postgres "CREATE ROLE ir_mem LOGIN; CREATE ROLE ir_out LOGIN; CREATE ROLE ir_aud LOGIN;
               SELECT trialvault.create_study('IR', 'Idle');
               SELECT trialvault.add_site('IR', 'S1', 'Site 1');
               SELECT trialvault.grant_role('ir_mem', 'IR', 'S1', 'site_staff');
               SELECT trialvault.grant_role('ir_aud', 'IR', NULL, 'auditor')" >/dev/null
q ir postgres "ALTER SYSTEM SET trialvault.member_idle_timeout = '2s'" >/dev/null
q ir postgres "SELECT pg_reload_conf()" >/dev/null
sleep 0.5

alive() { [ "$(q ir postgres "SELECT count(*) FROM pg_stat_activity WHERE pid = $1")" = 1 ]; }
gone() { ! alive "$1"; }
# open_idle NAME ROLE [SQL]: a session of ROLE, after SQL; its pid in PID_<NAME>.
# (Sessions keep their state in this shell: not to be called in $(...).)
open_idle() {
	sess_open ir postgres "$1" -U "$2" -At
	if [ -n "${3:-}" ]; then sess_run "$1" "$3"; fi
	printf -v "PID_$1" '%s' "$(sess_query "$1" "SELECT pg_backend_pid();")"
}

# --- 1. idle members are logged off -------------------------------------------------
open_idle s_mem ir_mem
open_idle s_tx ir_mem "BEGIN; SELECT 1;"
open_idle s_set ir_mem "SET idle_session_timeout = 0;"
open_idle s_out ir_out
open_idle s_sup postgres
p_mem=$PID_s_mem p_tx=$PID_s_tx p_set=$PID_s_set p_out=$PID_s_out p_sup=$PID_s_sup
like "$p_mem $p_tx $p_set $p_out $p_sup" '^[0-9]+ [0-9]+ [0-9]+ [0-9]+ [0-9]+$' "1: (five idle sessions)"
check "1: an idle study member's session is ended after trialvault.member_idle_timeout" \
	wait_until "the member's session ended" 10 gone "$p_mem"
check "1: ... also one idle inside a transaction" wait_until "ended" 5 gone "$p_tx"
check "1: ... also after the member SET idle_session_timeout = 0 for itself" wait_until "ended" 5 gone "$p_set"
check "1: a role outside every study stays" alive "$p_out"
check "1: a superuser stays" alive "$p_sup"
for s in s_mem s_tx s_set s_out s_sup; do sess_close "$s" >/dev/null 2>&1 || true; done
wait_until "the logoffs on record" 10 bash -c "[ \"\$(PGHOST=$DIR PGPORT=$PORT $PGBIN/psql -X -U postgres -d postgres -At -c \"SELECT count(*) FROM trialvault.audit_events WHERE event = 'session_idle_logoff'\")\" -ge 3 ]" || true
is "$(q ir postgres "SELECT string_agg(backend_pid::text, ' ' ORDER BY backend_pid) FROM trialvault.audit_events WHERE event = 'session_idle_logoff' AND actor = 'ir_mem'")" \
	"$(printf '%s\n' "$p_mem" "$p_tx" "$p_set" | sort -n | tr '\n' ' ' | sed 's/ $//')" \
	"1: each logoff is in the trail, with the member and the session's pid"
like "$(q ir postgres "SELECT detail FROM trialvault.audit_events WHERE event = 'session_idle_logoff' AND backend_pid = $p_tx")" \
	'^\{"database": "postgres", "idle_since": "[0-9-]+ [0-9:.+]+", "reason": "idle for more than 2 s \(trialvault.member_idle_timeout\), inside a transaction"\}$' \
	"1: ... with the database, since when, and why"
check "1: ... and in the server log" grep -q "trialvault ended the idle session of study member \"ir_mem\" (pid $p_mem)" "$DIR/server.log"
q ir postgres "ALTER SYSTEM SET trialvault.member_idle_timeout = 0" >/dev/null
q ir postgres "SELECT pg_reload_conf()" >/dev/null
sleep 0.5
open_idle s_off ir_mem
p_off=$PID_s_off
sleep 3.5
check "1: with trialvault.member_idle_timeout = 0 nobody is logged off" alive "$p_off"
sess_close s_off >/dev/null 2>&1 || true

# --- 2. refusals on protected tables ------------------------------------------------------
for db in postgres ir_other; do
	q ir $db "SET client_min_messages = warning; CREATE TABLE ir_t (id int, v text); SELECT trialvault.protect('ir_t'); INSERT INTO ir_t VALUES (1, 'a')" >/dev/null
done
before=$(q ir postgres "SELECT count(*) FROM trialvault.audit_events WHERE event = 'protected_table_refused'")
for sql in "UPDATE ir_t SET v = 'b'" "DELETE FROM ir_t" "TRUNCATE ir_t" "ALTER TABLE ir_t DROP COLUMN v"; do
	is "$(sqlstate_of ir postgres "BEGIN; $sql; COMMIT")" 55000 "2: $sql: refused"
done
is "$(sqlstate_of ir ir_other "UPDATE ir_t SET v = 'c'")" 55000 "2: UPDATE in another database: refused"
is "$(q ir postgres "SELECT string_agg(actor || ': ' || detail, ' | ' ORDER BY event_id) FROM trialvault.audit_events WHERE event = 'protected_table_refused'")" \
	"postgres: UPDATE on public.ir_t (database postgres) | postgres: DELETE on public.ir_t (database postgres) | postgres: TRUNCATE on public.ir_t (database postgres) | postgres: DROP COLUMN on public.ir_t (database postgres) | postgres: UPDATE on public.ir_t (database ir_other)" \
	"2: each refusal is on record, though its transaction rolled back, with the database"
is "$(q ir postgres "SELECT count(*) FROM ir_t WHERE v = 'a'")" 1 "2: (and the row is unchanged)"
q ir postgres "GRANT SELECT, UPDATE ON ir_t TO ir_mem" >/dev/null
is "$(sqlstate_of ir postgres "SET ROLE ir_mem; UPDATE ir_t SET v = 'm'")" 55000 "2: a study member's UPDATE: refused"

# --- 3. what the auditor sees ------------------------------------------------------------
aud() { tv_psql ir -d postgres -U ir_aud -At -c "SELECT trialvault.open_study('IR')" -c "$1" | tail -n 1; }
is "$(aud "SELECT count(*) FILTER (WHERE event = 'session_idle_logoff') || ':' || count(*) FILTER (WHERE event = 'protected_table_refused') FROM trialvault.audit_trail WHERE actor = 'ir_mem'")" \
	"3:1" "3: an auditor of the study sees the member's logoffs and refusal in audit_trail"
is "$(aud "SELECT count(*) FROM trialvault.audit_trail WHERE actor IN ('ir_out', 'postgres') AND event IN ('session_idle_logoff', 'protected_table_refused')")" \
	0 "3: ... and not those of roles outside the study"

# --- 4. the printable report -----------------------------------------------------------------
rep() { tv_psql ir -d postgres -U "$1" -At -c "SELECT trialvault.audit_report(now() - interval '1 hour', now() + interval '1 hour'${2:+, '$2'})" 2>&1 || true; }
report=$(rep ir_aud IR)
like "$report" '^trialvault audit report' "4: an auditor of the study gets the report of a period"
like "$report" 'Scope: +study IR \(its events, and the security events of its 2 members\)' "4: ... scoped to the study and its members"
like "$report" 'session_idle_logoff +3' "4: ... events by kind with their counts"
like "$report" '3\. Decryptions per document' "4: ... decryptions per document"
like "$report" 'role_granted  ir_mem  site_staff to ir_mem' "4: ... account changes, with the target"
like "$report" 'trialvault.audit_events +verifies: [0-9]+ rows' "4: ... and the verification of every chain: the trail"
like "$report" 'trialvault.memberships +verifies' "4: ... and the study's tables"
if [[ $report == *ir_out* ]]; then not_ok "4: nothing of a role outside the study"; else ok "4: nothing of a role outside the study"; fi
like "$(rep ir_out IR)" 'permission denied to report on study IR' "4: a role that is not an auditor of the study is refused"
like "$(rep ir_aud)" 'permission denied to report on the whole cluster' "4: an auditor cannot report on the whole cluster"
like "$(rep postgres)" 'Scope: +the whole cluster' "4: an administrator can"
like "$(rep postgres)" 'ir_out' "4: ... which covers everyone"
is "$(sqlstate_of ir postgres "SELECT trialvault.audit_report(NULL, now())")" 22004 "4: a NULL period: 22004"
is "$(sqlstate_of ir postgres "SELECT trialvault.audit_report(now(), now() - interval '1 day')")" 22023 "4: a period that ends before it begins: 22023"
is "$(sqlstate_of ir postgres "SELECT trialvault.audit_report(now() - interval '1 day', now(), 'NOPE')")" 42704 "4: an unknown study: 42704"
# A chain altered behind the guards' back (a superuser editing the catalog)
# is reported as such.
tv_psql ir -d postgres >/dev/null <<'SQL'
CREATE TEMP TABLE saved AS SELECT oid, tgenabled FROM pg_trigger WHERE tgrelid = 'trialvault.memberships'::regclass;
UPDATE pg_trigger SET tgenabled = 'D' WHERE tgrelid = 'trialvault.memberships'::regclass;
UPDATE trialvault.memberships SET study_role = 'investigator' WHERE member = 'ir_mem';
UPDATE pg_trigger t SET tgenabled = s.tgenabled FROM saved s WHERE t.oid = s.oid;
SQL
like "$(rep ir_aud IR)" 'trialvault.memberships +DOES NOT VERIFY' "4: an altered chain is reported as such"

tv_cluster_stop ir
done_testing

#!/usr/bin/env bash
# 90_decryption_log.sh: every open_document is on record before plaintext
# leaves, whatever happens to the caller's transaction or to the server.
#
# One cluster, database postgres: study S1 with sites A and B, loader
# "loader1" and "alice" site staff of A, "bob" site staff of B; one PHI
# document (encrypted) and one without PHI.  Each call is told apart in the
# log by its application_name.
#
#   1. open_document in BEGIN ... ROLLBACK: the granted row is there; a
#      refused open in BEGIN ... ROLLBACK: the refusal is there; an error
#      later in the transaction (1/0) and ROLLBACK TO SAVEPOINT do not
#      remove the row; the row is visible to other sessions while the
#      caller's transaction is still open (committed by the log writer);
#   2. fail closed: SIGTERM to the log writer; while it is down,
#      open_document fails with 55000, prints no plaintext and leaves no
#      log row; once the postmaster has restarted it, opening works again;
#   3. crash (immediate stop) right after a call returned plaintext: the
#      row survives, and the decryption log verifies;
#   4. ciphertext planted by a superuser: another document's ciphertext
#      under a new id, another site, another study; bit flips in the body,
#      IV, tag and header; truncated, extended, 10-byte and empty values;
#      unknown format version; key version changed to an existing and to an
#      unknown version.  Each is a clean error (XX001 ciphertext_invalid; a
#      key version the study never had is corruption too), never
#      plaintext, never a crash, and the attempt is logged; a correctly
#      encrypted planted row opens (the method itself is sound);
#   5. 8 concurrent pgbench clients: every call logged (rows added =
#      transactions processed) and fewer commits than records (group
#      commit);
#   6. open_document in a database other than trialvault.database fails
#      with 55000 naming the database the log writer serves;
#   7. a hung log writer (SIGSTOP): open_document gives up after
#      trialvault.log_timeout with 55000 and no plaintext; the attempt is
#      written once the writer resumes, and opening works again;
#   8. a full queue (16 slots, writer stopped, 20 callers): 16 time out
#      waiting for the writer, 4 are refused for a full queue (53400), none
#      gets plaintext; after the writer resumes the queue drains;
#   9. announcements (log_writer_status().announced) never outlive a call;
#  10. the writer's inserts show in pg_stat_user_tables while it runs.
set -euo pipefail
source "$(dirname "$0")/../lib/cluster.sh"
source "$(dirname "$0")/lib/helpers.sh"

CL=c90
# Logins are not recorded on this cluster (93_logins tests that, with the
# writer stopped and hung too): sections 2, 7 and 8 stop the writer and then
# connect, as ordinary roles, which are refused while their logins cannot be
# recorded, and as superusers, who would first wait for the writer.
tv_cluster_start $CL "trialvault.audit_logins = off"
LOG=$(tv_dir $CL)/server.log
q $CL postgres "CREATE EXTENSION trialvault CASCADE" >/dev/null 2>&1

PLAIN='PATIENT Zebulon Quixote-Marchetti, MRN 99887766, DOB 1961-02-03: diagnosis text that must stay secret'
PLAIN_HEX=$(printf '%s' "$PLAIN" | od -An -tx1 | tr -d ' \n')

tv_psql $CL -d postgres >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE ROLE loader1 LOGIN;
CREATE ROLE alice LOGIN;
CREATE ROLE bob LOGIN;
SELECT trialvault.create_study('S1', 'Study one');
SELECT trialvault.require_signatures('S1', false);
SELECT trialvault.add_site('S1', 'A', 'Site A');
SELECT trialvault.add_site('S1', 'B', 'Site B');
SELECT trialvault.grant_role('loader1', 'S1', 'A', 'site_staff');
SELECT trialvault.grant_role('alice', 'S1', 'A', 'site_staff');
SELECT trialvault.grant_role('bob', 'S1', 'B', 'site_staff');
SQL
PHI=$(tv_psql $CL -d postgres -U loader1 -At -c \
	"SELECT trialvault.load_document('S1', 'A', 'source', true, '<doc><visit>1</visit></doc>',
	                                 convert_to('$PLAIN', 'UTF8'))")
NOPHI=$(tv_psql $CL -d postgres -U loader1 -At -c \
	"SELECT trialvault.load_document('S1', 'A', 'protocol', false, '<doc><visit>0</visit></doc>',
	                                 convert_to('protocol text, no PHI', 'UTF8'))")
is "$(q $CL postgres "SELECT content IS NULL AND content_enc IS NOT NULL
                        AND position(convert_to('$PLAIN', 'UTF8') in content_enc) = 0
                      FROM trialvault.documents WHERE doc_id = $PHI")" t \
	"setup: the PHI document is stored only as ciphertext"
is "$(q $CL postgres "SELECT convert_from(content, 'UTF8') FROM trialvault.documents WHERE doc_id = $NOPHI")" \
	"protocol text, no PHI" "setup: the no-PHI document is stored as it is"

# run APP USER SQL...: psql as USER with application_name APP, statements
# from stdin, going on after errors; prints everything (stdout and stderr).
# Each session first opens study S1 (open_document works only in the
# session's open study).
run() {
	local app=$1 user=$2
	{
		printf '\\o /dev/null\nSELECT trialvault.open_study(%s);\n\\o\n' "'${OPEN_STUDY:-S1}'"
		cat
	} | PGAPPNAME=$app tv_psql $CL -d postgres -U "$user" -At -v ON_ERROR_STOP=0 \
		-v VERBOSITY=verbose 2>&1 || true
}

# logrow APP: granted:reason:requester:doc_id of the rows logged for APP.
logrows() {
	q $CL postgres "SELECT coalesce(string_agg(granted || ':' || reason || ':' || requester || ':' || doc_id,
	                                           ',' ORDER BY log_id), '')
	                  FROM trialvault.decryption_log WHERE application_name = '$1'"
}

logcount() {
	q $CL postgres "SELECT count(*) FROM trialvault.decryption_log WHERE ${1:-true}"
}

no_plain() {
	[[ $1 != *"$PLAIN"* ]] && [[ $1 != *"$PLAIN_HEX"* ]] && [[ $1 != *"Zebulon"* ]]
}

# --- 1. ROLLBACK and later errors do not take the row away ---------------------

out=$(run s1_granted alice <<SQL
BEGIN;
SELECT convert_from(trialvault.open_document($PHI), 'UTF8');
ROLLBACK;
SQL
)
like "$out" "$PLAIN" "1: alice opens the PHI document inside BEGIN ... ROLLBACK"
is "$(logrows s1_granted)" "true:site_staff:alice:$PHI" "1: after ROLLBACK the granted row is in the log"

out=$(run s1_refused bob <<SQL
BEGIN;
SELECT convert_from(trialvault.open_document($PHI), 'UTF8');
ROLLBACK;
SQL
)
like "$out" "ERROR: +42501: permission denied to open document $PHI" "1: bob (other site) is refused with 42501"
check "1: the refusal prints no plaintext" no_plain "$out"
is "$(logrows s1_refused)" "false:other_site:bob:$PHI" "1: after ROLLBACK the refusal row is in the log"

out=$(run s1_div0 alice <<SQL
BEGIN;
SELECT convert_from(trialvault.open_document($PHI), 'UTF8');
SELECT 1/0;
COMMIT;
SQL
)
like "$out" "ERROR: +22012" "1: a later statement of the same transaction fails (1/0)"
is "$(logrows s1_div0)" "true:site_staff:alice:$PHI" "1: the row survives the failed transaction"

out=$(run s1_savepoint alice <<SQL
BEGIN;
SAVEPOINT sp;
SELECT length(trialvault.open_document($NOPHI));
ROLLBACK TO SAVEPOINT sp;
ROLLBACK;
SQL
)
is "$(logrows s1_savepoint)" "true:no_phi:alice:$NOPHI" "1: a no-PHI open rolled back to a savepoint is on record too"

# The row is committed (by the log writer) before open_document returns:
# another session sees it while the caller's transaction is still open.
sess_open $CL postgres holder
check "1: a session opens the document in a transaction it keeps open" sess_run holder \
	"SET ROLE alice; SELECT trialvault.open_study('S1'); BEGIN; SELECT length(trialvault.open_document($PHI));"
is "$(logrows sess_holder)" "true:site_staff:alice:$PHI" \
	"1: the row is visible to others while the caller's transaction is open"
is "$(q $CL postgres "SELECT session_user_name || ':' || backend_pid FROM trialvault.decryption_log
                      WHERE application_name = 'sess_holder'")" \
	"postgres:$(q $CL postgres "SELECT pid FROM pg_stat_activity WHERE application_name = 'sess_holder'")" \
	"1: the row names the session user and the caller's backend pid"
check "1: the session rolls back" sess_run holder "ROLLBACK;"
is "$(logrows sess_holder)" "true:site_staff:alice:$PHI" "1: the row is still there after that ROLLBACK"
check "1: the session ends cleanly" sess_close holder

# --- 2. fail closed while the log writer is down --------------------------------

writer_pid() {
	q $CL postgres "SELECT coalesce(pid::text, 'none') FROM trialvault.log_writer_status()"
}
writer_down() { [ "$(writer_pid)" = none ]; }
writer_up() {
	local p
	p=$(writer_pid 2>/dev/null) || return 1
	[[ $p =~ ^[0-9]+$ ]] && [ "$p" != "${1:-0}" ]
}

wpid=$(writer_pid)
like "$wpid" '^[0-9]+$' "2: the log writer runs (pid $wpid)"
is "$(tv_as_pg cat "/proc/$wpid/cmdline" 2>/dev/null | tr '\0' ' ' | grep -c 'trialvault log writer' || true)" 1 \
	"2: that pid is the trialvault log writer process"
kill -TERM "$wpid"
check "2: after SIGTERM log_writer_status().pid becomes NULL" wait_until "writer to stop" 10 writer_down
rows_before=$(logcount)
out=$(run s2_closed alice <<SQL
SELECT convert_from(trialvault.open_document($PHI), 'UTF8');
SQL
)
like "$out" "ERROR: +55000: the trialvault log writer is not running" "2: open_document fails with 55000"
check "2: no plaintext in psql's output (text or hex)" no_plain "$out"
out=$(run s2_closed_refusal bob <<SQL
SELECT trialvault.open_document($PHI);
SQL
)
like "$out" "ERROR: +55000:" "2: a call that would be refused fails closed the same way (55000)"
# A metadata PHI refusal is put on record through the writer too; with the
# writer down the refusal stands, and says it could not be recorded.
out=$(tv_psql $CL -d postgres -U loader1 -v VERBOSITY=verbose -c \
	"SELECT trialvault.load_document('S1', 'A', 'source', true,
	 '<doc><PatientName>Jane Roe</PatientName></doc>', '\\x01')" 2>&1 || true)
like "$out" "WARNING: +[0-9A-Z]{5}: the refusal below could not be put on record: the trialvault log writer is not running" \
	"2: a metadata PHI refusal while the writer is down says it could not be put on record"
like "$out" "ERROR: +22000: .*PHI" "2: ... and the load is refused all the same (22000)"
check "2: the writer was still down during these calls" writer_down
check "2: the postmaster restarts the log writer (30 s at most)" wait_until "writer to come back" 30 writer_up "$wpid"
is "$(logcount)" "$rows_before" "2: no log row was added while the writer was down"
is "$(logrows s2_closed)" "" "2: nothing logged for the failed call, even after the writer is back"
out=$(run s2_back alice <<SQL
SELECT convert_from(trialvault.open_document($PHI), 'UTF8');
SQL
)
like "$out" "$PLAIN" "2: with the writer back, alice opens the document again"
is "$(logrows s2_back)" "true:site_staff:alice:$PHI" "2: and that call is logged"
check "2: the server log shows the writer restarted" \
	[ "$(grep -c 'trialvault log writer started for database "postgres"' "$LOG")" -ge 2 ]

# --- 3. crash right after a call returned ----------------------------------------

set +e
out=$(PGAPPNAME=s3_crash tv_psql $CL -d postgres -U alice -At 2>&1 <<SQL
SELECT trialvault.open_study('S1') \\gset
SELECT convert_from(trialvault.open_document($PHI), 'UTF8');
SQL
)
rc=$?
set -e
tv_cluster_crash $CL
is "$rc:$out" "0:$PLAIN" "3: open_document returned the plaintext (psql exit 0)"
check "3: the server is down (immediate stop)" [ ! -f "$(tv_dir $CL)/data/postmaster.pid" ]
tv_cluster_restart $CL
is "$(grep -c 'was not properly shut down; automatic recovery' "$LOG" || true)" 1 \
	"3: the restart ran crash recovery"
is "$(logrows s3_crash)" "true:site_staff:alice:$PHI" "3: the row of the call survives the crash"
verify_into $CL postgres trialvault.decryption_log
is "$V_OK:$V_BAD_ROWS" "t:0" "3: trialvault.verify('trialvault.decryption_log') is ok ($V_ROWS rows)"
check "3: the log writer is back after the restart" wait_until "writer after restart" 30 writer_up

# --- 4. planted and damaged ciphertext -------------------------------------------

log_offset=$(stat -c %s "$LOG")
tv_psql $CL -d postgres >/dev/null <<'SQL'
SET client_min_messages = warning;
SELECT trialvault.create_study('S2', 'Study two');
SELECT trialvault.require_signatures('S2', false);
SELECT trialvault.add_site('S2', 'X', 'Site X');
SELECT trialvault.grant_role('alice', 'S2', 'X', 'site_staff');
SELECT trialvault.rotate_study_key('S1');
SQL
is "$(q $CL postgres "SELECT string_agg(study || ':' || version, ',' ORDER BY study, version) FROM trialvault.study_keys")" \
	"S1:1,S1:2,S2:1" "4: S1 has key versions 1 and 2, S2 version 1"
is "$(q $CL postgres "SELECT encode(substring(content_enc from 1 for 11), 'hex') FROM trialvault.documents WHERE doc_id = $PHI")" \
	"5456010000000100000001" "4: the header of the PHI ciphertext is 'TV', format 1, study 1, key version 1"

# plant STUDY SITE ENC_EXPR [DOC_ID_EXPR]: a superuser inserts a copy of the
# PHI document's row with content_enc := ENC_EXPR (d.content_enc is the
# original); prints the new doc_id.
plant() {
	local study=$1 site=$2 enc=$3 id=${4:-"nextval(pg_get_serial_sequence('trialvault.documents', 'doc_id'))"}
	q $CL postgres "INSERT INTO trialvault.documents
	        (doc_id, study, site, doc_type, contains_phi, metadata, metadata_sha256, content,
	         content_enc, content_length, content_sha256, loaded_by)
	    SELECT $id, '$study', '$site', d.doc_type, true, d.metadata, d.metadata_sha256, NULL,
	           $enc, d.content_length, d.content_sha256, d.loaded_by
	      FROM trialvault.documents d WHERE d.doc_id = $PHI
	    RETURNING doc_id"
}

# attempt LABEL USER DOC_ID STATE REASON: USER opens DOC_ID; it must fail
# with STATE, print no plaintext, and be logged as refused with REASON.
attempt() {
	local label=$1 user=$2 id=$3 state=$4 reason=$5 out app
	app="s4_$id"
	out=$(run "$app" "$user" <<SQL
SELECT convert_from(trialvault.open_document($id), 'UTF8');
SQL
	)
	like "$out" "ERROR: +$state: document $id cannot be decrypted" "4: $label: $state"
	check "4: $label: no plaintext" no_plain "$out"
	is "$(logrows "$app")" "false:$reason:$user:$id" "4: $label: logged as refused ($reason)"
}

# A correctly encrypted planted row opens: the planting itself is sound.
good=$(q $CL postgres "SELECT nextval(pg_get_serial_sequence('trialvault.documents', 'doc_id'))")
plant S1 A "trialvault._encrypt(1, 'S1', $good, 'content', convert_to('$PLAIN', 'UTF8'))" "$good" >/dev/null
out=$(run "s4_$good" alice <<SQL
SELECT convert_from(trialvault.open_document($good), 'UTF8');
SQL
)
like "$out" "$PLAIN" "4: control: a planted row encrypted for its own id opens"
is "$(logrows "s4_$good")" "true:site_staff:alice:$good" "4: control: logged as granted"

id=$(plant S1 A "d.content_enc")
attempt "ciphertext copied under a new doc_id, same site" alice "$id" XX001 ciphertext_invalid
id=$(plant S1 B "d.content_enc")
attempt "ciphertext copied to another site of the study" bob "$id" XX001 ciphertext_invalid
id=$(plant S2 X "d.content_enc")
attempt "ciphertext copied to another study" alice "$id" XX001 ciphertext_invalid
s2id=$(q $CL postgres "SELECT lpad(to_hex(study_id), 8, '0') FROM trialvault.studies WHERE code = 'S2'")
id=$(plant S2 X "overlay(d.content_enc placing '\\x$s2id'::bytea from 4 for 4)")
attempt "copied to another study, header study id rewritten to match" alice "$id" XX001 ciphertext_invalid
id=$(plant S1 A "set_byte(d.content_enc, 50, get_byte(d.content_enc, 50) # 1)")
attempt "one bit flipped in the ciphertext body" alice "$id" XX001 ciphertext_invalid
id=$(plant S1 A "set_byte(d.content_enc, 15, get_byte(d.content_enc, 15) # 128)")
attempt "one bit flipped in the IV" alice "$id" XX001 ciphertext_invalid
id=$(plant S1 A "set_byte(d.content_enc, 30, get_byte(d.content_enc, 30) # 4)")
attempt "one bit flipped in the tag" alice "$id" XX001 ciphertext_invalid
id=$(plant S1 A "set_byte(d.content_enc, 0, get_byte(d.content_enc, 0) # 1)")
attempt "one bit flipped in the magic" alice "$id" XX001 ciphertext_invalid
id=$(plant S1 A "set_byte(d.content_enc, 6, get_byte(d.content_enc, 6) # 1)")
attempt "one bit flipped in the header's study id" alice "$id" XX001 ciphertext_invalid
id=$(plant S1 A "substring(d.content_enc from 1 for 60)")
attempt "truncated to 60 bytes" alice "$id" XX001 ciphertext_invalid
id=$(plant S1 A "substring(d.content_enc from 1 for length(d.content_enc) - 1)")
attempt "last byte cut off" alice "$id" XX001 ciphertext_invalid
id=$(plant S1 A "d.content_enc || '\\x00'::bytea")
attempt "extended by one zero byte" alice "$id" XX001 ciphertext_invalid
id=$(plant S1 A "substring(d.content_enc from 1 for 10)")
attempt "a 10-byte value" alice "$id" XX001 ciphertext_invalid
id=$(plant S1 A "'\\x'::bytea")
attempt "an empty value" alice "$id" XX001 ciphertext_invalid
id=$(plant S1 A "set_byte(d.content_enc, 2, 2)")
attempt "unknown format version 2" alice "$id" XX001 ciphertext_invalid
id=$(plant S1 A "overlay(d.content_enc placing '\\x00000002'::bytea from 8 for 4)")
attempt "key version changed to another existing version (2)" alice "$id" XX001 ciphertext_invalid
id=$(plant S1 A "overlay(d.content_enc placing '\\x00000000'::bytea from 8 for 4)")
attempt "key version 0" alice "$id" XX001 ciphertext_invalid
# A key version the study has no key for is reported as a missing key (the
# documented 55000 "no key"), not as damaged data.
id=$(plant S1 A "overlay(d.content_enc placing '\\x000003e7'::bytea from 8 for 4)")
attempt "unknown key version 999" alice "$id" XX001 ciphertext_invalid

is "$(q $CL postgres "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'")" 1 \
	"4: the server is up (only this session)"
crashes=$(tail -c +"$((log_offset + 1))" "$LOG" |
	grep -cE 'terminated by signal|was terminated by exception|terminating any other active server processes|server process \(PID [0-9]+\) exited' || true)
is "$crashes" 0 "4: no backend crashed (no crash lines in the server log)"
check "4: the damaged values made it into the server log as errors (the log is read)" \
	[ "$(tail -c +"$((log_offset + 1))" "$LOG" | grep -c 'cannot be decrypted' || true)" -ge 10 ]
check "4: the plaintext is not in the server log" \
	[ "$(grep -cF "Zebulon" "$LOG" || true)" = 0 ]

# --- 5. many concurrent callers: all logged, group commit -------------------------

work=$(tv_dir $CL)/pgbench
mkdir -p "$work"
cat >"$work/open.sql" <<SQL
\\if :opened = 0
SELECT trialvault.open_study('S1');
\\set opened 1
\\endif
SELECT trialvault.open_document($PHI);
SQL
read -r written0 batches0 <<<"$(q $CL postgres "SELECT written, batches FROM trialvault.log_writer_status()" | tr '|' ' ')"
rows0=$(logcount "application_name = 'pgbench'")
"$PGBIN/pgbench" -h "$(tv_dir $CL)" -p "$(tv_port $CL)" -U alice -n -D opened=0 -c 8 -j 4 -t 250 \
	-f "$work/open.sql" postgres >"$work/pgbench.out" 2>&1 || {
	sed 's/^/# /' "$work/pgbench.out"
	not_ok "5: pgbench failed"
}
processed=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$work/pgbench.out")
failed_tx=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$work/pgbench.out")
tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$work/pgbench.out")
is "$processed" 2000 "5: pgbench processed 8 x 250 transactions ($tps calls/s)"
is "${failed_tx:-0}" 0 "5: no failed transactions"
read -r written1 batches1 <<<"$(q $CL postgres "SELECT written, batches FROM trialvault.log_writer_status()" | tr '|' ' ')"
added=$(($(logcount "application_name = 'pgbench'") - rows0))
is "$added" "$processed" "5: rows added to the log = transactions processed"
is "$(logcount "application_name = 'pgbench' AND NOT (granted AND reason = 'site_staff' AND requester = 'alice')")" 0 \
	"5: each of them granted to alice as site staff"
is "$(q $CL postgres "SELECT count(DISTINCT backend_pid) FROM trialvault.decryption_log WHERE application_name = 'pgbench'")" 8 \
	"5: from 8 backends"
records=$((written1 - written0))
batches=$((batches1 - batches0))
check "5: the writer wrote at least those records ($records >= $processed)" [ "$records" -ge "$processed" ]
check "5: group commit: $batches commits for $records records" [ "$batches" -lt "$records" ]
echo "# group commit: $records records in $batches batches ($(awk "BEGIN { printf \"%.1f\", $records / ($batches > 0 ? $batches : 1) }") per commit)"
is "$(q $CL postgres "SELECT queued FROM trialvault.log_writer_status()")" 0 "5: the queue is empty afterwards"

# --- 6. another database ---------------------------------------------------------------

q $CL postgres "CREATE DATABASE other"
q $CL other "CREATE EXTENSION trialvault CASCADE" >/dev/null 2>&1
tv_psql $CL -d other >/dev/null <<'SQL'
SET client_min_messages = warning;
SELECT trialvault.create_study('O1', 'Study in another database');
SELECT trialvault.require_signatures('O1', false);
SELECT trialvault.add_site('O1', 'Z', 'Site Z');
SELECT trialvault.grant_role('postgres', 'O1', 'Z', 'site_staff');
SQL
oid=$(q $CL other "SELECT trialvault.load_document('O1', 'Z', 'source', true, '<doc><visit>2</visit></doc>',
                                                   convert_to('$PLAIN', 'UTF8'))")
rows_before=$(logcount)
set +e
out=$(PGAPPNAME=s6_other tv_psql $CL -d other -v VERBOSITY=verbose -At -c \
	"SELECT convert_from(trialvault.open_document($oid), 'UTF8')" 2>&1)
set -e
like "$out" 'ERROR: +55000: the trialvault log writer serves database "postgres", not this one' \
	"6: open_document in database other fails with 55000 naming database postgres"
check "6: no plaintext" no_plain "$out"
is "$(q $CL other "SELECT count(*) FROM trialvault.decryption_log")" 0 "6: nothing in other's decryption log"
is "$(logcount)" "$rows_before" "6: nothing in postgres's decryption log either"

# --- 7. a log writer that hangs -------------------------------------------------------

wpid=$(writer_pid)
like "$(sqlstate_of $CL postgres "SET trialvault.log_timeout = 0")" 22023 \
	"7: trialvault.log_timeout cannot be 0 (no waiting forever)"
like "$(tv_psql $CL -d postgres -U alice -c "SET trialvault.log_timeout = 600000" 2>&1 || true)" \
	'permission denied to set parameter "trialvault.log_timeout"' "7: users cannot change trialvault.log_timeout"
kill -STOP "$wpid"
start=$(date +%s%N)
out=$(tv_psql $CL -d postgres -v VERBOSITY=verbose -At -v ON_ERROR_STOP=0 2>&1 <<SQL || true
SET trialvault.log_timeout = 700;
SET ROLE alice;
SET application_name = 's7_hung';
SELECT trialvault.open_study('S1') \\gset
SELECT convert_from(trialvault.open_document($PHI), 'UTF8');
SQL
)
ms=$((($(date +%s%N) - start) / 1000000))
like "$out" "ERROR: +55000: the trialvault log writer did not confirm the record within 700 ms" \
	"7: with the writer stopped (SIGSTOP), open_document gives up after trialvault.log_timeout"
check "7: no plaintext" no_plain "$out"
check "7: it gave up in time (${ms} ms, at most 5000)" [ "$ms" -lt 5000 ]
kill -CONT "$wpid"
out=$(run s7_resumed alice <<SQL
SELECT convert_from(trialvault.open_document($PHI), 'UTF8');
SQL
)
like "$out" "$PLAIN" "7: once the writer runs again, opening works"
is "$(logrows s7_resumed)" "true:site_staff:alice:$PHI" "7: and is logged"
is "$(logrows s7_hung)" "true:site_staff:alice:$PHI" \
	"7: the attempt that timed out is on record too (written once the writer resumed)"
is "$(q $CL postgres "SELECT queued FROM trialvault.log_writer_status()")" 0 "7: the queue is empty again"

# --- 8. a full queue ------------------------------------------------------------------

tv_cluster_stop $CL
echo "trialvault.log_queue_size = 16" >>"$(tv_dir $CL)/data/postgresql.conf"
tv_cluster_restart $CL
check "8: the writer is back after the restart with 16 queue slots" wait_until "writer" 30 writer_up
is "$(q $CL postgres "SELECT queue_size FROM trialvault.log_writer_status()")" 16 "8: log_writer_status shows 16 slots"
wpid=$(writer_pid)
rows_before=$(logcount)
kill -STOP "$wpid"
qdir=$(tv_dir $CL)/queue
mkdir -p "$qdir"
for i in $(seq 1 20); do
	tv_psql $CL -d postgres -v VERBOSITY=verbose -At -v ON_ERROR_STOP=0 >"$qdir/$i.out" 2>&1 <<SQL &
SET trialvault.log_timeout = 1500;
SET application_name = 's8_full';
SET ROLE alice;
SELECT trialvault.open_study('S1') \\gset
SELECT convert_from(trialvault.open_document($PHI), 'UTF8');
SQL
done
wait
unconfirmed=$(grep -l "did not confirm the record within 1500 ms" "$qdir"/*.out | wc -l)
full=$(grep -l "53400: the trialvault log queue stayed full for 1500 ms" "$qdir"/*.out | wc -l)
is "$unconfirmed:$full" "16:4" "8: with the writer stopped, 16 callers fill the queue and time out, 4 find it full (53400)"
check "8: none of the 20 got plaintext" bash -c "! grep -qF '$PLAIN' $qdir/*.out"
kill -CONT "$wpid"
check "8: once the writer runs again the queue drains" wait_until "queue to drain" 30 \
	bash -c "[ \"\$(PGHOST=$(tv_dir $CL) PGPORT=$(tv_port $CL) $PGBIN/psql -X -U postgres -d postgres -At -c 'SELECT queued FROM trialvault.log_writer_status()')\" = 0 ]"
is "$(logcount "application_name = 's8_full'")" 16 "8: the 16 queued attempts are on record, the 4 refused for a full queue are not"
out=$(run s8_after alice <<SQL
SELECT convert_from(trialvault.open_document($PHI), 'UTF8');
SQL
)
like "$out" "$PLAIN" "8: and opening works again"

# 9. Announcements: a backend deciding a decryption is counted in
# log_writer_status().announced until its record is queued; a failure before
# that (an error in a savepoint, a refused call, a wrong study, a lost
# session) must not leave it counted, or the writer would wait on every batch.
out=$(run s9_announce alice <<SQL
DO \$\$ BEGIN PERFORM trialvault.open_document(NULL); EXCEPTION WHEN OTHERS THEN NULL; END \$\$;
DO \$\$ BEGIN PERFORM trialvault.open_document(-1); EXCEPTION WHEN OTHERS THEN NULL; END \$\$;
BEGIN;
SAVEPOINT s;
SELECT trialvault.emergency_open($PHI, 'x');
ROLLBACK TO SAVEPOINT s;
SELECT announced FROM trialvault.log_writer_status();
COMMIT;
SELECT trialvault.close_study();
SELECT trialvault.open_document($PHI);
SELECT 'announced now ' || announced FROM trialvault.log_writer_status();
SQL
)
like "$out" "announced now 0" "9: after refusals, errors in savepoints and a call outside the open study nothing stays announced"
check "9: and within the transaction the savepoint's rollback already cleared it" \
	bash -c "grep -qx '0' <<<\"\$1\"" _ "$out"
out=$(run s9_ok alice <<SQL
SELECT length(trialvault.open_document($PHI)) > 0;
SELECT 'announced now ' || announced FROM trialvault.log_writer_status();
SQL
)
like "$out" "announced now 0" "9: after a granted call nothing stays announced"
out=$( { echo "SET statement_timeout = '1ms';"
		 for i in $(seq 1 300); do echo "SELECT length(trialvault.open_document($PHI));"; done
		 echo "RESET statement_timeout;"
		 echo "SELECT 'announced now ' || announced FROM trialvault.log_writer_status();"; } | run s9_cancel alice)
like "$out" "canceling statement due to statement timeout" "9: with statement_timeout = 1ms some of 300 calls are cancelled part-way"
like "$out" "announced now 0" "9: and none stays announced"
# Many sessions at once, some of them cut off mid-call.
for i in $(seq 1 6); do
	run s9_many alice >/dev/null <<SQL &
SELECT length(trialvault.open_document($PHI)) FROM generate_series(1, 50);
SQL
done
sleep 0.3
q $CL postgres "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 's9_many'" >/dev/null
wait
check "9: after 6 concurrent sessions, some terminated mid-call, nothing stays announced" wait_until "announced to return to 0" 10 \
	bash -c "[ \"\$(PGHOST=$(tv_dir $CL) PGPORT=$(tv_port $CL) $PGBIN/psql -X -U postgres -d postgres -At -c 'SELECT announced FROM trialvault.log_writer_status()')\" = 0 ]"

# 10. The log writer reports its statistics like a backend does, so that
# autovacuum and pg_stat_user_tables know about the log rows it inserts.
ins() { q $CL postgres "SELECT n_tup_ins FROM pg_stat_user_tables WHERE relid = 'trialvault.decryption_log'::regclass"; }
ins_at_least() { [ "$(ins)" -ge "$1" ]; }
before=$(ins)
out=$(run s10 alice <<SQL
SELECT count(*) FROM generate_series(1, 25) WHERE length(trialvault.open_document($PHI)) > 0;
SQL
)
is "$out" 25 "10: 25 calls granted"
check "10: the writer's 25 inserts reach pg_stat_user_tables within seconds (from $before)" \
	wait_until "n_tup_ins to grow by 25" 10 ins_at_least $((before + 25))

check "the whole server log has no crash lines" \
	[ "$(grep -cE 'terminated by signal|was terminated by exception' "$LOG" || true)" = 0 ]

done_testing

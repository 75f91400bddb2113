#!/usr/bin/env bash
# 95_keys.sh: the master key never shows up anywhere, a missing or malformed
# one is refused clearly, and a master key rotation re-wraps the data keys
# without touching a document.
#
#   1. with pg_stat_statements, log_statement = all and log_min_messages =
#      debug1: create_study, rotate_study_key, load_document, open_document;
#      the master key's hex (lower and upper case) is in none of: the server
#      log, pg_stat_statements, a plain pg_dump, the text of every table in
#      schema trialvault (wrapped keys included), and the files of the data
#      directory (WAL included), where its 32 raw bytes are not either; each
#      search is shown to find what is there (positive controls); wrapped
#      data keys are 60 bytes (IV 12 + tag 16 + key 32) and decrypt; every
#      backend that used a key wipes its keys when it exits;
#   2. a master_key_command that prints 63 hex digits, one that prints 64
#      but exits non-zero, and one that prints 64 characters that are not
#      all hex: a WARNING "trialvault: no master key" at start,
#      key_status() says why, create_study fails with 55000 and a hint
#      naming trialvault.master_key_command, and the printed characters are
#      in no log line and no message;
#   3. master key rotation K1 -> K2: before rewrap_data_keys() old documents
#      refuse with 55000 key_unavailable (logged) and loading fails; a
#      non-superuser gets 42501; rewrap_data_keys() returns the number of
#      (study, version) keys; then everything opens and loads, no
#      content_enc changed, study_keys gained one row per key under K2's
#      id; without previous_master_key_command after a restart everything
#      still opens and rewrap_data_keys() fails with 55000;
#   4. a wrong master key K3 (never used) and no previous key: open_document
#      refuses with 55000 key_unavailable, and the refusal is logged.
set -euo pipefail
source "$(dirname "$0")/../lib/cluster.sh"
source "$(dirname "$0")/lib/helpers.sh"

PLAIN='PATIENT Philomena Hartsgrove-Yoon, MRN 55443322, diagnosis text that must stay secret'

# new_key FILE: a fresh key file the postgres OS user can read.
new_key() {
	(umask 077 && openssl rand -hex 32 >"$1")
	chown "$TV_OS_USER" "$1"
}

# log_since CL OFFSET: the server log from byte OFFSET on.
log_since() {
	tail -c +"$(($2 + 1))" "$(tv_dir "$1")/server.log"
}

log_size() {
	stat -c %s "$(tv_dir "$1")/server.log"
}

# conf CL LINE...: append to postgresql.conf (later lines win).
conf() {
	local cl=$1 line
	shift
	for line in "$@"; do
		echo "$line" >>"$(tv_dir "$cl")/data/postgresql.conf"
	done
}

# psql_out CL USER APP SQL: output and errors of one statement (verbose).
# (open_document needs the document's study open in the session: psql_out
# opens it first, looked up as the superuser.)
psql_out() {
	local study=""
	if [[ $4 =~ open_document\(([0-9]+)\) ]]; then
		study=$(q "$1" postgres "SELECT study FROM trialvault.documents WHERE doc_id = ${BASH_REMATCH[1]}" 2>/dev/null || true)
	fi
	if [ -n "$study" ]; then
		printf '\\o /dev/null\nSELECT trialvault.open_study(%s);\n\\o\n%s;\n' "'$study'" "$4" |
			PGAPPNAME=$3 tv_psql "$1" -d postgres -U "$2" -At -v VERBOSITY=verbose 2>&1 || true
	else
		PGAPPNAME=$3 tv_psql "$1" -d postgres -U "$2" -At -v VERBOSITY=verbose -c "$4" 2>&1 || true
	fi
}

# --- 1. no key bytes anywhere -------------------------------------------------

check "1: the PostgreSQL package ships pg_stat_statements" \
	[ -f /usr/share/postgresql/15/extension/pg_stat_statements.control ]
tv_cluster_start k1 "shared_preload_libraries = 'trialvault,pg_stat_statements'" \
	"log_statement = all" "log_min_messages = debug1"
K1DIR=$(tv_dir k1)
KEY=$(tr -d ' \n' <"$K1DIR/master.key")
KEY_UP=${KEY^^}
like "$KEY" '^[0-9a-f]{64}$' "1: the cluster's master key is 64 lower-case hex digits"
q k1 postgres "CREATE EXTENSION trialvault CASCADE" >/dev/null 2>&1
q k1 postgres "CREATE EXTENSION pg_stat_statements"
tv_psql k1 -d postgres >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE ROLE alice LOGIN;
SELECT trialvault.create_study('KS1', 'Key study');
SELECT trialvault.require_signatures('KS1', false);
SELECT trialvault.add_site('KS1', 'A', 'Site A');
SELECT trialvault.grant_role('alice', 'KS1', 'A', 'site_staff');
SELECT trialvault.rotate_study_key('KS1');
SQL
doc=$(tv_psql k1 -d postgres -U alice -At -c \
	"SELECT trialvault.load_document('KS1', 'A', 'source', true, '<doc><visit>1</visit></doc>',
	                                 convert_to('$PLAIN', 'UTF8'))")
is "$(psql_out k1 alice k1 "SELECT convert_from(trialvault.open_document($doc), 'UTF8')")" "$PLAIN" \
	"1: the document loaded under key version 2 decrypts"
is "$(q k1 postgres "SELECT get_byte(content_enc, 10) FROM trialvault.documents WHERE doc_id = $doc")" 2 \
	"1: its ciphertext names key version 2"
is "$(q k1 postgres "SELECT count(*) || ':' || bool_and(length(wrapped) = 60) FROM trialvault.study_keys")" "2:true" \
	"1: two wrapped data keys, each 60 bytes (IV 12 + tag 16 + key 32)"
is "$(q k1 postgres "SELECT count(DISTINCT wrapped) FROM trialvault.study_keys")" 2 "1: the two wrapped keys differ"
q k1 postgres "CHECKPOINT"
# Every backend that used a key wipes it when it exits (0.5 registered the
# wipe in the postmaster only, whose children forget its exit callbacks).
wiped() { grep -qE "trialvault: wiped [1-9][0-9]* data key\(s\) and the master keys from process" "$(tv_dir k1)/server.log"; }
check "1: backends that used data keys wipe them at exit (DEBUG1 line in the server log)" \
	wait_until "the wipe message" 10 wiped
like "$(grep -c "trialvault: wiped" "$(tv_dir k1)/server.log")" '^[2-9]|^[1-9][0-9]' \
	"1: one such line per backend that used keys (loader, opener, ...)"

# The server log.
check "1: the server log has the statements (log_statement = all works)" \
	grep -q 'statement: SELECT trialvault.rotate_study_key' "$K1DIR/server.log"
check "1: the server log has debug1 lines" grep -q 'DEBUG:' "$K1DIR/server.log"
check "1: the server log names the key by its id only" \
	grep -q "trialvault: master key loaded (key id $(q k1 postgres "SELECT master_key_id FROM trialvault.key_status()"))" \
	"$K1DIR/server.log"
check "1: the master key is not in the server log (any case)" absent_in "$K1DIR/server.log" "$KEY"

# pg_stat_statements.
q k1 postgres "SELECT query FROM pg_stat_statements" >"$K1DIR/pgss.txt"
check "1: pg_stat_statements has the calls (open_document)" grep -q 'open_document' "$K1DIR/pgss.txt"
check "1: the master key is not in pg_stat_statements" absent_in "$K1DIR/pgss.txt" "$KEY"

# pg_dump, plain.
"$PGBIN/pg_dump" -h "$K1DIR" -p "$(tv_port k1)" -U postgres -Fp postgres >"$K1DIR/dump.sql"
wrapped1=$(q k1 postgres "SELECT encode(wrapped, 'hex') FROM trialvault.study_keys ORDER BY version LIMIT 1")
check "1: the dump has the wrapped keys (the search finds bytea data)" grep -qF "$wrapped1" "$K1DIR/dump.sql"
check "1: the master key is not in the dump" absent_in "$K1DIR/dump.sql" "$KEY"

# Every table of schema trialvault, as text.
: >"$K1DIR/tables.txt"
ntables=0
for t in $(q k1 postgres "SELECT c.relname FROM pg_class c
                          WHERE c.relnamespace = 'trialvault'::regnamespace AND c.relkind IN ('r', 'p')
                          ORDER BY 1"); do
	q k1 postgres "SELECT coalesce(string_agg(t::text, E'\n'), '') FROM trialvault.$t t" >>"$K1DIR/tables.txt"
	ntables=$((ntables + 1))
done
check "1: $ntables tables read, study_keys and documents among them" \
	grep -qF "$wrapped1" "$K1DIR/tables.txt"
check "1: the master key is in no table's text" absent_in "$K1DIR/tables.txt" "$KEY"
is "$(q k1 postgres "SELECT count(*) FROM trialvault.study_keys
                     WHERE position(lower('$KEY') in encode(wrapped, 'hex')) > 0
                        OR position(decode('$KEY', 'hex') in wrapped) > 0")" 0 \
	"1: no wrapped key equals or contains the master key"

# The data directory, WAL included: neither the hex nor the raw bytes.
check "1: the raw bytes of a wrapped key are found in the data directory (the search works)" \
	raw_in_dir "$wrapped1" "$K1DIR/data"
check "1: the master key's raw bytes are in no file of the data directory" \
	no_raw_in_dir "$KEY" "$K1DIR/data"
# shellcheck disable=SC2016 # expanded by the inner bash
check "1: the master key's hex is in no file of the data directory" \
	bash -c '! grep -rqaiF "$1" "$2"' _ "$KEY" "$K1DIR/data"
# shellcheck disable=SC2016
check "1: the upper-case hex is not either" \
	bash -c '! grep -rqaF "$1" "$2"' _ "$KEY_UP" "$K1DIR/data"
tv_cluster_stop k1

# --- 2. missing or malformed master key ----------------------------------------

K2DIR=$(tv_dir k2)
mkdir -p "$K2DIR"
chown "$TV_OS_USER" "$K2DIR"
D63=$(openssl rand -hex 32 | cut -c1-63)
D64=$(openssl rand -hex 32)
DNH=$(openssl rand -hex 32 | cut -c1-60)wxyz
cat >"$K2DIR/key63.sh" <<EOF
#!/bin/sh
echo $D63
EOF
cat >"$K2DIR/keyfail.sh" <<EOF
#!/bin/sh
echo $D64
exit 3
EOF
cat >"$K2DIR/keynonhex.sh" <<EOF
#!/bin/sh
echo $DNH
EOF
chmod 755 "$K2DIR"/key*.sh

# bad_key LABEL SCRIPT DIGITS PROBLEM-REGEX
bad_key() {
	local label=$1 script=$2 digits=$3 problem=$4 off out ks
	off=$(log_size k2)
	conf k2 "trialvault.master_key_command = '$K2DIR/$script'"
	tv_cluster_restart k2
	# shellcheck disable=SC2016
	check "2 $label: WARNING \"trialvault: no master key\" in the server log" \
		bash -c 'grep -q "WARNING: *trialvault: no master key: $1"' _ "$problem" < <(log_since k2 "$off")
	ks=$(psql_out k2 postgres k2 "SELECT master_key_loaded, master_key_id IS NULL, problem FROM trialvault.key_status()")
	like "$ks" "^f\|t\|$problem" "2 $label: key_status(): not loaded, no id, the problem"
	out=$(psql_out k2 postgres k2 "SELECT trialvault.create_study('BAD$RANDOM', 'No key')")
	like "$out" "ERROR: +55000: trialvault has no master key" "2 $label: create_study fails with 55000"
	like "$out" "HINT: +Set trialvault.master_key_command" "2 $label: the hint names trialvault.master_key_command"
	out="$out$ks"
	check "2 $label: the printed characters are in no message" lacks "$out" "${digits:0:16}"
	check "2 $label: nor in the server log" absent_in "$K2DIR/server.log" "$digits"
	check "2 $label: not even their first 16" absent_in "$K2DIR/server.log" "${digits:0:16}"
	tv_cluster_stop k2
}

tv_cluster_start k2
q k2 postgres "CREATE EXTENSION trialvault CASCADE" >/dev/null 2>&1
tv_cluster_stop k2
bad_key "(63 digits)" key63.sh "$D63" \
	"trialvault.master_key_command printed 63 characters, not 64 hexadecimal digits"
bad_key "(exits 3)" keyfail.sh "$D64" \
	"trialvault.master_key_command failed: child process exited with exit code 3"
bad_key "(not hex)" keynonhex.sh "$DNH" \
	"trialvault.master_key_command printed something other than 64 hexadecimal digits"

# --- 3. master key rotation -------------------------------------------------------

tv_cluster_start k3
K3DIR=$(tv_dir k3)
q k3 postgres "CREATE EXTENSION trialvault CASCADE" >/dev/null 2>&1
tv_psql k3 -d postgres >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE ROLE alice LOGIN;
SELECT trialvault.create_study('R1', 'Rotation one');
SELECT trialvault.require_signatures('R1', false);
SELECT trialvault.add_site('R1', 'A', 'Site A');
SELECT trialvault.grant_role('alice', 'R1', 'A', 'site_staff');
SELECT trialvault.create_study('R2', 'Rotation two');
SELECT trialvault.require_signatures('R2', false);
SELECT trialvault.add_site('R2', 'A', 'Site A');
SELECT trialvault.grant_role('alice', 'R2', 'A', 'site_staff');
SQL
load() {
	tv_psql k3 -d postgres -U alice -At -c \
		"SELECT trialvault.load_document('$1', 'A', 'source', true, '<doc><visit>1</visit></doc>',
		                                 convert_to('$PLAIN $2', 'UTF8'))"
}
opens() {
	[ "$(psql_out k3 alice "$3" "SELECT convert_from(trialvault.open_document($1), 'UTF8')")" = "$PLAIN $2" ]
}
d1=$(load R1 one)
q k3 postgres "SELECT trialvault.rotate_study_key('R1')" >/dev/null
d2=$(load R1 two)
d3=$(load R2 three)
ndocs="$d1,$d2,$d3"
enc_md5() {
	q k3 postgres "SELECT md5(string_agg(content_enc::text, ',' ORDER BY doc_id)) FROM trialvault.documents
	               WHERE doc_id IN ($ndocs)"
}
md5_before=$(enc_md5)
nkeys=$(q k3 postgres "SELECT count(*) FROM (SELECT DISTINCT study_id, version FROM trialvault.study_keys) k")
is "$nkeys" 3 "3: three (study, version) data keys under K1"
K1_ID=$(q k3 postgres "SELECT master_key_id FROM trialvault.key_status()")
check "3: documents open under K1" opens "$d1" one r_k1

tv_cluster_stop k3
new_key "$K3DIR/k2.key"
conf k3 "trialvault.master_key_command = '$PGBIN/trialvault-getkey $K3DIR/k2.key'" \
	"trialvault.previous_master_key_command = '$PGBIN/trialvault-getkey $K3DIR/master.key'"
tv_cluster_restart k3
IFS='|' read -r loaded K2_ID problem prev_loaded prev_id <<<"$(q k3 postgres "SELECT * FROM trialvault.key_status()")"
is "$loaded:$prev_loaded:$prev_id" "t:t:$K1_ID" "3: K2 loaded as master, K1 as previous"
check "3: K2's id ($K2_ID) differs from K1's ($K1_ID)" differ "$K2_ID" "$K1_ID"

out=$(psql_out k3 alice r_before "SELECT convert_from(trialvault.open_document($d1), 'UTF8')")
like "$out" "ERROR: +55000: document $d1 cannot be decrypted: no usable key" \
	"3: before rewrap, an old document refuses with 55000"
check "3: no plaintext" lacks "$out" Philomena
is "$(q k3 postgres "SELECT string_agg(granted || ':' || reason, ',') FROM trialvault.decryption_log
                     WHERE application_name = 'r_before'")" "false:key_unavailable" \
	"3: logged as key_unavailable"
out=$(psql_out k3 alice k3 "SELECT trialvault.load_document('R1', 'A', 'source', true, '<doc/>', '\\x01')")
like "$out" "ERROR: +55000: study \"R1\" has no usable data key" "3: before rewrap, loading a PHI document fails with 55000"
is "$(sqlstate_of k3 postgres "SET ROLE alice; SELECT trialvault.rewrap_data_keys()")" 42501 \
	"3: a non-superuser calling rewrap_data_keys gets 42501"
is "$(q k3 postgres "SELECT count(*) FROM trialvault.study_keys WHERE master_key_id = '$K2_ID'")" 0 \
	"3: and nothing was re-wrapped by that"

is "$(q k3 postgres "SELECT trialvault.rewrap_data_keys()")" "$nkeys" \
	"3: rewrap_data_keys() returns the number of (study, version) keys"
is "$(q k3 postgres "SELECT count(*) || ':' || count(DISTINCT (study_id, version)) || ':' || bool_and(length(wrapped) = 60)
                     FROM trialvault.study_keys WHERE master_key_id = '$K2_ID'")" "$nkeys:$nkeys:true" \
	"3: study_keys gained one 60-byte row per key under K2's id"
is "$(q k3 postgres "SELECT count(*) FROM trialvault.study_keys WHERE master_key_id = '$K1_ID'")" "$nkeys" \
	"3: the rows under K1 are still there (insert-only)"
is "$(q k3 postgres "SELECT count(*) FROM trialvault.study_keys a JOIN trialvault.study_keys b
                       USING (study_id, version)
                     WHERE a.master_key_id = '$K1_ID' AND b.master_key_id = '$K2_ID' AND a.wrapped = b.wrapped")" 0 \
	"3: no re-wrapped key is a copy of its K1 wrapping"
is "$(q k3 postgres "SELECT trialvault.rewrap_data_keys()")" 0 "3: a second rewrap_data_keys() finds nothing left to do"
check "3: after rewrap, old documents open: doc $d1 (R1, key v1)" opens "$d1" one r_after
check "3: after rewrap, doc $d2 (R1, key v2) opens" opens "$d2" two r_after
check "3: after rewrap, doc $d3 (R2, key v1) opens" opens "$d3" three r_after
d4=$(load R1 four)
check "3: a new document loads and opens" opens "$d4" four r_after
is "$(q k3 postgres "SELECT get_byte(content_enc, 10) FROM trialvault.documents WHERE doc_id = $d4")" 2 \
	"3: it uses R1's newest key version (2)"
is "$(enc_md5)" "$md5_before" "3: no document's content_enc changed"
verify_into k3 postgres trialvault.study_keys
is "$V_OK:$V_BAD_ROWS" "t:0" "3: trialvault.verify('trialvault.study_keys') is ok"
is "$(q k3 postgres "SELECT count(*) FROM trialvault.audit_events WHERE event = 'master_key_rewrap'")" 2 \
	"3: both re-wraps are in the audit trail"

tv_cluster_stop k3
conf k3 "trialvault.previous_master_key_command = ''"
tv_cluster_restart k3
is "$(q k3 postgres "SELECT master_key_id || ':' || previous_key_loaded FROM trialvault.key_status()")" "$K2_ID:false" \
	"3: restarted with K2 only"
check "3: without the previous key, doc $d1 (R1, key v1) still opens" opens "$d1" one r_k2only
check "3: without the previous key, doc $d2 (R1, key v2) still opens" opens "$d2" two r_k2only
check "3: without the previous key, doc $d3 (R2, key v1) still opens" opens "$d3" three r_k2only
check "3: without the previous key, doc $d4 (loaded under K2) opens" opens "$d4" four r_k2only
out=$(psql_out k3 postgres k3 "SELECT trialvault.rewrap_data_keys()")
like "$out" "ERROR: +55000: no previous master key is configured" "3: rewrap_data_keys() now fails with 55000"

# --- 4. a wrong master key ---------------------------------------------------------

tv_cluster_stop k3
new_key "$K3DIR/k3.key"
conf k3 "trialvault.master_key_command = '$PGBIN/trialvault-getkey $K3DIR/k3.key'"
tv_cluster_restart k3
K3_ID=$(q k3 postgres "SELECT master_key_id FROM trialvault.key_status() WHERE master_key_loaded AND NOT previous_key_loaded")
check "4: K3 loaded ($K3_ID), no previous key" differ "$K3_ID" "$K1_ID" "$K2_ID"
out=$(psql_out k3 alice r_wrong "SELECT convert_from(trialvault.open_document($d4), 'UTF8')")
like "$out" "ERROR: +55000: document $d4 cannot be decrypted: no usable key" \
	"4: open_document refuses with 55000"
check "4: no plaintext" lacks "$out" Philomena
is "$(q k3 postgres "SELECT string_agg(granted || ':' || reason || ':' || doc_id, ',') FROM trialvault.decryption_log
                     WHERE application_name = 'r_wrong'")" "false:key_unavailable:$d4" \
	"4: logged as key_unavailable"

key_nowhere() {
	! grep -qaiF "$1" "$2/server.log" && ! grep -rqaiF "$1" "$2/data" && ! raw_in_dir "$1" "$2/data"
}

# None of the three keys in k3's server log or data directory.
q k3 postgres "CHECKPOINT"
for kf in master.key k2.key k3.key; do
	k=$(tr -d ' \n' <"$K3DIR/$kf")
	check "3/4: key $kf is in neither the server log nor the data directory (hex or raw)" \
		key_nowhere "$k" "$K3DIR"
done

done_testing

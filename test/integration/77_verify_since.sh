#!/usr/bin/env bash
# 77_verify_since.sh: trialvault.verify(tbl, since => digest) rehashes only
# the rows added since a signed digest, finds them all, and says plainly
# that the older rows were not rehashed.
#
#   1. a digest records its floor; rows added since are checked, only them;
#      heads and head_digest are the whole chain's, as verify() gives them;
#   2. a row in flight when the digest was taken, committed after it, below
#      the digest's newest head: counted among the new rows and checked;
#   3. tampering: a new row changed is found; an old row changed is not
#      (not rehashed, as scope says) while verify() finds it; a digest head
#      removed, or rewritten consistently, is found;
#   4. bad input: NULLs, malformed and altered digests, another table's, a
#      version 1 digest (no floor; verify_digest still takes it), no tv_seq
#      index, a caller without SELECT, an unprotected table.
set -euo pipefail
source "$(dirname "$0")/../lib/cluster.sh"
source "$(dirname "$0")/lib/helpers.sh"

CL=c77
tv_cluster_start $CL "trialvault.audit_logins = off"
W=$(tv_dir $CL)/since
mkdir -p "$W"
tv_psql $CL -d postgres >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION trialvault CASCADE;
CREATE TABLE ledger (body text);
SELECT trialvault.protect('ledger');
INSERT INTO ledger SELECT 'row ' || i FROM generate_series(1, 50) i;
CREATE TABLE other (body text);
SELECT trialvault.protect('other');
INSERT INTO other VALUES ('x');
CREATE TABLE plain (body text);
CREATE ROLE nobody LOGIN;
SQL

digest() { q $CL postgres "SELECT trialvault.signed_digest('$1')" >"$W/$2"; }
# since TABLE FILE [columns]: verify(TABLE, since => the digest in FILE)
since() {
	tv_psql $CL -d postgres -At -F '|' -v d="$(cat "$W/$2")" \
		<<<"SELECT ${3:-ok, rows_checked, bad_rows, rows_not_rehashed} FROM trialvault.verify('$1', since => :'d')"
}
since_err() {
	tv_psql $CL -d postgres -At -v VERBOSITY=verbose -v d="$(cat "$W/$2")" ${3:+-U $3} \
		<<<"SELECT ok FROM trialvault.verify('$1', since => :'d')" 2>&1 || true
}
full() { q $CL postgres "SELECT ${2:-ok, rows_checked} FROM trialvault.verify('$1')"; }
guards() {
	q $CL postgres "UPDATE pg_trigger SET tgenabled = '$2'
	                 WHERE tgrelid = '$1'::regclass AND tgfoid = 'trialvault.guard()'::regprocedure" >/dev/null
}

# --- 1. rows added since ----------------------------------------------------------
digest ledger d1
is "$(head -n 1 "$W/d1")" trialvault-signed-digest-v2 "1: signed digests are version 2"
is "$(sed -n 's/^floor: //p' "$W/d1")" 51 "1: ... and record the floor: nothing in flight, the next tv_seq"
is "$(since ledger d1)" "t|0|0|50" "1: no row added: nothing to rehash, 50 rows not rehashed"
q $CL postgres "INSERT INTO ledger SELECT 'more ' || i FROM generate_series(1, 10) i" >/dev/null
is "$(since ledger d1)" "t|10|0|50" "1: 10 rows added: those 10 checked"
is "$(since ledger d1 "heads, encode(head_digest, 'hex')")" "$(full ledger "heads, encode(head_digest, 'hex')")" \
	"1: ... heads and head_digest are the whole chain's, as verify() reports them"
like "$(since ledger d1 scope)" \
	"^the 10 rows added since the digest taken at 20[0-9-]+T[0-9:.]+Z were rehashed and their links checked; the 50 rows it covered were not rehashed \(trialvault.verify\('ledger'\) rehashes every row\)$" \
	"1: ... and scope says plainly what was and was not rehashed"
like "$(tv_psql $CL -d postgres -At -v d="$(cat "$W/d1")" 2>&1 <<'SQL'
SET client_min_messages = debug1;
SELECT ok FROM trialvault.verify('ledger', since => :'d');
SQL
)" "DEBUG:  trialvault verify of \"ledger\": 10 rows, .*predecessors below the floor read through the index" \
	"1: ... reading 10 rows, not the table (verify's DEBUG1 summary)"

# --- 2. a row in flight when the digest was taken -------------------------------------
sess_open $CL postgres a -At
sess_run a "BEGIN; INSERT INTO ledger VALUES ('in flight');"
q $CL postgres "INSERT INTO ledger VALUES ('after 1'); INSERT INTO ledger VALUES ('after 2');" >/dev/null
digest ledger d2
INFLIGHT=$(q $CL postgres "SELECT max(tv_seq) FROM ledger")   # 'after 2', committed
FLOOR2=$(sed -n 's/^floor: //p' "$W/d2")
is "$FLOOR2" "$((INFLIGHT - 2))" "2: the floor is the tv_seq of the row in flight, below the digest's newest head"
sess_run a "COMMIT;"
sess_close a
q $CL postgres "INSERT INTO ledger VALUES ('later')" >/dev/null
is "$(q $CL postgres "SELECT tv_seq FROM ledger WHERE body = 'in flight'")" "$FLOOR2" "2: ... the row committed after the digest has that tv_seq"
is "$(since ledger d2)" "t|2|0|62" "2: the row committed late and the one after it are the 2 rows added since"
is "$(since ledger d2 "heads, encode(head_digest, 'hex')")" "$(full ledger "heads, encode(head_digest, 'hex')")" \
	"2: ... heads and head_digest agree with verify()"
is "$(since ledger d1)" "t|14|0|50" "2: since the first digest: 14 rows"
q $CL postgres "SET client_min_messages = warning; CREATE TABLE forks (body text); SELECT trialvault.protect('forks')" >/dev/null
sess_open $CL postgres a -At
sess_open $CL postgres b -At
for i in 1 2 3; do
	sess_run a "BEGIN; INSERT INTO forks VALUES ('a $i');"
	sess_run b "BEGIN; INSERT INTO forks VALUES ('b $i');"
	sess_run a "COMMIT;"
	[ $i = 2 ] && digest forks f2
	sess_run b "COMMIT;"
done
sess_close a
sess_close b
is "$(since forks f2)" "t|3|0|3" "2: forks, a digest taken between two commits: the 3 rows after it"
is "$(since forks f2 "heads, encode(head_digest, 'hex')")" "$(full forks "heads, encode(head_digest, 'hex')")" \
	"2: ... heads and head_digest agree with verify()"

# --- 3. tampering ---------------------------------------------------------------------
guards ledger D
q $CL postgres "UPDATE ledger SET body = 'changed' WHERE body = 'more 5'" >/dev/null
guards ledger A
MORE5=$(q $CL postgres "SELECT tv_seq FROM ledger WHERE body = 'changed'")
is "$(since ledger d1 "ok, bad_rows, first_bad")" \
	"f|1|row tv_seq=$MORE5 ctid=$(q $CL postgres "SELECT ctid FROM ledger WHERE body = 'changed'"): contents do not match tv_hash (the row was changed after it was inserted)" \
	"3: a row added since, changed: found"
is "$(since ledger d2 "ok, bad_rows")" "t|0" "3: ... not by a check since a later digest, which covered it"
guards ledger D
q $CL postgres "UPDATE ledger SET body = 'more 5' WHERE body = 'changed'; UPDATE ledger SET body = 'changed' WHERE body = 'row 7'" >/dev/null
guards ledger A
is "$(since ledger d1 "ok, bad_rows")" "t|0" "3: a row the digest covered, changed: not found, as it was not rehashed"
is "$(full ledger "ok, bad_rows")" "f|1" "3: ... a full verify() finds it"
guards ledger D
q $CL postgres "UPDATE ledger SET body = 'row 7' WHERE body = 'changed'" >/dev/null
HEAD1=$(sed -n 's/^head: \([0-9]*\) .*/\1/p' "$W/d1")
# The digest's head rewritten consistently (as 41_signed_digest.sh does).
q $CL postgres "
	UPDATE ledger SET body = 'forged',
		tv_hash = digest('TVHASH1'::bytea || int8send(tv_seq) || tv_prev_hash ||
			digest('TVROW2'::bytea || int4send(4) || 'body'::bytea || int4send(25) || 'r'::bytea ||
				int4send(octet_length('forged')) || convert_to('forged', 'UTF8'), 'sha256'),
			'sha256')
	WHERE tv_seq = $HEAD1" >/dev/null
guards ledger A
like "$(since ledger d1 "ok, first_bad")" \
	"^f\|row tv_seq=$HEAD1 ctid=\([0-9]+,[0-9]+\): it differs from what the digest covered \(it was rewritten after the digest was taken\)$" \
	"3: the digest's head rewritten consistently: found"
guards ledger D
q $CL postgres "DELETE FROM ledger WHERE tv_seq = $HEAD1" >/dev/null
guards ledger A
is "$(since ledger d1 "ok, first_bad")" \
	"f|row tv_seq=$HEAD1: a head when the digest was taken, it is missing (removed?)" \
	"3: the digest's head removed: found"
like "$(since ledger d1 "bad_rows")" "^2$" "3: ... and the row after it has lost its predecessor (2 bad rows)"

# --- 4. bad input -----------------------------------------------------------------------
like "$(tv_psql $CL -d postgres -v VERBOSITY=verbose -c "SELECT * FROM trialvault.verify('other', since => NULL)" 2>&1 || true)" \
	"ERROR: +22004: arguments of trialvault.verify must not be NULL" "4: NULL digest: 22004"
like "$(tv_psql $CL -d postgres -v VERBOSITY=verbose -c "SELECT * FROM trialvault.verify(NULL, since => 'x')" 2>&1 || true)" \
	"ERROR: +22004" "4: NULL table: 22004"
like "$(tv_psql $CL -d postgres -v VERBOSITY=verbose -c "SELECT * FROM trialvault.verify('other', since => repeat('x', 17000000))" 2>&1 || true)" \
	"ERROR: +22023: malformed signed digest: it is longer than 16 MB" "4: an oversized digest: 22023"
digest other o1
for bad in "garbage" "" "$(head -n 8 "$W/o1")" "$(sed 's/^floor: .*/floor: -1/' "$W/o1")" \
	"$(grep -v '^floor: ' "$W/o1")" "$(sed 's/^floor: \(.*\)/floor: \1x/' "$W/o1")"; do
	printf '%s' "$bad" >"$W/bad"
	like "$(since_err other bad)" "ERROR: +22023: malformed signed digest" "4: a malformed digest (${bad:0:24}...): 22023"
done
sed 's/^rows: 1$/rows: 0/' "$W/o1" >"$W/altered"
like "$(since_err other altered)" \
	"ERROR: +22023: the digest cannot be relied on: the digest's signature does not verify: it was altered after it was signed" \
	"4: an altered digest: 22023"
like "$(since_err ledger o1)" "ERROR: +22023: the digest cannot be relied on: the digest is of table public.other, not public.ledger" \
	"4: another table's digest: 22023"
# A version 1 digest, signed with the server's key as 0.10 signed them.
{
	sed -n '1,/^server-key-sha256: /p' "$W/o1" | sed '1s/-v2$/-v1/; /^floor: /d' >"$W/v1.signed"
	cat "$W/v1.signed"
	echo "signature: $(openssl dgst -sha256 -sign "$(tv_dir $CL)/server_signing.pem" "$W/v1.signed" | base64 -w0)"
	sed -n '/BEGIN PUBLIC KEY/,/END PUBLIC KEY/p' "$W/o1"
} >"$W/v1"
like "$(since_err other v1)" \
	"ERROR: +22023: the digest records no floor, so the rows added since it cannot be told apart" \
	"4: a version 1 digest (no floor): 22023"
is "$(tv_psql $CL -d postgres -At -F '|' -v d="$(cat "$W/v1")" <<<"SELECT extends FROM trialvault.verify_digest('other', :'d')")" t \
	"4: ... which verify_digest still takes"
like "$(since_err other o1 nobody)" "ERROR: +42501: permission denied for table other" "4: a caller without SELECT: 42501"
like "$(since_err plain o1)" "ERROR: +55000: table \"plain\" is not protected by trialvault" "4: an unprotected table: 55000"
q $CL postgres "DROP INDEX other_tv_seq_idx" >/dev/null
like "$(since_err other o1)" \
	"ERROR: +55000: table \"other\" has no ascending B-tree index on tv_seq, which verify\(since => \.\.\.\) reads the new rows through" \
	"4: without the tv_seq index: 55000"
is "$(full other ok)" t "4: ... verify() needs none"
q $CL postgres "CREATE UNIQUE INDEX ON other (tv_seq)" >/dev/null
is "$(since other o1)" "t|0|0|1" "4: the index recreated: checked again"

done_testing

#!/usr/bin/env bash
# 41_signed_digest.sh: signed digests catch what verify() alone cannot.
#
#   1. signed_digest() of a table: openssl checks its signature with the
#      public key it carries, whose fingerprint it names; verify_digest()
#      says the table extends it, now and after more rows (from two
#      concurrent writers, so the chain has several heads);
#   2. a superuser turns the guards off in the catalog and rewrites the
#      newest row consistently (hash recomputed, the documented limit of
#      verify()): verify() says ok, verify_digest() names the row; likewise
#      the newest row removed;
#   3. the digest altered (a head, the row count, the table), a digest of
#      another table, one signed by a key this repository never used:
#      extends = false, saying why; garbage, truncated and empty digests,
#      NULLs, a table whose name holds a line break: errors with their
#      SQLSTATE;
#   4. no digest is signed for a table that does not verify, nor without a
#      server key, nor for a caller who may not read the table.
set -euo pipefail
source "$(dirname "$0")/../lib/cluster.sh"
source "$(dirname "$0")/lib/helpers.sh"

W=$TV_TMP/digest
mkdir -p "$W"
tv_cluster_start d1
tv_psql d1 -d postgres >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION trialvault CASCADE;
CREATE TABLE ledger (body text);
SELECT trialvault.protect('ledger');
INSERT INTO ledger SELECT 'row ' || i FROM generate_series(1, 20) i;
CREATE TABLE other (body text);
SELECT trialvault.protect('other');
INSERT INTO other VALUES ('x');
CREATE ROLE nobody LOGIN;
SQL

digest_of() { q d1 postgres "SELECT trialvault.signed_digest('$1')"; }
extends() { printf '%s' "$2" >"$W/arg"; tv_psql d1 -d postgres -At -F ' | ' -v d="$(cat "$W/arg")" <<<"SELECT extends, detail FROM trialvault.verify_digest('$1', :'d')"; }

# --- 1. a digest, checked offline and online ----------------------------------------
digest_of ledger >"$W/d1.txt"
like "$(head -n 1 "$W/d1.txt")" '^trialvault-signed-digest-v2$' "1: a version 2 signed digest"
like "$(cat "$W/d1.txt")" 'rows: 20' "1: it covers the 20 rows"
sed -n '1,/^server-key-sha256: /p' "$W/d1.txt" >"$W/signed"
sed -n 's/^signature: //p' "$W/d1.txt" | base64 -d >"$W/sig"
sed -n '/BEGIN PUBLIC KEY/,/END PUBLIC KEY/p' "$W/d1.txt" >"$W/pub"
is "$(openssl pkey -pubin -in "$W/pub" -outform DER | sha256sum | cut -c1-64)" \
	"$(sed -n 's/^server-key-sha256: //p' "$W/d1.txt")" "1: the public key it carries has the fingerprint it names"
is "$(openssl pkey -in "$(tv_dir d1)/server_signing.pem" -pubout -outform DER | sha256sum | cut -c1-64)" \
	"$(sed -n 's/^server-key-sha256: //p' "$W/d1.txt")" "1: ... the server's key"
like "$(openssl dgst -sha256 -verify "$W/pub" -signature "$W/sig" "$W/signed")" "Verified OK" \
	"1: openssl verifies its signature"
is "$(grep -c '^head: ' "$W/d1.txt")" 1 "1: one head"
is "$(extends ledger "$(cat "$W/d1.txt")")" \
	"t | every one of the 20 rows the digest covered is present and unchanged; 0 rows were added since" \
	"1: verify_digest: the table extends the digest"
is "$(q d1 postgres "SELECT count(*) FROM trialvault.audit_events WHERE event = 'digest_signed'")" 1 \
	"1: a signed digest is an event of the audit trail"
# More rows, from two writers at once.
sess_open d1 postgres w1 -At
sess_open d1 postgres w2 -At
sess_run w1 "BEGIN; INSERT INTO ledger VALUES ('w1 a');"
sess_run w2 "BEGIN; INSERT INTO ledger VALUES ('w2 a');"
sess_run w1 "COMMIT;"
sess_run w2 "COMMIT;"
sess_close w1 || true
sess_close w2 || true
digest_of ledger >"$W/d2.txt"
like "$(grep -c '^head: ' "$W/d2.txt")" '^[12]$' "1: after concurrent writers, the digest lists the chain's heads"
q d1 postgres "INSERT INTO ledger VALUES ('later 1'), ('later 2')" >/dev/null
is "$(extends ledger "$(cat "$W/d1.txt")")" \
	"t | every one of the 20 rows the digest covered is present and unchanged; 4 rows were added since" \
	"1: after more rows the table still extends the first digest"
is "$(extends ledger "$(cat "$W/d2.txt")" | cut -c1-1)" t "1: ... and the second"

# --- 2. what verify() cannot see --------------------------------------------------------
digest_of ledger >"$W/d3.txt"
guards_off() {
	q d1 postgres "WITH u AS (UPDATE pg_trigger SET tgenabled = '$2'
	                WHERE tgrelid = '$1'::regclass AND tgfoid = 'trialvault.guard()'::regprocedure
	                RETURNING 1) SELECT count(*) FROM u" >/dev/null
}
guards_off ledger D
# canon.c's encoding of a row with one text column, and chain.c's row hash (as 40_tamper.sh)
q d1 postgres "
	UPDATE ledger SET body = 'forged',
		tv_hash = digest('TVHASH1'::bytea || int8send(tv_seq) || tv_prev_hash ||
			digest('TVROW2'::bytea || int4send(4) || 'body'::bytea || int4send(25) || 'r'::bytea ||
				int4send(octet_length('forged')) || convert_to('forged', 'UTF8'), 'sha256'),
			'sha256')
	WHERE body = 'later 2'" >/dev/null
guards_off ledger A
newest=$(q d1 postgres "SELECT tv_seq FROM ledger WHERE body = 'forged'")
is "$(q d1 postgres "SELECT ok || ':' || guard FROM trialvault.verify('ledger')")" "true:intact" \
	"2: the newest row rewritten consistently: verify() alone says ok (the documented limit)"
is "$(extends ledger "$(cat "$W/d3.txt")")" \
	"f | row tv_seq=$newest differs from what the digest covered (it was rewritten after the digest was taken)" \
	"2: verify_digest() with a digest taken before names the rewritten row"
is "$(extends ledger "$(cat "$W/d1.txt")" | cut -c1-1)" t "2: (an older digest, which did not cover that row, is still extended)"
digest_of ledger >"$W/d4.txt"
guards_off ledger D
q d1 postgres "DELETE FROM ledger WHERE body = 'forged'" >/dev/null
guards_off ledger A
is "$(q d1 postgres "SELECT ok FROM trialvault.verify('ledger')")" t "2: the newest row removed: verify() alone says ok"
is "$(extends ledger "$(cat "$W/d4.txt")")" \
	"f | row tv_seq=$newest, a head when the digest was taken, is missing" "2: verify_digest() names the missing row"

# --- 3. altered and foreign digests, bad input ---------------------------------------------
sed 's/^rows: 20$/rows: 19/' "$W/d1.txt" >"$W/fewer.txt"
is "$(extends ledger "$(cat "$W/fewer.txt")")" \
	"f | the digest's signature does not verify: it was altered after it was signed" "3: the row count altered: refused"
awk '/^head: / { $3 = "00" substr($3, 3) } { print }' "$W/d1.txt" >"$W/head.txt"
like "$(extends ledger "$(cat "$W/head.txt")")" "^f \\| the digest's signature does not verify: it was altered" \
	"3: a head's hash altered: refused"
is "$(extends other "$(cat "$W/d1.txt")")" "f | the digest is of table public.ledger, not public.other" \
	"3: a digest of another table: refused"
tv_cluster_start d2
q d2 postgres "SET client_min_messages = warning; CREATE EXTENSION trialvault CASCADE; CREATE TABLE ledger (body text);
               SELECT trialvault.protect('ledger'); INSERT INTO ledger VALUES ('elsewhere')" >/dev/null
q d2 postgres "SELECT trialvault.signed_digest('ledger')" >"$W/foreign.txt"
tv_cluster_stop d2
like "$(extends ledger "$(cat "$W/foreign.txt")")" \
	"^f \\| the digest is signed by key [0-9a-f]{64}, which is not one of this repository's server keys$" \
	"3: a digest signed by another server's key: refused"
for bad in "garbage" "" "$(head -n 3 "$W/d1.txt")" "$(sed 's/^heads: 1$/heads: x/' "$W/d1.txt")" \
	"$(grep -v '^signature: ' "$W/d1.txt")"; do
	printf '%s' "$bad" >"$W/arg"
	like "$(tv_psql d1 -d postgres -v VERBOSITY=verbose -v d="$(cat "$W/arg")" <<<"SELECT * FROM trialvault.verify_digest('ledger', :'d')" 2>&1 || true)" \
		"ERROR: +22023: malformed signed digest" "3: a malformed digest (${bad:0:20}...): 22023"
done
like "$(tv_psql d1 -d postgres -v VERBOSITY=verbose -c "SELECT * FROM trialvault.verify_digest('ledger', NULL)" 2>&1 || true)" \
	"ERROR: +22004" "3: NULL: 22004"
like "$(tv_psql d1 -d postgres -v VERBOSITY=verbose -c "SELECT trialvault.signed_digest(NULL)" 2>&1 || true)" \
	"ERROR: +22004" "3: signed_digest(NULL): 22004"
# A table whose name holds a line break could make its digest say more than
# it signs for: refused.
q d1 postgres "SET client_min_messages = warning; CREATE TABLE \"odd
rows: 0\" (body text); SELECT trialvault.protect('\"odd
rows: 0\"')" >/dev/null
like "$(tv_psql d1 -d postgres -v VERBOSITY=verbose -c "SELECT trialvault.signed_digest(oid) FROM pg_class WHERE relname LIKE 'odd%'" 2>&1 || true)" \
	"ERROR: +42602: no digest is signed for a table or database whose name holds a control character" \
	"3: a table whose name holds a line break: no digest (42602)"

# --- 4. refusals ------------------------------------------------------------------------------
guards_off ledger D
q d1 postgres "UPDATE ledger SET body = 'changed' WHERE body = 'row 3'" >/dev/null
guards_off ledger A
like "$(tv_psql d1 -d postgres -v VERBOSITY=verbose -c "SELECT trialvault.signed_digest('ledger')" 2>&1 || true)" \
	"ERROR: +XX001: table public.ledger does not verify, so no digest of it is signed" \
	"4: no digest is signed for a table that does not verify"
like "$(extends ledger "$(cat "$W/d1.txt")")" "^f \\| the table does not verify now: row tv_seq=" \
	"4: and verify_digest says the table does not verify"
like "$(tv_psql d1 -d postgres -U nobody -v VERBOSITY=verbose -c "SELECT trialvault.signed_digest('other')" 2>&1 || true)" \
	"ERROR: +42501: permission denied for table other" "4: a caller who may not read the table: 42501"
like "$(printf '%s' "$(cat "$W/d1.txt")" >"$W/arg"; tv_psql d1 -d postgres -U nobody -v VERBOSITY=verbose -v d="$(cat "$W/arg")" <<<"SELECT * FROM trialvault.verify_digest('other', :'d')" 2>&1 || true)" \
	"ERROR: +42501: permission denied for table other" \
	"4: verify_digest for a caller who may not read the table: 42501, whatever the digest says"
like "$(tv_psql d1 -d postgres -v VERBOSITY=verbose -c "SELECT * FROM trialvault.verify_digest('ledger', repeat('x', 17000000))" 2>&1 || true)" \
	"ERROR: +22023: malformed signed digest: it is longer than 16 MB" "4: an oversized digest: 22023"
echo "trialvault.signing_key_command = ''" >>"$(tv_dir d1)/data/postgresql.conf"
tv_cluster_stop d1
tv_cluster_restart d1
like "$(tv_psql d1 -d postgres -v VERBOSITY=verbose -c "SELECT trialvault.signed_digest('other')" 2>&1 || true)" \
	"ERROR: +55000: this server has no signing key" "4: without a server key: 55000"
is "$(extends other "$(cat "$W/d1.txt")" | cut -c1-1)" f "4: verify_digest needs no private key (it still answers)"
tv_cluster_stop d1

done_testing

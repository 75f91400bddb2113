#!/usr/bin/env bash
# 99_signatures.sh: certified loads and later signatures, signed with openssl.
#
#   1. a certified load for each kind of key: ECDSA P-256 and P-384 and RSA
#      (PKCS#1 v1.5) with `openssl dgst -sha256 -sign`, RSA-PSS with
#      -sigopt rsa_padding_mode:pss, Ed25519 with `openssl pkeyutl -sign
#      -rawin`: accepted, the statement rebuilt from what is kept is the
#      one signed, and the
#      server's countersignature verifies with `openssl dgst -verify` against
#      the public key in trialvault.server_keys, over the documented bytes;
#   2. refused, each with its SQLSTATE, nothing stored, the attempt on
#      record: garbage, truncated and empty signatures, a signature by
#      another member's key, signatures of another algorithm (RSA, Ed25519)
#      for an ECDSA key, one over other bytes, a stale and a future
#      time, a replayed nonce, an unsigned load into a study that requires
#      signatures, part of the signature arguments, an unknown meaning, a
#      revoked key;
#   3. studies: new ones require signatures, require_signatures(false) lets
#      unsigned loads in, a plain member may not change it;
#   4. a later signature (review) by the investigator with
#      statement_for_document() and sign_document(): the countersignature it
#      returns verifies with openssl; refused for a member who may not open
#      the document, and without the study open; a replayed nonce refused;
#   5. two sessions load with the same nonce at once: one is accepted, the
#      other refused as a replay (TV003);
#   6. a new server key (restart): an event, and countersignatures of the
#      old key still verify with the old public key;
#   7. pg_dump and pg_restore (restore mode): every certification table
#      verifies with the source's head digest, the signatures byte for byte.
set -euo pipefail
source "$(dirname "$0")/../lib/cluster.sh"
source "$(dirname "$0")/lib/helpers.sh"

W=$TV_TMP/sig
mkdir -p "$W"
chmod 755 "$W"

tv_cluster_start s1
S1DIR=$(tv_dir s1)
tv_psql s1 -d postgres >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION trialvault CASCADE;
CREATE ROLE ec256 LOGIN; CREATE ROLE ec384 LOGIN; CREATE ROLE rsa LOGIN; CREATE ROLE rsapss LOGIN;
CREATE ROLE ed LOGIN; CREATE ROLE inv LOGIN; CREATE ROLE other LOGIN; CREATE ROLE nokey LOGIN;
SELECT trialvault.create_study('C', 'Certified study');
SELECT trialvault.add_site('C', 'A', 'Site A');
SELECT trialvault.add_site('C', 'B', 'Site B');
SELECT trialvault.grant_role(r, 'C', 'A', 'site_staff')
	FROM unnest(ARRAY['ec256', 'ec384', 'rsa', 'rsapss', 'ed', 'nokey']) r;
SELECT trialvault.grant_role('inv', 'C', 'A', 'investigator');
SELECT trialvault.grant_role('other', 'C', 'B', 'site_staff');
SQL

newkey() {
	case $2 in
	p256) openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$W/$1.pem" ;;
	p384) openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out "$W/$1.pem" ;;
	rsa) openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$W/$1.pem" 2>/dev/null ;;
	ed) openssl genpkey -algorithm ED25519 -out "$W/$1.pem" ;;
	esac
	openssl pkey -in "$W/$1.pem" -pubout -out "$W/$1.pub"
	echo "SELECT trialvault.register_signing_key(:'pub')" |
		tv_psql s1 -d postgres -U "$1" -At -v pub="$(cat "$W/$1.pub")" >/dev/null
}
newkey ec256 p256; newkey ec384 p384; newkey rsa rsa; newkey rsapss rsa; newkey ed ed
newkey inv p256; newkey other p256

# sign WHO IN OUT: WHO's signature of file IN, as their kind of key wants it.
sign() {
	case $1 in
	ed*) openssl pkeyutl -sign -rawin -inkey "$W/$1.pem" -in "$2" -out "$3" ;;
	rsapss) openssl dgst -sha256 -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:32 \
		-sign "$W/$1.pem" -out "$3" "$2" ;;
	*) openssl dgst -sha256 -sign "$W/$1.pem" -out "$3" "$2" ;;
	esac
}
hex() { xxd -p "$1" | tr -d '\n'; }
utc_now() { date -u +%Y-%m-%dT%H:%M:%S.%6NZ; }

printf 'PATIENT Jane Roe, scanned consent form, page 1\n' >"$W/doc.bin"
DOC_HEX=$(hex "$W/doc.bin")
META='<consent><page>1</page></consent>'

# statement WHO TS NONCE [META]: the statement bytes into $W/stmt.
statement() {
	tv_psql s1 -d postgres -U "$1" -At -c \
		"SELECT encode(trialvault.certification_statement('C', 'A', 'source', decode('$DOC_HEX', 'hex'),
		        '${4:-$META}', 'certified_copy', '$2', decode('$3', 'hex')), 'base64')" |
		base64 -d >"$W/stmt"
}
# load WHO TS NONCE SIGFILE [META]: load_document as WHO; prints the doc id or the error.
load() {
	tv_psql s1 -d postgres -U "$1" -At -v VERBOSITY=verbose -c \
		"SELECT trialvault.load_document('C', 'A', 'source', true, '${5:-$META}', decode('$DOC_HEX', 'hex'),
		        signed_at => '$2', nonce => decode('$3', 'hex'), signature => decode('$(hex "$4")', 'hex'))" 2>&1 || true
}
# countersig_ok SIGNATURE_ID: the server's countersignature verifies with openssl
# over the documented bytes, with the server key kept in server_keys.
countersig_ok() {
	local row
	row=$(q s1 postgres "SELECT encode(sha256(trialvault._signature_statement(g.doc_id, g.signature_id)), 'hex') || ' ' || encode(sha256(g.signature), 'hex') || ' ' ||
	        to_char(g.countersigned_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') || ' ' || g.server_key
	      FROM trialvault.signatures g WHERE g.signature_id = $1")
	read -r sh gh at fp <<<"$row"
	printf 'trialvault-countersignature-v1\nstatement-sha256: %s\nsignature-sha256: %s\ncountersigned-at: %s\nserver-key-sha256: %s\n' \
		"$sh" "$gh" "$at" "$fp" >"$W/cs.txt"
	q s1 postgres "SELECT public_key FROM trialvault.server_keys WHERE fingerprint = '$fp'" >"$W/server.pub"
	q s1 postgres "SELECT encode(countersignature, 'base64') FROM trialvault.signatures WHERE signature_id = $1" |
		base64 -d >"$W/cs.sig"
	[ "$(openssl pkey -pubin -in "$W/server.pub" -outform DER | sha256sum | cut -c1-64)" = "$fp" ] &&
		openssl dgst -sha256 -verify "$W/server.pub" -signature "$W/cs.sig" "$W/cs.txt" >/dev/null
}
# refused WHO EXPECTED-SQLSTATE DESC TS NONCE SIGFILE [META]
ndocs() { q s1 postgres "SELECT count(*) || '/' || (SELECT count(*) FROM trialvault.signatures) FROM trialvault.documents"; }
nrefused() { q s1 postgres "SELECT count(*) FROM trialvault.audit_events WHERE event = 'signature_refused'"; }
refused() {
	local who=$1 code=$2 desc=$3 before refusals out
	shift 3
	before=$(ndocs)
	refusals=$(nrefused)
	out=$(load "$who" "$@")
	like "$out" "ERROR: +$code:" "2: $desc: refused with $code"
	is "$(ndocs)" "$before" "2: $desc: nothing stored"
	is "$(nrefused)" "$((refusals + 1))" "2: $desc: the attempt is on record"
}

# --- 1. one certified load per kind of key --------------------------------------

for who in ec256 ec384 rsa rsapss ed; do
	ts=$(utc_now)
	nonce=$(openssl rand -hex 16)
	statement "$who" "$ts" "$nonce"
	sign "$who" "$W/stmt" "$W/$who.sig"
	out=$(load "$who" "$ts" "$nonce" "$W/$who.sig")
	like "$out" '^[0-9]+$' "1: $who: a certified load is accepted"
	is "$(q s1 postgres "SELECT encode(sha256(trialvault._signature_statement(doc_id, signature_id)), 'hex') = '$(sha256sum <"$W/stmt" | cut -c1-64)' AND
	                            encode(signature, 'hex') = '$(hex "$W/$who.sig")' AND meaning = 'certified_copy'
	                     FROM trialvault.signatures WHERE doc_id = ${out:-0}")" t \
		"1: $who: the statement rebuilt from what is kept is the one signed, and the signature is kept as made"
	sid=$(q s1 postgres "SELECT signature_id FROM trialvault.signatures WHERE doc_id = ${out:-0}")
	check "1: $who: the server's countersignature verifies with openssl" countersig_ok "${sid:-0}"
done
FIRST_SERVER_FP=$(q s1 postgres "SELECT fingerprint FROM trialvault.server_keys")
is "$(q s1 postgres "SELECT count(*) || ' ' || string_agg(DISTINCT server_key, '') FROM trialvault.signatures")" \
	"5 $FIRST_SERVER_FP" "1: five signatures, countersigned by the one server key"
is "$(q s1 postgres "SELECT count(*) FROM trialvault.audit_events WHERE event = 'server_key_new'")" 1 \
	"1: the server key's first countersignature is an event"
is "$(q s1 postgres "SELECT string_agg(ok::text, ' ') FROM (SELECT (trialvault.verify(t)).ok FROM unnest(ARRAY['trialvault.signatures', 'trialvault.server_keys', 'trialvault.documents']::regclass[]) t) v")" \
	"true true true" "1: signatures, server keys and documents verify"

# --- 2. refusals -------------------------------------------------------------------

ts=$(utc_now); nonce=$(openssl rand -hex 16)
statement ec256 "$ts" "$nonce"
sign ec256 "$W/stmt" "$W/good.sig"
head -c 71 /dev/urandom >"$W/garbage.sig"
head -c 20 "$W/good.sig" >"$W/truncated.sig"
: >"$W/empty.sig"
sign other "$W/stmt" "$W/other.sig"
refused ec256 TV001 "a garbage signature" "$ts" "$nonce" "$W/garbage.sig"
refused ec256 TV001 "a truncated signature" "$ts" "$nonce" "$W/truncated.sig"
refused ec256 TV001 "an empty signature" "$ts" "$nonce" "$W/empty.sig"
refused ec256 TV001 "a signature by another member's key" "$ts" "$nonce" "$W/other.sig"
refused ec256 TV001 "a signature of other metadata" "$ts" "$nonce" "$W/good.sig" '<consent><page>2</page></consent>'
refused inv TV001 "another member of the site presenting a good signature as theirs" "$ts" "$nonce" "$W/good.sig"
sign rsa "$W/stmt" "$W/rsa_over_ec.sig"
refused ec256 TV001 "an RSA signature of the statement for an ECDSA key" "$ts" "$nonce" "$W/rsa_over_ec.sig"
sign ed "$W/stmt" "$W/ed_over_ec.sig"
refused ec256 TV001 "an Ed25519 signature of the statement for an ECDSA key" "$ts" "$nonce" "$W/ed_over_ec.sig"
old=$(date -u -d '-10 min' +%Y-%m-%dT%H:%M:%S.%6NZ); statement ec256 "$old" "$nonce"; sign ec256 "$W/stmt" "$W/old.sig"
refused ec256 TV002 "a signature made 10 minutes ago" "$old" "$nonce" "$W/old.sig"
future=$(date -u -d '+10 min' +%Y-%m-%dT%H:%M:%S.%6NZ); statement ec256 "$future" "$nonce"; sign ec256 "$W/stmt" "$W/future.sig"
refused ec256 TV002 "a signature dated 10 minutes ahead" "$future" "$nonce" "$W/future.sig"
like "$(load ec256 "$ts" "$nonce" "$W/good.sig")" '^[0-9]+$' "2: the good signature is then accepted"
refused ec256 TV003 "the same signature again (replay)" "$ts" "$nonce" "$W/good.sig"
ts2=$(utc_now); statement ec256 "$ts2" "$nonce"; sign ec256 "$W/stmt" "$W/again.sig"
refused ec256 TV003 "a fresh signature with a used nonce" "$ts2" "$nonce" "$W/again.sig"
before=$(ndocs); refusals=$(nrefused)
out=$(tv_psql s1 -d postgres -U ec256 -v VERBOSITY=verbose -c \
	"SELECT trialvault.load_document('C', 'A', 'source', true, '$META', decode('$DOC_HEX', 'hex'))" 2>&1 || true)
like "$out" "ERROR: +TV004: study C requires signed loads" "2: an unsigned load into a new study is refused (TV004)"
is "$(ndocs)/$(nrefused)" "$before/$((refusals + 1))" "2: ... nothing stored, the attempt on record"
out=$(tv_psql s1 -d postgres -U ec256 -v VERBOSITY=verbose -c \
	"SELECT trialvault.load_document('C', 'A', 'source', true, '$META', decode('$DOC_HEX', 'hex'), signed_at => now())" 2>&1 || true)
like "$out" "ERROR: +22004: signed_at, nonce and signature of trialvault.load_document go together" \
	"2: part of the signature arguments: 22004"
out=$(tv_psql s1 -d postgres -U ec256 -v VERBOSITY=verbose -c \
	"SELECT trialvault.load_document('C', 'A', 'source', true, '$META', decode('$DOC_HEX', 'hex'),
	        signed_at => now(), nonce => gen_random_bytes(16), signature => '\\x00', meaning => 'notarized')" 2>&1 || true)
like "$out" "ERROR: +22023: unknown signature meaning \"notarized\"" "2: an unknown meaning: 22023"
ts=$(utc_now); nonce=$(openssl rand -hex 16)
before=$(ndocs); refusals=$(nrefused)
like "$(load nokey "$ts" "$nonce" "$W/good.sig")" "ERROR: +55000: role nokey has no active signing key" \
	"2: a member without a key: 55000"
is "$(ndocs)/$(nrefused)" "$before/$((refusals + 1))" "2: ... nothing stored, the attempt on record"
statement ec384 "$ts" "$nonce"; sign ec384 "$W/stmt" "$W/revoked.sig"
q s1 postgres "SELECT trialvault.revoke_signing_key('ec384', 'token lost')" >/dev/null
like "$(load ec384 "$ts" "$nonce" "$W/revoked.sig")" "ERROR: +55000: role ec384 has no active signing key" \
	"2: a signature by a revoked key: 55000"
is "$(q s1 postgres "SELECT count(*) FROM trialvault.signatures g JOIN trialvault.signer_keys k ON k.fingerprint = g.signer_key
                     WHERE g.signer = 'ec384' AND k.revoked_at IS NOT NULL")" 1 \
	"2: the revoked key's earlier signature is kept, its key shown revoked"

# --- 3. study policies ---------------------------------------------------------------

like "$(tv_psql s1 -d postgres -U ec256 -v VERBOSITY=verbose -c "SELECT trialvault.require_signatures('C', false)" 2>&1 || true)" \
	"ERROR: +42501: permission denied to set whether a study requires signatures" "3: a plain member may not change the policy"
q s1 postgres "SELECT trialvault.require_signatures('C', false)" >/dev/null
like "$(tv_psql s1 -d postgres -U ec256 -At -c \
	"SELECT trialvault.load_document('C', 'A', 'source', true, '$META', decode('$DOC_HEX', 'hex'))" 2>&1)" '^[0-9]+$' \
	"3: with require_signatures(false), an unsigned load is accepted"
q s1 postgres "SELECT trialvault.require_signatures('C', true)" >/dev/null
is "$(q s1 postgres "SELECT string_agg(required::text || ':' || set_by, ' ' ORDER BY event_id) FROM trialvault.signature_policies WHERE study = 'C'")" \
	"true:postgres false:postgres true:postgres" "3: the policy's history is kept"
is "$(q s1 postgres "SELECT count(*) FROM trialvault.audit_events WHERE event = 'signature_policy_set'")" 2 \
	"3: each change is an audit event"

# --- 4. a later signature --------------------------------------------------------------

doc=$(q s1 postgres "SELECT min(doc_id) FROM trialvault.signatures WHERE signer = 'ec256'")
# later WHO DOC TS NONCE: statement_for_document as WHO (study open) into $W/stmt
later_statement() {
	printf "SELECT trialvault.open_study('C') \\\\g /dev/null\nSELECT encode(trialvault.statement_for_document(%s, 'review', '%s', decode('%s', 'hex')), 'base64');\n" "$2" "$3" "$4" |
		tv_psql s1 -d postgres -U "$1" -At | base64 -d >"$W/stmt"
}
sign_doc() {
	printf "SELECT trialvault.open_study('C') \\\\g /dev/null\nSELECT encode(trialvault.sign_document(%s, 'review', '%s', decode('%s', 'hex'), decode('%s', 'hex')), 'hex');\n" \
		"$2" "$3" "$4" "$(hex "$5")" | tv_psql s1 -d postgres -U "$1" -At -v VERBOSITY=verbose 2>&1 || true
}
ts=$(utc_now); nonce=$(openssl rand -hex 16)
later_statement inv "$doc" "$ts" "$nonce"
like "$(cat "$W/stmt")" "signer: inv" "4: statement_for_document names the investigator"
like "$(cat "$W/stmt")" "content-sha256: $(sha256sum <"$W/doc.bin" | cut -c1-64)" "4: ... and the stored document's sha256sum"
sign inv "$W/stmt" "$W/review.sig"
counter=$(sign_doc inv "$doc" "$ts" "$nonce" "$W/review.sig")
like "$counter" '^[0-9a-f]{100,}$' "4: sign_document returns the countersignature"
sid=$(q s1 postgres "SELECT signature_id FROM trialvault.signatures WHERE doc_id = $doc AND meaning = 'review'")
is "$(q s1 postgres "SELECT encode(countersignature, 'hex') FROM trialvault.signatures WHERE signature_id = ${sid:-0}")" \
	"$counter" "4: ... the one kept"
check "4: it verifies with openssl" countersig_ok "${sid:-0}"
like "$(sign_doc inv "$doc" "$ts" "$nonce" "$W/review.sig")" "ERROR: +TV003" "4: the same review again: a replay (TV003)"
refusals=$(nrefused)
like "$(sign_doc other "$doc" "$ts" "$(openssl rand -hex 16)" "$W/review.sig")" \
	"ERROR: +42501: permission denied to sign document $doc" "4: a member of another site may not sign it (42501)"
is "$(nrefused)" "$((refusals + 1))" "4: ... and the attempt is on record"
out=$(tv_psql s1 -d postgres -U inv -v VERBOSITY=verbose -c \
	"SELECT trialvault.sign_document($doc, 'review', now(), gen_random_bytes(16), '\\x00')" 2>&1 || true)
like "$out" "ERROR: +42501: permission denied to sign document $doc" "4: without the study open: 42501"
like "$out" "HINT: +Open the document's study first" "4: ... with a hint"

# --- 5. the same nonce twice at once ---------------------------------------------------------

ts=$(utc_now); nonce=$(openssl rand -hex 16)
statement ec256 "$ts" "$nonce"; sign ec256 "$W/stmt" "$W/race.sig"
before=$(q s1 postgres "SELECT count(*) FROM trialvault.signatures")
load ec256 "$ts" "$nonce" "$W/race.sig" >"$W/race1" &
load ec256 "$ts" "$nonce" "$W/race.sig" >"$W/race2" &
wait
is "$(cat "$W/race1" "$W/race2" | grep -cE '^[0-9]+$')/$(cat "$W/race1" "$W/race2" | grep -c 'ERROR: *TV003')" "1/1" \
	"5: of two loads with one nonce at once, one is accepted and one refused as a replay"
is "$(q s1 postgres "SELECT count(*) FROM trialvault.signatures")" "$((before + 1))" "5: one signature kept"

# --- 6. a new server key ------------------------------------------------------------------------

openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$W/server2.pem"
chmod 644 "$W/server2.pem"
echo "trialvault.signing_key_command = 'cat $W/server2.pem'" >>"$S1DIR/data/postgresql.conf"
tv_cluster_stop s1
tv_cluster_restart s1
ts=$(utc_now); nonce=$(openssl rand -hex 16)
statement ed "$ts" "$nonce"; sign ed "$W/stmt" "$W/new.sig"
like "$(load ed "$ts" "$nonce" "$W/new.sig")" '^[0-9]+$' "6: after a new server key, certified loads go on"
NEW_FP=$(openssl pkey -in "$W/server2.pem" -pubout -outform DER | sha256sum | cut -c1-64)
is "$(q s1 postgres "SELECT string_agg(fingerprint, ' ' ORDER BY first_used_at) FROM trialvault.server_keys")" \
	"$FIRST_SERVER_FP $NEW_FP" "6: the new key is kept beside the old one"
is "$(q s1 postgres "SELECT count(*) FROM trialvault.audit_events WHERE event = 'server_key_new'")" 2 "6: ... an event"
ok_all=yes
for sid in $(q s1 postgres "SELECT signature_id FROM trialvault.signatures ORDER BY 1"); do
	countersig_ok "$sid" || ok_all="no ($sid)"
done
is "$ok_all" yes "6: every countersignature, old key's and new's, verifies with openssl"

# --- 7. dump and restore ---------------------------------------------------------------------------

D=$TV_TMP/dump
mkdir -p "$D"
chown "$TV_OS_USER" "$D"
CERT_TABLES="signing_keys signing_key_revocations printed_names server_keys signatures signature_policies"
declare -A DIGEST=()
for t in $CERT_TABLES; do
	DIGEST[$t]=$(q s1 postgres "SELECT ok || ':' || rows_checked || ':' || encode(head_digest, 'hex') FROM trialvault.verify('trialvault.$t')")
done
sigs="SELECT md5(string_agg(signature_id || encode(trialvault._signature_statement(doc_id, signature_id), 'hex') || encode(signature, 'hex') || encode(countersignature, 'hex'), ',' ORDER BY signature_id)) FROM trialvault.signatures"
sigs_src=$(q s1 postgres "$sigs")
check "7: pg_dump -Fc" tv_as_pg "$PGBIN/pg_dump" -h "$S1DIR" -p "$(tv_port s1)" -U postgres -Fc -f "$D/src.dump" postgres
q s1 postgres "CREATE DATABASE restored" >/dev/null
check "7: pg_restore with trialvault.restore_mode into a new database" \
	env PGOPTIONS='-c trialvault.restore_mode=on' runuser -u "$TV_OS_USER" -- \
	"$PGBIN/pg_restore" -h "$S1DIR" -p "$(tv_port s1)" -U postgres --exit-on-error -d restored "$D/src.dump"
for t in $CERT_TABLES; do
	is "$(q s1 restored "SELECT ok || ':' || rows_checked || ':' || encode(head_digest, 'hex') FROM trialvault.verify('trialvault.$t')")" \
		"${DIGEST[$t]}" "7: trialvault.$t verifies after the restore, same rows and head_digest"
done
is "$(q s1 restored "$sigs")" "$sigs_src" "7: statements, signatures and countersignatures are the source's, byte for byte"
tv_cluster_stop s1

done_testing

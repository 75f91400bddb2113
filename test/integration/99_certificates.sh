#!/usr/bin/env bash
# 99_certificates.sh: verify_document, export_certificate, certificate_text,
# and scripts/trialvault-verify-certificate (openssl and xmllint only).
#
#   1. a PHI document certified by its loader (ECDSA), reviewed by the
#      investigator (Ed25519) and approved by another site member (RSA-PSS):
#      verify_document says every signature and countersignature verifies
#      and the content (decrypted inside the server) matches; the auditor
#      may verify too; a member of another site, a caller without the study
#      open, a missing document and a NULL are refused; every call, granted
#      or refused, is in the decryption log (reason verification);
#   2. a revoked key: its signatures still verify, shown with the revocation
#      time; rows forged by a superuser (garbage signatures, a real
#      signature copied onto another document) are found;
#   3. export_certificate: the certificate is well-formed XML and
#      trialvault-verify-certificate accepts it (with --content, the file);
#      it fails a flipped byte in the statement, the other signer's key, a
#      swapped countersignature, a changed manifestation, the wrong content
#      file; the certificate is refused to the auditor (no PHI) and for an
#      unsigned document;
#   4. certificate_text names the printed names, meanings, times with zone.
set -euo pipefail
source "$(dirname "$0")/../lib/cluster.sh"
source "$(dirname "$0")/lib/helpers.sh"
VERIFY=$(cd "$(dirname "$0")/../.." && pwd)/scripts/trialvault-verify-certificate

W=$TV_TMP/cert
mkdir -p "$W"
chmod 755 "$W"
tv_cluster_start v1
tv_psql v1 -d postgres >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION trialvault CASCADE;
CREATE ROLE ann LOGIN; CREATE ROLE ivan LOGIN; CREATE ROLE rita LOGIN;
CREATE ROLE aud LOGIN; CREATE ROLE eve LOGIN;
SELECT trialvault.create_study('V', 'Verification study');
SELECT trialvault.add_site('V', 'A', 'Site A');
SELECT trialvault.add_site('V', 'B', 'Site B');
SELECT trialvault.grant_role('ann', 'V', 'A', 'site_staff');
SELECT trialvault.grant_role('rita', 'V', 'A', 'site_staff');
SELECT trialvault.grant_role('ivan', 'V', 'A', 'investigator');
SELECT trialvault.grant_role('aud', 'V', NULL, 'auditor');
SELECT trialvault.grant_role('eve', 'V', 'B', 'site_staff');
SELECT trialvault.set_printed_name('ann', 'Ann Example, study nurse');
SELECT trialvault.set_printed_name('ivan', 'Dr. Ivan Example');
SQL

openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$W/ann.pem"
openssl genpkey -algorithm ED25519 -out "$W/ivan.pem"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$W/rita.pem" 2>/dev/null
for who in ann ivan rita; do
	openssl pkey -in "$W/$who.pem" -pubout -out "$W/$who.pub"
	echo "SELECT trialvault.register_signing_key(:'pub')" |
		tv_psql v1 -d postgres -U "$who" -At -v pub="$(cat "$W/$who.pub")" >/dev/null
done
hex() { od -An -v -tx1 "$1" | tr -d ' \n'; }
utc_now() { date -u +%Y-%m-%dT%H:%M:%S.%6NZ; }
# as WHO SQL...: run as WHO with the study open
as() {
	local who=$1
	shift
	{ echo "SELECT trialvault.open_study('V') \\g /dev/null"; printf '%s;\n' "$@"; } |
		tv_psql v1 -d postgres -U "$who" -At -v VERBOSITY=verbose 2>&1 || true
}

printf 'PATIENT Jane Roe, consent form, page 1 of 1\n' >"$W/scan.txt"
printf '<consent><page>1</page></consent>' >"$W/scan.xml"
bash "$(dirname "$0")/../../scripts/trialvault-sign" --key "$W/ann.pem" --signer ann --study V --site A \
	--type source --file "$W/scan.txt" --metadata "$W/scan.xml" >"$W/signed"
# shellcheck disable=SC1091
. "$W/signed"
DOC=$(tv_psql v1 -d postgres -U ann -At -c "SELECT trialvault.load_document('V', 'A', 'source', true,
	'$(cat "$W/scan.xml")', decode('$(hex "$W/scan.txt")', 'hex'), signed_at => '$signed_at',
	nonce => decode('$nonce', 'hex'), signature => decode('$signature', 'hex'))")
like "$DOC" '^[0-9]+$' "0: the statement trialvault-sign built locally is accepted (a certified load)"
# later WHO MEANING: a later signature of the document by WHO
later() {
	local who=$1 meaning=$2 ts nonce
	ts=$(utc_now)
	nonce=$(openssl rand -hex 16)
	as "$who" "SELECT encode(trialvault.statement_for_document($DOC, '$meaning', '$ts', decode('$nonce', 'hex')), 'base64')" |
		base64 -d >"$W/$who.stmt"
	case $who in
	ivan) openssl pkeyutl -sign -rawin -inkey "$W/ivan.pem" -in "$W/$who.stmt" -out "$W/$who.sig" ;;
	rita) openssl dgst -sha256 -sigopt rsa_padding_mode:pss -sign "$W/rita.pem" -out "$W/$who.sig" "$W/$who.stmt" ;;
	esac
	as "$who" "SELECT length(trialvault.sign_document($DOC, '$meaning', '$ts', decode('$nonce', 'hex'), decode('$(hex "$W/$who.sig")', 'hex'))) > 0"
}
is "$(later ivan review)" t "0: the investigator's review (Ed25519) is accepted"
is "$(later rita approval)" t "0: a second site member's approval (RSA-PSS) is accepted"

# --- 1. verify_document ----------------------------------------------------------
nlog() { q v1 postgres "SELECT count(*) FROM trialvault.decryption_log WHERE doc_id = $DOC"; }
vd="SELECT string_agg(signer || ':' || coalesce(printed_name, '-') || ':' || meaning || ':' || user_signature_ok || ':' ||
                      countersignature_ok || ':' || (key_revoked_at IS NULL) || ':' || content_matches, ' ' ORDER BY signature_id)
    FROM trialvault.verify_document($DOC)"
before=$(nlog)
is "$(as ann "$vd")" \
	"ann:Ann Example, study nurse:certified_copy:true:true:true:true ivan:Dr. Ivan Example:review:true:true:true:true rita:-:approval:true:true:true:true" \
	"1: the loader sees three signatures, each verifying, countersigned, content matching"
is "$(as aud "SELECT count(*) FILTER (WHERE user_signature_ok AND countersignature_ok AND content_matches) FROM trialvault.verify_document($DOC)")" 3 \
	"1: the auditor may verify it (without seeing it)"
like "$(as eve "$vd")" "ERROR: +42501: permission denied to verify document $DOC" "1: a member of another site may not (42501)"
like "$(tv_psql v1 -d postgres -U ann -v VERBOSITY=verbose -c "$vd" 2>&1 || true)" \
	"ERROR: +42501: permission denied to verify document $DOC" "1: nor anyone without the study open"
like "$(as ann "SELECT * FROM trialvault.verify_document(NULL)")" "ERROR: +22004" "1: NULL: 22004"
like "$(as ann "SELECT * FROM trialvault.verify_document(-7)")" "ERROR: +42704: document -7 does not exist" "1: no such document: 42704"
is "$(nlog)" "$((before + 4))" "1: every call on this document, granted or refused, is in the decryption log"
is "$(q v1 postgres "SELECT string_agg(requester || ':' || granted || ':' || reason, ' ' ORDER BY log_id)
                     FROM (SELECT * FROM trialvault.decryption_log WHERE doc_id = $DOC ORDER BY log_id DESC LIMIT 4) l")" \
	"ann:true:verification aud:true:verification eve:false:other_site ann:false:study_not_open" \
	"1: ... with who asked and why it was granted or refused"
check "1: the content was not returned: no PHI in the output" \
	bash -c "! grep -q 'Jane Roe' <<<\"$(as ann "SELECT * FROM trialvault.verify_document($DOC)")\""

# --- 2. revoked keys, forged rows ------------------------------------------------
q v1 postgres "SELECT trialvault.revoke_signing_key('ivan', 'left the hospital')" >/dev/null
is "$(as ann "SELECT user_signature_ok || ':' || countersignature_ok || ':' || (key_revoked_at IS NOT NULL) FROM trialvault.verify_document($DOC) WHERE signer = 'ivan'")" \
	"true:true:true" "2: a revoked key's signature still verifies, shown with its revocation time"
# Rows inserted behind the functions' back by a superuser (inserts are not refused).
q v1 postgres "INSERT INTO trialvault.signatures (doc_id, study, site, signer, signer_key, meaning, signed_at, nonce,
                   signature, server_key, countersigned_at, countersignature)
               SELECT doc_id, study, site, signer, signer_key, 'responsibility', signed_at, gen_random_bytes(16),
                      gen_random_bytes(70), server_key, countersigned_at, gen_random_bytes(70)
               FROM trialvault.signatures WHERE doc_id = $DOC AND signer = 'ann'" >/dev/null
is "$(as ann "SELECT user_signature_ok || ':' || countersignature_ok || ':' || content_matches FROM trialvault.verify_document($DOC) WHERE meaning = 'responsibility'")" \
	"false:false:true" "2: a forged row with garbage signatures fails both signature checks (the document itself is intact)"
DOC2=$(tv_psql v1 -d postgres -U rita -At -c "SELECT trialvault.require_signatures('V', false)" 2>/dev/null || true)
q v1 postgres "SELECT trialvault.require_signatures('V', false)" >/dev/null
DOC2=$(tv_psql v1 -d postgres -U ann -At -c "SELECT trialvault.load_document('V', 'A', 'source', true, '<consent/>', 'another page')")
q v1 postgres "INSERT INTO trialvault.signatures (doc_id, study, site, signer, signer_key, meaning, signed_at, nonce,
                   signature, server_key, countersigned_at, countersignature)
               SELECT $DOC2, study, site, signer, signer_key, meaning, signed_at, gen_random_bytes(16),
                      signature, server_key, countersigned_at, countersignature
               FROM trialvault.signatures WHERE doc_id = $DOC AND signer = 'ann' AND meaning = 'certified_copy'" >/dev/null
is "$(as ann "SELECT user_signature_ok || ':' || countersignature_ok || ':' || content_matches FROM trialvault.verify_document($DOC2)")" \
	"false:false:true" "2: a real signature copied onto another document (with a fresh nonce) verifies there neither as the member's nor as the server's"

# --- 3. certificates ---------------------------------------------------------------
as ann "SELECT trialvault.export_certificate($DOC)" >"$W/cert.xml"
check "3: the certificate is well-formed XML" xmllint --noout "$W/cert.xml"
like "$(grep -c 'BEGIN PUBLIC KEY' "$W/cert.xml")" '^[1-9]' "3: it carries the public keys in PEM"
"$VERIFY" --content "$W/scan.txt" "$W/cert.xml" >"$W/verify.out" 2>&1 && rc=0 || rc=$?
is "$rc" 1 "3: trialvault-verify-certificate fails the certificate with the forged row in it"
like "$(grep -c '^ok' "$W/verify.out")" '^1[0-9]$' "3: ... while the genuine signatures' checks pass"
# A certificate without the forged row: what the three genuine signatures make.
python3 - "$W/cert.xml" "$W/good.xml" <<'PY'
import re, sys
s = open(sys.argv[1]).read()
sigs = re.findall(r'<signature id="\d+">.*?</signature>', s, re.S)
for g in sigs:
    if 'meaning="responsibility"' in g:
        s = s.replace(g, '')
open(sys.argv[2], 'w').write(s)
PY
"$VERIFY" --content "$W/scan.txt" "$W/good.xml" >"$W/verify.out" 2>&1 && rc=0 || rc=$?
is "$rc" 0 "3: trialvault-verify-certificate accepts the three genuine signatures, and the content file"
is "$(grep -c '^ok' "$W/verify.out")" 16 "3: ... every check of every signature passed (5 each, and the content)"
tail -n 1 "$W/verify.out" | grep -q '^certificate OK$' && ok "3: it says certificate OK" || not_ok "3: it says certificate OK"

# tamper NAME DESCRIPTION PYTHON-EXPRESSION-ON-s: a changed copy must fail
tamper() {
	local name=$1 desc=$2 expr=$3
	python3 - "$W/good.xml" "$W/$name.xml" "$expr" <<'PY'
import base64, re, sys
s = open(sys.argv[1]).read()
sigs = re.findall(r'<signature id="\d+">.*?</signature>', s, re.S)
def part(sig, tag):
    return re.search(r'<%s[^>]*>(.*?)</%s>' % (tag, tag), sig, re.S).group(1)
exec(sys.argv[3])
open(sys.argv[2], 'w').write(s)
PY
	if cmp -s "$W/good.xml" "$W/$name.xml"; then
		not_ok "3: $desc (the copy was not changed)"
		return
	fi
	"$VERIFY" "$W/$name.xml" >"$W/$name.out" 2>&1 && rc=0 || rc=$?
	is "$rc" 1 "3: $desc: NOT OK"
}
tamper flip "a flipped byte in the first statement" '
st = part(sigs[0], "statement")
b = bytearray(base64.b64decode(st)); b[100] ^= 1
s = s.replace(st, base64.encodebytes(bytes(b)).decode().strip())'
tamper otherkey "the other signer's key put in the first signature" '
k0 = part(sigs[0], "signer-key"); k1 = part(sigs[1], "signer-key")
s = s.replace(sigs[0], sigs[0].replace(k0, k1))'
tamper swapped "the first two countersignatures swapped" '
c0 = part(sigs[0], "countersignature"); c1 = part(sigs[1], "countersignature")
s = s.replace(sigs[0], sigs[0].replace(c0, c1)).replace(sigs[1], sigs[1].replace(c1, c0))'
tamper meaning "a review shown as an approval" '
s = s.replace(sigs[1], sigs[1].replace("meaning=\"review\"", "meaning=\"approval\""))'
tamper printed "the countersignature time moved by a second" '
m = re.search(r"countersigned-at=\"([^\"]*)\"", sigs[0]).group(1)
s = s.replace(sigs[0], sigs[0].replace(m, m[:17] + ("1" if m[17] != "1" else "2") + m[18:]))'
printf 'PATIENT Jane Roe, consent form, page 2 of 1\n' >"$W/other.txt"
"$VERIFY" --content "$W/other.txt" "$W/good.xml" >/dev/null 2>&1 && rc=0 || rc=$?
is "$rc" 1 "3: another content file: NOT OK"
"$VERIFY" "$W/nonexistent.xml" >/dev/null 2>&1 && rc=0 || rc=$?
is "$rc" 2 "3: an unreadable certificate: exit 2"

like "$(as aud "SELECT trialvault.export_certificate($DOC)")" "ERROR: +42501: permission denied to export the certificate of document $DOC" \
	"3: the auditor may not export the certificate of a PHI document (42501)"
DOC3=$(tv_psql v1 -d postgres -U ann -At -c "SELECT trialvault.load_document('V', 'A', 'protocol', false, '<p/>', 'protocol v2')")
like "$(as ann "SELECT trialvault.export_certificate($DOC3)")" "ERROR: +55000: document $DOC3 has no signature" \
	"3: an unsigned document has no certificate (55000)"
like "$(as ann "SELECT trialvault.export_certificate(NULL)")" "ERROR: +22004" "3: NULL: 22004"

# --- 4. the printable certificate ------------------------------------------------------
text=$(as ann "SELECT trialvault.certificate_text($DOC)")
like "$text" "CERTIFIED COPY" "4: certificate_text is headed CERTIFIED COPY"
like "$text" "Signed by: +Ann Example, study nurse \\(ann\\)" "4: ... names the signer by printed name and role"
like "$text" "Meaning: +certified copy" "4: ... the meaning"
like "$text" "Signed at: +20[0-9-]+ [0-9:.]+ [A-Z+0-9]+" "4: ... the date and time with zone"
like "$text" "ended 20[0-9-]+ .*: left the hospital" "4: ... and when a signer's key ended, and why"
like "$(as eve "SELECT trialvault.certificate_text($DOC)")" "ERROR: +42501" "4: a member of another site may not print it"
tv_cluster_stop v1

done_testing

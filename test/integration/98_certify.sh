#!/usr/bin/env bash
# 98_certify.sh: signing keys and the server's key with real OpenSSL keys.
#
#   1. keys made by openssl (ECDSA P-256 and P-384, Ed25519, RSA 2048):
#      register_signing_key returns the fingerprint that
#      `openssl pkey -pubin -outform DER | sha256sum` prints, and stores the
#      public key as openssl writes it; certification_statement() holds
#      the content's sha256sum and the caller's active key;
#   2. the server key: server_signing_key() names the key the command
#      printed (fingerprint from openssl), the server log says so by
#      fingerprint; with log_statement = all, log_min_messages = debug1 and
#      pg_stat_statements, the private key (its PEM lines, its DER bytes
#      and their hex) is in none of: the server log, pg_stat_statements, a
#      plain pg_dump, the text of every table of schema trialvault, the
#      files of the data directory (WAL included); each search is shown to
#      find the public key where it is (positive controls);
#   3. a private key given to register_signing_key by mistake does not
#      reach the server log with the failed statement (log_min_error_statement
#      = error), and nothing of it is stored;
#   4. a signing_key_command that is unset, prints garbage, exits non-zero,
#      prints a passphrase-protected key, a public key, or an RSA 1024 key:
#      a WARNING at start (none when unset), server_signing_key() says why,
#      and everything else works (a study, an unsigned load, open_document).
set -euo pipefail
source "$(dirname "$0")/../lib/cluster.sh"
source "$(dirname "$0")/lib/helpers.sh"

WORK=$TV_TMP/keys
mkdir -p "$WORK"
fp_of_pub() { openssl pkey -pubin -in "$1" -outform DER | sha256sum | cut -c1-64; }

# --- 1. member keys ------------------------------------------------------------

tv_cluster_start c1 "shared_preload_libraries = 'trialvault,pg_stat_statements'" \
	"log_statement = all" "log_min_messages = debug1"
C1DIR=$(tv_dir c1)
q c1 postgres "CREATE EXTENSION trialvault CASCADE" >/dev/null 2>&1
q c1 postgres "CREATE EXTENSION pg_stat_statements"
tv_psql c1 -d postgres >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE ROLE signer_ec LOGIN; CREATE ROLE signer_ec384 LOGIN;
CREATE ROLE signer_ed LOGIN; CREATE ROLE signer_rsa LOGIN;
SELECT trialvault.create_study('C1', 'Certification');
SELECT trialvault.add_site('C1', 'A', 'Site A');
SELECT trialvault.grant_role(r, 'C1', 'A', 'site_staff')
	FROM unnest(ARRAY['signer_ec', 'signer_ec384', 'signer_ed', 'signer_rsa']) r;
SQL
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$WORK/signer_ec.pem" 2>/dev/null
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out "$WORK/signer_ec384.pem" 2>/dev/null
openssl genpkey -algorithm ED25519 -out "$WORK/signer_ed.pem" 2>/dev/null
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$WORK/signer_rsa.pem" 2>/dev/null
for who in signer_ec signer_ec384 signer_ed signer_rsa; do
	openssl pkey -in "$WORK/$who.pem" -pubout -out "$WORK/$who.pub"
	got=$(echo "SELECT trialvault.register_signing_key(:'pub')" |
		tv_psql c1 -d postgres -U "$who" -At -v pub="$(cat "$WORK/$who.pub")")
	is "$got" "$(fp_of_pub "$WORK/$who.pub")" "1: $who's fingerprint is what openssl prints"
	is "$(q c1 postgres "SELECT public_key FROM trialvault.signing_keys WHERE member = '$who'")" \
		"$(cat "$WORK/$who.pub")" "1: $who's public key is stored as openssl writes it"
done
is "$(q c1 postgres "SELECT string_agg(algorithm, ' ' ORDER BY key_id) FROM trialvault.signing_keys")" \
	"ecdsa-p256 ecdsa-p384 ed25519 rsa-2048" "1: the four kinds of key are named"

printf 'a scanned page\n' >"$WORK/page.txt"
stmt=$(tv_psql c1 -d postgres -U signer_ed -At -c \
	"SELECT convert_from(trialvault.certification_statement('C1', 'A', 'source',
	        decode('$(xxd -p "$WORK/page.txt" | tr -d '\n')', 'hex'), '<m/>', 'certified_copy',
	        '2026-12-01 12:00:00+00', decode('000102030405060708090a0b0c0d0e0f', 'hex')), 'UTF8')")
like "$stmt" "content-sha256: $(sha256sum <"$WORK/page.txt" | cut -c1-64)" \
	"1: the statement holds the content's sha256sum"
like "$stmt" "signer-key-sha256: $(fp_of_pub "$WORK/signer_ed.pub")" "1: ... and the caller's active key"

# --- 2. the server key never shows up ---------------------------------------------

SERVER_PEM=$C1DIR/server_signing.pem
server_fp=$(openssl pkey -in "$SERVER_PEM" -pubout -outform DER | sha256sum | cut -c1-64)
is "$(q c1 postgres "SELECT loaded || ' ' || fingerprint || ' ' || algorithm FROM trialvault.server_signing_key()")" \
	"true $server_fp ecdsa-p256" "2: server_signing_key() names the key the command printed"
check "2: the server log names it by fingerprint" \
	grep -q "trialvault: server signing key loaded (ecdsa-p256, fingerprint $server_fp)" "$C1DIR/server.log"
is "$(q c1 postgres "SELECT public_key FROM trialvault.server_signing_key()")" \
	"$(openssl pkey -in "$SERVER_PEM" -pubout)" "2: its public half is what openssl derives"
q c1 postgres "CREATE TABLE public.spk AS SELECT public_key FROM trialvault.server_signing_key()" >/dev/null
q c1 postgres "CHECKPOINT"

SERVER_PUB_LINE=$(openssl pkey -in "$SERVER_PEM" -pubout | sed -n 2p)
SERVER_DER_HEX=$(openssl pkey -in "$SERVER_PEM" -outform DER | xxd -p | tr -d '\n')
# The private scalar alone (32 bytes of a P-256 key).
SERVER_SCALAR=$(openssl ec -in "$SERVER_PEM" -text -noout 2>/dev/null |
	awk '/^priv:/ { f = 1; next } /^pub:/ { f = 0 } f' | tr -d ' :\n' | sed 's/^00\(.\{64\}\)$/\1/')
like "$SERVER_SCALAR" '^[0-9a-f]{64}$' "2: the private scalar is 32 bytes"
mapfile -t PEM_LINES < <(grep -v -- '-----' "$SERVER_PEM")

pem_absent() {
	local f=$1 l
	for l in "${PEM_LINES[@]}"; do
		if grep -qaF -- "$l" "$f"; then return 1; fi
	done
}
pem_absent_dir() {
	local d=$1 l
	for l in "${PEM_LINES[@]}"; do
		if grep -rqaF -- "$l" "$d"; then return 1; fi
	done
}

check "2: the server log has the statements (log_statement = all works)" \
	grep -q 'statement: SELECT trialvault.register_signing_key' "$C1DIR/server.log"
check "2: no line of the private key's PEM is in the server log" pem_absent "$C1DIR/server.log"
check "2: nor its scalar's hex" absent_in "$C1DIR/server.log" "$SERVER_SCALAR"

q c1 postgres "SELECT query FROM pg_stat_statements" >"$C1DIR/pgss.txt"
check "2: pg_stat_statements has the calls" grep -q 'server_signing_key' "$C1DIR/pgss.txt"
check "2: no line of the private key is in pg_stat_statements" pem_absent "$C1DIR/pgss.txt"

"$PGBIN/pg_dump" -h "$C1DIR" -p "$(tv_port c1)" -U postgres -Fp postgres >"$C1DIR/dump.sql"
check "2: the dump has the server's public key (the search finds it)" grep -qF "$SERVER_PUB_LINE" "$C1DIR/dump.sql"
check "2: no line of the private key is in the dump" pem_absent "$C1DIR/dump.sql"
check "2: nor its scalar's hex" absent_in "$C1DIR/dump.sql" "$SERVER_SCALAR"

: >"$C1DIR/tables.txt"
for t in $(q c1 postgres "SELECT c.relname FROM pg_class c
                          WHERE c.relnamespace = 'trialvault'::regnamespace AND c.relkind IN ('r', 'p')
                          ORDER BY 1"); do
	q c1 postgres "SELECT coalesce(string_agg(t::text, E'\n'), '') FROM trialvault.$t t" >>"$C1DIR/tables.txt"
done
check "2: the tables' text has the members' public keys (the search finds them)" \
	grep -qF "$(sed -n 2p "$WORK/signer_rsa.pub")" "$C1DIR/tables.txt"
check "2: no line of the server's private key is in any table of schema trialvault" pem_absent "$C1DIR/tables.txt"

check "2: the public key's lines are found in the data directory (the search works)" \
	grep -rqaF -- "$SERVER_PUB_LINE" "$C1DIR/data"
check "2: no line of the private key's PEM is in any file of the data directory" pem_absent_dir "$C1DIR/data"
check "2: the private key's DER bytes are in no file of the data directory" \
	no_raw_in_dir "$SERVER_DER_HEX" "$C1DIR/data"
check "2: nor the private scalar's bytes" no_raw_in_dir "$SERVER_SCALAR" "$C1DIR/data"
# shellcheck disable=SC2016
check "2: nor its hex" bash -c '! grep -rqaiF "$1" "$2"' _ "$SERVER_SCALAR" "$C1DIR/data"
tv_cluster_stop c1

# --- 3. a private key given by mistake ---------------------------------------------

tv_cluster_start c3
C3DIR=$(tv_dir c3)
q c3 postgres "CREATE EXTENSION trialvault CASCADE" >/dev/null 2>&1
q c3 postgres "CREATE ROLE careless LOGIN" >/dev/null
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$WORK/careless.pem" 2>/dev/null
out=$(echo "SELECT trialvault.register_signing_key(:'key')" |
	tv_psql c3 -d postgres -U careless -v VERBOSITY=verbose -v key="$(cat "$WORK/careless.pem")" 2>&1 || true)
like "$out" "ERROR: +22023: a private key was given where a public key is expected" \
	"3: a private key is refused (22023)"
like "$out" "HINT: +Treat that private key as compromised" "3: ... and the caller is told it is compromised"
check "3: the refusal is in the server log" grep -q "a private key was given" "$C3DIR/server.log"
mapfile -t PEM_LINES < <(grep -v -- '-----' "$WORK/careless.pem")
check "3: but not the statement that carried the key" pem_absent "$C3DIR/server.log"
is "$(q c3 postgres "SELECT count(*) FROM trialvault.signing_keys")" 0 "3: nothing was stored"
wait_until "the refusal on record" 10 bash -c \
	"[ \"\$(PGHOST=$C3DIR PGPORT=$(tv_port c3) $PGBIN/psql -X -U postgres -d postgres -At -c \"SELECT count(*) FROM trialvault.audit_events WHERE event = 'signing_key_refused'\")\" = 1 ]" || true
is "$(q c3 postgres "SELECT actor || ': ' || detail FROM trialvault.audit_events WHERE event = 'signing_key_refused'")" \
	"careless: for role careless: a private key was given where a public key is expected" \
	"3: the refusal is on record, without the key"

# --- 4. no usable server key -------------------------------------------------------

openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -aes256 -pass pass:secret \
	-out "$WORK/locked.pem" 2>/dev/null
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:1024 -out "$WORK/rsa1024.pem" 2>/dev/null
openssl pkey -in "$WORK/signer_ec.pem" -pubout -out "$WORK/public.pem"
chmod 644 "$WORK"/*.pem
chmod 755 "$WORK"
# bad_server_key LABEL COMMAND PROBLEM WARNED
bad_server_key() {
	local label=$1 command=$2 problem=$3 warned=$4 off doc
	off=$(stat -c %s "$C3DIR/server.log")
	echo "trialvault.signing_key_command = '$command'" >>"$C3DIR/data/postgresql.conf"
	tv_cluster_stop c3
	tv_cluster_restart c3
	if [ "$warned" = yes ]; then
		# shellcheck disable=SC2016
		check "4 $label: WARNING \"no server signing key\" at start" \
			bash -c 'tail -c +"$1" "$2" | grep -qF "WARNING:  trialvault: no server signing key: $3"' _ "$((off + 1))" "$C3DIR/server.log" "$problem"
	else
		# shellcheck disable=SC2016
		check "4 $label: no WARNING at start" \
			bash -c '! tail -c +"$1" "$2" | grep -q "no server signing key"' _ "$((off + 1))" "$C3DIR/server.log"
	fi
	is "$(q c3 postgres "SELECT loaded || ' ' || (fingerprint IS NULL) || ' ' || problem FROM trialvault.server_signing_key()")" \
		"false true $problem" "4 $label: server_signing_key() says why"
	code=N$RANDOM$RANDOM
	doc=$(tv_psql c3 -d postgres -At 2>&1 <<SQL
SET client_min_messages = warning;
SELECT FROM trialvault.create_study('$code', 'no server key');
SELECT FROM trialvault.add_site('$code', 'A', 'a');
SELECT FROM trialvault.require_signatures('$code', false);
SELECT FROM trialvault.grant_role('careless', '$code', 'A', 'site_staff');
SET ROLE careless;
SELECT FROM trialvault.open_study('$code');
SELECT length(trialvault.open_document(trialvault.load_document('$code', 'A', 'protocol', false, '<m/>', 'text')));
SQL
)
	like "$doc" '^4$' "4 $label: everything else works (a study, a load, an opening)"
}
bad_server_key "(unset)" "" "trialvault.signing_key_command is not set" no
bad_server_key "(garbage)" "echo garbage" \
	"trialvault.signing_key_command did not print an unencrypted PEM private key" yes
bad_server_key "(exits 3)" "sh -c \"cat $SERVER_PEM; exit 3\"" \
	"trialvault.signing_key_command failed: child process exited with exit code 3" yes
bad_server_key "(passphrase)" "cat $WORK/locked.pem" \
	"trialvault.signing_key_command did not print an unencrypted PEM private key" yes
bad_server_key "(public key)" "cat $WORK/public.pem" \
	"trialvault.signing_key_command did not print an unencrypted PEM private key" yes
bad_server_key "(RSA 1024)" "cat $WORK/rsa1024.pem" \
	"RSA key of 1024 bits is too short (2048 bits at least)" yes
check "4: the server log never shows what the commands printed" \
	bash -c '! grep -q "garbage\|BEGIN" "$1"' _ "$C3DIR/server.log"
tv_cluster_stop c3

done_testing

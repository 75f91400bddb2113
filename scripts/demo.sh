#!/usr/bin/env bash
# scripts/demo.sh: install what is needed, build and install trialvault, start
# a throwaway cluster as the unprivileged "postgres" user, and show in plain
# words what trialvault does so far.  The cluster is stopped at the end; with
# --keep it is left running and the script says how to connect and stop it.
set -euo pipefail
cd "$(dirname "$0")/.."

KEEP=
[ "${1:-}" = "--keep" ] && KEEP=1

bash scripts/install-deps.sh
export PATH="/usr/lib/postgresql/15/bin:$PATH"

TV_TMP=$(mktemp -d /tmp/trialvault-demo.XXXXXX)
chmod 755 "$TV_TMP"
chown postgres "$TV_TMP"
# The cluster's directory goes when the demo ends (also when it fails),
# unless --keep.
TV_TMP_OWNED=1
[ -n "$KEEP" ] && TV_KEEP_TMP=1
source test/lib/cluster.sh
source test/lib/backups.sh

say() { printf '\n\033[1m%s\033[0m\n' "$*"; }

say "Starting a throwaway PostgreSQL 15 cluster with shared_preload_libraries = 'trialvault'"
tv_cluster_start demo "shared_preload_libraries = 'trialvault,pg_cron'" "cron.database_name = 'postgres'" \
	"cron.host = '$(tv_dir demo)'"
echo "  data directory: $(tv_dir demo)/data (unix socket only, port $(tv_port demo))"

sql() { tv_psql demo -v VERBOSITY=terse "$@"; }

sql <<'SQL'
\pset footer off
SET client_min_messages = warning;
CREATE EXTENSION trialvault CASCADE;
-- A helper for the demo: run a statement and say whether it was refused.
CREATE FUNCTION demo_try(stmt text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE stmt;
	RETURN 'allowed';
EXCEPTION WHEN OTHERS THEN
	RETURN 'REFUSED (SQLSTATE ' || SQLSTATE || '): ' || SQLERRM;
END $$;
-- Another: a member enrols an authenticator app and steps this session up
-- with its codes, which oathtool computes here as the app would (step 23
-- shows the same by hand).
CREATE FUNCTION demo_step_up(member name) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	secret text;
	t bigint;
	codes text[];
BEGIN
	EXECUTE format('SET ROLE %I', member);
	secret := substring(trialvault.enroll_second_factor() FROM 'secret=([A-Z2-7]+)');
	RESET ROLE;
	WHILE extract(epoch FROM clock_timestamp())::bigint % 30 > 25 LOOP
		PERFORM pg_sleep(0.5);
	END LOOP;
	t := extract(epoch FROM clock_timestamp())::bigint;
	CREATE TEMP TABLE IF NOT EXISTS demo_codes (code text);
	DELETE FROM demo_codes;
	EXECUTE format('COPY demo_codes FROM PROGRAM %L', format('oathtool --totp -b -N @%s %s', t - 30, secret));
	EXECUTE format('COPY demo_codes FROM PROGRAM %L', format('oathtool --totp -b -N @%s %s', t, secret));
	codes := ARRAY(SELECT code FROM demo_codes);
	EXECUTE format('SET ROLE %I', member);
	PERFORM trialvault.confirm_second_factor(codes[1]);
	RETURN format('enrolled, confirmed with %s, stepped up with %s until %s', codes[1], codes[2],
				  to_char(trialvault.step_up(codes[2]), 'HH24:MI:SS'));
END $$;

\echo
\echo '1. A site already keeps scanned source documents in an ordinary table.'
CREATE TABLE source_documents (
	id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	study text NOT NULL,
	site text NOT NULL,
	subject text NOT NULL,
	scan bytea NOT NULL,
	metadata xml,
	loaded_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO source_documents (study, site, subject, scan, metadata)
SELECT 'ONCO-7', 'SITE-0' || (i % 3 + 1), 'S-' || lpad(i::text, 3, '0'),
	decode(repeat(md5(i::text), 128), 'hex'),
	xmlparse(document '<meta><visit>' || i || '</visit><form>CRF-07</form></meta>')
FROM generate_series(1, 3) i;
SELECT id, site, subject, length(scan) AS scan_bytes FROM source_documents;

\echo
\echo '2. The DBA protects it: from now on rows can be added, never changed or removed.'
\echo '   The three rows already there are chained on the spot.'
SET client_min_messages = notice;
SELECT trialvault.protect('source_documents');
SET client_min_messages = warning;
SELECT id, subject, tv_seq, tv_prev_seqs, left(encode(tv_hash, 'hex'), 16) || '...' AS row_hash
FROM source_documents ORDER BY tv_seq;
SQL

say "3. Four applications load 200 more documents at the same time (pgbench, 4 clients)."
cat >"$TV_TMP/load.sql" <<'EOF2'
\set i random(1, 1000000)
BEGIN;
INSERT INTO source_documents (study, site, subject, scan, metadata)
VALUES ('ONCO-7', 'SITE-02', 'S-' || :i, decode(repeat(md5(:i::text), 128), 'hex'),
	xmlparse(document '<meta><visit>1</visit></meta>'));
END;
EOF2
chown postgres "$TV_TMP/load.sql"
tv_use demo
pgbench -n -c 4 -j 2 -t 50 -f "$TV_TMP/load.sql" 2>&1 | grep -E 'number of transactions actually processed|tps' | sed 's/^/   /'

sql <<'SQL'
\pset footer off
SET client_min_messages = warning;
SELECT count(*) AS documents FROM source_documents;

\echo
\echo '4. Nobody can change or remove what is stored: not the application, not the owner, not a superuser.'
SELECT attempt, demo_try(stmt) AS result FROM (VALUES
	('correct a subject id', 'UPDATE source_documents SET subject = ''S-999'' WHERE id = 1'),
	('delete a document', 'DELETE FROM source_documents WHERE id = 2'),
	('empty the table', 'TRUNCATE source_documents'),
	('upsert over a document', 'INSERT INTO source_documents (id, study, site, subject, scan) OVERRIDING SYSTEM VALUE VALUES (1, ''x'', ''x'', ''x'', ''\x00'') ON CONFLICT (id) DO UPDATE SET subject = ''x'''),
	('switch the guard off', 'ALTER TABLE source_documents DISABLE TRIGGER ALL'),
	('drop a guard trigger', 'DROP TRIGGER trialvault_guard ON source_documents'),
	('drop a column', 'ALTER TABLE source_documents DROP COLUMN metadata'),
	('change a column type', 'ALTER TABLE source_documents ALTER COLUMN subject TYPE varchar(5)'),
	('drop the table', 'DROP TABLE source_documents'),
	('drop the extension', 'DROP EXTENSION trialvault CASCADE')
) AS t(attempt, stmt);

\echo
\echo '   Replication mode, which switches ordinary triggers off, does not switch the guards off:'
SET session_replication_role = replica;
SELECT demo_try('DELETE FROM source_documents') AS "delete as replica";
RESET session_replication_role;

\echo
\echo '5. An inspector verifies the chain: every row is re-hashed and every link checked.'
SELECT ok, rows_checked, first_bad, heads, guard FROM trialvault.verify('source_documents');

\echo
\echo '6. A rogue superuser edits the catalog behind the guards'' back and alters one document...'
UPDATE pg_trigger SET tgenabled = 'D' WHERE tgrelid = 'source_documents'::regclass;
SQL

sql <<'SQL'
\pset footer off
SET client_min_messages = warning;
UPDATE source_documents SET subject = 'S-666' WHERE id = 2;
\echo '   ...and the inspector''s next verify names the altered row and the disabled guard:'
\x on
SELECT ok, rows_checked, first_bad, bad_rows, guard FROM trialvault.verify('source_documents');
\x off
UPDATE pg_trigger SET tgenabled = 'A' WHERE tgrelid = 'source_documents'::regclass;
SQL

say "7. Metadata is XML: validated against a registered schema, screened for PHI, hashed canonically."
sql <<'SQL'
\pset footer off
SET client_min_messages = warning;
\echo '   The study registers an XSD for its document metadata (insert-only, versioned):'
SELECT trialvault.register_metadata_schema('ONCO-7', 'scan-meta', $x$
<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema">
  <xs:element name="meta">
    <xs:complexType>
      <xs:sequence>
        <xs:element name="visit" type="xs:positiveInteger"/>
        <xs:element name="form" type="xs:string"/>
        <xs:element name="taken" type="xs:date" minOccurs="0"/>
      </xs:sequence>
    </xs:complexType>
  </xs:element>
</xs:schema>$x$) AS schema_version;
\echo '   A well-formed but invalid document, with the errors libxml2 reports:'
SELECT * FROM trialvault.metadata_errors('ONCO-7', 'scan-meta', '<meta><visit>first</visit></meta>');
\echo '   Metadata that carries PHI is caught, naming the rule and where, never the value:'
SELECT * FROM trialvault.screen_metadata('ONCO-7',
	'<meta><visit>2</visit><form>CRF-07</form><PatientName>J. Roe</PatientName><note>ssn 123-45-6789</note></meta>');
\echo '   Formatting does not change the canonical hash (declaration, attribute order, quotes, comments):'
SELECT trialvault.metadata_sha256('<meta kind="scan" site="02"><visit>2</visit></meta>')
	= trialvault.metadata_sha256($x$<?xml version="1.0"?>
<meta site='02'   kind='scan'><!-- checked --><visit   >2</visit></meta>$x$) AS same_hash;
\echo '   Values come out typed, and can be indexed:'
SELECT trialvault.meta_int(metadata, '/meta/visit') AS visit, count(*) AS documents
FROM source_documents GROUP BY 1 ORDER BY 1 LIMIT 3;
\echo '   A document type definition (where entity bombs and file reads hide) is refused:'
SELECT demo_try($q$SELECT trialvault.metadata_c14n('<!DOCTYPE m [<!ENTITY x SYSTEM "file:///etc/passwd">]><m>&x;</m>')$q$) AS result;
\echo '   What loading runs: screen, validate and hash in one pass (the same hash as metadata_sha256):'
SELECT i.checked_schema, i.checked_version,
	i.metadata_sha256 = trialvault.metadata_sha256('<meta><visit>2</visit><form>CRF-07</form></meta>') AS same_hash
FROM trialvault.inspect_metadata('ONCO-7', '<meta><visit>2</visit><form>CRF-07</form></meta>', 'scan-meta') i;
\echo '   ... and 2,000 documents through it (bench/xml_bench.sh compares the rate with PostgreSQL parsing):'
\timing on
SELECT count(*) FILTER (WHERE i.checked_version IS NOT NULL) AS inspected
FROM generate_series(1, 2000) g,
	LATERAL trialvault.inspect_metadata('ONCO-7', ('<meta><visit>2</visit><form>CRF-07</form></meta>' || repeat(' ', g % 2))::xml, 'scan-meta') i;
\timing off
SQL

say "8. Studies, roles and PHI: encrypted under per-study keys, and every look at it on record."
sql <<'SQL'
\pset footer off
SET client_min_messages = warning;
\echo '   The master key comes from a command in postgresql.conf; the database only knows its id:'
SELECT master_key_loaded, master_key_id FROM trialvault.key_status();
\echo '   A study with two sites, and people in their study roles (login roles, one per person):'
CREATE ROLE ana LOGIN;      -- site staff, site 01
CREATE ROLE ben LOGIN;      -- site staff, site 02
CREATE ROLE ines LOGIN;     -- investigator, site 01
CREATE ROLE mo LOGIN;       -- monitor
CREATE ROLE spon LOGIN;     -- sponsor
CREATE ROLE erin LOGIN IN ROLE trialvault_emergency;  -- on-call physician
SELECT trialvault.create_study('CARDIO-3', 'Cardiology study 3') AS study_id;
SELECT trialvault.require_signatures('CARDIO-3', false);
SELECT count(trialvault.add_site('CARDIO-3', s, 'Hospital ' || s)::text) AS sites_added FROM (VALUES ('01'), ('02')) v(s);
SELECT count(trialvault.grant_role(m, 'CARDIO-3', s, r)::text) AS roles_granted FROM (VALUES ('ana', '01', 'site_staff'),
	('ben', '02', 'site_staff'), ('ines', '01', 'investigator'), ('mo', NULL, 'monitor'),
	('spon', NULL, 'sponsor')) v(m, s, r);
SELECT study, site, member, study_role FROM trialvault.current_memberships ORDER BY site NULLS LAST, member;
\echo '   Ana loads a signed scan with PHI; it is stored only as AES-256-GCM ciphertext:'
SET ROLE ana;
SELECT trialvault.load_document('CARDIO-3', '01', 'source', true,
	'<meta><visit>3</visit><form>ECG</form></meta>', convert_to('ECG of patient Jane Roe, born 1961-04-02', 'UTF8')) AS doc_id;
RESET ROLE;
SELECT doc_id, doc_type, content IS NOT NULL AS plaintext_stored, length(content_enc) AS ciphertext_bytes,
	encode(substr(content_enc, 1, 11), 'hex') AS header_magic_format_study_keyversion
	FROM trialvault.documents;
\echo '   Applications work in one study at a time: nothing opens until the session opens the study.'
SET ROLE ana;
SELECT demo_try('SELECT trialvault.open_document(1)') AS before_open_study;
SELECT trialvault.current_study() AS open_study FROM (SELECT trialvault.open_study('CARDIO-3')) opened;
\echo '   Who may read it: Ana (loader), yes; Ben (other site) and the sponsor, no; the monitor only once authorized, and stepped up.'
SELECT convert_from(trialvault.open_document(1), 'UTF8') AS ana_reads;
SET ROLE ben;
SELECT demo_try('SELECT trialvault.open_document(1)') AS ben_tries;
SET ROLE spon;
SELECT demo_try('SELECT trialvault.open_document(1)') AS sponsor_tries;
SET ROLE mo;
SELECT demo_try('SELECT trialvault.open_document(1)') AS monitor_tries;
SET ROLE ines;
SELECT trialvault.authorize_monitor('mo', 'CARDIO-3', '01', now() + interval '30 days') IS NULL AS ines_authorizes_mo_for_30_days;
\echo '   A monitor must also step up with a one-time code (a second factor) before seeing PHI:'
SET ROLE mo;
SELECT demo_try('SELECT trialvault.open_document(1)') AS monitor_tries_without_a_second_factor;
RESET ROLE;
SELECT demo_step_up('mo') AS mo_uses_his_authenticator_app;
SET ROLE mo;
SELECT length(trialvault.open_document(1)) AS monitor_reads_bytes;
\echo '   A read inside a transaction that is rolled back is still on record:'
BEGIN;
SELECT length(trialvault.open_document(1)) AS read_then_rollback;
ROLLBACK;
\echo '   Break-glass access needs the emergency role and a reason; it is marked in the log:'
SET ROLE erin;
SELECT demo_try('SELECT trialvault.emergency_open(1, ''urgent'')') AS too_short_a_reason;
SELECT length(trialvault.emergency_open(1, 'patient in ER, needs ECG history now')) AS emergency_read_bytes;
RESET ROLE;
\echo '   The decryption log: every attempt, granted or not, committed by the log writer before the call returned:'
SELECT log_id, requester, granted, reason, emergency, to_char(requested_at, 'HH24:MI:SS.MS') AS at
	FROM trialvault.decryption_log ORDER BY log_id;
\echo '   A superuser copies the ciphertext onto a new row of the other site: it does not decrypt there.'
INSERT INTO trialvault.documents (study, site, doc_type, contains_phi, metadata, metadata_sha256,
	content_enc, content_length, content_sha256, loaded_by)
SELECT study, '02', doc_type, contains_phi, metadata, metadata_sha256, content_enc, content_length,
	content_sha256, 'ben' FROM trialvault.documents WHERE doc_id = 1 RETURNING doc_id AS copied_doc;
SET ROLE ben;
SELECT demo_try('SELECT trialvault.open_document(2)') AS ben_opens_the_copy;
RESET ROLE;
SELECT log_id, requester, granted, reason FROM trialvault.decryption_log ORDER BY log_id DESC LIMIT 1;
\echo '   The log writer (a background worker) and the chain of the log:'
SELECT pid IS NOT NULL AS running, written, batches FROM trialvault.log_writer_status();
SELECT ok, rows_checked FROM trialvault.verify('trialvault.decryption_log');
SQL
say "9. Applications see one study at a time, through views that depend on who is asking."
sql <<'SQL'
\pset footer off
SET client_min_messages = warning;
CREATE ROLE aud LOGIN;      -- auditor
SELECT trialvault.create_study('NEURO-1', 'Neurology study 1') AS other_study;
SELECT trialvault.require_signatures('NEURO-1', false);
SELECT count(trialvault.add_site('NEURO-1', '01', 'City Hospital')::text) AS sites_added;
SELECT count(trialvault.grant_role(m, s, si, r)::text) AS roles_granted
	FROM (VALUES ('ana', 'NEURO-1', '01', 'site_staff'), ('aud', 'CARDIO-3', NULL, 'auditor')) v(m, s, si, r);
SET ROLE ana;
\echo '   Ana has no rights on the tables themselves:'
SELECT demo_try('SELECT count(*) FROM trialvault.documents') AS ana_reads_the_table;
\echo '   With no study open the views are empty, and setting a parameter cannot open one:'
SELECT trialvault.close_study();
SELECT count(*) AS my_documents_with_no_study_open FROM trialvault.my_documents;
SELECT demo_try('SET trialvault.study = ''CARDIO-3''') AS forged_setting;
\echo '   Ana opens CARDIO-3: her site, her roles, and its documents (never their content):'
SELECT trialvault.open_study('CARDIO-3');
SELECT site, name, my_roles, may_load, may_open FROM trialvault.my_sites;
SELECT doc_id, site, doc_type, contains_phi, loaded_by, content_length FROM trialvault.my_documents;
\echo '   Opening NEURO-1 instead closes CARDIO-3:'
SELECT trialvault.open_study('NEURO-1');
SELECT trialvault.current_study(), (SELECT count(*) FROM trialvault.my_documents) AS documents;
\echo '   The investigator reads who opened her site''s documents; the auditor reads the audit trail:'
SET ROLE ines;
SELECT trialvault.open_study('CARDIO-3');
SELECT log_id, requester, granted, reason, emergency FROM trialvault.my_decryption_log ORDER BY log_id;
SET ROLE aud;
SELECT event, actor, site, detail FROM trialvault.audit_trail ORDER BY event_id DESC LIMIT 5;
\echo '   Ana works in CARDIO-3; then her role there is revoked: her very next query sees nothing.'
SET ROLE ana;
SELECT trialvault.open_study('CARDIO-3');
SELECT trialvault.current_study() AS ana_current_study, count(*) AS ana_documents FROM trialvault.my_documents;
RESET ROLE;
SELECT trialvault.revoke_role('ana', 'CARDIO-3', '01', 'site_staff');
SET ROLE ana;
SELECT trialvault.current_study() AS ana_current_study, count(*) AS ana_documents FROM trialvault.my_documents;
SELECT demo_try('SELECT trialvault.open_study(''CARDIO-3'')') AS ana_reopens_cardio;
RESET ROLE;
SQL

say "10. The guards deny by default: less obvious ways around them are refused too, for superusers as well."
sql <<'SQL'
\pset footer off
SET client_min_messages = warning;
CREATE TABLE sink (LIKE source_documents);
CREATE TYPE pair AS (a int, b int);
CREATE TABLE vitals (subject text, p pair);
SELECT trialvault.protect('vitals');
INSERT INTO vitals VALUES ('S-001', ROW(120, 80));
SELECT attempt, demo_try(stmt) AS result FROM (VALUES
	('send inserts elsewhere with a rule', 'CREATE RULE r AS ON INSERT TO source_documents DO INSTEAD NOTHING'),
	('hide rows with row level security', 'ALTER TABLE source_documents FORCE ROW LEVEL SECURITY'),
	('slip another table''s rows in', 'ALTER TABLE sink INHERIT source_documents'),
	('swap two fields of a stored type', 'ALTER TYPE pair RENAME ATTRIBUTE a TO b2'),
	('fill old rows through a serial column', 'ALTER TABLE source_documents ADD COLUMN n serial'),
	('replace the guard under another search_path', 'SET LOCAL search_path = trialvault; CREATE OR REPLACE FUNCTION guard() RETURNS trigger LANGUAGE plpgsql AS ''BEGIN RETURN NULL; END'''),
	('turn off security_barrier on a view', 'ALTER VIEW trialvault.my_documents SET (security_barrier = false)'),
	('hide decryption-log rows with a policy', 'CREATE POLICY p ON trialvault.decryption_log USING (false)'),
	('read the documents table directly', 'GRANT SELECT ON trialvault.documents TO ana')
) AS t(attempt, stmt);
\echo
\echo '   A superuser edits the catalog instead, taking security_barrier off a secured view behind the'
\echo '   guards'' back; every verify() compares the extension with what its install script sealed:'
UPDATE pg_class SET reloptions = NULL WHERE oid = 'trialvault.my_documents'::regclass;
SELECT ok, guard FROM trialvault.verify('vitals');
UPDATE pg_class SET reloptions = '{security_barrier=true}' WHERE oid = 'trialvault.my_documents'::regclass;
\echo '   (undone:)'
SELECT ok, guard FROM trialvault.verify('vitals');
SQL

say "11. An auditor checks a table without trusting the server: scripts/trialvault-verify-export"
echo "   exports it with psql (binary COPY) and recomputes every hash and link offline, in Python,"
echo "   with no trialvault code. It finds the row the rogue superuser altered in step 6, as verify() did:"
chmod 755 "$TV_TMP"
python3 scripts/trialvault-verify-export export source_documents -o "$TV_TMP/source_documents.tvx" \
	-d "host=$(tv_dir demo) port=$(tv_port demo) user=postgres dbname=postgres" >/dev/null
python3 scripts/trialvault-verify-export verify "$TV_TMP/source_documents.tvx" >"$TV_TMP/verifier.out" || true
sed 's/^/   /' "$TV_TMP/verifier.out"
server=$(sql -At -c "SELECT ok || ' ' || bad_rows || ' ' || coalesce(first_bad, '') FROM trialvault.verify('source_documents')")
mine="$(sed -n 's/^ok: //p' "$TV_TMP/verifier.out") $(sed -n 's/^bad_rows: //p' "$TV_TMP/verifier.out") $(sed -n 's/^first_bad: //p' "$TV_TMP/verifier.out")"
if [ "${server/#t /true }" = "$mine" ] || [ "${server/#f /false }" = "$mine" ]; then
	echo "   The verifier and verify() agree: ok, bad_rows and first_bad are the same."
else
	echo "   The verifier and verify() DISAGREE: verify() says '$server'."
fi

say "12. Certified copies: Ana signs a scan with her own key; the server countersigns at once."
K=$TV_TMP/keys
mkdir -p "$K"
chmod 755 "$K"
echo "   Ana makes a key pair on her own machine; its private half is protected by her pass phrase"
echo "   and never reaches the server. She registers the public half:"
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -aes256 -pass pass:ana-passphrase \
	-out "$K/ana.pem" 2>/dev/null
openssl pkey -in "$K/ana.pem" -passin pass:ana-passphrase -pubout -out "$K/ana.pub"
fpr=$(echo "SELECT trialvault.register_signing_key(:'pub')" | tv_psql demo -U ana -At -v pub="$(cat "$K/ana.pub")")
echo "   fingerprint registered:        $fpr"
echo "   openssl pkey -outform DER | sha256sum: $(openssl pkey -pubin -in "$K/ana.pub" -outform DER | sha256sum | cut -c1-64)"
sql <<'SQL'
\pset footer off
SET client_min_messages = warning;
\echo '   The server key comes from trialvault.signing_key_command; only its public half is known:'
SELECT loaded, algorithm, fingerprint FROM trialvault.server_signing_key();
\echo '   A new study: studies created since 0.7 require signed loads.'
SELECT trialvault.create_study('ONCO-2', 'Oncology study 2') AS study_id;
SELECT trialvault.add_site('ONCO-2', '01', 'Hospital 01');
SELECT count(trialvault.grant_role(m, 'ONCO-2', '01', r)::text) AS roles_granted
	FROM (VALUES ('ana', 'site_staff'), ('ines', 'investigator')) v(m, r);
SELECT trialvault.set_printed_name('ana', 'Ana Ruiz, study nurse');
SET ROLE ana;
SELECT demo_try($$SELECT trialvault.load_document('ONCO-2', '01', 'source', true, '<meta><visit>1</visit></meta>', 'scan')$$)
	AS unsigned_load;
SQL
printf 'Consent form of patient John Doe, signed 2026-11-30\n' >"$K/scan.txt"
printf '<meta><visit>1</visit><form>consent</form></meta>\n' >"$K/scan.xml"
echo "   scripts/trialvault-sign builds the certification statement locally and signs it with openssl:"
bash scripts/trialvault-sign --key "$K/ana.pem" --passin pass:ana-passphrase --signer ana --study ONCO-2 \
	--site 01 --type source --file "$K/scan.txt" --metadata "$K/scan.xml" --statement "$K/statement" >"$K/signed"
sed 's/^/     /; s/\(signature=.\{40\}\).*/\1.../' "$K/signed"
sed 's/^/     | /' "$K/statement"
. "$K/signed"
load="SELECT trialvault.load_document('ONCO-2', '01', 'source', true, '$(cat "$K/scan.xml")',
	decode('$(od -An -v -tx1 "$K/scan.txt" | tr -d ' \n')', 'hex'), signed_at => '$signed_at',
	nonce => decode('$nonce', 'hex'), signature => decode('$signature', 'hex'))"
echo "   load_document checks the signature, its time and nonce, then stores the document and countersigns:"
echo "     doc_id $(tv_psql demo -U ana -At -c "$load")"
echo "   The same call again is a replay:"
echo "     $(tv_psql demo -U ana -v VERBOSITY=default -c "$load" 2>&1 | head -n 1)"
sql <<'SQL'
\pset footer off
SELECT s.signature_id, s.doc_id, s.signer, k.printed_name, s.meaning, left(s.signer_key, 16) AS signer_key,
	left(s.server_key, 16) AS server_key, to_char(s.countersigned_at, 'HH24:MI:SS.US') AS countersigned
	FROM trialvault.signatures s JOIN trialvault.signer_keys k ON k.fingerprint = s.signer_key;
SQL
echo "   Anyone can check the countersignature with openssl, over the documented bytes:"
row=$(sql -At -c "SELECT encode(sha256(trialvault._signature_statement(doc_id, signature_id)), 'hex') || ' ' || encode(sha256(signature), 'hex') || ' ' ||
	to_char(countersigned_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') || ' ' || server_key
	FROM trialvault.signatures ORDER BY signature_id DESC LIMIT 1")
read -r sh gh at sfp <<<"$row"
printf 'trialvault-countersignature-v1\nstatement-sha256: %s\nsignature-sha256: %s\ncountersigned-at: %s\nserver-key-sha256: %s\n' \
	"$sh" "$gh" "$at" "$sfp" >"$K/countersigned"
sql -At -c "SELECT public_key FROM trialvault.server_keys WHERE fingerprint = '$sfp'" >"$K/server.pub"
sql -At -c "SELECT encode(countersignature, 'base64') FROM trialvault.signatures ORDER BY signature_id DESC LIMIT 1" |
	base64 -d >"$K/countersignature"
echo "     openssl dgst -sha256 -verify server.pub: $(openssl dgst -sha256 -verify "$K/server.pub" -signature "$K/countersignature" "$K/countersigned")"
echo "   and Ana's own signature with her public key: $(openssl dgst -sha256 -verify "$K/ana.pub" \
	-signature <(sql -At -c "SELECT encode(signature, 'base64') FROM trialvault.signatures ORDER BY signature_id DESC LIMIT 1" | base64 -d) \
	"$K/statement")"

echo "   Ines, the investigator, verifies the copy inside the database (content decrypted and hashed"
echo "   there, never returned; the check is in the decryption log) and exports its certificate:"
doc=$(sql -At -c "SELECT doc_id FROM trialvault.signatures ORDER BY signature_id DESC LIMIT 1")
printf "SELECT trialvault.open_study('ONCO-2') \\\\g /dev/null\n\\\\pset footer off\nSELECT signer, meaning, user_signature_ok, countersignature_ok, content_matches FROM trialvault.verify_document(%s);\n" "$doc" |
	tv_psql demo -U ines | sed 's/^/     /'
printf "SELECT trialvault.open_study('ONCO-2') \\\\g /dev/null\nSELECT trialvault.export_certificate(%s);\n" "$doc" |
	tv_psql demo -U ines -At >"$K/certificate.xml"
echo "   An inspector checks the certificate years later with openssl and xmllint alone:"
bash scripts/trialvault-verify-certificate --content "$K/scan.txt" "$K/certificate.xml" | sed 's/^/     /; s/\(([0-9a-f]\{16\}\)[0-9a-f]*)/\1...)/'
sed 's/site: 01/site: 02/' "$K/statement" >"$K/statement.forged"
python3 - "$K/certificate.xml" "$K/forged.xml" "$K/statement.forged" <<'PY'
import base64, re, sys
s = open(sys.argv[1]).read()
st = re.search(r'<statement>(.*?)</statement>', s, re.S).group(1)
forged = base64.encodebytes(open(sys.argv[3], 'rb').read()).decode().strip()
open(sys.argv[2], 'w').write(s.replace(st, forged))
PY
echo "   The same certificate with the statement changed to say site 02:"
bash scripts/trialvault-verify-certificate "$K/forged.xml" | grep -E 'FAILED|NOT OK' | sed 's/^/     /' || true
echo "   The printable certificate for the paper file:"
printf "SELECT trialvault.open_study('ONCO-2') \\\\g /dev/null\nSELECT trialvault.certificate_text(%s);\n" "$doc" |
	tv_psql demo -U ines -At | sed 's/^/     | /'

say "13. Signed digests: the server signs a table's chain state, and later proves the table only grew."
sql <<'SQL' >/dev/null
SET client_min_messages = warning;
CREATE TABLE lab_results (result text);
SELECT trialvault.protect('lab_results');
INSERT INTO lab_results VALUES ('HbA1c 6.1 %'), ('HbA1c 6.4 %'), ('HbA1c 7.9 %');
SQL
sql -At -c "SELECT trialvault.signed_digest('lab_results')" >"$K/digest.txt"
echo "   The digest is kept outside the database (here the first lines of it):"
sed -n '1,8p' "$K/digest.txt" | sed 's/^/     | /'
sed -n '1,/^server-key-sha256: /p' "$K/digest.txt" >"$K/digest.signed"
sed -n 's/^signature: //p' "$K/digest.txt" | base64 -d >"$K/digest.sig"
sed -n '/BEGIN PUBLIC KEY/,/END PUBLIC KEY/p' "$K/digest.txt" >"$K/digest.pub"
echo "   openssl checks its signature offline: $(openssl dgst -sha256 -verify "$K/digest.pub" -signature "$K/digest.sig" "$K/digest.signed")"
echo "   A rogue superuser turns the guards off in the catalog and rewrites the newest result,"
echo "   recomputing its hash with the published formula, so that verify() alone sees nothing:"
sql -v digest="$(cat "$K/digest.txt")" <<'SQL'
\pset footer off
SET client_min_messages = warning;
UPDATE pg_trigger SET tgenabled = 'D' WHERE tgrelid = 'lab_results'::regclass;
UPDATE lab_results SET result = 'HbA1c 5.9 %',
	tv_hash = digest('TVHASH1'::bytea || int8send(tv_seq) || tv_prev_hash ||
		digest('TVROW2'::bytea || int4send(6) || 'result'::bytea || int4send(25) || 'r'::bytea ||
			int4send(octet_length('HbA1c 5.9 %')) || convert_to('HbA1c 5.9 %', 'UTF8'), 'sha256'), 'sha256')
	WHERE result = 'HbA1c 7.9 %';
UPDATE pg_trigger SET tgenabled = 'A' WHERE tgrelid = 'lab_results'::regclass;
SELECT ok, rows_checked, guard FROM trialvault.verify('lab_results');
\echo '   The digest taken before catches it:'
SELECT extends, detail FROM trialvault.verify_digest('lab_results', :'digest');
\echo '   A daily check of a large table rehashes only what was added since yesterday''s digest:'
CREATE TABLE vital_signs (reading text);
SELECT trialvault.protect('vital_signs') \g /dev/null
INSERT INTO vital_signs SELECT 'BP ' || (110 + i % 40) || '/' || (70 + i % 20) FROM generate_series(1, 5000) i;
SELECT trialvault.signed_digest('vital_signs') AS yesterday \gset
INSERT INTO vital_signs VALUES ('BP 128/84'), ('BP 131/86'), ('BP 119/77');
\x on
SELECT ok, rows_checked, rows_not_rehashed, scope FROM trialvault.verify('vital_signs', since => :'yesterday');
\x off
\echo '   A full verify shares reading and hashing with parallel workers (trialvault.verify_workers, 2 by'
\echo '   default; used here although the table is small) and links the rows in storage order itself:'
\echo '   the verdict is the same as working alone.'
SET min_parallel_table_scan_size = 0;
SELECT 'with 2 workers' AS verify, ok, rows_checked, left(encode(head_digest, 'hex'), 16) AS head_digest
  FROM trialvault.verify('vital_signs');
SET trialvault.verify_workers = 0;
SELECT 'alone' AS verify, ok, rows_checked, left(encode(head_digest, 'hex'), 16) AS head_digest
  FROM trialvault.verify('vital_signs');
SQL

say "14. Password rules: a weak or reused password is refused, naming the rule (never the password); passwords expire."
sql <<'SQL'
\pset footer off
SELECT demo_try($$ALTER ROLE ana PASSWORD 'ana2024'$$) AS weak_password;
SELECT demo_try($$ALTER ROLE ana PASSWORD 'C0ffee&Consent'$$) AS strong_password;
SELECT demo_try($$ALTER ROLE ana PASSWORD 'C0ffee&Consent'$$) AS the_same_one_again;
SELECT event, detail FROM trialvault.audit_events WHERE event = 'password_refused' ORDER BY event_id;
SELECT rolname, rolvaliduntil::date AS password_valid_until FROM pg_roles WHERE rolname = 'ana';
SQL

say "15. Every connection attempt, to any database, is on record: let in only once it is."
sed -i '1i local all ana scram-sha-256' "$(tv_dir demo)/data/pg_hba.conf"
sql -c "SELECT pg_reload_conf()" >/dev/null
ana_login() {	# ana_login PASSWORD: ana connects over the socket with a password
	PGPASSWORD=$1 "$PGBIN/psql" -X -w -h "$(tv_dir demo)" -p "$(tv_port demo)" -U ana -d postgres \
		-At -c "SELECT 'ana is in'" 2>&1 | sed 's/^/   /' || true
}
echo "   ana with a wrong password, then with hers:"
ana_login 'Not-her-password1'
ana_login 'C0ffee&Consent'
sleep 0.3
sql <<'SQL'
\pset footer off
SELECT to_char(at, 'HH24:MI:SS') AS at, role_name, database, auth_method, succeeded, reason
  FROM trialvault.login_attempts WHERE role_name = 'ana' ORDER BY event_id;
SQL

say "16. Lockout: after 5 wrong passwords in a row, even the right one is refused, until an administrator unlocks."
for i in 1 2 3 4 5; do ana_login "Guess-$i-Wrong" >/dev/null; done
echo "   ana after five wrong guesses, now with her real password (she is told no more than for a wrong one):"
ana_login 'C0ffee&Consent'
sql <<'SQL'
\pset footer off
SELECT role_name, failures, locked_until IS NOT NULL AS locked FROM trialvault.lockouts;
SELECT trialvault.unlock_role('ana') AS unlocked;
SELECT event, actor, detail FROM trialvault.audit_events WHERE event IN ('role_locked', 'role_unlocked') ORDER BY event_id;
SQL
echo "   After the unlock:"
ana_login 'C0ffee&Consent'

say "17. Every account change, in any database, is on record; passwords never reach the logs."
sql <<'SQL' >/dev/null
SET log_statement = 'all';
CREATE ROLE bea LOGIN PASSWORD 'Tr1al&Error!' VALID UNTIL '2027-06-30';
ALTER ROLE bea CONNECTION LIMIT 2;
GRANT trialvault_admin TO bea;
REVOKE trialvault_admin FROM bea;
SQL
sql <<'SQL'
\pset footer off
SELECT to_char(at, 'HH24:MI:SS') AS at, current_user_name AS by, target_role, kind, detail
  FROM trialvault.account_changes WHERE target_role = 'bea' ORDER BY event_id;
SQL
echo "   What the server log kept of the statement that set bea's password:"
grep -m1 'statement: CREATE ROLE bea' "$(tv_dir demo)/server.log" | sed 's/^.*LOG: */   /' || true

say "18. The auditor's printable report of a period, ending with the verification of every chain."
sql -At -c "SELECT trialvault.audit_report(now() - interval '1 hour', now() + interval '1 minute')" >"$(tv_dir demo)/report.txt"
echo "   (the whole report is in $(tv_dir demo)/report.txt; its start and its end:)"
sed -n '1,12p' "$(tv_dir demo)/report.txt" | sed 's/^/   /'
echo "   ..."
sed -n '/^5\. Verification/,$p' "$(tv_dir demo)/report.txt" | sed 's/^/   /'

say "19. A second cluster becomes the remote backup repository: insert-only for shippers, checking what arrives."
tv_cluster_start repo "shared_preload_libraries = ''" >/dev/null
tv_psql repo -c "CREATE ROLE tv_shipper LOGIN" >/dev/null
PSQL=$PGBIN/psql "$PGBIN/trialvault-remote-init" "host=$(tv_dir repo) port=$(tv_port repo) user=postgres dbname=postgres" tv_shipper |
	sed 's/^/   /'
tv_psql repo -v VERBOSITY=terse <<'SQL'
\pset footer off
SET ROLE tv_shipper;
CREATE FUNCTION pg_temp.try(stmt text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE stmt;
	RETURN 'accepted';
EXCEPTION WHEN OTHERS THEN
	RETURN 'REFUSED: ' || SQLERRM;
END $$;
SELECT what, pg_temp.try(stmt) AS result FROM (VALUES
	('batch 1, intact', $$INSERT INTO trialvault_repo.batches (system_id, batch_id, table_name, first_seq, last_seq, row_count, created_at, sha256, ciphertext)
		VALUES ('DEMO', 1, 'public.source_documents', 1, 5, 5, now(), sha256('\x0102'::bytea), '\x0102')$$),
	('batch 2, damaged on the way', $$INSERT INTO trialvault_repo.batches (system_id, batch_id, table_name, first_seq, last_seq, row_count, created_at, sha256, ciphertext)
		VALUES ('DEMO', 2, 'public.source_documents', 6, 9, 4, now(), sha256('\x0102'::bytea), '\x0103')$$),
	('batch 1 again', $$INSERT INTO trialvault_repo.batches (system_id, batch_id, table_name, first_seq, last_seq, row_count, created_at, sha256, ciphertext)
		VALUES ('DEMO', 1, 'public.source_documents', 1, 5, 5, now(), sha256('\x0102'::bytea), '\x0102')$$),
	('the shipper deletes a batch', 'DELETE FROM trialvault_repo.batches')) AS t(what, stmt);
SQL

say "20. Every committed row of every protected table is shipped there, encrypted to an OpenPGP key the server never holds the private half of."
# The key pair, made as docs/backups.md says (2048-bit here, to be quick; use 4096).
export GNUPGHOME=$(tv_dir repo)/gnupg
echo 'demo pass phrase' >"$(tv_dir repo)/pass.txt"
mkdir -p "$(tv_dir demo)/backup-key"
tv_backup_keypair "$GNUPGHOME" "$(tv_dir repo)/pass.txt" "$(tv_dir demo)/backup-key/public.asc" 2048 >/dev/null
chmod -R a+rX "$(tv_dir demo)/backup-key"
echo "   Only the public key goes to the server: $(tv_dir demo)/backup-key/public.asc"
sql -q <<SQL
ALTER SYSTEM SET trialvault.backup_conninfo = 'host=$(tv_dir repo) port=$(tv_port repo) user=tv_shipper dbname=postgres';
ALTER SYSTEM SET trialvault.backup_public_key_file = '$(tv_dir demo)/backup-key/public.asc';
ALTER SYSTEM SET trialvault.backup_naptime = '200ms';
SELECT pg_reload_conf() \g /dev/null
SQL
shipped_up() {
	[ "$(sql -At -c "SELECT count(*) FROM trialvault.backup_status WHERE table_name IN ('source_documents'::regclass, 'trialvault.documents'::regclass) AND shipped_rows > 0 AND lag_rows = 0")" = 2 ]
}
wait_until "the backups to catch up" 60 shipped_up || true
sql <<'SQL'
\pset footer off
SELECT table_name, shipped_rows, lag_rows, batches, bytes, last_error FROM trialvault.backup_status
 WHERE shipped_rows > 0 ORDER BY table_name::text;
SQL
echo "   On the remote: ciphertext, with the metadata it needs (and signed chain heads):"
tv_psql repo <<'SQL'
\pset footer off
SELECT table_name, count(*) AS batches, sum(row_count) AS rows, min(first_seq) AS from_seq, max(last_seq) AS to_seq,
       bool_and(heads_signature IS NOT NULL) AS heads_signed
  FROM trialvault_repo.batches WHERE system_id <> 'DEMO' GROUP BY table_name ORDER BY table_name;
SQL
echo "   Does every local chain still hold what was shipped? A rewrite, even a consistent one, would be named;"
echo "   source_documents still carries the rogue superuser's change of step 6, so its chain does not verify:"
sql <<'SQL'
\pset footer off
SELECT table_name, ok, detail FROM trialvault.verify_against_remote()
 WHERE table_name IN ('public.source_documents', 'trialvault.documents', 'trialvault.decryption_log');
SQL
echo "   One batch of source_documents, opened with plain gpg and the private key (off the server):"
tv_psql repo -At -c "SELECT encode(ciphertext, 'base64') FROM trialvault_repo.batches
	WHERE system_id <> 'DEMO' AND table_name = 'public.source_documents' ORDER BY batch_id LIMIT 1" | base64 -d >"$(tv_dir repo)/batch.pgp"
gpg --batch --quiet --pinentry-mode loopback --passphrase-file "$(tv_dir repo)/pass.txt" \
	--decrypt "$(tv_dir repo)/batch.pgp" >"$(tv_dir repo)/batch.json" 2>/dev/null
echo "   $(head -c 240 "$(tv_dir repo)/batch.json") ..."

say "21. A full backup, confirmed by the repository, after which it purges the batches the backup covers; pg_cron takes one every night."
sql <<'SQL'
\pset footer off
SELECT * FROM trialvault.full_backup();
SQL
tv_psql repo <<'SQL'
\pset footer off
SELECT f.backup_id, f.covers_batch_id, f.chunks, f.manifest ->> 'rows' AS rows, f.confirmed_at IS NOT NULL AS confirmed,
       (SELECT count(*) FROM trialvault_repo.batches b WHERE b.system_id = f.system_id AND b.batch_id <= f.covers_batch_id) AS covered_batches_left,
       (SELECT count(*) FROM trialvault_repo.batches b WHERE b.system_id = f.system_id AND b.batch_id > f.covers_batch_id) AS later_batches
  FROM trialvault_repo.full_backups f WHERE f.system_id <> 'DEMO';
SQL
sql <<'SQL'
\pset footer off
SET client_min_messages = warning;
CREATE EXTENSION pg_cron;
SELECT trialvault.schedule_backups() AS pg_cron_job;
SELECT jobname, schedule, command FROM cron.job;
SQL

say "22. Restore: an empty database rebuilt from the repository with the private key (which never touches the source)."
# A second clinic database, shipped as a system of its own.
sql -q -c "CREATE DATABASE clinic2"
tv_psql demo -d clinic2 -q <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION trialvault CASCADE;
CREATE TABLE visits (id int PRIMARY KEY, subject text NOT NULL, visit_date date, weight_kg numeric(5,1), note text);
SELECT trialvault.protect('visits') \g /dev/null
INSERT INTO visits SELECT g, 'S-' || lpad(g::text, 3, '0'), date '2026-11-01' + g, 60 + g / 10.0, 'visit ' || g FROM generate_series(1, 40) g;
SQL
clinic2_shipped() {
	[ "$(tv_psql demo -d clinic2 -At -c "SELECT count(*) FROM trialvault.backup_status WHERE table_name = 'visits'::regclass AND shipped_rows > 0 AND lag_rows = 0")" = 1 ]
}
wait_until "clinic2 to be shipped" 60 clinic2_shipped || true
tv_psql demo -d clinic2 -At -c "SELECT '   clinic2: full backup ' || backup_id || ', completed: ' || completed FROM trialvault.full_backup()"
tv_psql demo -d clinic2 -q -c "INSERT INTO visits SELECT g, 'S-' || lpad(g::text, 3, '0'), date '2026-11-01' + g, 60 + g / 10.0, 'later visit ' || g FROM generate_series(41, 45) g"
wait_until "clinic2 to be shipped" 60 clinic2_shipped || true
echo "   ... and 5 visits after it, shipped as a batch. Now restore clinic2 into an empty database:"
gpg --batch --pinentry-mode loopback --passphrase-file "$(tv_dir repo)/pass.txt" --armor --export-secret-keys \
	>"$(tv_dir repo)/private.asc" 2>/dev/null
SYSID=$(sql -At -c "SELECT system_identifier FROM pg_control_system()")
sql -q -c "CREATE DATABASE restored"
# The source server's public signing key, kept apart from the repository: the
# restore checks that every chain ends at the heads this server signed.
sql -At -c "SELECT public_key FROM trialvault.server_signing_key()" >"$(tv_dir repo)/source-server.pem"
restore() { # restore SYSTEM TARGETDB
	PSQL=$PGBIN/psql "$PGBIN/trialvault-restore" --remote "host=$(tv_dir repo) port=$(tv_port repo) user=tv_shipper dbname=postgres" \
		--key "$(tv_dir repo)/private.asc" --passphrase-file "$(tv_dir repo)/pass.txt" --system "$1" \
		--server-key "$(tv_dir repo)/source-server.pem" \
		--target "host=$(tv_dir demo) port=$(tv_port demo) user=postgres dbname=$2" 2>&1 | sed 's/^/   /'
}
restore "$SYSID.clinic2" restored
echo "   The restored visits against the original, row by row (chain columns included):"
for db in clinic2 restored; do
	tv_psql demo -d "$db" -At -c "SELECT '   $db: ' || count(*) || ' rows, md5 ' || md5(string_agg(v::text, '|' ORDER BY tv_seq)) FROM visits v"
done
echo "   The first database's backups hold source_documents as the rogue superuser of step 6 left it;"
echo "   restoring them is refused, because that row no longer matches its hash:"
sql -q -c "CREATE DATABASE restored_main"
restore "$SYSID.postgres" restored_main || true

say "23. A second factor: ana enrols an authenticator app and steps her session up with a six-digit code; new members activate with two codes."
URI=$(sql -At -c "SET ROLE ana; SELECT trialvault.enroll_second_factor()")
echo "   enroll_second_factor() returns this once (an app scans it as a QR code); the secret is kept only wrapped:"
echo "   $URI"
SECRET=$(sed -n 's/.*[?&]secret=\([A-Z2-7]*\).*/\1/p' <<<"$URI")
# Codes computed by oathtool, as her app would; early in a 30-second step so
# that the server sees the same step.
while [ $(($(date +%s) % 30)) -gt 18 ]; do sleep 1; done
CODE=$(oathtool --totp -b "$SECRET")
NEXT=$(oathtool --totp -b -N "@$(($(date +%s) + 30))" "$SECRET")
echo "   Her app shows $CODE; she confirms the enrolment with it, and later steps up with the next code, $NEXT:"
sql <<SQL
\pset footer off
SET ROLE ana;
SELECT 'yes' AS confirmed FROM (SELECT trialvault.confirm_second_factor('$CODE')) c;
SELECT trialvault.step_up('$NEXT') AS stepped_up_until;
SELECT enrolled, confirmed, locked, failures, stepped_up_until IS NOT NULL AS stepped_up FROM trialvault.second_factor_status();
SELECT demo_try('SELECT trialvault.step_up(''$NEXT'')') AS the_same_code_again;
SELECT demo_try('SELECT trialvault.step_up(''000000'')') AS a_wrong_code;
RESET ROLE;
SELECT event, actor, detail::jsonb ->> 'reason' AS reason FROM trialvault.audit_events
 WHERE event LIKE 'second\_factor\_%' AND detail::jsonb ->> 'member' = 'ana' ORDER BY event_id;
SQL
echo "   A new member is invited with two codes, one for e-mail and one for SMS, and holds nothing until she enters both:"
sql -q -c "CREATE ROLE dora LOGIN"
read -r DEMAIL DSMS < <(sql -At -c "SELECT email_code || ' ' || sms_code FROM trialvault.invite_member('dora', 'CARDIO-3', '01', 'site_staff')")
echo "   invite_member('dora', 'CARDIO-3', '01', 'site_staff') returns $DEMAIL (e-mail) and $DSMS (SMS); only their salted hashes are kept."
sql <<SQL
\pset footer off
SET ROLE dora;
SELECT demo_try('SELECT trialvault.open_study(''CARDIO-3'')') AS dora_before_activation;
SELECT demo_try('SELECT trialvault.activate_account(''$DSMS'', ''$DEMAIL'')') AS dora_swaps_the_codes;
SELECT trialvault.activate_account('$DEMAIL', '$DSMS') AS dora_activates;
SELECT trialvault.current_study() AS dora_opens_the_study FROM (SELECT trialvault.open_study('CARDIO-3')) opened;
RESET ROLE;
SELECT event, actor, detail::jsonb ->> 'reason' AS reason FROM trialvault.audit_events
 WHERE event LIKE 'invitation\_%' ORDER BY event_id;
SQL

sql -c "SELECT pg_terminate_backend(pid) FROM trialvault.log_writer_status()" >/dev/null
sleep 0.5
say "   The log writer is stopped: nothing is decrypted while nothing can be put on record."
sql <<'SQL'
\pset footer off
SET ROLE ana;
SELECT demo_try('SELECT trialvault.open_document(1)') AS ana_tries_while_the_writer_is_down;
SQL
echo "   ... and ana cannot even log in, while a superuser can (a fallback, in the server log):"
ana_login 'C0ffee&Consent'
grep -m1 'trialvault login fallback:' "$(tv_dir demo)/server.log" | sed 's/^.*LOG: */   /' || true

say "Done. What you saw:"
cat <<'EOF2'
  - trialvault.protect(table) makes a table insert-only and hash-chained, rows already there included.
  - UPDATE, DELETE, TRUNCATE, upserts, disabling or dropping the guards, dropping or retyping
    columns, and dropping a non-empty table or the extension are refused for every role, also
    with session_replication_role = replica.
  - Concurrent writers are chained without waiting on each other.
  - trialvault.verify(table) re-hashes every row and checks every link; a change made behind
    the guards' back is found and the row named.
  - XML metadata is validated against registered XSDs, screened for PHI by built-in and per-study
    rules, hashed in canonical form, and read out typed by XPath; DTDs and entity tricks are refused.
    Loading does all three from one parse (inspect_metadata), with rules and schemas cached.
  - Studies, sites and study roles are insert-only event tables; PHI is AES-256-GCM ciphertext
    under per-study keys wrapped by a master key that never enters the database, bound to its
    study, document and field.
  - open_document decides who may read (loader, site staff, investigator, authorized monitor,
    safety for SAEs, anyone in the study for documents without PHI; break-glass with a reason),
    and every attempt is committed to the chained decryption log before anything is returned,
    even if the caller rolls back; with the log writer down, nothing is decrypted.
  - Users have no rights on any table: they open one study at a time (not forgeable by a
    setting) and see it through views that show what their role entitles them to, never
    document content; a revocation takes effect on the next query.
  - The guards deny by default: on protected tables, the types they use and the extension's
    own objects only what is known to be harmless is allowed, for superusers too; catalog
    edits of the extension are reported by verify().
  - An auditor can verify an exported table with an independent verifier that shares no code
    with trialvault.
  - Certified copies: members sign a documented statement with their own key outside the
    database; load_document checks signature, time and nonce before storing anything, and the
    server countersigns with a key that never enters the database; verify_document checks
    both against the content inside the server, and an exported certificate is checked offline
    with openssl and xmllint alone.
  - Signed digests of a table, kept outside the database, prove later that it only grew:
    a consistent rewrite of its newest rows, which verify() alone cannot see, is named.
    verify(table, since => digest) rehashes only the rows added since a digest, and says so.
  - Passwords must keep the password rules and differ from the last 5 (kept only as salted
    hashes), and expire after 90 days; refusals name the rules and are on record.
  - Every connection attempt to any database, let in or not (wrong password, unknown role,
    pg_hba.conf), is in the chained trail; a session is let in only once its login is
    on record, and only superusers get in (counted, logged) while it cannot be.
  - Five wrong passwords in a row lock a role out, across restarts and crashes (the
    counters are rebuilt from the trail); administrators see and end lockouts.
  - Every account change (roles created, altered, dropped, renamed, memberships, study roles,
    keys) is on record before it commits; passwords are redacted from the server log,
    pg_stat_statements and pg_stat_activity.
  - Idle study members are logged off; refusals on protected tables are on record; the
    auditor's report covers a period and ends with the verification of every chain.
  - A remote database becomes the encrypted backups' repository: shippers may only add to
    it, and it checks every batch's SHA-256 and order. Every committed row of every protected
    table is shipped there in batches encrypted to an OpenPGP public key (plain gpg opens
    them), exactly once, with signed chain heads; backup_status shows where it stands, and
    verify_against_remote() names a shipped row rewritten since. full_backup() (nightly through
    pg_cron) takes an encrypted full backup the repository confirms, then purges what it covers;
    trialvault-restore rebuilds an empty database from it with the private key, byte for byte,
    refuses rows that do not match their hashes, and checks that every chain ends at the heads
    the source server signed.
  - Members enrol an authenticator app and step a session up with a one-time code (checked
    by liboath; each code once, one step either side); the step-up belongs to the session and
    the role, wrong codes lock the factor, and every attempt is in the audit trail. Monitors
    (and the roles an administrator names) see PHI only once stepped up. New members are
    invited with two codes sent over two channels and hold nothing until they enter both.
EOF2

if [ -n "$KEEP" ]; then
	TV_CLUSTERS=()
	say "The demo cluster is still running. Connect with:"
	echo "  psql -h $(tv_dir demo) -p $(tv_port demo) -U postgres"
	echo "Stop it and remove it with:"
	echo "  runuser -u postgres -- pg_ctl -D $(tv_dir demo)/data stop && rm -rf $TV_TMP"
else
	tv_cluster_stop demo
	echo
	echo "The demo cluster has been stopped and removed (run with --keep to keep it running)."
fi

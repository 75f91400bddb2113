-- Certification, first part: members' signing keys, printed names, the
-- server's key and the certification statement.  Bad input and missing
-- rights each get a clear error with a proper SQLSTATE; refusals are put on
-- record through the log writer; nothing is stored by a refused call.
-- The keys are the test keys of test/keys (fingerprints checked there with
-- openssl pkey -pubin -outform DER | sha256sum).
\i sql/include/try.sql
\i sql/include/wait_writer.sql

-- The instance's server key (test/regress.conf prints test/keys/server.pem).
SELECT loaded, fingerprint, algorithm, problem,
	   public_key = '-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE8d3JGIee737nRFlGZl+2Ud7vXMyh
E0qf9sudc+ekP+gtoJdvLEmaD1Zqi+IbqTFRY3CrhPcWROKBIk8lRqHnFQ==
-----END PUBLIC KEY-----' || E'\n' AS public_key_is_server_pub
	FROM trialvault.server_signing_key();

CREATE ROLE regress_cert_admin LOGIN IN ROLE trialvault_admin;
CREATE ROLE regress_cert_a LOGIN;
CREATE ROLE regress_cert_b LOGIN;
CREATE ROLE regress_cert_group NOLOGIN;
SET ROLE regress_cert_admin;
SELECT trialvault.create_study('CERT-1', 'Certification study') > 0 AS created;
SELECT trialvault.add_site('CERT-1', 'A', 'Site A');
SELECT trialvault.grant_role('regress_cert_a', 'CERT-1', 'A', 'site_staff');
RESET ROLE;

CREATE TEMP TABLE k (name text PRIMARY KEY, pem text);
GRANT SELECT ON k TO PUBLIC;
INSERT INTO k VALUES
	('p256', '-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE+siQgqTNw7Z9qqLtlPD0wGNWENoM
SRfP2efYuokLOzTrSNal2genE4WoQunULkMm9B0Q9YsGJsCKm2Ztyr7YFA==
-----END PUBLIC KEY-----'),
	('p384', '-----BEGIN PUBLIC KEY-----
MHYwEAYHKoZIzj0CAQYFK4EEACIDYgAEyrXY6QO2tSoVoiMbeaBqQ7P6p+IwhHhV
dog52XKPnvvP7CnWzIlClQ2YsBhnWEwCe6R++4PZFlN5FtTdxUyE/xw9F4vjYRk7
2F9Mn7DYmS4Pw4Z3VS7I6/XzALzGddQU
-----END PUBLIC KEY-----'),
	('ed25519', '-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEA0KrW+L+7O9L5HeAfbZwIQfL4cOlbKm37YcQgE+V3/ZM=
-----END PUBLIC KEY-----'),
	('rsa2048', '-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA22ygV22woDFd86OgFN7B
+9oz8yB8QXn6JwUscU3eRabKv/tbr3NJ9OKgp7oTRyLsVlP2qEcvixxGTU8Avt18
cVMNtaLGuvDeIjWDhUDVYzmECXYcCNNFVi1Eq0ppdzgbYkc2GIbMFMk8xlljrOwz
L6dzn/8REJa1HO5oddv52bmUL4DjQHE9QZxbZY/Wqm6rX46yrsCtvXGNmYPMVoMf
fURmlEpb5z8+IRT3+AZfXmPks8jV7NXPfQg4bdUrwtHD5T8hTdPX1CzsaCTX4F6N
6UZZX6e9gbgxKl3k+E4rDdwYOsfdm9FrwX6YPk1Fyh57M/D1Ordcy5ebl5CD144O
kQIDAQAB
-----END PUBLIC KEY-----'),
	('rsa1024', '-----BEGIN PUBLIC KEY-----
MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQCw7AgH3TLbv8St6epZ23ZjTQLS
pmiP0eI8Sc8inOZpfnGvrD3NgleVC5EWeHMvqQr94cw9OXGzKYCZWNN689K3twHM
Xvc3UdaYpQvXXbEJZKQUVfNrmJfY02yPxESoo1hScSxZZLwhcc9o0W1ltKIYH/Di
spCXawwSOS1UocY0bQIDAQAB
-----END PUBLIC KEY-----'),
	('secp256k1', '-----BEGIN PUBLIC KEY-----
MFYwEAYHKoZIzj0CAQYFK4EEAAoDQgAEP1UEGmrV0uzShxsNlzehC65C9a3p67wg
4ESQrkx/IS9QKQmeSQBe8u7ZYLTvyjDI9qN3aK5rphyF97B9nZ7jfg==
-----END PUBLIC KEY-----'),
	('x25519', '-----BEGIN PUBLIC KEY-----
MCowBQYDK2VuAyEAcnL89U4lXwe8nBXiXGpHEgHM0d+9lzE/hZ0GbCRVSSM=
-----END PUBLIC KEY-----'),
	('p256_private', '-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgeyjQvgpjb+wAFUro
uYDhCw4UovIGQOuPvtSNY68TEGyhRANCAAT6yJCCpM3Dtn2qou2U8PTAY1YQ2gxJ
F8/Z59i6iQs7NOtI1qXaB6cThahC6dQuQyb0HRD1iwYmwIqbZm3KvtgU
-----END PRIVATE KEY-----');

-- Keys that are refused, and why.
SET ROLE regress_cert_a;
SELECT what, pg_temp.try(format('SELECT trialvault.register_signing_key(%L)', key)) FROM (VALUES
	('NULL', NULL),
	('empty', ''),
	('blank', E' \n\t '),
	('garbage', 'garbage'),
	('header only', E'-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----\n'),
	('truncated', (SELECT left(pem, 80) || E'\n-----END PUBLIC KEY-----' FROM k WHERE name = 'p256')),
	('flipped byte', (SELECT overlay(pem placing 'A' from 40 for 1) FROM k WHERE name = 'p256')),
	('two keys', (SELECT string_agg(pem, E'\n' ORDER BY name) FROM k WHERE name IN ('p256', 'p384'))),
	('oversized', repeat('x', 17000)),
	('RSA 1024', (SELECT pem FROM k WHERE name = 'rsa1024')),
	('secp256k1', (SELECT pem FROM k WHERE name = 'secp256k1')),
	('X25519', (SELECT pem FROM k WHERE name = 'x25519')),
	('a private key', (SELECT pem FROM k WHERE name = 'p256_private'))
) t(what, key);
SELECT pg_temp.try('SELECT trialvault.register_signing_key(42)');

-- Registering: the fingerprint openssl prints; once only; a new key ends the old one.
SELECT trialvault.register_signing_key(pem) FROM k WHERE name = 'p256';
SELECT pg_temp.try(format('SELECT trialvault.register_signing_key(%L)', pem)) FROM k WHERE name = 'p256';
SELECT trialvault.register_signing_key(pem) FROM k WHERE name = 'p384';
SELECT pg_temp.try(format('SELECT trialvault.register_signing_key(%L)', pem)) FROM k WHERE name = 'p256';
SELECT member, algorithm, fingerprint, registered_by, active, revocation_reason FROM trialvault.signer_keys ORDER BY registered_at;
SELECT pg_temp.try('SELECT * FROM trialvault.signing_keys');
SELECT pg_temp.try('SELECT * FROM trialvault.signing_key_revocations');
SELECT pg_temp.try('SELECT * FROM trialvault.printed_names');
SELECT pg_temp.try('SELECT trialvault._signing_key_info(''x'')');
SELECT pg_temp.try('SELECT trialvault._register_signing_key_for(''regress_cert_b'', ''regress_cert_b'', ''x'')');

-- For another role: administrators only, and only for login roles.
SELECT pg_temp.try(format('SELECT trialvault.register_signing_key_for(%L, %L)', 'regress_cert_b', pem)) FROM k WHERE name = 'ed25519';
SET ROLE regress_cert_admin;
SELECT who, pg_temp.try(format('SELECT trialvault.register_signing_key_for(%L, %L)', who, pem))
	FROM k, (VALUES ('regress_cert_group'), ('regress_cert_nobody'), (NULL)) w(who) WHERE name = 'ed25519';
SELECT trialvault.register_signing_key_for('regress_cert_b', pem) FROM k WHERE name = 'ed25519';
SELECT trialvault.register_signing_key_for('regress_cert_b', pem) FROM k WHERE name = 'rsa2048';
SELECT member, algorithm, registered_by, active FROM trialvault.signer_keys WHERE member = 'regress_cert_b' ORDER BY registered_at;

-- Printed names: administrators set them.
SELECT what, pg_temp.try(format('SELECT trialvault.set_printed_name(%L, %L)', who, name)) FROM (VALUES
	('NULL member', NULL, 'A'),
	('NULL name', 'regress_cert_a', NULL),
	('empty', 'regress_cert_a', ''),
	('blank', 'regress_cert_a', '   '),
	('control character', 'regress_cert_a', E'Ann\nSmith'),
	('too long', 'regress_cert_a', repeat('n', 201)),
	('group role', 'regress_cert_group', 'Group'),
	('no such role', 'regress_cert_nobody', 'Nobody')
) t(what, who, name);
SELECT trialvault.set_printed_name('regress_cert_a', 'Dr. Ann Ávila-Smith');
SET ROLE regress_cert_a;
SELECT pg_temp.try('SELECT trialvault.set_printed_name(''regress_cert_a'', ''Queen Ann'')');
SELECT member, printed_name FROM trialvault.signer_keys WHERE active ORDER BY member;

-- The statement, byte for byte.
SELECT convert_from(trialvault.certification_statement('CERT-1', 'A', 'source', 'scanned page'::bytea,
		'<visit xmlns="urn:x"><n>1</n></visit>', 'certified_copy', '2026-12-01 10:00:00.25+02',
		'\x00112233445566778899aabbccddeeff'), 'UTF8');
SELECT encode(sha256('scanned page'::bytea), 'hex') AS content_sha256,
	   encode(trialvault.metadata_sha256('<visit xmlns="urn:x"><n>1</n></visit>'), 'hex') AS metadata_sha256;
SELECT what, pg_temp.try(format('SELECT trialvault.certification_statement(%L, %L, %L, %L, %L, %L, %L, %L)',
	study, site, doc_type, content, metadata, meaning, signed_at, nonce)) FROM (VALUES
	('NULL study', NULL, 'A', 'source', 'x', '<m/>', 'review', '2026-12-01', '\x00112233445566778899aabbccddeeff'),
	('NULL site', 'CERT-1', NULL, 'source', 'x', '<m/>', 'review', '2026-12-01', '\x00112233445566778899aabbccddeeff'),
	('NULL content', 'CERT-1', 'A', 'source', NULL, '<m/>', 'review', '2026-12-01', '\x00112233445566778899aabbccddeeff'),
	('NULL metadata', 'CERT-1', 'A', 'source', 'x', NULL, 'review', '2026-12-01', '\x00112233445566778899aabbccddeeff'),
	('NULL meaning', 'CERT-1', 'A', 'source', 'x', '<m/>', NULL, '2026-12-01', '\x00112233445566778899aabbccddeeff'),
	('NULL time', 'CERT-1', 'A', 'source', 'x', '<m/>', 'review', NULL, '\x00112233445566778899aabbccddeeff'),
	('NULL nonce', 'CERT-1', 'A', 'source', 'x', '<m/>', 'review', '2026-12-01', NULL),
	('no such study', 'NOPE', 'A', 'source', 'x', '<m/>', 'review', '2026-12-01', '\x00112233445566778899aabbccddeeff'),
	('no such site', 'CERT-1', 'B', 'source', 'x', '<m/>', 'review', '2026-12-01', '\x00112233445566778899aabbccddeeff'),
	('unknown doc type', 'CERT-1', 'A', 'scan', 'x', '<m/>', 'review', '2026-12-01', '\x00112233445566778899aabbccddeeff'),
	('empty content', 'CERT-1', 'A', 'source', '', '<m/>', 'review', '2026-12-01', '\x00112233445566778899aabbccddeeff'),
	('unknown meaning', 'CERT-1', 'A', 'source', 'x', '<m/>', 'certified', '2026-12-01', '\x00112233445566778899aabbccddeeff'),
	('empty meaning', 'CERT-1', 'A', 'source', 'x', '<m/>', '', '2026-12-01', '\x00112233445566778899aabbccddeeff'),
	('infinite time', 'CERT-1', 'A', 'source', 'x', '<m/>', 'review', 'infinity', '\x00112233445566778899aabbccddeeff'),
	('year 10000', 'CERT-1', 'A', 'source', 'x', '<m/>', 'review', '10000-01-01', '\x00112233445566778899aabbccddeeff'),
	('short nonce', 'CERT-1', 'A', 'source', 'x', '<m/>', 'review', '2026-12-01', '\x00112233445566778899aabbccddee'),
	('empty nonce', 'CERT-1', 'A', 'source', 'x', '<m/>', 'review', '2026-12-01', '\x'),
	('long nonce', 'CERT-1', 'A', 'source', 'x', '<m/>', 'review', '2026-12-01', '\x' || repeat('00', 65)),
	('wrong type', 'CERT-1', 'A', 'source', 'x', '<m/>', 'review', 'yesterday-ish', '\x00112233445566778899aabbccddeeff')
) t(what, study, site, doc_type, content, metadata, meaning, signed_at, nonce);

-- Revoking: the member themself or an administrator, with a reason.
SELECT pg_temp.try('SELECT trialvault.revoke_signing_key(''regress_cert_b'', ''lost'')');
SELECT pg_temp.try('SELECT trialvault.revoke_signing_key(''regress_cert_a'', '''')');
SELECT pg_temp.try('SELECT trialvault.revoke_signing_key(''regress_cert_a'', NULL)');
SELECT trialvault.revoke_signing_key('regress_cert_a', 'laptop stolen');
SELECT pg_temp.try('SELECT trialvault.revoke_signing_key(''regress_cert_a'', ''again'')');
SELECT pg_temp.try('SELECT trialvault.certification_statement(''CERT-1'', ''A'', ''source'', ''x'', ''<m/>'', ''review'', now(), gen_random_bytes(16))');
SET ROLE regress_cert_admin;
SELECT trialvault.revoke_signing_key('regress_cert_b', 'left the study');
SELECT member, algorithm, active, revoked_by, revocation_reason FROM trialvault.signer_keys ORDER BY registered_at;
RESET ROLE;

-- Refusals are on record (through the log writer, which commits them on
-- its own); the accepted changes are events of their transactions.
DO $$
BEGIN
	FOR i IN 1..300 LOOP
		EXIT WHEN (SELECT count(*) FROM trialvault.audit_events WHERE event LIKE '%refused') >= 26;
		PERFORM pg_sleep(0.1);
	END LOOP;
END
$$;
SELECT event, actor, detail FROM trialvault.audit_events
	WHERE event LIKE 'signing_key%' OR event LIKE 'printed_name%' ORDER BY event_id;
SELECT ok, rows_checked, guard FROM trialvault.verify('trialvault.signing_keys');
SELECT ok, rows_checked, guard FROM trialvault.verify('trialvault.signing_key_revocations');
SELECT ok, rows_checked, guard FROM trialvault.verify('trialvault.printed_names');
-- Insert-only like every protected table.
SELECT pg_temp.try('UPDATE trialvault.signing_keys SET member = ''regress_cert_b''');
SELECT pg_temp.try('DELETE FROM trialvault.signing_key_revocations');
SELECT pg_temp.try('TRUNCATE trialvault.printed_names');

-- ---------------------------------------------------------------------
-- Certified loads and later signatures: what is refused before any
-- signature is checked.  (Signatures made with openssl, accepted and
-- refused: test/integration/99_signatures.sh.)
-- ---------------------------------------------------------------------
SET ROLE regress_cert_a;
SELECT trialvault.register_signing_key('-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEMCY4qCn+yL78Brnp7X+qAuEgRZDW
YHPnqQsHUsM4uqsWB2EcUAqim4NEFD+VIivwGLaA65lsW7lardVrg63h8g==
-----END PUBLIC KEY-----');
SELECT what, pg_temp.try(format('SELECT trialvault.load_document(''CERT-1'', ''A'', ''source'', true, ''<m/>'', ''page'', %s)', args)) FROM (VALUES
	('unsigned, into a study created since 0.7', 'NULL'),
	('signed_at only', 'signed_at => now()'),
	('nonce and signature only', 'nonce => gen_random_bytes(16), signature => ''\x00'''),
	('unknown meaning', 'signed_at => now(), nonce => gen_random_bytes(16), signature => ''\x00'', meaning => ''witnessed'''),
	('NULL meaning', 'signed_at => now(), nonce => gen_random_bytes(16), signature => ''\x00'', meaning => NULL'),
	('short nonce', 'signed_at => now(), nonce => ''\x0102'', signature => ''\x00'''),
	('infinite time', 'signed_at => ''infinity'', nonce => gen_random_bytes(16), signature => ''\x00'''),
	('empty signature', 'signed_at => now(), nonce => gen_random_bytes(16), signature => '''''),
	('garbage signature', 'signed_at => now(), nonce => gen_random_bytes(16), signature => gen_random_bytes(70)'),
	('oversized signature', 'signed_at => now(), nonce => gen_random_bytes(16), signature => decode(repeat(''00'', 5000), ''hex'')'),
	('long ago', 'signed_at => ''2000-01-01 00:00+00'', nonce => gen_random_bytes(16), signature => gen_random_bytes(70)'),
	('far ahead', 'signed_at => ''2100-01-01 00:00+00'', nonce => gen_random_bytes(16), signature => gen_random_bytes(70)')
) t(what, args);
SELECT pg_temp.try('SELECT trialvault.load_document(''CERT-1'', ''A'', ''source'', true, ''<m/>'', ''page'', NULL, now(), gen_random_bytes(16), ''\x00'', ''review'', 42)');
-- A study's policy: administrators only.
SELECT pg_temp.try('SELECT trialvault.require_signatures(''CERT-1'', false)');
SET ROLE regress_cert_admin;
SELECT what, pg_temp.try(format('SELECT trialvault.require_signatures(%L, %L)', study, req)) FROM (VALUES
	('NULL study', NULL, 'false'),
	('NULL choice', 'CERT-1', NULL),
	('no such study', 'NOPE', 'false'),
	('not a boolean', 'CERT-1', 'perhaps')
) t(what, study, req);
SELECT trialvault.require_signatures('CERT-1', false);
SET ROLE regress_cert_a;
SELECT trialvault.load_document('CERT-1', 'A', 'source', true, '<m/>', 'page') AS doc \gset
SELECT doc_id = :doc AS unsigned_load_accepted FROM trialvault.signer_keys, (SELECT :doc AS doc_id) d LIMIT 1;
-- Later signatures: the document must exist, be open to the caller, in the
-- study their session has open.
SELECT what, pg_temp.try(format('SELECT trialvault.%s', call)) FROM (VALUES
	('NULL document', 'statement_for_document(NULL, ''review'', now(), gen_random_bytes(16))'),
	('no such document', 'statement_for_document(-1, ''review'', now(), gen_random_bytes(16))'),
	('study not open', format('statement_for_document(%s, ''review'', now(), gen_random_bytes(16))', :doc)),
	('unknown meaning', format('statement_for_document(%s, ''glanced at'', now(), gen_random_bytes(16))', :doc)),
	('short nonce', format('statement_for_document(%s, ''review'', now(), ''\x00'')', :doc)),
	('sign: NULL signature', format('sign_document(%s, ''review'', now(), gen_random_bytes(16), NULL)', :doc)),
	('sign: study not open', format('sign_document(%s, ''review'', now(), gen_random_bytes(16), ''\x00'')', :doc))
) t(what, call);
SELECT trialvault.open_study('CERT-1');
SELECT length(trialvault.statement_for_document(:doc, 'approval', now(), gen_random_bytes(16))) > 300 AS statement_built;
SELECT pg_temp.try(format('SELECT trialvault.sign_document(%s, ''approval'', now(), gen_random_bytes(16), gen_random_bytes(70))', :doc));
RESET ROLE;
SET ROLE regress_cert_b;
SELECT pg_temp.try(format('SELECT trialvault.sign_document(%s, ''review'', now(), gen_random_bytes(16), gen_random_bytes(70))', :doc));
RESET ROLE;
SELECT count(*) AS signatures_kept FROM trialvault.signatures;
DO $$
BEGIN
	FOR i IN 1..300 LOOP
		EXIT WHEN (SELECT count(*) FROM trialvault.audit_events WHERE event = 'signature_refused') >= 8;
		PERFORM pg_sleep(0.1);
	END LOOP;
END
$$;
SELECT actor, study, doc_id IS NOT NULL AS has_doc, regexp_replace(detail, '[0-9a-f]{64}', '<fingerprint>') AS detail
	FROM trialvault.audit_events WHERE event = 'signature_refused' ORDER BY event_id;

-- ---------------------------------------------------------------------
-- Verification and certificates: bad input and rights.  (Real
-- signatures, tampered certificates and the offline checker:
-- test/integration/99_certificates.sh.)
-- ---------------------------------------------------------------------
SET ROLE regress_cert_a;
SELECT what, pg_temp.try(format('SELECT trialvault.%s', call)) FROM (VALUES
	('verify: NULL', 'verify_document(NULL)'),
	('verify: no such document', 'verify_document(-1)'),
	('verify: wrong type', 'verify_document(''one'')'),
	('export: NULL', 'export_certificate(NULL)'),
	('export: no such document', 'export_certificate(-1)'),
	('export: unsigned document', format('export_certificate(%s)', :doc)),
	('text: NULL', 'certificate_text(NULL)'),
	('text: no such document', 'certificate_text(-1)'),
	('internal: access check', format('_document_access(%s, ''regress_cert_a'', ''x'')', :doc)),
	('internal: export', format('_export_certificate(''regress_cert_a'', %s)', :doc))
) t(what, call);
SELECT count(*) AS signatures_of_an_unsigned_document FROM trialvault.verify_document(:doc);
SELECT position('No signature: this document is not a certified copy.' in trialvault.certificate_text(:doc)) > 0
	AS unsigned_text_says_so;
RESET ROLE;
SET ROLE regress_cert_b;
SELECT what, pg_temp.try(format('SELECT trialvault.%s', call)) FROM (VALUES
	('verify: not a member', format('verify_document(%s)', :doc)),
	('export: not a member', format('export_certificate(%s)', :doc)),
	('text: not a member', format('certificate_text(%s)', :doc))
) t(what, call);
RESET ROLE;
SELECT requester, granted, reason FROM trialvault.decryption_log WHERE requester::text LIKE 'regress\_cert\_%'
	ORDER BY log_id;

-- ---------------------------------------------------------------------
-- Attacks on what certification relies on, as a superuser: the unique
-- nonce (replays), the signature rows, the functions that check them.
-- The guards refuse each (deny by default on the extension's objects).
-- ---------------------------------------------------------------------
CREATE FUNCTION public.certify_swallow() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NULL; END$$;
SELECT stmt, pg_temp.try(stmt) FROM (VALUES
	('DROP INDEX trialvault.signatures_nonce_key CASCADE'),
	('ALTER TABLE trialvault.signatures DROP CONSTRAINT signatures_nonce_key'),
	('ALTER INDEX trialvault.signatures_nonce_key RENAME TO other_name'),
	('ALTER TABLE trialvault.signatures ALTER COLUMN nonce TYPE text'),
	('CREATE RULE swallow AS ON INSERT TO trialvault.signatures DO INSTEAD NOTHING'),
	('CREATE TRIGGER swallow BEFORE INSERT ON trialvault.signatures FOR EACH ROW EXECUTE FUNCTION public.certify_swallow()'),
	('CREATE POLICY hide ON trialvault.signatures USING (false)'),
	('CREATE TABLE public.signatures_child () INHERITS (trialvault.signatures)'),
	('ALTER TABLE trialvault.signing_keys DROP CONSTRAINT signing_keys_fingerprint_key'),
	('UPDATE trialvault.server_keys SET public_key = ''x'''),
	('DELETE FROM trialvault.signing_key_revocations'),
	('TRUNCATE trialvault.signature_policies'),
	('CREATE OR REPLACE FUNCTION trialvault._signature_statement(doc_id bigint, signature_id bigint) RETURNS bytea LANGUAGE sql AS ''SELECT NULL::bytea'''),
	('ALTER FUNCTION trialvault.verify_document(bigint) SECURITY DEFINER'),
	('ALTER FUNCTION trialvault.verify_digest(regclass, text) OWNER TO regress_cert_a')
) t(stmt);
DROP FUNCTION public.certify_swallow();
SELECT ok, guard FROM trialvault.verify('trialvault.signatures');

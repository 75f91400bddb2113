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
[ -n "$KEEP" ] && TV_KEEP_TMP=1
source test/lib/cluster.sh

say() { printf '\n\033[1m%s\033[0m\n' "$*"; }

say "Starting a throwaway PostgreSQL 15 cluster with shared_preload_libraries = 'trialvault'"
tv_cluster_start demo
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
SQL

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

#!/usr/bin/env bash
# 89_full_backups.sh: full backups (trialvault.full_backup(), through the
# real pg_cron with schedule_backups()) and the purge, on a real second
# cluster as the repository.
#
#   1. full_backup() returns the id of a backup the repository confirmed;
#      its manifest lists every table with its rows, its newest tv_seq and
#      its chunks, and every chunk's SHA-256; the batches it covers are
#      purged, the later ones kept;
#   2. plain gpg --decrypt opens every chunk, and the rows are exactly the
#      local rows;
#   3. the retention: full backups beyond backup_retention are purged, never
#      the newest;
#   4. after the purge, the heads of every table live on: from the manifest
#      when no batch is left (verify_against_remote() still compares, a
#      restarted shipper carries them into its next batch);
#   5. the remote down: full_backup() says it did not complete, at once;
#      the scheduled form fails with the reason;
#   6. schedule_backups() with the real pg_cron: refused without pg_cron,
#      registers the job, and pg_cron takes confirmed backups;
#   7. bad input: no rights, no configuration, no schedule;
#   8. scripts/trialvault-restore into an empty database of a third server:
#      the newest full backup and the batches after it, every protected
#      table byte-identical to the source and every chain verifying, every
#      chain ending at the heads the source server signed (--server-key);
#      the repository's own doings: a batch whose column type is SQL, a
#      well-chained batch of its own making (caught by --server-key only),
#      another server's key; a target that is not empty, a public key, a
#      wrong pass phrase, an unreachable repository: refused, saying so.
set -euo pipefail
source "$(dirname "$0")/../lib/cluster.sh"
source "$(dirname "$0")/lib/helpers.sh"
source "$(dirname "$0")/../lib/backups.sh"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
export PSQL=$PGBIN/psql

tv_backup_setup "$ROOT"

# Logins are not audited here, so that nothing is written while nobody
# writes: after a purge, no batch is left (section 4).
tv_cluster_start src \
	"shared_preload_libraries = 'trialvault,pg_cron'" \
	"cron.database_name = 'postgres'" \
	"cron.host = '$(tv_dir src)'" \
	"trialvault.audit_logins = off" \
	"trialvault.backup_public_key_file = '$KEYDIR/backup-public.asc'" \
	"trialvault.backup_naptime = 100" \
	"trialvault.backup_batch_rows = 50" \
	"trialvault.backup_system_id = 'site2'"
SDIR=$(tv_dir src)
SYS=site2.postgres
q src postgres "CREATE EXTENSION trialvault CASCADE" >/dev/null
q src postgres "CREATE ROLE nobody LOGIN; CREATE ROLE boss LOGIN IN ROLE trialvault_admin" >/dev/null

# --- 7. before anything is configured --------------------------------------------------------
is "$(sqlstate_of src postgres "SELECT * FROM trialvault.full_backup()")" 55000 "7: full_backup() without a repository configured: 55000"
like "$(tv_psql src -d postgres -c "SELECT * FROM trialvault.full_backup()" 2>&1 || true)" 'no backup shipper is running for this database' \
	"7: ... saying no shipper runs"

q src postgres "CREATE TABLE crf (id bigserial PRIMARY KEY, subject text, body text)" >/dev/null
q src postgres "SELECT trialvault.protect('crf')" >/dev/null 2>&1
q src postgres "INSERT INTO crf (subject, body) SELECT 'S-' || g, repeat(md5(g::text), 20) FROM generate_series(1, 120) g" >/dev/null
q src postgres "ALTER SYSTEM SET trialvault.backup_conninfo = '$REMOTE'" >/dev/null
q src postgres "SELECT pg_reload_conf()" >/dev/null

rq() { q repo postgres "$1"; }
local_count() { q src postgres "SELECT count(*) FROM crf"; }
all_shipped() { [ "$(rq "SELECT coalesce(max(last_seq), 0) FROM trialvault_repo.progress WHERE system_id = '$SYS' AND table_name = 'public.crf'")" = "$(q src postgres "SELECT max(tv_seq) FROM crf")" ]; }
check "(the rows are shipped)" wait_until "shipped" 60 all_shipped

# --- 1. a full backup --------------------------------------------------------------------
is "$(q src postgres "SELECT backup_id || ':' || completed FROM trialvault.full_backup()")" "1:true" \
	"1: full_backup() returns the id of a completed backup"
is "$(rq "SELECT confirmed_at IS NOT NULL, chunks = jsonb_array_length(manifest -> 'chunks') FROM trialvault_repo.full_backups WHERE system_id = '$SYS' AND backup_id = 1")" "t|t" \
	"1: the repository confirmed it; its manifest lists every chunk's SHA-256"
is "$(rq "SELECT (manifest -> 'tables' -> 'public.crf' ->> 'rows') || ':' || (manifest -> 'tables' -> 'public.crf' ->> 'last_seq') FROM trialvault_repo.full_backups WHERE system_id = '$SYS' AND backup_id = 1")" \
	"120:$(q src postgres "SELECT max(tv_seq) FROM crf")" "1: the manifest gives each table's rows and newest tv_seq"
is "$(rq "SELECT count(*) FROM trialvault_repo.full_backups f WHERE system_id = '$SYS' AND (SELECT count(*) FROM jsonb_object_keys(f.manifest -> 'tables')) = (SELECT count(DISTINCT table_name) FROM trialvault_repo.progress WHERE system_id = '$SYS')")" 1 \
	"1: ... for every table shipped"
is "$(rq "SELECT manifest ->> 'heads_signature' ~ '^[0-9a-f]{128,}$' FROM trialvault_repo.full_backups WHERE system_id = '$SYS' AND backup_id = 1")" t \
	"1: the manifest's chain heads are signed"
COVERS=$(rq "SELECT covers_batch_id FROM trialvault_repo.full_backups WHERE system_id = '$SYS' AND backup_id = 1")
is "$(rq "SELECT count(*) FROM trialvault_repo.batches WHERE system_id = '$SYS' AND batch_id <= $COVERS")" 0 \
	"1: the batches it covers are purged"
like "$(cat "$SDIR/server.log")" "trialvault full backup 1 of system \"$SYS\" confirmed" "1: the server log says so"

# --- 2. what a chunk holds --------------------------------------------------------------------
OUT=$TV_TMP/chunks
mkdir -p "$OUT"
chmod 755 "$OUT"
for n in $(rq "SELECT chunk_no FROM trialvault_repo.backup_chunks WHERE system_id = '$SYS' AND backup_id = 1 ORDER BY chunk_no"); do
	rq "SELECT encode(data, 'base64') FROM trialvault_repo.backup_chunks WHERE system_id = '$SYS' AND backup_id = 1 AND chunk_no = $n" |
		base64 -d >"$OUT/c.pgp"
	gpg --batch --quiet --pinentry-mode loopback --passphrase-file "$RDIR/pass.txt" --decrypt "$OUT/c.pgp" >"$OUT/$n.json" 2>/dev/null
done
chmod 644 "$OUT"/*.json
is "$(ls "$OUT"/*.json | wc -l)" "$(rq "SELECT chunks FROM trialvault_repo.full_backups WHERE system_id = '$SYS' AND backup_id = 1")" \
	"2: gpg --decrypt opens every chunk"
is "$(q src postgres "CREATE TEMP TABLE got AS SELECT r.* FROM pg_ls_dir('$OUT') f,
		LATERAL json_populate_recordset(NULL::public.crf, pg_read_file('$OUT/' || f)::json -> 'rows') r
		WHERE f LIKE '%.json' AND pg_read_file('$OUT/' || f)::json ->> 'table' = 'public.crf';
		SELECT (SELECT count(*) FROM got) = (SELECT count(DISTINCT tv_seq) FROM got),
		       (SELECT md5(string_agg(g::text, '|' ORDER BY tv_seq)) FROM got g) = (SELECT md5(string_agg(c::text, '|' ORDER BY tv_seq)) FROM crf c)")" \
	"t|t" "2: the chunks hold exactly the local rows of crf, each once"
is "$(q src postgres "SELECT bool_and(pg_read_file('$OUT/' || f)::json ->> 'format' = 'trialvault-full-1') FROM pg_ls_dir('$OUT') f WHERE f LIKE '%.json'")" t \
	"2: each is a trialvault-full-1 document"

# --- 3. more rows, more backups, the retention ----------------------------------------------
q src postgres "INSERT INTO crf (subject, body) SELECT 'T-' || g, 'later' FROM generate_series(1, 30) g" >/dev/null
check "3: (later rows shipped as batches)" wait_until "shipped" 30 all_shipped
is "$(rq "SELECT count(*) > 0 FROM trialvault_repo.batches WHERE system_id = '$SYS' AND batch_id > $COVERS")" t "3: the batches after a backup are kept"
is "$(q src postgres "SELECT backup_id FROM trialvault.full_backup()")" 2 "3: a second full backup"
q src postgres "ALTER SYSTEM SET trialvault.backup_retention = 2" >/dev/null
q src postgres "SELECT pg_reload_conf()" >/dev/null
sleep 0.5
is "$(q src postgres "SELECT backup_id FROM trialvault.full_backup()")" 3 "3: a third"
is "$(rq "SELECT string_agg(backup_id::text, ',' ORDER BY backup_id) FROM trialvault_repo.full_backups WHERE system_id = '$SYS'")" "2,3" \
	"3: with backup_retention = 2, the oldest is purged"
is "$(rq "SELECT count(*) FROM trialvault_repo.batches WHERE system_id = '$SYS'")" 0 "3: nothing written since: no batch is left"

# --- 4. the heads live on after the purge ----------------------------------------------------
is "$(q src postgres "SELECT bool_and(ok) FROM trialvault.verify_against_remote()")" t \
	"4: verify_against_remote() compares with the newest backup's manifest when no batch is left"
like "$(q src postgres "SELECT detail FROM trialvault.verify_against_remote() WHERE table_name = 'public.crf'")" \
	"^the [0-9]+ shipped head\\(s\\), up to tv_seq 150, are unchanged here" "4: ... for crf, up to its newest row"
SPID=$(q src postgres "SELECT pid FROM pg_stat_activity WHERE backend_type = 'trialvault backup shipper'")
q src postgres "SELECT pg_terminate_backend($SPID)" >/dev/null
sleep 1
check "4: (a new shipper)" wait_until "shipper" 40 bash -c "[ \"\$($PGBIN/psql -X -At -h $SDIR -p $(tv_port src) -U postgres -d postgres -c \"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'trialvault backup shipper'\")\" = 1 ]"
q src postgres "INSERT INTO crf (subject, body) VALUES ('after restart', 'x')" >/dev/null
check "4: (its row shipped)" wait_until "shipped" 30 all_shipped
is "$(rq "SELECT heads -> 'tables' ? 'trialvault.catalog_seal' FROM trialvault_repo.batches WHERE system_id = '$SYS' ORDER BY batch_id DESC LIMIT 1")" t \
	"4: a restarted shipper carries the heads of tables without new rows over the purge (from the manifest)"
is "$(rq "SELECT count(*) FROM trialvault_repo.batches WHERE system_id = '$SYS' AND batch_id <= (SELECT max(covers_batch_id) FROM trialvault_repo.full_backups WHERE system_id = '$SYS')")" 0 \
	"4: batch ids go on after the last backup's"

# --- 5. the remote down ----------------------------------------------------------------------
tv_cluster_stop repo
START=$SECONDS
is "$(q src postgres "SELECT coalesce(backup_id::text, 'none') || ':' || completed FROM trialvault.full_backup()")" "none:false" \
	"5: the remote down: full_backup() says it did not complete"
check "5: ... without waiting for the remote" test $((SECONDS - START)) -lt 30
like "$(tv_psql src -d postgres -c "SELECT trialvault.scheduled_full_backup()" 2>&1 || true)" \
	'the scheduled full backup did not complete.*DETAIL:.*cannot connect to the remote repository' \
	"5: the scheduled form fails, with the reason"
is "$(sqlstate_of src postgres "SELECT trialvault.scheduled_full_backup()")" 55000 "5: ... (55000)"
is "$(q src postgres "INSERT INTO crf (subject) VALUES ('while down') RETURNING 'ok'")" ok "5: local writes unaffected"
tv_cluster_restart repo
check "5: the remote back: shipping resumes" wait_until "shipped" 90 all_shipped
is "$(q src postgres "SELECT completed FROM trialvault.full_backup()")" t "5: ... and full backups complete again"

# --- 6. schedule_backups with pg_cron ------------------------------------------------------------
is "$(sqlstate_of src postgres "SELECT trialvault.schedule_backups()")" 42883 "6: without pg_cron installed: refused (42883)"
like "$(tv_psql src -d postgres -c "SELECT trialvault.schedule_backups()" 2>&1 || true)" 'pg_cron is not installed in this database' "6: ... saying so"
q src postgres "CREATE EXTENSION pg_cron" >/dev/null
is "$(sqlstate_of src postgres "SELECT trialvault.schedule_backups(NULL)")" 22023 "6: no schedule: 22023"
is "$(sqlstate_of src postgres "SELECT trialvault.schedule_backups('')")" 22023 "6: an empty schedule: 22023"
is "$(sqlstate_of src postgres "SELECT trialvault.schedule_backups('not a schedule')")" 22023 "6: a malformed schedule: pg_cron's 22023"
is "$(sqlstate_of src postgres "SELECT trialvault.schedule_backups(repeat('* ', 500000))")" 22023 "6: an oversized schedule (1 MB): 22023"
is "$(q src postgres "SELECT count(*) FROM cron.job")" 0 "6: (none of those registered a job)"
JOB=$(q src postgres "SELECT trialvault.schedule_backups()")
is "$(q src postgres "SELECT schedule || ' | ' || command || ' | ' || database FROM cron.job WHERE jobid = $JOB")" \
	"0 2 * * * | SELECT trialvault.scheduled_full_backup() | postgres" "6: the daily job is registered with pg_cron"
is "$(q src postgres "SELECT trialvault.schedule_backups('* * * * *')")" "$JOB" "6: scheduling again changes the same job"
BEFORE=$(rq "SELECT max(backup_id) FROM trialvault_repo.full_backups WHERE system_id = '$SYS'")
cron_ran() { [ "$(q src postgres "SELECT count(*) FROM cron.job_run_details WHERE jobid = $JOB AND status = 'succeeded'")" -ge 1 ]; }
check "6: pg_cron runs the job (within its minute)" wait_until "pg_cron" 130 cron_ran
is "$(rq "SELECT max(backup_id) > $BEFORE AND bool_and(confirmed_at IS NOT NULL) FROM trialvault_repo.full_backups WHERE system_id = '$SYS'")" t \
	"6: ... and the backup it took is confirmed"
q src postgres "SELECT cron.unschedule($JOB)" >/dev/null

# --- 7. rights ------------------------------------------------------------------------------------
is "$(sqlstate_of src postgres "SET ROLE nobody; SELECT * FROM trialvault.full_backup()")" 42501 "7: full_backup(): refused to an ordinary role"
is "$(sqlstate_of src postgres "SET ROLE nobody; SELECT trialvault.schedule_backups()")" 42501 "7: schedule_backups(): refused to an ordinary role"
is "$(sqlstate_of src postgres "SET ROLE nobody; SELECT trialvault.scheduled_full_backup()")" 42501 "7: scheduled_full_backup(): refused to an ordinary role"
is "$(q src postgres "SET ROLE boss; SELECT completed FROM trialvault.full_backup()")" t "7: an administrator takes one"

# --- 8. the restore ---------------------------------------------------------------------------------
# The newest full backup plus the batches after it, into an empty database
# of another server; the private key never goes near the source.
q src postgres "INSERT INTO crf (subject, body) SELECT 'U-' || g, 'after the last backup' FROM generate_series(1, 70) g" >/dev/null
check "8: (rows after the last full backup shipped)" wait_until "shipped" 30 all_shipped
is "$(rq "SELECT count(*) > 1 FROM trialvault_repo.batches WHERE system_id = '$SYS' AND batch_id > (SELECT max(covers_batch_id) FROM trialvault_repo.full_backups WHERE system_id = '$SYS')")" t \
	"8: (the repository holds batches after the newest full backup)"
gpg --batch --pinentry-mode loopback --passphrase-file "$RDIR/pass.txt" --armor --export-secret-keys >"$RDIR/private.asc" 2>/dev/null
tv_cluster_start tgt
q tgt postgres "CREATE DATABASE restored" >/dev/null
TGT="host=$(tv_dir tgt) port=$(tv_port tgt) user=postgres dbname=restored"
RESTORE=$ROOT/scripts/trialvault-restore
q src postgres "SELECT public_key FROM trialvault.server_signing_key()" >"$RDIR/server-public.pem"
OUTPUT=$("$RESTORE" --remote "host=$RDIR port=$RPORT user=shipper dbname=postgres" --key "$RDIR/private.asc" \
	--passphrase-file "$RDIR/pass.txt" --target "$TGT" --server-key "$RDIR/server-public.pem" 2>&1) && RC=0 || RC=$?
is "$RC" 0 "8: trialvault-restore succeeds"
like "$OUTPUT" "every restored chain ends at the heads the source server signed \\(batch [0-9]+\\)" \
	"8: with --server-key: every restored chain ends at the heads the source server signed"
like "$OUTPUT" "system $SYS: full backup [0-9]+ \\(covering batches up to [0-9]+\\), then the batches after it" "8: ... from the newest full backup and the batches after it"
like "$OUTPUT" "done; every protected table of the target verifies" "8: ... and every chain verifies"
is "$(tv_restore_differences src postgres tgt restored)" "" "8: every protected table is byte-identical to the source, chain columns and all"
is "$(q tgt restored "SELECT count(*) FROM crf")" "$(local_count)" "8: every row of crf is there"
is "$(q tgt restored "SELECT string_agg(p.table_name || ':' || p.last_seq, ' ' ORDER BY p.table_name) FROM (SELECT 1) x,
	LATERAL (SELECT schema_name || '.' || relation_name AS table_name, (xpath('/row/m/text()', query_to_xml(format('SELECT coalesce(max(tv_seq), 0) AS m FROM %s', table_name), false, true, '')))[1]::text AS last_seq
	         FROM trialvault.protected_tables WHERE table_name <> 'trialvault.catalog_seal'::regclass) p WHERE p.last_seq <> '0'")" \
	"$(rq "SELECT string_agg(table_name || ':' || last_seq, ' ' ORDER BY table_name) FROM trialvault_repo.progress WHERE system_id = '$SYS' AND table_name <> 'trialvault.catalog_seal'")" \
	"8: each table up to the newest tv_seq shipped"
is "$(q tgt restored "SELECT count(*) FROM trialvault.protected_tables p, trialvault.verify(p.table_name) v WHERE NOT v.ok")" 0 "8: every chain in the target verifies"
is "$(sqlstate_of tgt restored "UPDATE crf SET body = 'x'")" "$(sqlstate_of src postgres "UPDATE crf SET body = 'x'")" "8: the restored table of the DBA's is protected again"
# Another server's key: the heads do not check.
q tgt postgres "CREATE DATABASE otherkey" >/dev/null
q tgt postgres "CREATE DATABASE scratch" >/dev/null
q tgt scratch "CREATE EXTENSION trialvault CASCADE" >/dev/null 2>&1
q tgt scratch "SELECT public_key FROM trialvault.server_signing_key()" >"$RDIR/other-public.pem"
OUTPUT=$("$RESTORE" --remote "host=$RDIR port=$RPORT user=shipper dbname=postgres" --key "$RDIR/private.asc" \
	--passphrase-file "$RDIR/pass.txt" --target "host=$(tv_dir tgt) port=$(tv_port tgt) user=postgres dbname=otherkey" \
	--server-key "$RDIR/other-public.pem" 2>&1) && RC=0 || RC=$?
is "$RC" 1 "8: --server-key of another server: the restore fails"
like "$OUTPUT" "are not signed by the server key given" "8: ... saying the heads are not signed by it"
like "$("$RESTORE" --remote "host=$RDIR port=$RPORT user=shipper dbname=postgres" --key "$RDIR/private.asc" \
	--passphrase-file "$RDIR/pass.txt" --target "$TGT" --server-key "$RDIR/pass.txt" 2>&1 || true)" "holds no PEM public key" \
	"8: a --server-key file that is not a public key: refused"
# A repository that appends a batch of its own making: a table whose row is
# well chained (made on a trialvault server of its own), encrypted to the
# public key, with the newest batch's signed heads copied onto it.  The
# chains verify; the heads give it away.
q tgt scratch "CREATE TABLE fake (note text)" >/dev/null
q tgt scratch "SELECT trialvault.protect('fake')" >/dev/null 2>&1
q tgt scratch "INSERT INTO fake VALUES ('made up by the repository')" >/dev/null
q tgt scratch "SELECT json_build_object('format', 'trialvault-batch-1', 'table', 'public.fake',
	'columns', (SELECT json_agg(json_build_object('name', attname, 'type', format_type(atttypid, atttypmod), 'not_null', attnotnull) ORDER BY attnum)
	            FROM pg_attribute WHERE attrelid = 'fake'::regclass AND attnum > 0 AND NOT attisdropped),
	'rows', (SELECT json_agg(r) FROM fake r))" |
	gpg --batch --quiet --trust-model always --encrypt --recipient 'trialvault backups' >"$RDIR/made-up.pgp"
HEX=$(od -An -v -tx1 "$RDIR/made-up.pgp" | tr -d ' \n')
# (The shipper may not insert meanwhile, or it would take the batch id.)
rq "REVOKE INSERT ON trialvault_repo.batches FROM shipper" >/dev/null
sleep 1
rq "INSERT INTO trialvault_repo.batches (system_id, batch_id, table_name, first_seq, last_seq, row_count, created_at, sha256, ciphertext, heads, heads_signature)
	SELECT system_id, batch_id + 1, 'public.fake', 1, 1, 1, now(), sha256('\\x$HEX'::bytea), '\\x$HEX'::bytea, heads, heads_signature
	FROM trialvault_repo.batches WHERE system_id = '$SYS' ORDER BY batch_id DESC LIMIT 1" >/dev/null
rq "GRANT INSERT ON trialvault_repo.batches TO shipper" >/dev/null
q tgt postgres "CREATE DATABASE madeup" >/dev/null
q tgt postgres "CREATE DATABASE scratch2" >/dev/null
OUTPUT=$("$RESTORE" --remote "host=$RDIR port=$RPORT user=shipper dbname=postgres" --key "$RDIR/private.asc" \
	--passphrase-file "$RDIR/pass.txt" --target "host=$(tv_dir tgt) port=$(tv_port tgt) user=postgres dbname=madeup" 2>&1) && RC=0 || RC=$?
is "$RC" 0 "8: a batch of the repository's making, well chained: without --server-key the restore cannot tell"
OUTPUT=$("$RESTORE" --remote "host=$RDIR port=$RPORT user=shipper dbname=postgres" --key "$RDIR/private.asc" \
	--passphrase-file "$RDIR/pass.txt" --target "host=$(tv_dir tgt) port=$(tv_port tgt) user=postgres dbname=scratch2" \
	--server-key "$RDIR/server-public.pem" 2>&1) && RC=0 || RC=$?
is "$RC" 1 "8: ... with --server-key it fails"
like "$OUTPUT" 'public.fake: the restored chain ends at tv_seq=1, which the source server did not sign' "8: ... naming the table the source never signed"
# A row changed behind the guards before it was shipped travels into the
# backups as it is; the restore refuses it (its tv_hash does not match).
tv_cluster_stop repo
q src postgres "INSERT INTO crf (subject, body) VALUES ('S-T', 'true body')" >/dev/null
q src postgres "UPDATE pg_trigger SET tgenabled = 'D' WHERE tgrelid = 'crf'::regclass AND tgfoid = 'trialvault.guard()'::regprocedure" >/dev/null
q src postgres "UPDATE crf SET body = 'altered body' WHERE subject = 'S-T'" >/dev/null
q src postgres "UPDATE pg_trigger SET tgenabled = 'A' WHERE tgrelid = 'crf'::regclass AND tgfoid = 'trialvault.guard()'::regprocedure" >/dev/null
tv_cluster_restart repo
check "8: (the altered row shipped)" wait_until "shipped" 90 all_shipped
q tgt postgres "CREATE DATABASE third" >/dev/null
OUTPUT=$("$RESTORE" --remote "host=$RDIR port=$RPORT user=shipper dbname=postgres" --key "$RDIR/private.asc" \
	--passphrase-file "$RDIR/pass.txt" --target "host=$(tv_dir tgt) port=$(tv_port tgt) user=postgres dbname=third" 2>&1) && RC=0 || RC=$?
is "$RC" 1 "8: a row altered before it was shipped: the restore fails"
like "$OUTPUT" 'restored row of "crf" does not match its tv_hash' "8: ... naming the table and why"
# A batch forged by the repository (anyone can encrypt to the public key),
# under a system of its own: a column "type" that is SQL is refused before
# anything of it runs.
printf '%s' '{"format": "trialvault-batch-1", "table": "public.evil", "columns": [{"name": "a", "type": "int); CREATE TABLE public.pwned (x int); CREATE TABLE public.more (b int", "not_null": false}, {"name": "tv_seq", "type": "bigint", "not_null": true}], "rows": []}' |
	gpg --batch --quiet --trust-model always --encrypt --recipient 'trialvault backups' >"$RDIR/forged.pgp"
HEX=$(od -An -v -tx1 "$RDIR/forged.pgp" | tr -d ' \n')
rq "INSERT INTO trialvault_repo.batches (system_id, batch_id, table_name, first_seq, last_seq, row_count, created_at, sha256, ciphertext)
	VALUES ('forged.postgres', 1, 'public.evil', 1, 1, 1, now(), sha256('\\x$HEX'::bytea), '\\x$HEX'::bytea)" >/dev/null
q tgt postgres "CREATE DATABASE forged" >/dev/null
OUTPUT=$("$RESTORE" --remote "host=$RDIR port=$RPORT user=shipper dbname=postgres" --key "$RDIR/private.asc" --system forged.postgres \
	--passphrase-file "$RDIR/pass.txt" --target "host=$(tv_dir tgt) port=$(tv_port tgt) user=postgres dbname=forged" 2>&1) && RC=0 || RC=$?
is "$RC" 1 "8: a forged batch whose column type is SQL: the restore fails"
like "$OUTPUT" 'gives column a a type that is not a type name' "8: ... saying so"
is "$(q tgt forged "SELECT count(*) FROM pg_class WHERE relname IN ('evil', 'pwned', 'more')")" 0 "8: ... and none of it ran"
# Bad input.
like "$("$RESTORE" --remote "host=$RDIR port=$RPORT user=shipper dbname=postgres" --key "$RDIR/private.asc" \
	--passphrase-file "$RDIR/pass.txt" --target "$TGT" --system "$SYS" 2>&1 || true)" "the target database is not empty" "8: a target that is not empty: refused"
q tgt postgres "CREATE DATABASE again" >/dev/null
like "$("$RESTORE" --remote "host=$RDIR port=$RPORT user=shipper dbname=postgres" --key "$KEYDIR/backup-public.asc" \
	--passphrase-file "$RDIR/pass.txt" --target "host=$(tv_dir tgt) port=$(tv_port tgt) user=postgres dbname=again" 2>&1 || true)" \
	"no private encryption key" "8: the public key instead of the private one: refused, saying so"
echo 'wrong pass phrase' >"$RDIR/wrong.txt"
like "$("$RESTORE" --remote "host=$RDIR port=$RPORT user=shipper dbname=postgres" --key "$RDIR/private.asc" \
	--passphrase-file "$RDIR/wrong.txt" --target "host=$(tv_dir tgt) port=$(tv_port tgt) user=postgres dbname=again" --system "$SYS" 2>&1 || true)" \
	"gpg cannot decrypt" "8: a wrong pass phrase: refused by gpg, saying so"
like "$("$RESTORE" --remote "host=$RDIR port=$RPORT user=shipper dbname=postgres" --key "$RDIR/private.asc" \
	--passphrase-file "$RDIR/pass.txt" --target "$TGT" --system 'no such' 2>&1 || true)" "is not a system id" "8: a malformed system id: refused"
like "$("$RESTORE" --remote "host=$RDIR port=1 user=shipper dbname=postgres" --key "$RDIR/private.asc" \
	--passphrase-file "$RDIR/pass.txt" --target "$TGT" 2>&1 || true)" "cannot read the repository" "8: an unreachable repository: refused, saying so"
like "$("$RESTORE" --remote "host=$RDIR port=$RPORT user=shipper dbname=postgres" --key "$RDIR/private.asc" \
	--passphrase-file "$RDIR/pass.txt" --target "$TGT" 2>&1 || true)" "holds several systems; choose one with --system: forged.postgres $SYS" \
	"8: a repository of several systems and no --system: refused, naming them"
like "$("$RESTORE" --remote x 2>&1 || true)" "Usage|trialvault-restore --remote" "8: missing arguments: the usage"

is "$(grep -c 'terminated by signal' "$SDIR/server.log" || true)" 0 "no worker died"
done_testing

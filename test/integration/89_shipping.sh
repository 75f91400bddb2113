#!/usr/bin/env bash
# 89_shipping.sh: the backup shipper (worker/shipper.c), shipping every
# committed row of every protected table, encrypted, to a real second
# cluster prepared by trialvault-remote-init.
#
#   1. the launcher starts a shipper for the database; the rows of a DBA's
#      protected table and of the extension's own tables arrive, in batches
#      of at most backup_batch_rows, in tv_seq order, none twice;
#      backup_status says so;
#   2. what arrives is ciphertext: plain gpg --decrypt with the private key
#      opens every batch, and the rows it holds are exactly the local rows;
#      each batch carries the heads of the shipped chain, signed by the
#      server's key;
#   3. the remote stopped during inserts: local inserts go on, backup_status
#      and the server log say why nothing ships, and once it is back every
#      row arrives, none twice;
#   4. a late commit: a transaction that holds a lower tv_seq while later
#      rows commit holds the table's shipping back, and its row is shipped
#      once it commits;
#   5. kill -9 of the shipper, a crash of the local server and of the remote
#      in the middle of continuous inserts: nothing lost, nothing twice;
#   6. a wrong public key file, a remote without the prepared schema, a
#      remote role without rights: clear errors in backup_status, local
#      writes unaffected, shipping resumes by itself once fixed;
#   6b. the restore after all of that (every batch, no full backup): every
#      protected table byte-identical to the source, every chain verifying,
#      columns added after protect() or after a table's first batch back in
#      the source's order with their values;
#   7. verify_against_remote(): every table holds what was shipped; the
#      newest row rewritten consistently (which verify() alone cannot see)
#      is named; heads whose signature does not check are not trusted; a
#      remote that cannot be reached is an error;
#   8. backup_status is for administrators;
#   9. the key file rewritten in place with another key: recorded in the
#      security trail with both key IDs, logged, and new batches open with
#      the new private key only.
set -euo pipefail
source "$(dirname "$0")/../lib/cluster.sh"
source "$(dirname "$0")/lib/helpers.sh"
source "$(dirname "$0")/../lib/backups.sh"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
export PSQL=$PGBIN/psql

# --- the remote, and the key pair (docs/backups.md, with 2048-bit keys for speed) ----
tv_backup_setup "$ROOT"
q repo postgres "CREATE DATABASE empty_repo" >/dev/null
echo "not a key" >"$KEYDIR/garbage.asc"
chmod 644 "$KEYDIR/garbage.asc"

tv_cluster_start src \
	"trialvault.backup_public_key_file = '$KEYDIR/backup-public.asc'" \
	"trialvault.backup_naptime = 100" \
	"trialvault.backup_batch_rows = 50" \
	"trialvault.backup_system_id = 'site1'"
SDIR=$(tv_dir src)
q src postgres "CREATE EXTENSION trialvault CASCADE" >/dev/null
q src postgres "CREATE TABLE crf (id bigserial PRIMARY KEY, subject text, body text, score float8, seen timestamptz DEFAULT now(), blob bytea)" >/dev/null
q src postgres "SELECT trialvault.protect('crf')" >/dev/null 2>&1
SYS=site1.postgres

ins() { # ins N: N rows into crf, one transaction
	q src postgres "INSERT INTO crf (subject, body, score, blob)
		SELECT 'S-' || g, repeat(md5(g::text || clock_timestamp()::text), 8) || ' marker-PLAINTEXT-' || g, g / 3.0, sha256(g::text::bytea)
		FROM generate_series(1, $1) g" >/dev/null
}
local_count() { q src postgres "SELECT count(*) FROM crf"; }
remote_rows() { q repo postgres "SELECT coalesce(sum(row_count), 0) FROM trialvault_repo.batches WHERE system_id = '$SYS' AND table_name = '${1:-public.crf}'"; }
# Batches of a table whose range does not come after the previous one's.
overlaps() { q repo postgres "SELECT count(*) FROM (SELECT first_seq, lag(last_seq) OVER (ORDER BY batch_id) AS prev FROM trialvault_repo.batches WHERE system_id = '$SYS' AND table_name = '${1:-public.crf}') x WHERE first_seq <= prev"; }
all_shipped() { [ "$(remote_rows)" = "$(local_count)" ]; }
status_of() { q src postgres "SELECT $1 FROM trialvault.backup_status WHERE table_name = '${2:-crf}'::regclass"; }

# --- 1. shipping ------------------------------------------------------------------------
is "$(q src postgres "SELECT DISTINCT last_error FROM trialvault.backup_status")" \
	"backups are not configured: set trialvault.backup_conninfo and trialvault.backup_public_key_file" \
	"1: without a repository, backup_status says backups are not configured"
is "$(q src postgres "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'trialvault backup shipper'")" 0 "1: ... and no shipper runs"
# Configured by a reload, as a DBA would.
q src postgres "ALTER SYSTEM SET trialvault.backup_conninfo = '$REMOTE'" >/dev/null
q src postgres "SELECT pg_reload_conf()" >/dev/null
check "1: the change of repository is on record, as ALTER SYSTEM and as a reload" wait_until "setting_changed" 10 \
	bash -c "[ \"\$($PGBIN/psql -X -At -h $SDIR -p \$(cat $SDIR/port) -U postgres -d postgres -c \"SELECT count(*) FROM trialvault.audit_events WHERE event = 'setting_changed' AND (detail LIKE '%backup_conninfo = (a connection string, not recorded)%' OR detail LIKE '%backup_conninfo changed (configuration reloaded; a connection string is not recorded)%')\")\" = 2 ]"
is "$(q src postgres "SELECT count(*) FROM trialvault.audit_events WHERE detail LIKE '%user=shipper%'")" 0 "1: ... without the connection string (it may hold a password)"
check "1: the backup launcher runs" wait_until "launcher" 20 \
	bash -c "[ \"\$($PGBIN/psql -X -At -h $SDIR -p $(tv_port src) -U postgres -d postgres -c \"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'trialvault backup launcher'\")\" = 1 ]"
check "1: ... and starts a shipper for the database with the extension" wait_until "shipper" 30 \
	bash -c "[ \"\$($PGBIN/psql -X -At -h $SDIR -p $(tv_port src) -U postgres -d postgres -c \"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'trialvault backup shipper' AND datname = 'postgres'\")\" = 1 ]"
like "$(cat "$SDIR/server.log")" "backup shipper started for database \"postgres\" as system \"$SYS\"" "1: the log names the system it ships as"
ins 120
check "1: 120 rows arrive on the remote" wait_until "120 rows" 30 all_shipped
is "$(overlaps)" 0 "1: in tv_seq order, no range twice"
is "$(q repo postgres "SELECT max(row_count) <= 50, count(*) >= 3 FROM trialvault_repo.batches WHERE system_id = '$SYS' AND table_name = 'public.crf'")" "t|t" \
	"1: batches of at most backup_batch_rows (50)"
is "$(q repo postgres "SELECT max(last_seq) FROM trialvault_repo.batches WHERE system_id = '$SYS' AND table_name = 'public.crf'")" \
	"$(q src postgres "SELECT max(tv_seq) FROM crf")" "1: up to the newest tv_seq"
check "1: the extension's own tables are shipped too (the audit trail)" wait_until "audit_events" 30 \
	bash -c "[ \"\$($PGBIN/psql -X -At -h $RDIR -p $RPORT -U postgres -d postgres -c \"SELECT count(*) FROM trialvault_repo.progress WHERE table_name = 'trialvault.audit_events'\")\" = 1 ]"
check "1: backup_status: nothing left for crf" wait_until "lag 0" 10 bash -c "[ \"\$($PGBIN/psql -X -At -h $SDIR -p $(tv_port src) -U postgres -d postgres -c \"SELECT lag_rows FROM trialvault.backup_status WHERE table_name = 'crf'::regclass\")\" = 0 ]"
is "$(status_of "shipped_rows, lag_seconds, last_error IS NULL, batches >= 3, bytes > 0, last_success IS NOT NULL")" "120|0|t|t|t|t" \
	"1: backup_status: rows shipped, no lag, no error, batches and bytes counted"
is "$(q src postgres "SELECT count(*) = (SELECT count(*) FROM trialvault.protected_tables) FROM trialvault.backup_status")" t \
	"1: backup_status: one row per protected table"
is "$(q src postgres "SELECT count(*) FROM pg_indexes WHERE tablename = 'crf' AND indexdef LIKE 'CREATE UNIQUE INDEX % (tv_seq)'")" 1 \
	"1: protect() gave the table a unique index on tv_seq (the shipper reads ranges of it)"

# --- 2. ciphertext, gpg, heads --------------------------------------------------------------
is "$(q repo postgres "SELECT count(*) FROM trialvault_repo.batches WHERE position(convert_to('marker-PLAINTEXT', 'UTF8') IN ciphertext) > 0")" 0 \
	"2: no row's text is readable on the remote"
OUT=$TV_TMP/decrypted
mkdir -p "$OUT"
chmod 755 "$OUT"
# decrypt_all TABLE: every batch of TABLE opened with gpg into $OUT/TABLE-N.json
decrypt_all() {
	local id
	rm -f "$OUT"/*.json
	for id in $(q repo postgres "SELECT batch_id FROM trialvault_repo.batches WHERE system_id = '$SYS' AND table_name = '$1' ORDER BY batch_id"); do
		q repo postgres "SELECT encode(ciphertext, 'base64') FROM trialvault_repo.batches WHERE system_id = '$SYS' AND batch_id = $id" |
			base64 -d >"$OUT/b.pgp"
		gpg --batch --quiet --pinentry-mode loopback --passphrase-file "$RDIR/pass.txt" --decrypt "$OUT/b.pgp" >"$OUT/$id.json" 2>/dev/null || return 1
	done
	chmod 644 "$OUT"/*.json
}
# The rows of every decrypted batch, as rows of crf, against the table itself.
compare_decrypted() {
	q src postgres "CREATE TEMP TABLE got AS SELECT r.* FROM pg_ls_dir('$OUT') f,
		LATERAL json_populate_recordset(NULL::public.crf, pg_read_file('$OUT/' || f)::json -> 'rows') r WHERE f LIKE '%.json';
		SELECT (SELECT count(*) FROM got) = (SELECT count(DISTINCT tv_seq) FROM got),
		       (SELECT md5(string_agg(g::text, '|' ORDER BY tv_seq)) FROM got g) = (SELECT md5(string_agg(c::text, '|' ORDER BY tv_seq)) FROM crf c)"
}
check "2: gpg --decrypt with the private key opens every batch" decrypt_all public.crf
is "$(q src postgres "SELECT count(*) FROM pg_ls_dir('$OUT') f WHERE f LIKE '%.json' AND (pg_read_file('$OUT/' || f)::json ->> 'format') = 'trialvault-batch-1' AND (pg_read_file('$OUT/' || f)::json ->> 'table') = 'public.crf'")" \
	"$(q repo postgres "SELECT count(*) FROM trialvault_repo.batches WHERE system_id = '$SYS' AND table_name = 'public.crf'")" \
	"2: each is a trialvault-batch-1 document naming its table"
is "$(compare_decrypted)" "t|t" "2: the decrypted rows are exactly the local rows, each once"
like "$(gpg --batch --pinentry-mode loopback --passphrase-file "$RDIR/pass.txt" --verbose --decrypt "$OUT/b.pgp" 2>&1 >/dev/null)" "AES256" \
	"2: encrypted with AES-256"
# The heads of the newest batch for crf: the local rows no row refers to.
is "$(q repo postgres "SELECT string_agg((e ->> 0) || ':' || (e ->> 1), ' ' ORDER BY (e ->> 0)::bigint) FROM (SELECT heads FROM trialvault_repo.batches WHERE system_id = '$SYS' ORDER BY batch_id DESC LIMIT 1) b, jsonb_array_elements(b.heads -> 'tables' -> 'public.crf') e")" \
	"$(q src postgres "SELECT string_agg(c.tv_seq || ':' || encode(c.tv_hash, 'hex'), ' ' ORDER BY c.tv_seq) FROM crf c WHERE NOT EXISTS (SELECT 1 FROM crf d WHERE c.tv_seq = ANY (d.tv_prev_seqs))")" \
	"2: each batch carries the heads of the shipped chain"
SIGOK=$(q repo postgres "SELECT heads::text, heads_signature FROM trialvault_repo.batches WHERE system_id = '$SYS' ORDER BY batch_id DESC LIMIT 1" | head -1)
like "$SIGOK" '\|[0-9a-f]{128,}$' "2: ... signed by the server's key"

# --- 3. the remote stopped during inserts ---------------------------------------------------
tv_cluster_stop repo
for i in 1 2 3 4 5; do ins 20; done
is "$(local_count)" 220 "3: local inserts go on while the remote is down"
check "3: backup_status says the remote cannot be reached" wait_until "error" 20 \
	bash -c "$PGBIN/psql -X -At -h $SDIR -p $(tv_port src) -U postgres -d postgres -c \"SELECT last_error FROM trialvault.backup_status WHERE table_name = 'crf'::regclass\" | grep -q 'cannot connect to the remote repository'"
is "$(status_of "lag_rows, lag_seconds > 0")" "100|t" "3: ... with the rows waiting and how long"
like "$(cat "$SDIR/server.log")" "trialvault backup shipping failed: cannot connect to the remote repository" "3: the server log says so"
is "$(grep -c 'trialvault backup shipping failed: cannot connect' "$SDIR/server.log")" 1 "3: ... once, not at every retry"
tv_cluster_restart repo
check "3: once the remote is back, every row arrives" wait_until "220 rows" 90 all_shipped
is "$(overlaps)" 0 "3: none twice"
check "3: the error clears" wait_until "no error" 10 bash -c "[ -z \"\$($PGBIN/psql -X -At -h $SDIR -p $(tv_port src) -U postgres -d postgres -c \"SELECT last_error FROM trialvault.backup_status WHERE table_name = 'crf'::regclass\")\" ]"

# --- 4. a late commit ------------------------------------------------------------------------
sess_open src postgres late -At
sess_run late "BEGIN; INSERT INTO crf (subject, body) VALUES ('late', 'committed late');"
LATE=$(q src postgres "SELECT max(tv_seq) FROM crf")
LATE=$((LATE + 1))
ins 10
ins 10
sleep 2
is "$(q repo postgres "SELECT coalesce(max(last_seq), 0) < $LATE FROM trialvault_repo.batches WHERE system_id = '$SYS' AND table_name = 'public.crf'")" t \
	"4: while a transaction holds tv_seq $LATE, nothing at or after it is shipped"
is "$(status_of "lag_rows >= 20")" t "4: backup_status shows the rows held back"
sess_run late "COMMIT;"
sess_close late
check "4: once it commits, its row and the later ones arrive" wait_until "241 rows" 30 all_shipped
is "$(q repo postgres "SELECT count(*) FROM trialvault_repo.batches WHERE system_id = '$SYS' AND table_name = 'public.crf' AND $LATE BETWEEN first_seq AND last_seq")" 1 \
	"4: the late row is in exactly one batch"
is "$(overlaps)" 0 "4: none twice"

# --- 5. kill -9 and crashes during continuous inserts --------------------------------------
# Inserts in the background, one row per transaction, until told to stop.
writer() {
	while [ ! -f "$TV_TMP/stop-writer" ]; do
		q src postgres "INSERT INTO crf (subject, body) VALUES ('w', repeat('x', 4000))" >/dev/null 2>&1 || sleep 0.2
	done
}
rm -f "$TV_TMP/stop-writer"
writer &
WPID=$!
sleep 1
SPID=$(q src postgres "SELECT pid FROM pg_stat_activity WHERE backend_type = 'trialvault backup shipper' AND datname = 'postgres'")
kill -9 "$SPID"
sleep 3
check "5: after kill -9 of the shipper, a shipper runs again" wait_until "shipper back" 60 \
	bash -c "[ \"\$($PGBIN/psql -X -At -h $SDIR -p $(tv_port src) -U postgres -d postgres -c \"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'trialvault backup shipper' AND datname = 'postgres'\" 2>/dev/null)\" = 1 ]"
sleep 1
tv_cluster_crash src
tv_cluster_restart src
sleep 1
tv_cluster_crash repo
sleep 1
tv_cluster_restart repo
sleep 1
touch "$TV_TMP/stop-writer"
wait "$WPID" || true
is "$(q src postgres "SELECT count(*) > 241 FROM crf")" t "5: (rows were inserted throughout)"
check "5: after kill -9, a local crash and a remote crash, every row arrives" wait_until "all rows" 120 all_shipped
is "$(overlaps)" 0 "5: none twice"
check "5: gpg opens every batch" decrypt_all public.crf
is "$(compare_decrypted)" "t|t" "5: the decrypted rows are exactly the local rows, each once"

# --- 6. misconfiguration, fixed -----------------------------------------------------------------
reconf() { # reconf SETTING VALUE: ALTER SYSTEM and reload
	q src postgres "ALTER SYSTEM SET $1 = '$2'" >/dev/null
	q src postgres "SELECT pg_reload_conf()" >/dev/null
	sleep 0.5
}
status_error_like() { # status_error_like PATTERN
	$PGBIN/psql -X -At -h "$SDIR" -p "$(tv_port src)" -U postgres -d postgres \
		-c "SELECT last_error FROM trialvault.backup_status WHERE table_name = 'crf'::regclass" | grep -q -- "$1"
}
shipped_after() { # shipped_after N: N more rows inserted, then all of them shipped
	ins "$1"
	wait_until "shipping resumes" 60 all_shipped
}

reconf trialvault.backup_public_key_file "$KEYDIR/garbage.asc"
ins 5
check "6: a file that is not an OpenPGP key: backup_status says so" wait_until "key error" 20 status_error_like "holds no ASCII-armored OpenPGP public key"
reconf trialvault.backup_public_key_file "$KEYDIR/missing.asc"
check "6: a missing key file: backup_status says so" wait_until "key error" 20 status_error_like "cannot read the backup public key file"
is "$(remote_rows)" "$(($(local_count) - 5))" "6: nothing shipped without the key"
reconf trialvault.backup_public_key_file "$KEYDIR/backup-public.asc"
check "6: the key fixed: shipping resumes by itself" shipped_after 1

reconf trialvault.backup_conninfo "host=$RDIR port=$RPORT user=shipper dbname=empty_repo"
ins 5
check "6: a remote without the prepared schema: backup_status says so" wait_until "schema error" 20 status_error_like "trialvault-remote-init"
reconf trialvault.backup_conninfo "$REMOTE"
check "6: the right remote again: shipping resumes" shipped_after 1

q repo postgres "REVOKE INSERT ON trialvault_repo.batches FROM shipper" >/dev/null
ins 5
check "6: a remote role without the right to insert: backup_status shows the refusal" wait_until "rights" 30 status_error_like "permission denied.*42501"
is "$(q src postgres "INSERT INTO crf (subject) VALUES ('still writable') RETURNING 'ok'")" ok "6: local writes unaffected"
q repo postgres "GRANT INSERT ON trialvault_repo.batches TO shipper" >/dev/null
check "6: the right granted again: shipping resumes" wait_until "resumes" 90 all_shipped
is "$(overlaps)" 0 "6: none twice after all of it"

# Columns added after protect(), and after a table's first batch: the
# restore below must bring every value back, the columns in the source's
# order (tv_restore_differences compares whole rows as text).
q src postgres "ALTER TABLE crf ADD COLUMN note text" >/dev/null
q src postgres "INSERT INTO crf (subject, note) VALUES ('with a note', 'added after the first batches')" >/dev/null
q src postgres "CREATE TABLE late (a int NOT NULL)" >/dev/null
q src postgres "SELECT trialvault.protect('late')" >/dev/null 2>&1
q src postgres "ALTER TABLE late ADD COLUMN b text" >/dev/null
q src postgres "INSERT INTO late (a, b) VALUES (1, 'one'), (2, NULL)" >/dev/null
late_shipped() { [ "$(remote_rows public.late)" = 2 ] && all_shipped; }
check "6: rows of tables with columns added after protect() are shipped" wait_until "late columns" 60 late_shipped

# --- 6b. restore after all of the above --------------------------------------------------------
# No full backup was taken: every batch from the first, into an empty
# database of a third server, with the private key.
gpg --batch --pinentry-mode loopback --passphrase-file "$RDIR/pass.txt" --armor --export-secret-keys >"$RDIR/private.asc" 2>/dev/null
tv_cluster_start tgt
q tgt postgres "CREATE DATABASE restored" >/dev/null
OUTPUT=$("$ROOT/scripts/trialvault-restore" --remote "$REMOTE" --key "$RDIR/private.asc" --passphrase-file "$RDIR/pass.txt" \
	--target "host=$(tv_dir tgt) port=$(tv_port tgt) user=postgres dbname=restored" 2>&1) && RC=0 || RC=$?
is "$RC" 0 "6b: after the outage, the late commit, kill -9 and the crashes, trialvault-restore succeeds"
[ "$RC" = 0 ] || sed 's/^/#   restore: /' <<<"$OUTPUT" | tail -n 40
like "$OUTPUT" "no confirmed full backup; every batch from the first" "6b: ... from every batch, there being no full backup"
is "$(tv_restore_differences src postgres tgt restored)" "" "6b: every protected table is byte-identical to the source up to what was shipped"
is "$(q tgt restored "SELECT count(*) FROM crf")" "$(remote_rows)" "6b: every row of crf shipped is restored, once"
is "$(q tgt restored "SELECT count(*) FROM trialvault.protected_tables p, trialvault.verify(p.table_name) v WHERE NOT v.ok")" 0 "6b: every chain verifies"
cols() { q "$1" "$2" "SELECT string_agg(attname || ' ' || format_type(atttypid, atttypmod) || CASE WHEN attnotnull THEN ' not null' ELSE '' END, ', ' ORDER BY attnum)
	FROM pg_attribute WHERE attrelid = '$3'::regclass AND attnum > 0 AND NOT attisdropped"; }
is "$(cols tgt restored crf)" "$(cols src postgres crf)" "6b: a column added after the first batches is restored, in the source's column order"
is "$(q tgt restored "SELECT note FROM crf WHERE subject = 'with a note'")" "added after the first batches" "6b: ... with its value"
is "$(cols tgt restored late)" "$(cols src postgres late)" "6b: a column added after protect() but before the first batch comes after the chain columns, as at the source"
tv_cluster_stop tgt

# --- 7. verify_against_remote: a chain rewritten after it was shipped -------------------------
q src postgres "CREATE ROLE nobody LOGIN; CREATE ROLE boss LOGIN IN ROLE trialvault_admin" >/dev/null 2>&1
q src postgres "CREATE TABLE ledger (body text)" >/dev/null
q src postgres "SELECT trialvault.protect('ledger')" >/dev/null 2>&1
q src postgres "INSERT INTO ledger SELECT 'entry ' || g FROM generate_series(1, 20) g" >/dev/null
check "7: (the ledger is shipped)" wait_until "ledger" 30 bash -c "[ \"\$($PGBIN/psql -X -At -h $RDIR -p $RPORT -U postgres -d postgres -c \"SELECT coalesce(sum(row_count), 0) FROM trialvault_repo.batches WHERE system_id = '$SYS' AND table_name = 'public.ledger'\")\" = 20 ]"
sleep 1
is "$(q src postgres "SELECT bool_and(ok), count(*) = (SELECT count(*) FROM trialvault.protected_tables) FROM trialvault.verify_against_remote()")" "t|t" \
	"7: every protected table still holds what was shipped, one row each"
like "$(q src postgres "SELECT detail FROM trialvault.verify_against_remote() WHERE table_name = 'public.ledger'")" \
	'^the 1 shipped head\(s\), up to tv_seq 20, are unchanged here and the chain verifies \(newest batch [0-9]+, signed\)$' \
	"7: ... and says what it compared"
# A superuser turns the guards off in the catalog and rewrites the newest
# row consistently (canon.c's encoding of one text column, as 41_signed_digest).
guards() {
	q src postgres "UPDATE pg_trigger SET tgenabled = '$2' WHERE tgrelid = '$1'::regclass AND tgfoid = 'trialvault.guard()'::regprocedure" >/dev/null
}
guards ledger D
q src postgres "
	UPDATE ledger SET body = 'forged',
		tv_hash = digest('TVHASH1'::bytea || int8send(tv_seq) || tv_prev_hash ||
			digest('TVROW2'::bytea || int4send(4) || 'body'::bytea || int4send(25) || 'r'::bytea ||
				int4send(octet_length('forged')) || convert_to('forged', 'UTF8'), 'sha256'),
			'sha256')
	WHERE tv_seq = 20" >/dev/null
guards ledger A
is "$(q src postgres "SELECT ok FROM trialvault.verify('ledger')")" t "7: the newest row rewritten consistently: verify() alone says ok"
is "$(q src postgres "SELECT ok || ' | ' || detail FROM trialvault.verify_against_remote() WHERE table_name = 'public.ledger'")" \
	"false | row tv_seq=20 differs from what was shipped (it was rewritten after it was shipped)" \
	"7: verify_against_remote() names the rewritten row"
is "$(q src postgres "SELECT ok FROM trialvault.verify_against_remote() WHERE table_name = 'public.crf'")" t "7: (the other tables are fine)"
# The heads' signature: a remote superuser who edits the heads cannot re-sign them.
# (No new batch may arrive meanwhile, or it would be the newest, properly
# signed: the shipper's right to insert is taken away for the check.)
q repo postgres "REVOKE INSERT ON trialvault_repo.batches FROM shipper" >/dev/null
sleep 1
q repo postgres "UPDATE trialvault_repo.batches SET heads_signature = repeat('ab', 64) WHERE system_id = '$SYS' AND batch_id = (SELECT max(batch_id) FROM trialvault_repo.batches WHERE system_id = '$SYS')" >/dev/null
like "$(q src postgres "SELECT ok || ' | ' || detail FROM trialvault.verify_against_remote() WHERE table_name = 'public.crf'")" \
	"^false \| the heads in batch [0-9]+ are not signed by this server's key$" "7: heads whose signature does not check: not ok, saying so"
q repo postgres "GRANT INSERT ON trialvault_repo.batches TO shipper" >/dev/null
tv_cluster_stop repo
is "$(sqlstate_of src postgres "SELECT * FROM trialvault.verify_against_remote()")" 08006 "7: the remote unreachable: a connection error (08006)"
like "$(tv_psql src -d postgres -c "SELECT * FROM trialvault.verify_against_remote()" 2>&1 || true)" "cannot connect to the remote repository" "7: ... saying so"
tv_cluster_restart repo
is "$(sqlstate_of src postgres "SET ROLE nobody; SELECT * FROM trialvault.verify_against_remote()")" 42501 "7: refused to an ordinary role"

# --- 8. who may read backup_status ------------------------------------------------------------
is "$(sqlstate_of src postgres "SET ROLE nobody; SELECT * FROM trialvault.backup_status")" 42501 "8: backup_status: refused to an ordinary role"
is "$(sqlstate_of src postgres "SET ROLE nobody; SELECT * FROM trialvault._backup_status()")" 42501 "8: ... and its function too"
is "$(q src postgres "SET ROLE boss; SELECT count(*) > 0 FROM trialvault.backup_status")" t "8: an administrator reads it"

# --- 9. the key file rewritten in place ------------------------------------------------------------
# The setting stays the same, so no reload records it: the shipper notices
# the new key ID, records it before encrypting anything to it, and logs it.
OLD_ID=$(q src postgres "SELECT pgp_key_id(dearmor(pg_read_file('$KEYDIR/backup-public.asc')))")
is "$(grep -c "backups are encrypted to OpenPGP key ID $OLD_ID" "$SDIR/server.log")" "$(grep -c 'backups are encrypted to OpenPGP key ID' "$SDIR/server.log")" \
	"9: every shipper start logs the key ID it encrypts to"
cp "$KEYDIR/backup-public.asc" "$KEYDIR/first-public.asc"
tv_backup_keypair "$RDIR/gnupg2" "$RDIR/pass.txt" "$KEYDIR/second-public.asc" 2048 >/dev/null
NEW_ID=$(q src postgres "SELECT pgp_key_id(dearmor(pg_read_file('$KEYDIR/second-public.asc')))")
# The shipper stopped first: the one started after it still knows the old key.
q src postgres "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type = 'trialvault backup shipper'" >/dev/null
cat "$KEYDIR/second-public.asc" >"$KEYDIR/backup-public.asc"
ins 1
key_recorded() { [ "$(q src postgres "SELECT count(*) FROM trialvault.account_changes WHERE kind = 'setting_changed' AND detail LIKE '%changed from key ID $OLD_ID to $NEW_ID%'")" = 1 ]; }
check "9: the key file rewritten with another key (the shipper restarted meanwhile): recorded in the security trail with both key IDs" wait_until "the record" 60 key_recorded
check "9: ... and shipping goes on, to the new key" wait_until "shipping" 60 all_shipped
NEWEST=$(q repo postgres "SELECT batch_id FROM trialvault_repo.batches WHERE system_id = '$SYS' AND table_name = 'public.crf' ORDER BY batch_id DESC LIMIT 1")
q repo postgres "SELECT encode(ciphertext, 'base64') FROM trialvault_repo.batches WHERE system_id = '$SYS' AND batch_id = $NEWEST" | base64 -d >"$RDIR/newest.pgp"
check "9: ... which the new private key opens" bash -c "GNUPGHOME=$RDIR/gnupg2 gpg --batch --quiet --pinentry-mode loopback --passphrase-file $RDIR/pass.txt --decrypt $RDIR/newest.pgp 2>/dev/null | grep -q 'trialvault-batch-1'"
check "9: ... and the old one does not" bash -c "! gpg --batch --quiet --pinentry-mode loopback --passphrase-file $RDIR/pass.txt --decrypt $RDIR/newest.pgp >/dev/null 2>&1"
like "$(grep 'the backup public key changed' "$SDIR/server.log" || true)" "from key ID $OLD_ID to $NEW_ID" "9: ... and logged"
cat "$KEYDIR/first-public.asc" >"$KEYDIR/backup-public.asc"

# --- the server log -------------------------------------------------------------------------------
is "$(grep -c 'terminated by signal' "$SDIR/server.log" || true)" 1 "no launcher or shipper died but the one killed with kill -9"
like "$(grep 'terminated by signal' "$SDIR/server.log" || true)" 'terminated by signal 9: Killed' "... (that one)"

done_testing

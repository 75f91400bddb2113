#!/usr/bin/env bash
# 88_remote_repository.sh: the remote backup repository that
# scripts/trialvault-remote-init prepares (issue 15, first part), on a real
# second cluster.
#
#   1. the script refuses a shipper role that does not exist or is a
#      superuser, and an unreachable remote, with clear messages; it prepares
#      the repository, and running it again is safe;
#   2. the shipper may insert and read batches and full backups, read
#      progress, and nothing else: no UPDATE, DELETE or TRUNCATE anywhere, no
#      write to progress, no DDL in the schema;
#   3. the repository checks what arrives: a batch whose SHA-256 does not
#      match, a duplicate or a gap in the batch ids is refused; progress is
#      written with each batch, in its transaction (a batch rolled back
#      leaves none);
#   4. a full backup is confirmed only when every chunk is there and
#      matches its SHA-256 and the manifest's, cannot claim batches that have
#      not arrived, and takes no chunk once confirmed; a shipper cannot
#      confirm one by inserting it so;
#   5. purge() deletes only the batches the newest confirmed full backup
#      covers and the confirmed backups beyond the retention: nothing before
#      a backup is confirmed, never a batch after it;
#   6. the OpenPGP key made by the recipe of docs/backups.md: pgcrypto
#      encrypts to it (AES-256), plain gpg --decrypt opens it.
set -euo pipefail
source "$(dirname "$0")/../lib/cluster.sh"
source "$(dirname "$0")/lib/helpers.sh"
source "$(dirname "$0")/../lib/backups.sh"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
INIT=$ROOT/scripts/trialvault-remote-init

tv_cluster_start repo "shared_preload_libraries = ''"
DIR=$(tv_dir repo)
PORT=$(tv_port repo)
CONN="host=$DIR port=$PORT user=postgres dbname=postgres"
export PSQL=$PGBIN/psql

# --- 1. the script --------------------------------------------------------------------
like "$("$INIT" "$CONN" shipper 2>&1 || true)" 'role "shipper" does not exist' "1: a shipper role that does not exist: refused, saying so"
q repo postgres "CREATE ROLE boss LOGIN SUPERUSER" >/dev/null
like "$("$INIT" "$CONN" boss 2>&1 || true)" 'role "boss" is a superuser' "1: a superuser as shipper: refused"
like "$("$INIT" "host=$DIR port=1 user=postgres dbname=postgres" shipper 2>&1 || true)" 'connection to server .* failed' \
	"1: an unreachable remote: psql's message"
like "$("$INIT" "$CONN" 'Bad Name' 2>&1 || true)" 'must be a plain lower-case name' "1: a role name that is not plain: refused"
q repo postgres "CREATE ROLE shipper LOGIN" >/dev/null
like "$("$INIT" "$CONN" shipper 2>&1)" 'repository ready in schema trialvault_repo' "1: the repository is prepared"
like "$("$INIT" "$CONN" shipper 2>&1)" 'repository ready' "1: running the script again is safe"
is "$(q repo postgres "SELECT string_agg(c.relname || ':' || pg_get_userbyid(c.relowner), ' ' ORDER BY c.relname) FROM pg_class c WHERE c.relnamespace = 'trialvault_repo'::regnamespace AND c.relkind = 'r'")" \
	"backup_chunks:trialvault_repo_owner batches:trialvault_repo_owner full_backups:trialvault_repo_owner progress:trialvault_repo_owner repo_version:trialvault_repo_owner" \
	"1: its tables, owned by trialvault_repo_owner"

as_shipper() { sqlstate_of repo postgres "SET ROLE shipper; $1"; }
# batch ID [TABLE [SHA]]: insert batch ID of system S1 as the shipper (a
# 16-byte "ciphertext" of its id); prints the SQLSTATE.
batch() {
	local sha=${3:-"sha256(convert_to('ct-$1', 'UTF8'))"}
	as_shipper "INSERT INTO trialvault_repo.batches (system_id, batch_id, table_name, first_seq, last_seq, row_count, created_at, sha256, ciphertext)
	            VALUES ('S1', $1, '${2:-public.crf}', $1 * 10, $1 * 10 + 9, 10, now(), $sha, convert_to('ct-$1', 'UTF8'))"
}

# --- 2. what the shipper may do ---------------------------------------------------------------
is "$(batch 1)" none "2: the shipper inserts a batch"
is "$(q repo postgres "SET ROLE shipper; SELECT count(*) FROM trialvault_repo.batches")" 1 "2: ... and reads it back"
for stmt in "UPDATE trialvault_repo.batches SET row_count = 1" "DELETE FROM trialvault_repo.batches" \
	"TRUNCATE trialvault_repo.batches" "UPDATE trialvault_repo.progress SET last_batch_id = 0" \
	"INSERT INTO trialvault_repo.progress VALUES ('S1', 'x', 9, 9, 9, 9, 9, now())" \
	"DELETE FROM trialvault_repo.full_backups" "DELETE FROM trialvault_repo.backup_chunks" \
	"CREATE TABLE trialvault_repo.mine (x int)" "DROP TABLE trialvault_repo.batches"; do
	is "$(as_shipper "$stmt")" 42501 "2: refused to the shipper: ${stmt:0:60}"
done

# --- 3. arrival checks ------------------------------------------------------------------
is "$(batch 2 public.crf "sha256('other'::bytea)")" XX001 "3: a batch that does not match its SHA-256: refused (XX001)"
is "$(batch 2)" none "3: the next batch: accepted"
is "$(batch 2)" 23505 "3: the same batch again: refused"
is "$(batch 4)" 23505 "3: a gap (4 after 2): refused"
is "$(batch 3 trialvault.audit_events)" none "3: the next one, of another table: accepted"
is "$(q repo postgres "SELECT string_agg(table_name || ':' || last_batch_id || ':' || shipped_rows || ':' || batches, ' ' ORDER BY table_name) FROM trialvault_repo.progress")" \
	"public.crf:3:20:2 trialvault.audit_events:3:10:1" "3: progress per table, the batch position shared"
is "$(as_shipper "BEGIN; INSERT INTO trialvault_repo.batches (system_id, batch_id, table_name, first_seq, last_seq, row_count, created_at, sha256, ciphertext) VALUES ('S1', 4, 'public.crf', 40, 49, 10, now(), sha256('\\x00'::bytea), '\\x00'); ROLLBACK")" none \
	"3: (a batch sent and rolled back)"
is "$(q repo postgres "SELECT max(last_batch_id) FROM trialvault_repo.progress")" 3 "3: ... leaves no progress"

# --- 4. full backups ------------------------------------------------------------------
backup() {	# backup ID COVERS CHUNKS MANIFEST_CHUNK_HASHES
	as_shipper "INSERT INTO trialvault_repo.full_backups (system_id, backup_id, started_at, covers_batch_id, chunks, manifest, confirmed_at)
	            VALUES ('S1', $1, now(), $2, $3, jsonb_build_object('chunks', $4), now())"
}
chunk() {	# chunk BACKUP NO [SHA]
	as_shipper "INSERT INTO trialvault_repo.backup_chunks VALUES ('S1', $1, $2, ${3:-"sha256(convert_to('chunk-$1-$2', 'UTF8'))"}, convert_to('chunk-$1-$2', 'UTF8'))"
}
hashes() {	# hashes BACKUP N: the manifest's list of chunk hashes
	echo "jsonb_build_array($(for ((i = 1; i <= $2; i++)); do printf "%sencode(sha256(convert_to('chunk-%s-%s', 'UTF8')), 'hex')" "$([ $i -gt 1 ] && echo ', ')" "$1" "$i"; done))"
}
is "$(backup 1 99 2 "$(hashes 1 2)")" 22023 "4: a full backup that claims batches not yet arrived: refused"
is "$(backup 1 2 2 "$(hashes 1 2)")" none "4: a full backup covering batch 2, in two chunks"
is "$(q repo postgres "SELECT confirmed_at IS NULL FROM trialvault_repo.full_backups WHERE backup_id = 1")" t \
	"4: ... not confirmed by inserting it so"
is "$(chunk 1 1 "sha256('x'::bytea)")" XX001 "4: a chunk that does not match its SHA-256: refused"
is "$(chunk 1 1)" none "4: chunk 1"
is "$(as_shipper "SELECT trialvault_repo.confirm_full_backup('S1', 1)")" 55000 "4: confirming with a chunk missing: refused"
is "$(as_shipper "SELECT trialvault_repo.purge('S1', 1)")" none "4: (purge before any confirmed backup)"
is "$(q repo postgres "SELECT count(*) FROM trialvault_repo.batches")" 3 "4: ... deletes nothing"
is "$(chunk 1 2)" none "4: chunk 2"
is "$(as_shipper "SELECT trialvault_repo.confirm_full_backup('S1', 1)")" none "4: with every chunk there: confirmed"
is "$(chunk 1 3)" 55000 "4: a confirmed backup takes no more chunks"
is "$(backup 2 3 1 "jsonb_build_array('00')")" none "4: a backup whose manifest lists another hash"
is "$(chunk 2 1)" none "4: ... its chunk"
is "$(as_shipper "SELECT trialvault_repo.confirm_full_backup('S1', 2)")" 55000 "4: ... is not confirmed"

# --- 5. purge ---------------------------------------------------------------------
is "$(batch 4)" none "5: (batch 4, after backup 1)"
is "$(q repo postgres "SET ROLE shipper; SELECT batches_purged || ':' || backups_purged FROM trialvault_repo.purge('S1', 1)")" 2:0 \
	"5: purge deletes the two batches backup 1 covers"
is "$(q repo postgres "SELECT string_agg(batch_id::text, ' ' ORDER BY batch_id) FROM trialvault_repo.batches")" "3 4" \
	"5: ... and keeps those after it"
is "$(backup 3 4 1 "$(hashes 3 1)")" none "5: (backup 3, covering batch 4)"
is "$(chunk 3 1)" none "5: (its chunk)"
is "$(as_shipper "SELECT trialvault_repo.confirm_full_backup('S1', 3)")" none "5: (confirmed)"
is "$(q repo postgres "SET ROLE shipper; SELECT batches_purged || ':' || backups_purged FROM trialvault_repo.purge('S1', 1)")" 2:1 \
	"5: with retention 1: the batches backup 3 covers, and backup 1"
is "$(q repo postgres "SELECT string_agg(backup_id || ':' || (confirmed_at IS NOT NULL), ' ' ORDER BY backup_id) FROM trialvault_repo.full_backups")" \
	"2:false 3:true" "5: the unconfirmed backup 2 is never purged"
is "$(q repo postgres "SELECT count(*) FROM trialvault_repo.backup_chunks WHERE backup_id = 1")" 0 "5: backup 1's chunks went with it"
is "$(as_shipper "SELECT trialvault_repo.purge('S1', 0)")" 22023 "5: a retention below 1: refused"

# --- 6. the key recipe (docs/backups.md) and pgcrypto -------------------------------------
# The OpenPGP key pair made as the docs say, in a throwaway GNUPGHOME: what
# pgcrypto encrypts to its public key opens with plain gpg --decrypt.
export GNUPGHOME=$DIR/gnupg
echo 'Offline#Device#Pass1' >"$DIR/pass.txt"
fpr=$(tv_backup_keypair "$GNUPGHOME" "$DIR/pass.txt" "$DIR/backup-public.asc" 4096)
like "$(head -1 "$DIR/backup-public.asc")" '^-----BEGIN PGP PUBLIC KEY BLOCK-----$' "6: the recipe makes an armored public key"
q repo postgres "CREATE EXTENSION pgcrypto" >/dev/null
chmod 644 "$DIR/backup-public.asc"
q repo postgres "SELECT pgp_pub_encrypt_bytea(convert_to('batch of rows, 4 KB each', 'UTF8'),
                        dearmor(pg_read_file('$DIR/backup-public.asc')), 'cipher-algo=aes256, compress-algo=1')" |
	sed 's/^\\x//' | xxd -r -p >"$DIR/batch.pgp"
like "$(gpg --batch --list-packets "$DIR/batch.pgp" 2>&1 | tr '\n' ' ')" "encrypted with 4096-bit RSA key, ID ${fpr:0:0}" \
	"6: pgcrypto encrypts to the key's RSA encryption subkey"
is "$(gpg --batch --pinentry-mode loopback --passphrase-file "$DIR/pass.txt" --decrypt "$DIR/batch.pgp" 2>/dev/null)" \
	"batch of rows, 4 KB each" "6: ... and plain gpg --decrypt with the private key opens it"
like "$(gpg --batch --verbose --pinentry-mode loopback --passphrase-file "$DIR/pass.txt" --decrypt "$DIR/batch.pgp" 2>&1 >/dev/null)" \
	'AES256' "6: ... AES-256, as asked"

tv_cluster_stop repo
done_testing

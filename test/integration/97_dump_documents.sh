#!/usr/bin/env bash
# 97_dump_documents.sh: studies, keys, encrypted documents and the
# decryption log survive pg_dump and pg_restore.
#
# The extension's own tables are dumped (pg_extension_config_dump), the data
# keys only wrapped, the documents only as ciphertext.  Restored with
# trialvault.restore_mode into a new database of the same cluster (same
# master key):
#
#   1. every protected table of the extension verifies, with the head_digest
#      of the source (the chain was kept, not rebuilt);
#   2. the wrapped keys and the ciphertext are byte for byte the source's,
#      and every PHI document still authenticates there (_ciphertext_ok)
#      under its own study, id and field, and not under another id;
#   3. the plain dump holds no plaintext of the PHI documents (while it does
#      hold the no-PHI one, as bytea hex) and not the master key;
#   4. the restored database's memberships and views work (open_study as
#      the site staff member, my_documents lists the documents).
set -euo pipefail
source "$(dirname "$0")/../lib/cluster.sh"
source "$(dirname "$0")/lib/helpers.sh"

CL=c97
# Logins are not recorded here: the digests, the dumps and the restore are
# taken in connections of their own, whose logins would add rows to
# trialvault.audit_events in between.
tv_cluster_start $CL "trialvault.audit_logins = off" >/dev/null
work=$(tv_dir $CL)/dump
mkdir -p "$work"
chown "$TV_OS_USER" "$work"
PLAIN='Scan of Ottilie Quarmby, born 1957-02-11'

tv_psql $CL -d postgres >/dev/null <<SQL
SET client_min_messages = warning;
CREATE EXTENSION trialvault CASCADE;
CREATE ROLE dora LOGIN;
SELECT trialvault.create_study('D1', 'Dump study');
SELECT trialvault.require_signatures('D1', false);
SELECT trialvault.add_site('D1', 'A', 'Site A');
SELECT trialvault.grant_role('dora', 'D1', 'A', 'site_staff');
SELECT trialvault.rotate_study_key('D1');
SQL
for i in 1 2 3; do
	tv_psql $CL -d postgres -U dora -At -c \
		"SELECT trialvault.load_document('D1', 'A', 'source', true, '<doc><visit>$i</visit></doc>',
		                                 convert_to('$PLAIN #$i', 'UTF8'))" >/dev/null
done
tv_psql $CL -d postgres -U dora -At -c \
	"SELECT trialvault.load_document('D1', 'A', 'protocol', false, '<doc><visit>0</visit></doc>',
	                                 convert_to('protocol, no PHI', 'UTF8'))" >/dev/null
out=$(tv_psql $CL -d postgres -U dora -At <<'SQL'
SELECT trialvault.open_study('D1') \gset
SELECT convert_from(trialvault.open_document(1), 'UTF8');
SQL
)
is "$out" "$PLAIN #1" "source: dora opens a document (and the call is logged)"

TABLES="studies sites memberships monitor_authorizations study_keys documents decryption_log audit_events"
declare -A DIGEST=()
for t in $TABLES; do
	DIGEST[$t]=$(q $CL postgres "SELECT ok || ':' || rows_checked || ':' || encode(head_digest, 'hex') FROM trialvault.verify('trialvault.$t')")
done
keys_src=$(q $CL postgres "SELECT md5(string_agg(study_id || ':' || version || ':' || master_key_id || encode(wrapped, 'hex'), ',' ORDER BY study_id, version)) FROM trialvault.study_keys")
ct_src=$(q $CL postgres "SELECT md5(string_agg(doc_id || encode(coalesce(content_enc, content), 'hex'), ',' ORDER BY doc_id)) FROM trialvault.documents")

check "pg_dump -Fc of the source" tv_as_pg "$PGBIN/pg_dump" -h "$(tv_dir $CL)" -p "$(tv_port $CL)" -U postgres \
	-Fc -f "$work/src.dump" postgres
check "pg_dump -Fp of the source" tv_as_pg "$PGBIN/pg_dump" -h "$(tv_dir $CL)" -p "$(tv_port $CL)" -U postgres \
	-Fp -f "$work/src.sql" postgres
q $CL postgres "CREATE DATABASE restored" >/dev/null
check "pg_restore with trialvault.restore_mode into a new database" \
	env PGOPTIONS='-c trialvault.restore_mode=on' runuser -u "$TV_OS_USER" -- \
	"$PGBIN/pg_restore" -h "$(tv_dir $CL)" -p "$(tv_port $CL)" -U postgres --exit-on-error -d restored "$work/src.dump"

# --- 1. every table verifies, with the source's head_digest -----------------------
for t in $TABLES; do
	is "$(q $CL restored "SELECT ok || ':' || rows_checked || ':' || encode(head_digest, 'hex') FROM trialvault.verify('trialvault.$t')")" \
		"${DIGEST[$t]}" "1: trialvault.$t verifies after the restore, same rows and head_digest"
done

# --- 2. keys and ciphertext unchanged and still authentic ------------------------
is "$(q $CL restored "SELECT md5(string_agg(study_id || ':' || version || ':' || master_key_id || encode(wrapped, 'hex'), ',' ORDER BY study_id, version)) FROM trialvault.study_keys")" \
	"$keys_src" "2: the wrapped data keys are the source's, byte for byte"
is "$(q $CL restored "SELECT md5(string_agg(doc_id || encode(coalesce(content_enc, content), 'hex'), ',' ORDER BY doc_id)) FROM trialvault.documents")" \
	"$ct_src" "2: the stored documents are the source's, byte for byte"
is "$(q $CL restored "SELECT count(*) FILTER (WHERE trialvault._ciphertext_ok(s.study_id, d.study, d.doc_id, 'content', d.content_enc)) || '/' || count(*)
                      FROM trialvault.documents d JOIN trialvault.studies s ON s.code = d.study WHERE d.contains_phi")" \
	"3/3" "2: every PHI document authenticates in the restored database (keys under the same master key)"
is "$(q $CL restored "SELECT count(*) FILTER (WHERE trialvault._ciphertext_ok(s.study_id, d.study, d.doc_id + 1, 'content', d.content_enc))
                      FROM trialvault.documents d JOIN trialvault.studies s ON s.code = d.study WHERE d.contains_phi")" \
	0 "2: and none under another document id"
is "$(q $CL restored "SELECT string_agg(DISTINCT get_byte(content_enc, 10)::text, ',') FROM trialvault.documents WHERE contains_phi")" \
	2 "2: they are under the rotated key (version 2), which was restored too"

# --- 3. the dumps hold ciphertext only, and no key bytes ---------------------------
phi_hex=$(printf '%s' 'Ottilie Quarmby' | od -An -tx1 | tr -d ' \n')
check "3: no plaintext of the PHI documents in the plain dump (as text or bytea hex)" \
	bash -c "! grep -qai -e 'Quarmby' -e '$phi_hex' '$work/src.sql'"
check "3: (the plain dump does hold the no-PHI document as it is)" \
	bash -c "grep -qa '\\\\x70726f746f636f6c2c206e6f20504849' '$work/src.sql'"
key=$(tr -d '\n' <"$(tv_dir $CL)/master.key")
check "3: the master key (hex, either case) is not in the plain dump" \
	bash -c "! grep -qaiF '$key' '$work/src.sql'"

# --- 4. memberships and views work in the restored database ------------------------
out=$(tv_psql $CL -d restored -U dora -At <<'SQL'
SELECT trialvault.open_study('D1') \gset
SELECT string_agg(doc_id || ':' || doc_type, ',' ORDER BY doc_id) FROM trialvault.my_documents;
SELECT string_agg(site || ':' || study_role, ',') FROM trialvault.my_roles;
SQL
)
is "$out" "1:source,2:source,3:source,4:protocol
A:site_staff" "4: dora opens the study in the restored database and sees its documents and her role"

done_testing

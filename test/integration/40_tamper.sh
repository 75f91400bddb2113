#!/usr/bin/env bash
# 40_tamper.sh: changes made behind the guards' back are found by verify().
#
#   a. a superuser switches the guard triggers off in pg_trigger, then in a
#      new session updates a row: verify names the row and the guard;
#   b. the same trick deletes a row in the middle: verify names the row
#      that referred to it, also after the triggers are switched on again;
#      protect() refuses to chain the damaged table afresh;
#   c. bytes of a row changed in the data file while the server is down
#      (data checksums are off, so PostgreSQL itself does not notice);
#   d. the limit: a superuser who rewrites the newest row (a head, which no
#      row refers to yet) and computes its hash the way the extension does
#      is not detected by verify() alone.  Only the head_digest changes,
#      which is why it must be anchored outside the server.  (A superuser
#      could rewrite every row after a changed one the same way; the anchor
#      catches that too.)
#   e. a column renamed in pg_attribute: column names are hashed.
#   f. what could hide rows or change the extension's own code, done by
#      catalog edits the DDL guards cannot see (row level security forced,
#      an unprotected table made a child, a guard function, a view option,
#      a function's settings, the installed version), is reported by
#      verify() in "guard", and goes away when the edit is undone.
#
# c runs last because it stops and restarts the server.
set -euo pipefail
source "$(dirname "$0")/../lib/cluster.sh"
source "$(dirname "$0")/lib/helpers.sh"

tv_cluster_start c4
q c4 postgres "CREATE EXTENSION trialvault CASCADE" >/dev/null 2>&1

# Each table: 10 rows, each inserted in its own transaction, so the chain is
# linear: row n refers to row n-1.
make_table() {
	tv_psql c4 -d postgres >/dev/null <<SQL
SET client_min_messages = warning;
CREATE TABLE $1 (id serial PRIMARY KEY, subject text NOT NULL, body text);
SELECT trialvault.protect('$1');
SQL
	for i in $(seq 1 10); do
		q c4 postgres "INSERT INTO $1 (subject, body) VALUES ('SUBJ-$i', 'original body $i')"
	done
}

# Prints how many guard triggers were changed.
guards_off() {
	q c4 postgres "WITH u AS (UPDATE pg_trigger SET tgenabled = '$2'
	                WHERE tgrelid = '$1'::regclass AND tgfoid = 'trialvault.guard()'::regprocedure
	                RETURNING 1) SELECT count(*) FROM u"
}

# Runs an UPDATE or DELETE ... RETURNING 1, prints how many rows it changed.
changed() {
	q c4 postgres "WITH u AS ($1 RETURNING 1) SELECT count(*) FROM u"
}

# --- a. catalog edit + UPDATE -------------------------------------------------

make_table rec_a
verify_into c4 postgres rec_a
is "$V_OK:$V_ROWS:$V_HEADS:$V_GUARD" "t:10:1:intact" "a: verify ok before tampering"
a_digest=$V_DIGEST
is "$(sqlstate_of c4 postgres "UPDATE rec_a SET body = 'changed' WHERE subject = 'SUBJ-5'")" 55000 \
	"a: UPDATE refused while the guards are on"

is "$(guards_off rec_a D)" 3 "a: superuser sets tgenabled = 'D' on the 3 guard triggers in pg_trigger"
is "$(changed "UPDATE rec_a SET body = 'changed' WHERE subject = 'SUBJ-5'")" 1 \
	"a: in a new session the UPDATE now goes through"
is "$(q c4 postgres "SELECT body FROM rec_a WHERE subject = 'SUBJ-5'")" changed "a: the row was changed"
seq5=$(q c4 postgres "SELECT tv_seq FROM rec_a WHERE subject = 'SUBJ-5'")
verify_into c4 postgres rec_a
is "$V_OK" f "a: verify not ok"
like "$V_FIRST_BAD" "^row tv_seq=$seq5 ctid=\\([0-9]+,[0-9]+\\): contents do not match tv_hash" \
	"a: first_bad names the updated row (tv_seq=$seq5)"
is "$V_BAD_ROWS" 1 "a: one bad row"
is "$V_GUARD" "guard trigger trialvault_guard is not enabled ALWAYS (tgenabled = 'D')" \
	"a: guard reports the disabled trigger"
is "$V_DIGEST" "$a_digest" "a: head_digest unchanged (the newest row was not touched)"
is "$(q c4 postgres "SELECT guards_enabled FROM trialvault.protected_tables WHERE table_name = 'rec_a'::regclass")" f \
	"a: protected_tables shows guards_enabled = false"

# --- b. catalog edit + DELETE of a middle row ------------------------------------

make_table rec_b
seq4=$(q c4 postgres "SELECT tv_seq FROM rec_b WHERE subject = 'SUBJ-4'")
seq5=$(q c4 postgres "SELECT tv_seq FROM rec_b WHERE subject = 'SUBJ-5'")
is "$(q c4 postgres "SELECT tv_prev_seqs::text FROM rec_b WHERE subject = 'SUBJ-5'")" "{$seq4}" \
	"b: SUBJ-5 is chained to SUBJ-4"
guards_off rec_b D >/dev/null
is "$(changed "DELETE FROM rec_b WHERE subject = 'SUBJ-4'")" 1 "b: DELETE goes through with the guards off"
is "$(sqlstate_of c4 postgres "SELECT trialvault.protect('rec_b')")" 55000 \
	"b: protect() refuses to re-chain a table whose guard is damaged"
guards_off rec_b A >/dev/null
verify_into c4 postgres rec_b
is "$V_OK:$V_ROWS:$V_BAD_ROWS" "f:9:1" "b: verify not ok (9 rows, 1 bad) after the triggers were switched back on"
like "$V_FIRST_BAD" "^row tv_seq=$seq5 ctid=\\([0-9]+,[0-9]+\\): its predecessor tv_seq=$seq4 is missing \\(removed\\?\\)$" \
	"b: first_bad names the row that referred to the deleted one"
is "$V_GUARD" intact "b: guard intact again, the deletion still shows"

# --- d. consistent rewrite of the newest row (before c restarts the server) -------

tv_psql c4 -d postgres >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE TABLE anchored (body text);
SELECT trialvault.protect('anchored');
INSERT INTO anchored VALUES ('first');
INSERT INTO anchored VALUES ('second');
INSERT INTO anchored VALUES ('newest');
SQL
verify_into c4 postgres anchored
is "$V_OK:$V_HEADS" "t:1" "d: verify ok, one head"
anchor=$V_DIGEST
guards_off anchored D >/dev/null
# canon.c's encoding of a row with one text column, and chain.c's row hash:
#   content = SHA-256("TVROW2" u32(len "body") "body" u32(oid of text) 'r' u32(len v) v)
#   tv_hash = SHA-256("TVHASH1" u64(tv_seq) tv_prev_hash content)
q c4 postgres "
	UPDATE anchored SET body = 'forged',
		tv_hash = digest('TVHASH1'::bytea || int8send(tv_seq) || tv_prev_hash ||
			digest('TVROW2'::bytea || int4send(4) || 'body'::bytea || int4send(25) || 'r'::bytea ||
				int4send(octet_length('forged')) || convert_to('forged', 'UTF8'), 'sha256'),
			'sha256')
	WHERE body = 'newest'" >/dev/null
guards_off anchored A >/dev/null
verify_into c4 postgres anchored
is "$(q c4 postgres "SELECT string_agg(body, ',' ORDER BY tv_seq) FROM anchored")" "first,second,forged" \
	"d: the newest row was rewritten"
is "$V_OK:$V_ROWS:$V_GUARD" "t:3:intact" \
	"d: a consistently recomputed newest row is NOT detected by verify() alone (documented limit)"
check "d: but head_digest differs from the anchored value" [ "$V_DIGEST" != "$anchor" ]

# --- e. column renamed in the catalog ----------------------------------------

make_table rec_e
q c4 postgres "UPDATE pg_attribute SET attname = 'contents'
                WHERE attrelid = 'rec_e'::regclass AND attname = 'body'" >/dev/null
is "$(q c4 postgres "SELECT count(contents) FROM rec_e")" 10 "e: the column is renamed (seen by a new session)"
verify_into c4 postgres rec_e
first_seq=$(q c4 postgres "SELECT min(tv_seq) FROM rec_e")
is "$V_OK:$V_BAD_ROWS" "f:10" "e: verify not ok, every row bad"
like "$V_FIRST_BAD" "^row tv_seq=$first_seq ctid=\\([0-9]+,[0-9]+\\): contents do not match tv_hash" \
	"e: first_bad names the first row"

# --- f. catalog edits around the table and of the extension's objects ---------

make_table rec_f
guard_of() { q c4 postgres "SELECT ok || ': ' || guard FROM trialvault.verify('rec_f')"; }
is "$(guard_of)" "true: intact" "f: verify ok before the edits"
edit_and_check() {
	local desc=$1 edit=$2 undo=$3 expect=$4
	q c4 postgres "$edit" >/dev/null
	like "$(guard_of)" "^false: $expect" "f: $desc is reported"
	q c4 postgres "$undo" >/dev/null
	is "$(guard_of)" "true: intact" "f: and no longer once undone"
}
edit_and_check "row level security forced on the table (pg_class)" \
	"UPDATE pg_class SET relrowsecurity = true, relforcerowsecurity = true WHERE oid = 'rec_f'::regclass" \
	"UPDATE pg_class SET relrowsecurity = false, relforcerowsecurity = false WHERE oid = 'rec_f'::regclass" \
	"row level security is enabled on the table"
q c4 postgres "CREATE TABLE rec_f_kid (id int, subject text, body text, tv_seq bigint, tv_prev_seqs bigint[], tv_prev_hash bytea, tv_hash bytea)" >/dev/null
edit_and_check "an unprotected table made its child (pg_inherits)" \
	"INSERT INTO pg_inherits VALUES ('rec_f_kid'::regclass, 'rec_f'::regclass, 1, false); UPDATE pg_class SET relhassubclass = true WHERE oid = 'rec_f'::regclass" \
	"DELETE FROM pg_inherits WHERE inhrelid = 'rec_f_kid'::regclass" \
	'inheritance child "rec_f_kid" is not protected'
edit_and_check "the guard function pointed at another symbol (pg_proc)" \
	"UPDATE pg_proc SET prosrc = 'tv_require_preload_sql' WHERE oid = 'trialvault.guard()'::regprocedure" \
	"UPDATE pg_proc SET prosrc = 'tv_guard' WHERE oid = 'trialvault.guard()'::regprocedure" \
	'(the guard triggers are missing|extension object "function trialvault.guard\(\)" differs)'
edit_and_check "security_barrier taken off a secured view (pg_class.reloptions)" \
	"UPDATE pg_class SET reloptions = NULL WHERE oid = 'trialvault.my_documents'::regclass" \
	"UPDATE pg_class SET reloptions = '{security_barrier=true}' WHERE oid = 'trialvault.my_documents'::regclass" \
	'extension object "view my_documents" differs'
edit_and_check "the fixed search_path taken off protect() (pg_proc.proconfig)" \
	"UPDATE pg_proc SET proconfig = NULL WHERE oid = 'trialvault.protect(regclass)'::regprocedure" \
	"UPDATE pg_proc SET proconfig = '{\"search_path=pg_catalog, pg_temp\"}' WHERE oid = 'trialvault.protect(regclass)'::regprocedure" \
	'extension object "function trialvault.protect\(regclass\)" differs'
edit_and_check "a function made SECURITY DEFINER (pg_proc.prosecdef)" \
	"UPDATE pg_proc SET prosecdef = true WHERE oid = 'trialvault._monitor_now(text, text, name)'::regprocedure" \
	"UPDATE pg_proc SET prosecdef = false WHERE oid = 'trialvault._monitor_now(text, text, name)'::regprocedure" \
	'extension object "function trialvault._monitor_now'
edit_and_check "row level security forced on the decryption log" \
	"UPDATE pg_class SET relrowsecurity = true, relforcerowsecurity = true WHERE oid = 'trialvault.decryption_log'::regclass" \
	"UPDATE pg_class SET relrowsecurity = false, relforcerowsecurity = false WHERE oid = 'trialvault.decryption_log'::regclass" \
	'extension object "table decryption_log" differs'
installed=$(sed -n "s/^default_version = '\(.*\)'/\1/p" "$(dirname "$0")/../../trialvault.control")
edit_and_check "another installed version claimed (pg_extension.extversion)" \
	"UPDATE pg_extension SET extversion = '9.9' WHERE extname = 'trialvault'" \
	"UPDATE pg_extension SET extversion = '$installed' WHERE extname = 'trialvault'" \
	"no catalog seal for the installed version 9.9"
is "$(q c4 postgres "GRANT EXECUTE ON FUNCTION trialvault.protect(regclass) TO PUBLIC; SELECT ok || ': ' || guard FROM trialvault.verify('rec_f')")" \
	"true: intact" "f: a GRANT EXECUTE on a public function (allowed) is not a difference"
out=$(tv_psql c4 -d postgres -c "INSERT INTO trialvault.catalog_seal (version, object, fingerprint) VALUES ('9.9', 'x', '\\x00')" 2>&1 || true)
like "$out" "written only by the extension's own scripts" "f: nobody, superusers included, adds rows to the seal"

# --- c. page edit -------------------------------------------------------------------

is "$(q c4 postgres "SHOW data_checksums")" off "c: data checksums are off (PostgreSQL will not notice)"
tv_psql c4 -d postgres >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE TABLE rec_c (id serial PRIMARY KEY, subject text NOT NULL, body text);
SELECT trialvault.protect('rec_c');
INSERT INTO rec_c (subject, body) SELECT 'ALPHA-' || lpad(g::text, 6, '0'), 'page ' || g FROM generate_series(1, 500) g;
CHECKPOINT;
SQL
verify_into c4 postgres rec_c
is "$V_OK:$V_ROWS" "t:500" "c: verify ok before the page edit"
target_seq=$(q c4 postgres "SELECT tv_seq FROM rec_c WHERE subject = 'ALPHA-000123'")
file="$(tv_dir c4)/data/$(q c4 postgres "SELECT pg_relation_filepath('rec_c')")"
check "c: the table's data file exists" [ -f "$file" ]
tv_cluster_stop c4
check "c: the server is stopped" [ ! -f "$(tv_dir c4)/data/postmaster.pid" ]
size_before=$(stat -c %s "$file")
# Rewrite in place (same inode, owner and mode), same length.
replaced=$(perl -e '
	open(my $f, "+<:raw", $ARGV[0]) or die "$ARGV[0]: $!";
	local $/; my $d = <$f>;
	my $n = ($d =~ s/ALPHA-000123/ALPHA-999123/g);
	seek($f, 0, 0); print $f $d; close($f) or die;
	print $n || 0;' "$file")
is "$replaced" 1 "c: 'ALPHA-000123' replaced by 'ALPHA-999123' once in the data file"
is "$(stat -c %s "$file")" "$size_before" "c: the file keeps its size"
tv_cluster_restart c4
is "$(q c4 postgres "SELECT tv_seq FROM rec_c WHERE subject = 'ALPHA-999123'")" "$target_seq" \
	"c: the server reads the edited value without complaint"
verify_into c4 postgres rec_c
is "$V_OK:$V_BAD_ROWS" "f:1" "c: verify not ok, one bad row"
like "$V_FIRST_BAD" "^row tv_seq=$target_seq ctid=\\([0-9]+,[0-9]+\\): contents do not match tv_hash" \
	"c: first_bad names the edited row (tv_seq=$target_seq)"
is "$V_GUARD" intact "c: guard intact"

done_testing

#!/usr/bin/env bash
# 50_replica_role.sh: session_replication_role = replica switches off
# ordinary triggers, not the guards (they are ENABLE ALWAYS); and the
# extension refuses to install without shared_preload_libraries.
#
#   1. as superuser under replica role: UPDATE, DELETE, TRUNCATE and
#      INSERT ... ON CONFLICT DO UPDATE refused (55000); COPY FROM STDIN and
#      INSERT still chain their rows; verify ok;
#   2. as the table owner (not a superuser): may not set the role unless
#      granted (PG15: GRANT SET ON PARAMETER); once granted, the same
#      refusals and the same working inserts;
#   3. a second cluster without the preload: CREATE EXTENSION trialvault
#      fails with 55000 and a hint naming shared_preload_libraries.
set -euo pipefail
source "$(dirname "$0")/../lib/cluster.sh"
source "$(dirname "$0")/lib/helpers.sh"

tv_cluster_start c5
tv_psql c5 -d postgres >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION trialvault CASCADE;
CREATE ROLE tv_owner LOGIN;
CREATE SCHEMA trial AUTHORIZATION tv_owner;
GRANT EXECUTE ON FUNCTION trialvault.protect(regclass) TO tv_owner;
-- Runs a statement, returns its SQLSTATE, or 'ok'.
CREATE FUNCTION public.try(stmt text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE stmt;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE;
END $$;
SQL
tv_psql c5 -d postgres -U tv_owner >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE TABLE trial.docs (id serial PRIMARY KEY, site text NOT NULL, body text);
INSERT INTO trial.docs (site, body) VALUES ('S01', 'before protect');
SELECT trialvault.protect('trial.docs');
INSERT INTO trial.docs (site, body) VALUES ('S01', 'after protect');
-- An ordinary trigger, which replica role does switch off.
CREATE FUNCTION trial.mark() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.body := NEW.body || ' [origin]'; RETURN NEW; END $$;
CREATE TRIGGER a_mark BEFORE INSERT ON trial.docs FOR EACH ROW EXECUTE FUNCTION trial.mark();
SQL
is "$(q c5 postgres "SELECT tableowner FROM pg_tables WHERE schemaname = 'trial' AND tablename = 'docs'")" tv_owner \
	"the protected table is owned by a non-superuser"
is "$(q c5 postgres "SELECT rolsuper FROM pg_roles WHERE rolname = 'tv_owner'")" f "tv_owner is not a superuser"

REFUSED_STMTS=(
	"UPDATE trial.docs SET body = 'x'"
	"UPDATE trial.docs SET body = 'x' WHERE false"
	"DELETE FROM trial.docs WHERE site = 'S01'"
	"TRUNCATE trial.docs"
	"INSERT INTO trial.docs (id, site) VALUES (1, 'S09') ON CONFLICT (id) DO UPDATE SET site = 'S09'"
	"ALTER TABLE trial.docs DISABLE TRIGGER trialvault_guard"
)

# run_as_replica USER TAG: in one session, set replica role, try every
# refused statement, COPY and INSERT rows tagged TAG; prints
#   role=<setting>
#   <sqlstate> for each refused statement
#   count=<rows tagged TAG>
run_as_replica() {
	local user=$1 tag=$2 sql s
	sql="SET session_replication_role = replica;
SELECT 'role=' || current_setting('session_replication_role');
"
	for s in "${REFUSED_STMTS[@]}"; do
		sql+="SELECT try(\$stmt\$$s\$stmt\$);
"
	done
	sql+="COPY trial.docs (site, body) FROM STDIN;
S02	$tag copy 1
S02	$tag copy 2
S03	$tag copy 3
\\.
INSERT INTO trial.docs (site, body) VALUES ('S04', '$tag insert 1'), ('S04', '$tag insert 2');
SELECT 'count=' || count(*) FROM trial.docs WHERE body LIKE '$tag %';
SELECT 'marked=' || count(*) FROM trial.docs WHERE body LIKE '$tag %[origin]';
"
	tv_psql c5 -d postgres -U "$user" -At <<<"$sql"
}

check_replica_run() {
	local who=$1 out=$2 tag=$3 i=0 s count
	mapfile -t lines <<<"$out"
	is "${lines[0]}" "role=replica" "$who: session_replication_role is replica"
	for s in "${REFUSED_STMTS[@]}"; do
		i=$((i + 1))
		is "${lines[$i]}" 55000 "$who, replica role: refused (55000): $s"
	done
	is "${lines[$((i + 1))]}" count=5 "$who, replica role: COPY FROM STDIN and INSERT added 5 rows"
	is "${lines[$((i + 2))]}" marked=0 "$who, replica role: the ordinary trigger did not fire (replica role in effect)"
	count=$(q c5 postgres "SELECT count(*) FROM trial.docs")
	verify_into c5 postgres trial.docs
	is "$V_OK:$V_ROWS:$V_BAD_ROWS:$V_GUARD" "t:$count:0:intact" "$who, replica role: verify ok, rows_checked = count(*) ($count)"
	is "$(q c5 postgres "SELECT count(*) FROM trial.docs WHERE body LIKE '$tag %' AND cardinality(tv_prev_seqs) = 1")" 5 \
		"$who, replica role: the new rows are chained"
}

# --- 1. superuser ---------------------------------------------------------------

out=$(run_as_replica postgres su)
check_replica_run superuser "$out" su
is "$(q c5 postgres "SELECT count(*) FROM trial.docs WHERE body = 'x' OR site = 'S09'")" 0 \
	"superuser, replica role: no row was changed by the refused statements"

# --- 2. table owner ---------------------------------------------------------------

is "$(sqlstate_of c5 postgres "SET ROLE tv_owner; SET session_replication_role = replica")" 42501 \
	"owner: may not set session_replication_role without a grant (42501)"
for s in "${REFUSED_STMTS[@]}"; do
	is "$(tv_psql c5 -d postgres -U tv_owner -At -c "SELECT try(\$stmt\$$s\$stmt\$)")" 55000 \
		"owner, origin role: refused (55000): $s"
done
q c5 postgres "GRANT SET ON PARAMETER session_replication_role TO tv_owner"
out=$(run_as_replica tv_owner own)
check_replica_run "owner (granted SET)" "$out" own

# An INSERT under the default role fires the ordinary trigger and chains too.
q c5 postgres "INSERT INTO trial.docs (site, body) VALUES ('S05', 'origin insert')"
is "$(q c5 postgres "SELECT body FROM trial.docs WHERE site = 'S05'")" "origin insert [origin]" \
	"origin role: the ordinary trigger fires before the chain trigger"
verify_into c5 postgres trial.docs
is "$V_OK:$V_HEADS" "t:1" "verify ok at the end, one head"

# --- 3. no shared_preload_libraries ----------------------------------------------

tv_cluster_start nopreload "shared_preload_libraries = ''"
is "$(q nopreload postgres "SHOW shared_preload_libraries")" "" "second cluster runs without the preload"
q nopreload postgres "CREATE EXTENSION pgcrypto" >/dev/null
err=$(tv_psql nopreload -d postgres -v VERBOSITY=verbose -c "CREATE EXTENSION trialvault" 2>&1 || true)
like "$err" "ERROR: +55000: trialvault must be loaded via shared_preload_libraries" \
	"CREATE EXTENSION trialvault fails with 55000"
like "$err" "HINT: +[^"$'\n'"]*shared_preload_libraries" "the error has a hint naming shared_preload_libraries"
is "$(q nopreload postgres "SELECT count(*) FROM pg_extension WHERE extname = 'trialvault'")" 0 \
	"the extension is not installed"
is "$(q nopreload postgres "SELECT count(*) FROM pg_namespace WHERE nspname = 'trialvault'")" 0 \
	"nothing of it is left behind (no schema trialvault)"
is "$(sqlstate_of nopreload postgres "CREATE EXTENSION trialvault CASCADE")" 55000 \
	"CREATE EXTENSION trialvault CASCADE fails with 55000 as well"

done_testing

#!/usr/bin/env bash
# Slots of shared memory for chain state (trialvault.max_protected_tables,
# here 16) go only to tables protect() guarded, are given back when the
# protection does not commit, and never run out for the extension's own
# tables:
#
#   1. a role with CREATE on a schema cannot attach trialvault.guard() to a
#      table of its own (on 0.5 it could, and took a slot with each);
#   2. 40 protect()+INSERT transactions that roll back, and 20 savepoints
#      that roll back a protect(), leave no slot behind: 16 tables protected
#      afterwards all take rows;
#   3. the 17th is refused with 53400 and a hint, while documents are still
#      loaded and opened (the log writer and open_document use the
#      extension's reserve), also after a restart when the DBA's tables
#      got there first.
set -euo pipefail
source "$(dirname "$0")/../lib/cluster.sh"
source "$(dirname "$0")/lib/helpers.sh"

tv_cluster_start slots "trialvault.max_protected_tables = 16" >/dev/null
tv_psql slots >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION trialvault CASCADE;
CREATE ROLE squatter LOGIN;
CREATE SCHEMA sq AUTHORIZATION squatter;
CREATE ROLE owner1 LOGIN;
CREATE SCHEMA own AUTHORIZATION owner1;
GRANT EXECUTE ON FUNCTION trialvault.protect(regclass) TO owner1;
CREATE ROLE loader LOGIN;
CREATE ROLE alice LOGIN;
SELECT trialvault.create_study('S1', 'Study one');
SELECT trialvault.require_signatures('S1', false);
SELECT trialvault.add_site('S1', 'A', 'Site A');
SELECT trialvault.grant_role('loader', 'S1', 'A', 'site_staff');
SELECT trialvault.grant_role('alice', 'S1', 'A', 'site_staff');
SQL
as_role() { local r=$1; shift; tv_psql slots -At -v VERBOSITY=verbose -c "SET ROLE $r" "$@" 2>&1; }

# --- 1. no guard without protect() --------------------------------------------
out=$(as_role squatter -c "CREATE TABLE sq.t (a int, tv_seq bigint, tv_prev_seqs bigint[], tv_prev_hash bytea, tv_hash bytea)" \
	-c "CREATE TRIGGER zz_trialvault_chain BEFORE INSERT ON sq.t FOR EACH ROW EXECUTE FUNCTION trialvault.guard()" || true)
like "$out" "42501" "a role with CREATE on a schema cannot attach trialvault.guard() (42501)"
out=$(as_role squatter -c "SELECT trialvault.protect('sq.t')" || true)
like "$out" "42501" "nor call protect() without EXECUTE on it"
is "$(q slots postgres "SELECT has_function_privilege('squatter', 'trialvault.guard()', 'EXECUTE')")" f \
	"PUBLIC has no EXECUTE on trialvault.guard()"

# --- 2. rolled-back protections give their slot back ---------------------------
fails=0
for i in $(seq 1 40); do
	as_role owner1 -q -c "BEGIN" -c "CREATE TABLE own.rb_$i (a int)" \
		-c "SELECT trialvault.protect('own.rb_$i')" -c "INSERT INTO own.rb_$i VALUES (1)" \
		-c "ROLLBACK" >/dev/null || fails=$((fails + 1))
done
is "$fails" 0 "40 transactions protected a table, inserted into it and rolled back"
fails=0
for i in $(seq 1 20); do
	as_role owner1 -q -c "CREATE TABLE own.sp_$i (a int)" -c "BEGIN" -c "SAVEPOINT s" \
		-c "SELECT trialvault.protect('own.sp_$i')" -c "INSERT INTO own.sp_$i VALUES (1)" \
		-c "ROLLBACK TO SAVEPOINT s" -c "COMMIT" >/dev/null || fails=$((fails + 1))
done
is "$fails" 0 "20 transactions protected a table and inserted into it in a savepoint they rolled back"
is "$(q slots postgres "SELECT count(*) FROM trialvault.protected_tables WHERE schema_name = 'own'")" 0 \
	"20 savepoints that rolled back a protect(): no table of them is protected"

fails=0
for i in $(seq 1 16); do
	as_role owner1 -q -c "CREATE TABLE own.t_$i (a int)" -c "SELECT trialvault.protect('own.t_$i')" >/dev/null
	as_role owner1 -q -c "INSERT INTO own.t_$i VALUES ($i)" >/dev/null || fails=$((fails + 1))
done
is "$fails" 0 "afterwards 16 protected tables (trialvault.max_protected_tables) all take rows: no slot leaked"

# --- 3. the limit, and the reserve ---------------------------------------------
as_role owner1 -q -c "CREATE TABLE own.t_17 (a int)" -c "SELECT trialvault.protect('own.t_17')" >/dev/null
out=$(as_role owner1 -c "INSERT INTO own.t_17 VALUES (17)" || true)
like "$out" "53400" "the 17th protected table is refused with 53400"
like "$out" "trialvault.max_protected_tables" "with a hint naming trialvault.max_protected_tables"

load_and_open() {
	local id
	id=$(as_role loader -c "SELECT trialvault.load_document('S1', 'A', 'source', true, '<m/>', '\\x0a0b')" | tail -1)
	as_role alice -q -c "SELECT trialvault.open_study('S1')" -c "SELECT trialvault.open_document($id)" | tail -1
}
is "$(load_and_open)" '\x0a0b' "documents are still loaded and opened, and the attempt logged (the extension's reserve)"

tv_cluster_stop slots
tv_cluster_restart slots
fails=0
for i in $(seq 1 16); do
	as_role owner1 -q -c "INSERT INTO own.t_$i VALUES ($i)" >/dev/null || fails=$((fails + 1))
done
is "$fails" 0 "after a restart the DBA's 16 tables take their slots first"
out=$(as_role owner1 -c "INSERT INTO own.t_17 VALUES (17)" || true)
like "$out" "53400" "the 17th is refused again"
is "$(load_and_open)" '\x0a0b' "and the log writer and open_document still work"
is "$(q slots postgres "SELECT count(*) FROM trialvault.decryption_log WHERE granted")" 2 "both openings are on record"

done_testing

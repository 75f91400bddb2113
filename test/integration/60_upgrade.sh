#!/usr/bin/env bash
# ALTER EXTENSION trialvault UPDATE from 0.1 (through 0.2, 0.3 and 0.4 to 0.5) on a database that already holds
# protected rows: the rows still verify, the new objects arrive, and an
# upgraded database has exactly the objects of a fresh install.
set -euo pipefail
source "$(dirname "$0")/../lib/cluster.sh"

tv_cluster_start up >/dev/null
q() { tv_psql up -d "$1" -At -c "$2"; }

tv_psql up -c "CREATE DATABASE old" -c "CREATE DATABASE fresh" >/dev/null
tv_psql up -d old >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION pgcrypto;
CREATE EXTENSION trialvault VERSION '0.1';
CREATE TABLE ecrf (subject text, visit int, weight numeric);
INSERT INTO ecrf SELECT 'S-' || i, i % 4, 60 + i FROM generate_series(1, 50) i;
SELECT trialvault.protect('ecrf');
INSERT INTO ecrf SELECT 'T-' || i, 1, 70 FROM generate_series(1, 25) i;
SQL
is "$(q old "SELECT extversion FROM pg_extension WHERE extname = 'trialvault'")" 0.1 "installed at 0.1"
digest_before=$(q old "SELECT encode(head_digest, 'hex') FROM trialvault.verify('ecrf')")

tv_psql up -d old -c "ALTER EXTENSION trialvault UPDATE" >/dev/null
is "$(q old "SELECT extversion FROM pg_extension WHERE extname = 'trialvault'")" 0.5 "updated to 0.5"
is "$(q old "SELECT ok || ':' || rows_checked FROM trialvault.verify('ecrf')")" "true:75" \
	"protected rows from 0.1 still verify after the update"
is "$(q old "SELECT encode(head_digest, 'hex') FROM trialvault.verify('ecrf')")" "$digest_before" \
	"the update did not touch the chain (same head_digest)"
like "$(tv_psql up -d old -v VERBOSITY=verbose -c "UPDATE ecrf SET visit = 9" 2>&1 || true)" "55000" \
	"guards still refuse UPDATE after the update"
is "$(q old "INSERT INTO ecrf VALUES ('U-1', 2, 80); SELECT ok || ':' || rows_checked FROM trialvault.verify('ecrf')")" \
	"true:76" "new rows chain onto the old ones"
is "$(q old "SELECT count(*) FROM trialvault.protected_tables WHERE schema_name = 'trialvault'")" 12 \
	"the 0.2 registries and the 0.3 tables are protected tables"
is "$(q old "SELECT trialvault.meta_int('<m><v>7</v></m>', '/m/v')")" 7 "0.2 functions work after the update"
is "$(q old "SELECT trialvault.create_study('UP', 'upgraded') > 0 AND (SELECT master_key_loaded FROM trialvault.key_status())")" t \
	"0.3 functions work after the update (a study and its data key)"

tv_psql up -d fresh -c "SET client_min_messages = warning" -c "CREATE EXTENSION trialvault CASCADE" >/dev/null
objects="SELECT pg_describe_object(classid, objid, objsubid) FROM pg_depend
	WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
	  AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'trialvault') ORDER BY 1"
fresh_objects=$(q fresh "$objects")
old_objects=$(q old "$objects")
is "$old_objects" "$fresh_objects" "an updated database has exactly the objects of a fresh install"
config="SELECT array(SELECT c::regclass::text FROM unnest(extconfig) c ORDER BY 1) FROM pg_extension WHERE extname = 'trialvault'"
is "$(q old "$config")" "$(q fresh "$config")" "pg_dump dumps the same extension tables and sequences either way"
n_objects=$(echo "$fresh_objects" | grep -c .)
check "the extension owns the objects of every version ($n_objects, at least 60)" [ "$n_objects" -ge 60 ]

done_testing

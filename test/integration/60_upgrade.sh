#!/usr/bin/env bash
# ALTER EXTENSION trialvault UPDATE from 0.1 (through every upgrade script) on
# a database that already holds protected rows: the rows still verify, the
# new objects arrive, and an updated database has exactly the objects of a
# fresh install, compared by their full definitions (trialvault.catalog_state():
# function bodies, view definitions, columns, defaults, constraints, indexes,
# triggers, owners, privileges, comments, members).  The comparison is shown
# to fail on one planted difference in a function body.
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
like "$(q old "SELECT ok || ': ' || guard FROM trialvault.verify('ecrf')")" \
	"^false: the extension's objects are not sealed \\(version 0.1 predates 0.6\\)" \
	"before the update, verify() says the extension's objects are not sealed"

tv_psql up -d old -c "ALTER EXTENSION trialvault UPDATE" >/dev/null
version=$(sed -n "s/^default_version = '\(.*\)'/\1/p" "$(dirname "$0")/../../trialvault.control")
is "$(q old "SELECT extversion FROM pg_extension WHERE extname = 'trialvault'")" "$version" "updated to $version"
is "$(q old "SELECT ok || ':' || rows_checked || ':' || guard FROM trialvault.verify('ecrf')")" "true:75:intact" \
	"protected rows from 0.1 still verify after the update, and the extension is as its scripts sealed it"
is "$(q old "SELECT encode(head_digest, 'hex') FROM trialvault.verify('ecrf')")" "$digest_before" \
	"the update did not touch the chain (same head_digest)"
like "$(tv_psql up -d old -v VERBOSITY=verbose -c "UPDATE ecrf SET visit = 9" 2>&1 || true)" "55000" \
	"guards still refuse UPDATE after the update"
is "$(q old "INSERT INTO ecrf VALUES ('U-1', 2, 80); SELECT ok || ':' || rows_checked FROM trialvault.verify('ecrf')")" \
	"true:76" "new rows chain onto the old ones"
is "$(q old "SELECT count(*) FROM trialvault.protected_tables WHERE schema_name = 'trialvault'")" 23 \
	"the 0.2 registries, the 0.3 tables, the 0.6 catalog seal, the 0.7 keys, signatures and policies, the 0.8 password history and the 0.10 second factors, their requirements and the invitations are protected tables"
is "$(q old "SELECT has_function_privilege('trialvault_user', 'trialvault.step_up(text)', 'EXECUTE')
                   AND NOT has_function_privilege('trialvault_user', 'trialvault.reset_second_factor(name)', 'EXECUTE')")" t \
	"0.10: members may step up, only administrators reset, after the update"
is "$(q old "SELECT trialvault._event_subject('second_factor_reset', 'an_admin', '{\"member\": \"up_sf\", \"factor_id\": 1}')")" up_sf \
	"0.10: the audit trail names the member a second-factor event concerns"
is "$(tv_psql up -d old -Atq <<'SQL'
SELECT trialvault.signed_digest('ecrf') AS d \gset
INSERT INTO ecrf VALUES ('U-2', 3, 81);
SELECT ok || ':' || rows_checked || ':' || rows_not_rehashed FROM trialvault.verify('ecrf', since => :'d');
SQL
)" "true:1:76" "0.11: verify(since => digest) rehashes only the row added after a digest, after the update"
is "$(q old "SELECT trialvault.meta_int('<m><v>7</v></m>', '/m/v')")" 7 "0.2 functions work after the update"
is "$(q old "SELECT trialvault.create_study('UP', 'upgraded') > 0 AND (SELECT master_key_loaded FROM trialvault.key_status())")" t \
	"0.3 functions work after the update (a study and its data key)"

tv_psql up -d fresh -c "SET client_min_messages = warning" -c "CREATE EXTENSION trialvault CASCADE" >/dev/null
state="SELECT object || E'\n' || definition FROM trialvault.catalog_state()"
q fresh "$state" >"$TV_TMP/state.fresh"
q old "$state" >"$TV_TMP/state.old"
if diff -u "$TV_TMP/state.fresh" "$TV_TMP/state.old" >"$TV_TMP/state.diff"; then
	ok "an updated database has exactly the objects of a fresh install, definition by definition"
else
	not_ok "an updated database has exactly the objects of a fresh install, definition by definition"
	head -n 40 "$TV_TMP/state.diff" | sed 's/^/#   /'
fi
n_objects=$(q fresh "SELECT count(*) FROM trialvault.catalog_state()")
n_functions=$(q fresh "SELECT count(*) FROM trialvault.catalog_state() WHERE object LIKE 'function %'")
check "the state covers every object ($n_objects, at least 300) and function ($n_functions, at least 75)" \
	[ "$n_objects" -ge 300 ] && [ "$n_functions" -ge 75 ]
like "$(grep -c '^index \|^constraint \|^column \|^trigger \|^acl \|^comment \|^owner \|^definition ' "$TV_TMP/state.fresh")" '^[0-9]{3,}$' \
	"the state spells out columns, constraints, indexes, triggers, owners, privileges and comments"
seal="SELECT string_agg(version || ' ' || object || ' ' || encode(fingerprint, 'hex'), E'\\n' ORDER BY object) FROM trialvault.catalog_seal WHERE version = '$version'"
is "$(q old "$seal")" "$(q fresh "$seal")" "the update sealed the same fingerprints as a fresh install"
config="SELECT array(SELECT c::regclass::text FROM unnest(extconfig) c ORDER BY 1) FROM pg_extension WHERE extname = 'trialvault'"
is "$(q old "$config")" "$(q fresh "$config")" "pg_dump dumps the same extension tables and sequences either way"

# The comparison can fail: one character more in one function body (planted
# in a catalog, as a faulty upgrade script would leave it) is found.
tv_psql up -c "CREATE DATABASE planted TEMPLATE fresh" >/dev/null
q planted "UPDATE pg_catalog.pg_proc SET prosrc = prosrc || ' ' WHERE oid = 'trialvault._require_study(text)'::regprocedure" >/dev/null
q planted "$state" >"$TV_TMP/state.planted"
planted_diff=$(diff "$TV_TMP/state.fresh" "$TV_TMP/state.planted" | grep -c '^[<>]' || true)
check "a planted difference in one function body fails the comparison ($planted_diff lines differ)" [ "$planted_diff" -ge 2 ]

# An event trigger fires inside the extension's scripts, and what its
# function does there would pass for the script's own work, sealed with it:
# here it would make any emergency reason acceptable.  Installs and updates
# are refused while one is enabled.
tv_psql up -c "CREATE DATABASE evt" >/dev/null
tv_psql up -d evt >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION pgcrypto;
CREATE FUNCTION public.plant() RETURNS event_trigger LANGUAGE plpgsql AS $$
BEGIN
	IF to_regprocedure('trialvault._emergency_reason_ok(text)') IS NOT NULL THEN
		IF NOT EXISTS (SELECT 1 FROM pg_proc WHERE pronamespace = 'trialvault'::regnamespace
					   AND prosrc LIKE '%planted%') THEN
			EXECUTE $f$CREATE OR REPLACE FUNCTION trialvault._emergency_reason_ok(reason text) RETURNS boolean
				LANGUAGE sql IMMUTABLE AS 'SELECT true /* planted */'$f$;
		END IF;
	END IF;
END $$;
CREATE EVENT TRIGGER plant ON ddl_command_end EXECUTE FUNCTION public.plant();
SQL
for call in "CREATE EXTENSION trialvault" "CREATE EXTENSION trialvault VERSION '0.4'"; do
	like "$(tv_psql up -d evt -v VERBOSITY=verbose -c "$call" 2>&1 || true)" \
		"55000: installing trialvault is refused while event trigger \"plant\" is enabled" \
		"$call is refused while an event trigger is enabled"
done
is "$(q evt "SELECT count(*) FROM pg_extension WHERE extname = 'trialvault'")" 0 "... and nothing was installed"
tv_psql up -d evt -c "ALTER EVENT TRIGGER plant DISABLE" -c "SET client_min_messages = warning" \
	-c "CREATE EXTENSION trialvault VERSION '0.5'" -c "ALTER EVENT TRIGGER plant ENABLE" >/dev/null
like "$(tv_psql up -d evt -v VERBOSITY=verbose -c "ALTER EXTENSION trialvault UPDATE" 2>&1 || true)" \
	"55000: ALTER EXTENSION trialvault is refused while event trigger \"plant\" is enabled" \
	"ALTER EXTENSION trialvault UPDATE is refused while an event trigger is enabled"
tv_psql up -d evt -c "ALTER EVENT TRIGGER plant DISABLE" -c "ALTER EXTENSION trialvault UPDATE" >/dev/null
is "$(q evt "SELECT extversion || ' ' || (SELECT count(*) FROM pg_proc WHERE prosrc LIKE '%planted%'
                                                AND pronamespace = 'trialvault'::regnamespace)
             FROM pg_extension WHERE extname = 'trialvault'")" "$version 0" \
	"with the event trigger disabled the update runs, and nothing was planted"

# log_writer_status() has one C symbol per version of its declaration
# (as pg_stat_statements does): the shared one of the 0.3 to 0.5 scripts
# answers with the columns a not yet updated database declares, the 0.6 one
# checks it is declared as it expects.
tv_psql up -c "CREATE DATABASE at04" -c "CREATE DATABASE at05" >/dev/null
for v in 0.4 0.5; do
	db=at${v/./}
	tv_psql up -d "$db" -c "SET client_min_messages = warning" -c "CREATE EXTENSION pgcrypto" \
		-c "CREATE EXTENSION trialvault VERSION '$v'" >/dev/null
	cols=$([ "$v" = 0.4 ] && echo 7 || echo 8)
	is "$(q "$db" "SELECT (SELECT count(*) FROM json_object_keys(row_to_json(s))) || ':' || (s.queue_size > 0)
				   FROM trialvault.log_writer_status() s")" "$cols:true" \
		"at $v, log_writer_status() answers with the $cols columns that version declares"
done
# A library newer than a database's trialvault objects refuses what would
# fail halfway on the older objects, and says what to run.
for call in "SELECT trialvault.open_document(1)" "SELECT trialvault._session_scope('documents')"; do
	like "$(tv_psql up -d at05 -v VERBOSITY=verbose -c "$call" 2>&1 || true)" \
		"55000: trialvault's objects in this database are version 0.5, its library is version $version" \
		"at 0.5 with the $version library, ${call#SELECT } is refused until the update"
done
like "$(tv_psql up -d at05 -c "SELECT trialvault.open_document(1)" 2>&1 || true)" \
	"HINT: +Run ALTER EXTENSION trialvault UPDATE" "... with a hint that says what to run"
is "$(q old "SELECT count(*) FROM trialvault.my_documents")" 0 "an updated database's views work (no study open: empty)"
is "$(q old "SELECT prosrc FROM pg_proc WHERE oid = 'trialvault.log_writer_status()'::regprocedure")" \
	tv_log_writer_status_0_6 "the update binds log_writer_status() to the 0.6 symbol"
is "$(q old "SELECT (SELECT count(*) FROM json_object_keys(row_to_json(s))) FROM trialvault.log_writer_status() s")" 8 \
	"... which answers with 8 columns"
q planted "CREATE FUNCTION public.lws7(OUT pid int, OUT database text, OUT queued bigint, OUT written bigint,
	OUT failed bigint, OUT batches bigint, OUT queue_size int)
	LANGUAGE C AS '\$libdir/trialvault', 'tv_log_writer_status_0_6'" >/dev/null
like "$(tv_psql up -d planted -v VERBOSITY=verbose -c "SELECT * FROM public.lws7()" 2>&1 || true)" \
	"0A000: trialvault.log_writer_status\(\) is declared with 7 columns, but its C function returns 8" \
	"the 0.6 symbol refuses a declaration with other columns"

# 0.7: studies that exist before the update keep taking unsigned loads;
# studies created after it require signatures.
tv_psql up -c "CREATE DATABASE pre07" -c "CREATE ROLE up_staff LOGIN" >/dev/null
tv_psql up -d pre07 >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION trialvault VERSION '0.6' CASCADE;
SELECT trialvault.create_study('P6', 'Created at 0.6');
SELECT trialvault.add_site('P6', 'A', 'Site A');
SELECT trialvault.grant_role('up_staff', 'P6', 'A', 'site_staff');
ALTER EXTENSION trialvault UPDATE;
SELECT trialvault.create_study('N7', 'Created at 0.7');
SELECT trialvault.add_site('N7', 'A', 'Site A');
SELECT trialvault.grant_role('up_staff', 'N7', 'A', 'site_staff');
SQL
like "$(tv_psql up -d pre07 -U up_staff -At -c "SELECT trialvault.load_document('P6', 'A', 'protocol', false, '<m/>', 'text')")" \
	'^[0-9]+$' "a study created before 0.7 takes unsigned loads after the update"
like "$(tv_psql up -d pre07 -U up_staff -v VERBOSITY=verbose -c "SELECT trialvault.load_document('N7', 'A', 'protocol', false, '<m/>', 'text')" 2>&1 || true)" \
	"ERROR: +TV004: study N7 requires signed loads" "a study created after the update requires signed loads"
is "$(q pre07 "SELECT string_agg(study || ':' || required, ' ' ORDER BY event_id) FROM trialvault.signature_policies")" \
	"P6:false N7:true" "the update recorded the old study's policy, create_study the new one's"

done_testing

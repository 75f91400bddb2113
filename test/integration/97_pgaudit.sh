#!/usr/bin/env bash
# 97_pgaudit.sh: trialvault and pgaudit, the usual audit extension, loaded
# together, in both orders of shared_preload_libraries (issue 14).
#
# pgaudit writes the statements of the classes it is told to (here role and
# ddl) to the server log; trialvault keeps its own trail.  Each must go on
# working: pgaudit's AUDIT lines are there, trialvault records the logins,
# the role changes and the refusals on protected tables, the guards refuse
# as before, and no password reaches the server log through either (the
# AUDIT line of a role statement carries its text).
set -euo pipefail
source "$(dirname "$0")/../lib/cluster.sh"
source "$(dirname "$0")/lib/helpers.sh"

if [ ! -f "$("$PGBIN/pg_config" --pkglibdir 2>/dev/null || pg_config --pkglibdir)/pgaudit.so" ] &&
	[ ! -f "$PGBIN/../lib/pgaudit.so" ]; then
	not_ok "pgaudit is installed (postgresql-15-pgaudit; scripts/install-deps.sh installs it)"
	done_testing
	exit 1
fi

for order in "pgaudit, trialvault" "trialvault, pgaudit"; do
	cl=pa$([ "${order%%,*}" = pgaudit ] && echo 1 || echo 2)
	tv_cluster_start $cl "shared_preload_libraries = '$order'" "pgaudit.log = 'role, ddl'" \
		"password_encryption = 'scram-sha-256'"
	dir=$(tv_dir $cl)
	q $cl postgres "SET client_min_messages = warning; CREATE EXTENSION trialvault CASCADE; CREATE EXTENSION pgaudit" >/dev/null
	q $cl postgres "CREATE ROLE pa_ann LOGIN PASSWORD 'Pgaudit#Secret1'" >/dev/null
	q $cl postgres "ALTER ROLE pa_ann PASSWORD 'Pgaudit#Secret2'" >/dev/null
	q $cl postgres "SET client_min_messages = warning; CREATE TABLE pa_t (id int); SELECT trialvault.protect('pa_t'); INSERT INTO pa_t VALUES (1)" >/dev/null
	is "$(sqlstate_of $cl postgres "UPDATE pa_t SET id = 2")" 55000 "$order: the guards refuse an UPDATE of a protected table"
	is "$(sqlstate_of $cl postgres "ALTER TABLE pa_t DROP COLUMN id")" 55000 "$order: ... and its DDL"
	tv_psql $cl -d postgres -U pa_ann -c "SELECT 1" >/dev/null
	sleep 0.5
	check "$order: pgaudit logs the role statements (AUDIT lines)" \
		grep -q 'AUDIT: SESSION,[0-9]*,[0-9]*,ROLE,CREATE ROLE' "$dir/server.log"
	check "$order: ... and the DDL" grep -q 'AUDIT: SESSION,[0-9]*,[0-9]*,DDL,CREATE TABLE' "$dir/server.log"
	like "$(grep -m1 'AUDIT: SESSION,[0-9]*,[0-9]*,ROLE,ALTER ROLE,,,ALTER ROLE pa_ann PASSWORD' "$dir/server.log" || true)" \
		"PASSWORD (<REDACTED>|'\\*+')" "$order: (the AUDIT line of the password change is there, without the password)"
	is "$(q $cl postgres "SELECT string_agg(kind, ',' ORDER BY event_id) FROM trialvault.account_changes WHERE target_role = 'pa_ann'")" \
		"role_created,role_altered,role_altered" "$order: trialvault records the role changes (and the VALID UNTIL it set)"
	is "$(q $cl postgres "SELECT count(*) FROM trialvault.audit_events WHERE event = 'protected_table_refused'")" 2 \
		"$order: ... the refusals on the protected table"
	is "$(q $cl postgres "SELECT count(*) > 0 FROM trialvault.login_attempts WHERE role_name = 'pa_ann' AND succeeded")" t \
		"$order: ... and the logins"
	is "$(q $cl postgres "SELECT ok FROM trialvault.verify('pa_t')")" t "$order: the protected table verifies"
	tv_cluster_stop $cl
	for secret in 'Pgaudit#Secret1' 'Pgaudit#Secret2'; do
		check "$order: '${secret:0:9}...' is not in the server log (pgaudit's lines included)" \
			bash -c '! grep -qF -- "$1" "$2"' _ "$secret" "$dir/server.log"
	done
done
done_testing

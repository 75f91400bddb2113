#!/usr/bin/env bash
# pg_dump/pg_restore of the extension's own protected tables: their rows are
# loaded after CREATE EXTENSION has re-created them with their guards, so the
# chain trigger sees them.  With trialvault.restore_mode = on the dumped
# chain is kept as it was (same head_digest); a row altered in the dump is
# refused; ordinary inserts then continue the restored chain.
set -euo pipefail
source "$(dirname "$0")/../lib/cluster.sh"

tv_cluster_start rm >/dev/null
q() { tv_psql rm -d "$1" -At -c "$2"; }
XSD='<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema"><xs:element name="meta" type="xs:string"/></xs:schema>'

tv_psql rm -c "CREATE DATABASE src" >/dev/null
tv_psql rm -d src >/dev/null <<SQL
SET client_min_messages = warning;
CREATE EXTENSION trialvault CASCADE;
SELECT trialvault.register_metadata_schema('ONCO-7', 'meta', '$XSD');
SELECT trialvault.register_metadata_schema('ONCO-7', 'meta', '$XSD');
SELECT trialvault.add_phi_rule('ONCO-7', 'r' || i, 'name', 'Secret' || i) FROM generate_series(1, 30) i;
CREATE TABLE ecrf (subject text, visit int);
SELECT trialvault.protect('ecrf');
INSERT INTO ecrf SELECT 'S-' || i, i FROM generate_series(1, 40) i;
SQL
digest() { q "$1" "SELECT ok || ':' || rows_checked || ':' || encode(head_digest, 'hex') FROM trialvault.verify('$2')"; }
src_rules=$(digest src trialvault.phi_rules)
src_schemas=$(digest src trialvault.metadata_schemas)
src_ecrf=$(digest src ecrf)
like "$src_rules" "^true:30:" "source: 30 study rules verify"

dump="$(tv_dir rm)/src.dump"
tv_as_pg "$PGBIN/pg_dump" -h "$(tv_dir rm)" -p "$(tv_port rm)" -U postgres -Fc -f "$dump" src

# Without restore mode: the rows verify, chained anew (identical only when the
# original chain was linear and gap-free, as here).
tv_psql rm -c "CREATE DATABASE plain_restore" >/dev/null
tv_as_pg "$PGBIN/pg_restore" -h "$(tv_dir rm)" -p "$(tv_port rm)" -U postgres -d plain_restore --exit-on-error "$dump"
plain_rules=$(digest plain_restore trialvault.phi_rules)
like "$plain_rules" "^true:30:" "plain restore: rules verify"
is "$(q plain_restore "SELECT trialvault.add_phi_rule('ONCO-7', 'after', 'name', 'After') > 0")" t \
	"plain restore: rule_id continues after the restored rows (identity sequence is dumped)"
is "$(digest plain_restore ecrf)" "$src_ecrf" "plain restore: a user table keeps its chain (guards restored after data)"

# With restore mode: the chain is kept exactly.
tv_psql rm -c "CREATE DATABASE kept" >/dev/null
PGOPTIONS='-c trialvault.restore_mode=on' tv_as_pg env PGOPTIONS='-c trialvault.restore_mode=on' \
	"$PGBIN/pg_restore" -h "$(tv_dir rm)" -p "$(tv_port rm)" -U postgres -d kept --exit-on-error "$dump"
is "$(digest kept trialvault.phi_rules)" "$src_rules" "restore mode: rules keep their chain (same head_digest)"
is "$(digest kept trialvault.metadata_schemas)" "$src_schemas" "restore mode: schemas keep their chain"
is "$(digest kept ecrf)" "$src_ecrf" "restore mode: user table unchanged"
q kept "SELECT trialvault.add_phi_rule('ONCO-7', 'after', 'name', 'After')" >/dev/null
is "$(q kept "SELECT ok || ':' || rows_checked || ':' || heads FROM trialvault.verify('trialvault.phi_rules')")" \
	"true:31:1" "a rule added after the restore continues the restored chain"
is "$(q kept "SELECT tv_seq > 30 FROM trialvault.phi_rules WHERE rule_name = 'after'")" t \
	"its tv_seq follows the restored ones"

# Restore mode refuses rows that do not match their hash, and bare rows.
tv_psql rm -c "CREATE DATABASE altered" >/dev/null
tv_as_pg "$PGBIN/pg_restore" -f "$(tv_dir rm)/src.sql" "$dump"
sed -i 's/\tSecret7\t/\tSecreT7\t/' "$(tv_dir rm)/src.sql"
out=$(PGOPTIONS='-c trialvault.restore_mode=on' tv_psql rm -d altered -v VERBOSITY=verbose -f "$(tv_dir rm)/src.sql" 2>&1 || true)
like "$out" "XX001: restored row of \"phi_rules\" does not match its tv_hash" \
	"restore mode refuses a row altered in the dump (XX001)"
is "$(q altered "SELECT count(*) FROM trialvault.phi_rules")" 0 "... and keeps none of that table's rows"
out=$(PGOPTIONS='-c trialvault.restore_mode=on' tv_psql rm -d kept -v VERBOSITY=verbose \
	-c "CREATE TABLE t (a int)" -c "SELECT trialvault.protect('t')" -c "INSERT INTO t VALUES (1)" 2>&1 || true)
like "$out" "55000: in restore mode every row inserted into \"t\" must carry its chain columns" \
	"restore mode refuses rows without chain columns (55000)"

# Only superusers may switch it on.
tv_psql rm -c "CREATE ROLE tv_plain LOGIN" >/dev/null
like "$(tv_psql rm -d kept -U tv_plain -c "SET trialvault.restore_mode = on" 2>&1 || true)" \
	"permission denied to set parameter" "restore_mode is superuser-only"

done_testing

#!/usr/bin/env bash
# inspect_metadata() keeps each study's PHI rules and schemas per backend.
# A change committed in another session must apply to this backend's next
# call, whatever it had cached; a change in this session's own open
# transaction applies at once and is forgotten on ROLLBACK.
set -euo pipefail
source "$(dirname "$0")/../lib/cluster.sh"

tv_cluster_start cache >/dev/null
tv_psql cache >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION trialvault CASCADE;
SELECT trialvault.register_metadata_schema('S', 'm',
	'<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema"><xs:element name="m" type="xs:int"/></xs:schema>');
SQL

# One long-lived session (A), so its caches survive between the steps; B is
# a fresh psql each time.
sess_open cache postgres A -qAt -v ON_ERROR_STOP=0 -v VERBOSITY=default
a() { sess_query A "$1"; }
b() { tv_psql cache -At -c "$1"; }

INSPECT="SELECT coalesce(i.checked_version::text, '-') FROM trialvault.inspect_metadata('S', '<m>42</m>') i;"
like "$(a "$INSPECT")" '^-$' "A: clean, no schema applies (and the study's rules are now cached)"
b "SELECT trialvault.add_phi_rule('S', 'answer', 'pattern', '^42\$')" >/dev/null
like "$(a "$INSPECT")" 'PHI screening rule "answer"' "A: a rule B committed applies to A's next call"
b "SELECT trialvault.add_phi_rule('S', 'answer', 'pattern', '^42\$', false)" >/dev/null
like "$(a "$INSPECT")" '^-$' "A: B switching the rule off applies too"
b "SELECT trialvault.set_default_metadata_schema('S', 'm')" >/dev/null
like "$(a "$INSPECT")" '^1$' "A: a default schema B set applies to A's next call"
b "SELECT trialvault.register_metadata_schema('S', 'm', '<xs:schema xmlns:xs=\"http://www.w3.org/2001/XMLSchema\"><xs:element name=\"m\" type=\"xs:string\"/></xs:schema>')" >/dev/null
like "$(a "$INSPECT")" '^2$' "A: a new schema version B registered applies to A's next call"

like "$(a "BEGIN; SELECT trialvault.add_phi_rule('S', 'mine', 'pattern', '4');")" '^[0-9]+$' "A: adds a rule in an open transaction"
like "$(a "$INSPECT")" 'PHI screening rule "mine"' "A: its own uncommitted rule applies in its transaction"
is "$(b "$INSPECT")" "2" "B does not see A's uncommitted rule"
a "ROLLBACK;" >/dev/null
like "$(a "$INSPECT")" '^2$' "A: after ROLLBACK the rule is gone from A's cache as well"

# A repeatable-read transaction checks against its snapshot, as the SQL
# functions do, and leaves nothing stale behind it.
a "BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT 1;" >/dev/null
b "SELECT trialvault.add_phi_rule('S', 'late', 'pattern', '42')" >/dev/null
like "$(a "$INSPECT")" '^2$' "A (repeatable read, snapshot before B's rule): checked as its snapshot says"
a "COMMIT;" >/dev/null
like "$(a "$INSPECT")" 'PHI screening rule "late"' "A: the next transaction sees B's rule"

done_testing

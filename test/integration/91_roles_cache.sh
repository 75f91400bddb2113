#!/usr/bin/env bash
# open_document keeps each caller's roles in a study per backend (the
# everyday grants are decided in C from them).  A membership change that
# another session commits must apply to this backend's very next call,
# whatever it had cached; a change in this session's own open transaction
# applies at once and is forgotten on ROLLBACK; a study created later gets
# its own id (and so its own key).  Neither path grows the backend.
#
# Session A is one long-lived psql acting as alice, then carol (SET ROLE),
# so that its cache survives between the steps; B is a fresh psql each time.
set -euo pipefail
source "$(dirname "$0")/../lib/cluster.sh"

tv_cluster_start roles >/dev/null
tv_psql roles >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION trialvault CASCADE;
CREATE ROLE alice LOGIN;
CREATE ROLE carol LOGIN;
CREATE ROLE loader LOGIN;
SELECT trialvault.create_study('S1', 'Study one');
SELECT trialvault.require_signatures('S1', false);
SELECT trialvault.add_site('S1', 'A', 'Site A');
SELECT trialvault.add_site('S1', 'B', 'Site B');
SELECT trialvault.grant_role('loader', 'S1', 'A', 'site_staff');
SELECT trialvault.grant_role('loader', 'S1', 'B', 'site_staff');
SELECT trialvault.grant_role('alice', 'S1', 'A', 'site_staff');
SELECT trialvault.grant_role('carol', 'S1', 'A', 'site_staff');
CREATE TABLE ids (name text PRIMARY KEY, id bigint);
GRANT SELECT, INSERT ON ids TO PUBLIC;
SET ROLE loader;
INSERT INTO ids VALUES
	('a', trialvault.load_document('S1', 'A', 'source', true, '<m/>', '\x0a0b0c')),
	('b', trialvault.load_document('S1', 'B', 'source', true, '<m/>', '\x0b0c0d')),
	('bsae', trialvault.load_document('S1', 'B', 'sae', true, '<m/>', '\x0c0d0e'));
SQL
id() { tv_psql roles -At -c "SELECT id FROM ids WHERE name = '$1'"; }
A=$(id a) B=$(id b) BSAE=$(id bsae)

sess_open roles postgres A -qAt -v ON_ERROR_STOP=0 -v VERBOSITY=default
a() { sess_query A "$1"; }
b() { tv_psql roles -At -c "$1"; }
# What open_document gives A for a document: the bytes, or the error.
open_as() { a "SET ROLE $1; SELECT trialvault.open_document($2); RESET ROLE;" | grep -v '^SET\|^RESET' | head -1; }
# The reason logged for the newest call on a document by a requester.
reason() { b "SELECT reason FROM trialvault.decryption_log WHERE doc_id = $1 AND requester = '$2' ORDER BY log_id DESC LIMIT 1"; }

a "SET ROLE alice; SELECT trialvault.open_study('S1'); RESET ROLE;" >/dev/null
is "$(open_as alice "$A")" '\x0a0b0c' "alice (site staff of A) opens the document of A (her roles are now cached)"
is "$(open_as alice "$A")" '\x0a0b0c' "and again, from the cache"
like "$(open_as alice "$B")" 'permission denied to open document' "alice is refused at site B"
is "$(reason "$B" alice)" other_site "logged: other_site"

b "SELECT trialvault.revoke_role('alice', 'S1', 'A', 'site_staff')" >/dev/null
like "$(open_as alice "$A")" 'permission denied to open document' "B revokes alice's role: her next call in A is refused"
is "$(reason "$A" alice)" membership_revoked "logged: membership_revoked"

b "SELECT trialvault.grant_role('alice', 'S1', 'B', 'investigator')" >/dev/null
is "$(open_as alice "$B")" '\x0b0c0d' "B makes alice investigator of B: her next call at B is granted"
is "$(reason "$B" alice)" investigator "logged: investigator"
like "$(open_as alice "$A")" 'permission denied to open document' "and site A stays closed to her"

# A second requester in the same backend has roles of its own.
is "$(open_as carol "$A")" '\x0a0b0c' "carol, in the same backend, opens the document of A"
b "SELECT trialvault.grant_role('carol', 'S1', NULL, 'safety')" >/dev/null
is "$(open_as carol "$BSAE")" '\x0c0d0e' "B makes carol safety: her next call opens an SAE of site B"
is "$(reason "$BSAE" carol)" safety "logged: safety"

# A's own transaction: its membership change applies at once, and is gone
# (from the cache too) after ROLLBACK.
a "BEGIN; SELECT trialvault.revoke_role('carol', 'S1', 'A', 'site_staff');" >/dev/null
like "$(open_as carol "$A")" 'permission denied to open document' "A revokes carol in its own open transaction: refused at once"
a "ROLLBACK;" >/dev/null
is "$(open_as carol "$A")" '\x0a0b0c' "after ROLLBACK carol opens the document again"
a "BEGIN; SELECT trialvault.grant_role('alice', 'S1', 'A', 'site_staff');" >/dev/null
is "$(open_as alice "$A")" '\x0a0b0c' "A grants alice in its own transaction: she opens the document of A at once"
a "ROLLBACK;" >/dev/null
like "$(open_as alice "$A")" 'permission denied to open document' "after ROLLBACK she is refused again"

# A study created after A cached S1: its documents decrypt under its own
# study id and key.
b "SELECT trialvault.create_study('S2', 'Study two')" >/dev/null
b "SELECT trialvault.require_signatures('S2', false)" >/dev/null
b "SELECT trialvault.add_site('S2', 'A', 'Site A')" >/dev/null
b "SELECT trialvault.grant_role('carol', 'S2', 'A', 'site_staff')" >/dev/null
tv_psql roles -At -c "SET ROLE carol; INSERT INTO ids VALUES ('s2', trialvault.load_document('S2', 'A', 'source', true, '<m/>', '\x0d0e0f'))" >/dev/null
S2=$(id s2)
a "SET ROLE carol; SELECT trialvault.open_study('S2'); RESET ROLE;" >/dev/null
is "$(open_as carol "$S2")" '\x0d0e0f' "a document of a study created after A's cache was filled opens (its own study id and key)"
is "$(reason "$S2" carol)" loader "logged: loader"

# Memory: 2000 calls twice in one backend; after the first round has warmed
# caches up, the second may grow it by at most 1 MB (0.5 kB a call).
rss_growth() {
	local user=$1 doc=$2 out
	out=$(tv_psql roles -At <<SQL
SELECT pg_backend_pid() AS pid \gset
\setenv P :pid
SET ROLE $user;
\o /dev/null
SELECT trialvault.open_study('S1');
\o
DO \$\$ DECLARE n int; BEGIN FOR i IN 1..2000 LOOP BEGIN n := length(trialvault.open_document($doc)); EXCEPTION WHEN insufficient_privilege THEN NULL; END; END LOOP; END \$\$;
\! awk '/VmRSS/ {print \$2}' /proc/\$P/status
DO \$\$ DECLARE n int; BEGIN FOR i IN 1..2000 LOOP BEGIN n := length(trialvault.open_document($doc)); EXCEPTION WHEN insufficient_privilege THEN NULL; END; END LOOP; END \$\$;
\! awk '/VmRSS/ {print \$2}' /proc/\$P/status
SQL
)
	echo $(($(echo "$out" | tail -n 1) - $(echo "$out" | head -n 1)))
}
g=$(rss_growth carol "$A")
check "memory: 2000 granted calls (roles from the cache) grow the backend by ${g} kB (at most 1024)" [ "$g" -le 1024 ]
g=$(rss_growth carol "$B")
check "memory: 2000 refused calls (the SQL decision) grow the backend by ${g} kB (at most 1024)" [ "$g" -le 1024 ]

check "the server log has no crash lines" \
	[ "$(grep -cE 'terminated by signal|was terminated by exception' "$(tv_dir roles)/server.log" || true)" = 0 ]

done_testing

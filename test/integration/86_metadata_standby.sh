#!/usr/bin/env bash
# inspect_metadata() on a hot standby.  Rows reach a standby by WAL replay,
# which runs none of the commit callbacks that move the generation numbers
# the per-backend cache relies on; so on a standby nothing is cached, and a
# PHI rule added on the primary applies to a standby session's next call.
# And logins: only superusers are let in to a standby, which cannot write
# the audit trail.
set -euo pipefail
source "$(dirname "$0")/../lib/cluster.sh"

tv_cluster_start primary "wal_level = replica" >/dev/null
tv_psql primary >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION trialvault CASCADE;
SQL

# The standby: a base backup of the primary with its own port, socket and
# key file (the same master key: it is a copy of the primary).
sdir=$(tv_dir standby)
mkdir -p "$sdir"
chown "$TV_OS_USER" "$sdir"
sport=$TV_NEXT_PORT
TV_NEXT_PORT=$((TV_NEXT_PORT + 1))
echo "$sport" >"$sdir/port"
tv_as_pg "$PGBIN/pg_basebackup" -h "$(tv_dir primary)" -p "$(tv_port primary)" -U postgres \
	-D "$sdir/data" -R -X stream -c fast >/dev/null 2>&1
cp "$(tv_dir primary)/master.key" "$sdir/master.key"
chown "$TV_OS_USER" "$sdir/master.key"
{
	echo "port = $sport"
	echo "unix_socket_directories = '$sdir'"
	echo "trialvault.master_key_command = '$PGBIN/trialvault-getkey $sdir/master.key'"
	echo "hot_standby = on"
} >>"$sdir/data/postgresql.conf"
TV_CLUSTERS+=(standby)
tv_cluster_restart standby
is "$(tv_psql standby -At -c 'SELECT pg_is_in_recovery()')" t "the standby is in recovery"

# One standby session kept open across the steps.
sess_open standby postgres S -qAt -v ON_ERROR_STOP=0 -v VERBOSITY=default
s() { sess_query S "$1"; }

# wait_replayed: until the standby has replayed everything the primary wrote.
wait_replayed() {
	local lsn
	lsn=$(tv_psql primary -At -c "SELECT pg_current_wal_lsn()")
	for _ in $(seq 1 200); do
		[ "$(tv_psql standby -At -c "SELECT pg_last_wal_replay_lsn() >= '$lsn'")" = t ] && return 0
		sleep 0.05
	done
	return 1
}

INSPECT="SELECT coalesce(i.checked_version::text, '-') FROM trialvault.inspect_metadata('S', '<m>ward 7</m>') i;"
like "$(s "$INSPECT")" '^-$' "standby: clean before the rule exists"
like "$(s "$INSPECT")" '^-$' "standby: clean again (a cache, if there were one, is now filled)"
tv_psql primary -c "SELECT trialvault.add_phi_rule('S', 'ward', 'pattern', 'ward [0-9]')" >/dev/null
check "the rule reaches the standby" wait_replayed
like "$(s "$INSPECT")" 'PHI screening rule "ward"' "standby: the same session refuses once the primary's rule is replayed"
tv_psql primary -c "SELECT trialvault.add_phi_rule('S', 'ward', 'pattern', 'ward [0-9]', false)" >/dev/null
check "switching it off reaches the standby" wait_replayed
like "$(s "$INSPECT")" '^-$' "standby: and passes again once the rule is switched off"

# Logins (issue 14): a standby can write no audit trail, so only superusers
# are let in there, each with a server log line.
tv_psql primary -c "CREATE ROLE sb_user LOGIN" >/dev/null
check "the role reaches the standby" wait_replayed
like "$(tv_psql standby -d postgres -U sb_user -At -c 'SELECT 1' 2>&1 || true)" \
	'the login of role "sb_user" cannot be put on record on a standby' "standby: an ordinary role cannot log in, saying why"
is "$(tv_psql standby -d postgres -At -c 'SELECT current_user' 2>&1)" postgres "standby: a superuser can"
check "standby: ... with a line under the fallback prefix in the server log" \
	grep -q 'trialvault login fallback: superuser "postgres" let in to database "postgres" on a standby' "$sdir/server.log"

done_testing

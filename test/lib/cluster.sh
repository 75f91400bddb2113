# test/lib/cluster.sh: start and stop throwaway PostgreSQL clusters for tests,
# benchmarks and the demo.
#
# Source this file from bash running as root.  Each cluster lives in its own
# directory under one temp dir, runs as the unprivileged OS user "postgres",
# listens only on a unix socket inside that directory (listen_addresses = ''),
# so it can never collide with or touch another server on this machine.  Every
# cluster started here is stopped by tv_cleanup, which is installed as an EXIT
# trap: clusters are stopped even when a test fails or is interrupted.
#
#   tv_cluster_start NAME [conf-line ...]   initdb + start; sets TV_DATA_NAME etc.
#   tv_use NAME                             export PGHOST/PGPORT/PGUSER for NAME
#   tv_psql NAME [psql args]                psql -X -v ON_ERROR_STOP=1 against NAME
#   tv_cluster_stop NAME [mode]             pg_ctl stop (fast by default)
#   tv_cluster_restart NAME                 start a stopped cluster again
#   tv_cluster_crash NAME                   pg_ctl stop -m immediate (a crash)
#   tv_session_start NAME SESSION           a psql session on NAME kept open in
#                                           the background (per-backend state
#                                           survives between steps)
#   tv_session SESSION SQL                  run SQL in it, print what it printed

PGBIN=${PGBIN:-$(pg_config --bindir)}
TV_OS_USER=${TV_OS_USER:-postgres}
TV_CLUSTERS=()

if [ -z "${TV_TMP:-}" ]; then
	TV_TMP=$(mktemp -d /tmp/trialvault-test.XXXXXX)
	chmod 755 "$TV_TMP"
	chown "$TV_OS_USER" "$TV_TMP"
	TV_TMP_OWNED=1
fi


# Ports only name the socket file inside the cluster's private directory, but
# keep them distinct per cluster and away from 5432 anyway.
TV_NEXT_PORT=${TV_NEXT_PORT:-$((55000 + ($$ % 500) * 10))}

tv_as_pg() {
	runuser -u "$TV_OS_USER" -- "$@"
}

tv_dir() {
	echo "$TV_TMP/$1"
}

tv_port() {
	cat "$TV_TMP/$1/port"
}

tv_cluster_start() {
	local name=$1
	shift
	local dir
	dir=$(tv_dir "$name")
	local port=$TV_NEXT_PORT
	TV_NEXT_PORT=$((TV_NEXT_PORT + 1))
	mkdir -p "$dir"
	chown "$TV_OS_USER" "$dir"
	echo "$port" >"$dir/port"
	tv_as_pg "$PGBIN/initdb" -D "$dir/data" -U postgres --auth=trust \
		--encoding=UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 || {
		cat "$dir/initdb.log" >&2
		return 1
	}
	# Every cluster gets its own master key, outside its data directory.
	(umask 077 && openssl rand -hex 32 >"$dir/master.key")
	chown "$TV_OS_USER" "$dir/master.key"
	{
		echo "port = $port"
		echo "listen_addresses = ''"
		echo "unix_socket_directories = '$dir'"
		echo "shared_preload_libraries = 'trialvault'"
		echo "fsync = on"
		echo "max_connections = 40"
		echo "logging_collector = off"
		echo "trialvault.master_key_command = '$PGBIN/trialvault-getkey $dir/master.key'"
		for line in "$@"; do
			echo "$line"
		done
	} >>"$dir/data/postgresql.conf"
	TV_CLUSTERS+=("$name")
	tv_cluster_restart "$name"
}

tv_cluster_restart() {
	local name=$1
	local dir
	dir=$(tv_dir "$name")
	tv_as_pg "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null || {
		tail -n 30 "$dir/server.log" >&2
		return 1
	}
}

tv_cluster_stop() {
	local name=$1
	local mode=${2:-fast}
	local dir
	dir=$(tv_dir "$name")
	if [ -f "$dir/data/postmaster.pid" ]; then
		tv_as_pg "$PGBIN/pg_ctl" -D "$dir/data" -m "$mode" -w -t 60 stop >/dev/null 2>&1 || true
	fi
}

tv_cluster_crash() {
	tv_cluster_stop "$1" immediate
}

tv_use() {
	local dir
	dir=$(tv_dir "$1")
	export PGHOST=$dir
	PGPORT=$(tv_port "$1")
	export PGPORT
	export PGUSER=postgres
	export PGDATABASE=${PGDATABASE:-postgres}
}

tv_psql() {
	local name=$1
	shift
	local dir
	dir=$(tv_dir "$name")
	PGHOST=$dir PGPORT=$(tv_port "$name") PGUSER=postgres \
		"$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 "$@"
}

# Sessions: psql reads from a FIFO held open on a file descriptor; its
# output goes to a file that tv_session reads up to a marker it echoes.
declare -A TV_SESSION_FD=()
declare -A TV_SESSION_OUT=()

tv_session_start() {
	local name=$1 session=$2 dir fd
	dir=$(tv_dir "$name")
	mkfifo "$dir/$session.in"
	: >"$dir/$session.out"
	tv_psql "$name" -qAt -v ON_ERROR_STOP=0 <"$dir/$session.in" >"$dir/$session.out" 2>&1 &
	exec {fd}>"$dir/$session.in"
	TV_SESSION_FD[$session]=$fd
	TV_SESSION_OUT[$session]=$dir/$session.out
}

tv_session() {
	local session=$1 sql=$2 out mark start
	out=${TV_SESSION_OUT[$session]}
	mark="--step-$RANDOM$RANDOM--"
	start=$(wc -l <"$out")
	printf '%s\n\\echo %s\n' "$sql" "$mark" >&"${TV_SESSION_FD[$session]}"
	for _ in $(seq 1 400); do
		grep -q -- "^$mark\$" "$out" && break
		sleep 0.05
	done
	tail -n +$((start + 1)) "$out" | sed "/^$mark\$/,\$d"
}

tv_cleanup() {
	local name session fd
	for session in "${!TV_SESSION_FD[@]}"; do
		fd=${TV_SESSION_FD[$session]}
		exec {fd}>&-
	done
	for name in "${TV_CLUSTERS[@]}"; do
		tv_cluster_stop "$name" immediate
	done
	if [ -n "${TV_TMP_OWNED:-}" ] && [ -z "${TV_KEEP_TMP:-}" ]; then
		rm -rf "$TV_TMP"
	fi
}
trap tv_cleanup EXIT
trap 'exit 130' INT TERM

# --- TAP helpers for shell-driven tests -------------------------------------

TV_TAP_N=0
TV_TAP_FAILED=0

ok() {
	TV_TAP_N=$((TV_TAP_N + 1))
	echo "ok $TV_TAP_N - $*"
}

not_ok() {
	TV_TAP_N=$((TV_TAP_N + 1))
	TV_TAP_FAILED=$((TV_TAP_FAILED + 1))
	echo "not ok $TV_TAP_N - $*"
}

# check DESCRIPTION COMMAND...: ok when COMMAND exits 0.
check() {
	local desc=$1
	shift
	if "$@"; then ok "$desc"; else not_ok "$desc"; fi
}

# is ACTUAL EXPECTED DESCRIPTION
is() {
	if [ "$1" = "$2" ]; then
		ok "$3"
	else
		not_ok "$3"
		echo "#   got:      '$1'"
		echo "#   expected: '$2'"
	fi
}

# like ACTUAL REGEX DESCRIPTION
like() {
	if [[ $1 =~ $2 ]]; then
		ok "$3"
	else
		not_ok "$3"
		echo "#   got:      '$1'"
		echo "#   expected to match: '$2'"
	fi
}

done_testing() {
	echo "1..$TV_TAP_N"
	[ "$TV_TAP_FAILED" -eq 0 ]
}

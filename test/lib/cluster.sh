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
#
# Sessions: a psql kept open in the background, reading from a FIFO, so that
# per-backend state survives between steps and steps of several sessions
# interleave.  Its output (stdout and stderr) goes to a file.
#
#   sess_open CL DB NAME [psql args]        start session NAME on cluster CL
#                                           (psql -v VERBOSITY=verbose and
#                                           ON_ERROR_STOP=1 unless overridden)
#   sess_run NAME SQL                       send SQL and wait (30 s at most)
#                                           until psql has run it; fails if it
#                                           does not get there (blocked, or
#                                           psql exited on an error)
#   sess_query NAME SQL                     sess_run, then print what this
#                                           step printed (for -At sessions)
#   sess_send NAME SQL                      send SQL without waiting
#   sess_close NAME                         end it; returns psql's exit status
#                                           (124 when it had to be killed)
#   sess_output NAME                        everything it printed so far
#   wait_until DESC SECS CMD...             poll CMD until it succeeds
#                                           (false on timeout)
#
# Close sessions before starting a cluster: a process started while a
# session is open inherits the write end of its FIFO.

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
	# ... and its own server signing key (P-256), also outside it.
	(umask 077 && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
		-out "$dir/server_signing.pem" 2>/dev/null)
	chown "$TV_OS_USER" "$dir/server_signing.pem"
	{
		echo "port = $port"
		echo "listen_addresses = ''"
		echo "unix_socket_directories = '$dir'"
		echo "shared_preload_libraries = 'trialvault'"
		echo "fsync = on"
		echo "max_connections = 40"
		echo "logging_collector = off"
		echo "trialvault.master_key_command = '$PGBIN/trialvault-getkey $dir/master.key'"
		echo "trialvault.signing_key_command = 'cat $dir/server_signing.pem'"
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

wait_until() {
	local desc=$1 secs=$2
	shift 2
	local deadline=$((SECONDS + secs))
	while ! "$@"; do
		if [ "$SECONDS" -ge "$deadline" ]; then
			echo "# timed out after ${secs}s waiting for: $desc" >&2
			return 1
		fi
		sleep 0.05
	done
}

declare -A TV_SESS_FD=()
declare -A TV_SESS_PID=()
declare -A TV_SESS_CL=()
TV_SESS_MARK=0

sess_open() {
	local cl=$1 db=$2 name=$3 dir fifo fd
	shift 3
	dir=$(tv_dir "$cl")
	fifo="$dir/sess-$name.in"
	rm -f "$fifo"
	mkfifo "$fifo"
	chmod 644 "$fifo"
	: >"$dir/sess-$name.out"
	(
		# Do not hold the other sessions' FIFOs open, or they never see EOF.
		for fd in "${TV_SESS_FD[@]}"; do exec {fd}>&-; done
		PGAPPNAME="sess_$name" tv_psql "$cl" -d "$db" -v VERBOSITY=verbose "$@" \
			<"$fifo" >"$dir/sess-$name.out" 2>&1
	) &
	TV_SESS_PID[$name]=$!
	exec {fd}>"$fifo"
	TV_SESS_FD[$name]=$fd
	TV_SESS_CL[$name]=$cl
	sess_run "$name" "SELECT 'connected';"
}

sess_outfile() {
	echo "$(tv_dir "${TV_SESS_CL[$1]}")/sess-$1.out"
}

sess_output() {
	cat "$(sess_outfile "$1")"
}

sess_send() {
	local name=$1 sql=$2
	printf '%s\n' "$sql" >&"${TV_SESS_FD[$name]}"
}

# Done when psql has echoed the step's mark (it runs statements in order,
# so everything sent before has run), or when psql is gone.
_sess_done() {
	local name=$1 mark=$2
	grep -qx -- "$mark" "$(sess_outfile "$name")" && return 0
	kill -0 "${TV_SESS_PID[$name]}" 2>/dev/null && return 1
	echo "# session $name exited; its output:" >&2
	sed 's/^/#   /' "$(sess_outfile "$name")" >&2
	TV_SESS_GONE=1
}

# sess_run NAME SQL: send SQL and its mark; sets TV_SESS_STEP_START (the
# output's line count before) and TV_SESS_STEP_MARK.
sess_run() {
	local name=$1 sql=$2 mark
	TV_SESS_MARK=$((TV_SESS_MARK + 1))
	mark="--tvmark-$TV_SESS_MARK-$$--"
	TV_SESS_STEP_MARK=$mark
	TV_SESS_STEP_START=$(wc -l <"$(sess_outfile "$name")")
	TV_SESS_GONE=0
	sess_send "$name" "$sql"
	sess_send "$name" "\\echo $mark"
	wait_until "session $name to run: $sql" 30 _sess_done "$name" "$mark" &&
		[ "$TV_SESS_GONE" = 0 ]
}

sess_query() {
	local name=$1 rc=0
	sess_run "$@" || rc=$?
	tail -n +$((TV_SESS_STEP_START + 1)) "$(sess_outfile "$name")" |
		sed "/^$TV_SESS_STEP_MARK\$/,\$d"
	return "$rc"
}

_pid_gone() {
	! kill -0 "$1" 2>/dev/null
}

sess_close() {
	local name=$1 rc=0 fd=${TV_SESS_FD[$1]} pid=${TV_SESS_PID[$1]}
	exec {fd}>&-
	# A process started while the session was open (a postmaster, say)
	# may hold its FIFO open too: do not wait for EOF forever.
	if ! wait_until "session $name to end" 10 _pid_gone "$pid"; then
		kill "$pid" 2>/dev/null || true
		pkill -P "$pid" 2>/dev/null || true
		rc=124
	fi
	wait "$pid" || rc=${rc/#0/$?}
	unset "TV_SESS_FD[$name]" "TV_SESS_PID[$name]"
	return "$rc"
}

tv_cleanup() {
	local name session fd
	for session in "${!TV_SESS_FD[@]}"; do
		fd=${TV_SESS_FD[$session]}
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

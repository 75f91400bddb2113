# test/integration/lib/helpers.sh: helpers shared by the integration tests.
#
# Sourced by test/integration/NN_*.sh after test/lib/cluster.sh.  Not a test
# itself (it lives below lib/ so that a runner globbing
# test/integration/*.sh does not pick it up).
#
#   q CL DB SQL                   one query, unaligned tuples-only output
#   sqlstate_of CL DB SQL         the SQLSTATE the statement fails with,
#                                 or "none" when it succeeds
#   verify_into CL DB TABLE       run trialvault.verify(TABLE) and set
#                                 V_OK V_ROWS V_FIRST_BAD V_BAD_ROWS V_HEADS
#                                 V_DIGEST V_GUARD
#   between LO X HI               true when LO <= X <= HI (integers)
#   wait_until DESC SECS CMD...   poll CMD until it succeeds (false on timeout)
#   todo_is ACTUAL EXPECTED DESC REASON
#                                 like is(), but a failure is a known bug
#                                 reported as "not ok ... # TODO REASON"
#                                 and does not fail the script (TAP TODO)
#
# Scripted concurrent sessions: each is a psql reading SQL from a FIFO,
# tagged with its own application_name, so that the test can see in
# pg_stat_activity when it has finished what it was sent.
#
#   sess_open CL DB NAME          start session NAME
#   sess_run NAME SQL             send SQL (complete statements, each
#                                 ending in a semicolon) and wait (30 s at most) until the
#                                 session has run it and is idle again;
#                                 fails if it does not get there (blocked,
#                                 or psql exited on an error)
#   sess_send NAME SQL            send SQL without waiting
#   sess_close NAME               end it; returns psql's exit status
#                                 (124 when it had to be killed)
#   sess_output NAME              what it printed so far
#
# Close sessions before starting a cluster: a process started while a
# session is open inherits the write end of its FIFO.

q() {
	local cl=$1 db=$2 sql=$3
	tv_psql "$cl" -d "$db" -At -c "$sql"
}

sqlstate_of() {
	local cl=$1 db=$2 sql=$3 out
	out=$(tv_psql "$cl" -d "$db" -v VERBOSITY=verbose -c "$sql" 2>&1 || true)
	if [[ $out =~ (ERROR|FATAL):\ +([0-9A-Z]{5}): ]]; then
		echo "${BASH_REMATCH[2]}"
	else
		echo "none"
	fi
}

verify_into() {
	local cl=$1 db=$2 tbl=$3 line
	line=$(tv_psql "$cl" -d "$db" -At -F $'\x1f' -c \
		"SELECT ok, rows_checked, coalesce(first_bad, ''), bad_rows, heads,
		        encode(head_digest, 'hex'), guard
		   FROM trialvault.verify('$tbl')")
	# shellcheck disable=SC2034 # read by the callers
	IFS=$'\x1f' read -r V_OK V_ROWS V_FIRST_BAD V_BAD_ROWS V_HEADS V_DIGEST V_GUARD <<<"$line"
}

between() {
	[[ $2 =~ ^-?[0-9]+$ ]] && [ "$1" -le "$2" ] && [ "$2" -le "$3" ]
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
		sleep 0.1
	done
}

todo_is() {
	TV_TAP_N=$((TV_TAP_N + 1))
	if [ "$1" = "$2" ]; then
		echo "ok $TV_TAP_N - $3 # TODO $4 (now passes: remove the TODO)"
	else
		echo "not ok $TV_TAP_N - $3 # TODO $4"
		echo "#   got:      '$1'"
		echo "#   expected: '$2'"
	fi
}

declare -A TV_SESS_FD=()
declare -A TV_SESS_PID=()
declare -A TV_SESS_CL=()
TV_SESS_MARK=0

sess_open() {
	local cl=$1 db=$2 name=$3 dir fifo fd
	dir=$(tv_dir "$cl")
	fifo="$dir/sess-$name.in"
	rm -f "$fifo"
	mkfifo "$fifo"
	chmod 644 "$fifo"
	(
		# Do not hold the other sessions' FIFOs open, or they never see EOF.
		for fd in "${TV_SESS_FD[@]}"; do exec {fd}>&-; done
		PGAPPNAME="sess_$name" tv_psql "$cl" -d "$db" -v VERBOSITY=verbose \
			<"$fifo" >"$dir/sess-$name.out" 2>&1
	) &
	TV_SESS_PID[$name]=$!
	exec {fd}>"$fifo"
	TV_SESS_FD[$name]=$fd
	TV_SESS_CL[$name]=$cl
	sess_run "$name" "SELECT 'connected';"
}

sess_send() {
	local name=$1 sql=$2
	printf '%s\n' "$sql" >&"${TV_SESS_FD[$name]}"
}

_sess_done() {
	local name=$1 mark=$2 r
	r=$(q "${TV_SESS_CL[$name]}" postgres \
		"SELECT count(*) FROM pg_stat_activity
		  WHERE application_name = 'sess_$name' AND state <> 'active'
		    AND query LIKE 'SELECT ''$mark'' AS mark%'")
	[ "$r" = 1 ] && return 0
	# psql gone (an error under ON_ERROR_STOP): stop waiting at once.
	kill -0 "${TV_SESS_PID[$name]}" 2>/dev/null || {
		echo "# session $name exited; its output:" >&2
		sed 's/^/#   /' "$(sess_outfile "$name")" >&2
		TV_SESS_GONE=1
		return 0
	}
	return 1
}

sess_outfile() {
	echo "$(tv_dir "${TV_SESS_CL[$1]}")/sess-$1.out"
}

sess_output() {
	cat "$(sess_outfile "$1")"
}

sess_run() {
	local name=$1 sql=$2 mark
	TV_SESS_MARK=$((TV_SESS_MARK + 1))
	mark="tvmark_$TV_SESS_MARK"
	TV_SESS_GONE=0
	sess_send "$name" "$sql"
	sess_send "$name" "SELECT '$mark' AS mark;"
	wait_until "session $name to run: $sql" 30 _sess_done "$name" "$mark" &&
		[ "$TV_SESS_GONE" = 0 ]
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

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
#                                 V_DIGEST V_GUARD (VERIFY_SET, when set,
#                                 is SQL run first in the same session,
#                                 e.g. "SET trialvault.verify_window = 16;")
#   random_bytes_function CL DB   create rnd(n int) RETURNS bytea: n random
#                                 bytes (n a multiple of 1000; pgcrypto)
#   between LO X HI               true when LO <= X <= HI (integers)
#   todo_is ACTUAL EXPECTED DESC REASON
#                                 like is(), but a failure is a known bug
#                                 reported as "not ok ... # TODO REASON"
#                                 and does not fail the script (TAP TODO)
#
#   absent_in FILE STRING         FILE lacks STRING in any letter case
#   lacks TEXT NEEDLE             TEXT lacks NEEDLE in any letter case
#   differ A B C...               A is non-empty and differs from each other
#   raw_in_dir HEX DIR            some file below DIR holds the bytes HEX encodes
#   no_raw_in_dir HEX DIR         none does
#
# Sessions (sess_open, sess_run, ...) and wait_until are in test/lib/cluster.sh.

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
		"${VERIFY_SET:-}SELECT ok, rows_checked, coalesce(first_bad, ''), bad_rows, heads,
		        encode(head_digest, 'hex'), guard
		   FROM trialvault.verify('$tbl')")
	# shellcheck disable=SC2034 # read by the callers
	IFS=$'\x1f' read -r V_OK V_ROWS V_FIRST_BAD V_BAD_ROWS V_HEADS V_DIGEST V_GUARD <<<"$line"
}

random_bytes_function() {
	q "$1" "$2" "CREATE FUNCTION rnd(n int) RETURNS bytea LANGUAGE sql VOLATILE
	    AS \$\$ SELECT string_agg(gen_random_bytes(1000), ''::bytea) FROM generate_series(1, n / 1000) \$\$" >/dev/null
}

between() {
	[[ $2 =~ ^-?[0-9]+$ ]] && [ "$1" -le "$2" ] && [ "$2" -le "$3" ]
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

# absent_in FILE STRING: FILE does not contain STRING in any letter case.
absent_in() {
	! grep -qaiF -- "$2" "$1"
}

# lacks TEXT NEEDLE: TEXT does not contain NEEDLE in any letter case.
lacks() {
	[[ ${1,,} != *"${2,,}"* ]]
}

# differ A B C...: non-empty and pairwise different from the first.
differ() {
	local a=$1 b
	shift
	[ -n "$a" ] || return 1
	for b in "$@"; do [ "$a" != "$b" ] || return 1; done
}

# raw_in_dir HEX DIR: some file below DIR contains the bytes HEX encodes
# (grep cannot do this: it matches within lines, and bytes may be newlines).
raw_in_dir() {
	perl -MFile::Find -e '
		my $needle = pack("H*", $ARGV[0]);
		my $found = 0;
		find({ no_chdir => 1, wanted => sub {
			return if $found || !-f $_;
			open(my $fh, "<:raw", $_) or return;
			local $/;
			my $d = <$fh>;
			$found = 1 if defined $d && index($d, $needle) >= 0;
		} }, $ARGV[1]);
		exit($found ? 0 : 1);' "$1" "$2"
}

no_raw_in_dir() {
	! raw_in_dir "$@"
}

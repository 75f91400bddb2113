# shellcheck shell=bash
# bench/common.sh: helpers shared by the benchmarks.  Source from bash.

# median NUMBER...: the median (mean of the middle two for an even count).
median() {
	printf '%s\n' "$@" | sort -g | awk '
		{ v[NR] = $1 }
		END {
			if (NR == 0) { print "nan"; exit }
			if (NR % 2) printf "%.3f\n", v[(NR + 1) / 2]
			else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2
		}'
}

# ratio A B: A / B with three decimals ("nan" when B is zero).
ratio() {
	awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0) print "nan"; else printf "%.3f\n", a / b }'
}

# paired_ratio "A1 A2 ..." "B1 B2 ...": the median over the rounds of Ai/Bi,
# the ratio within each round (less sensitive to drift across rounds than
# the ratio of the medians).
paired_ratio() {
	# shellcheck disable=SC2046
	median $(round_ratios "$1" "$2")
}

# round_ratios "A1 A2 ..." "B1 B2 ...": every round's Ai/Bi, smallest first,
# so a report can show how far the rounds spread around the paired ratio.
round_ratios() {
	local -a a b q=()
	local i
	read -r -a a <<<"$1"
	read -r -a b <<<"$2"
	for i in "${!a[@]}"; do
		q+=("$(ratio "${a[$i]}" "${b[$i]}")")
	done
	printf '%s\n' "${q[@]}" | sort -g | tr '\n' ' ' | sed 's/ $//'
}

# has_side SIDE: SIDE is one of the sides this run measures ($SIDES).
has_side() {
	[[ " ${SIDES[*]} " == *" $1 "* ]]
}

# sql [psql args]: psql against database postgres of the benchmark's cluster.
sql() {
	tv_psql bench -d postgres "$@"
}

# die MESSAGE: say what went wrong, naming the benchmark, and stop.
die() {
	echo "${0##*/}: $*" >&2
	exit 1
}

# at_least X MIN: exit 0 when X >= MIN.
at_least() {
	awk -v x="$1" -v m="$2" 'BEGIN { exit !(x != "nan" && x + 0 >= m + 0) }'
}

# command_line VAR... -- ARG...: the command as typed, with those of the
# VARs that are set in the environment in front, shell-quoted.
command_line() {
	local v out=""
	while [ $# -gt 0 ] && [ "$1" != -- ]; do
		v=$1
		shift
		if [ -n "${!v+set}" ]; then
			out+="$v=$(printf '%q' "${!v}") "
		fi
	done
	shift
	out+="bash $(printf '%q ' "$@")"
	echo "${out% }"
}

# bench_context: what the figures depend on, for the top of a report.
bench_context() {
	local repo
	repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
	echo "# host:       $(uname -n), $(nproc) cores, $(awk '/MemTotal/ { printf "%.1f GB", $2 / 1048576 }' /proc/meminfo) RAM, kernel $(uname -r)"
	echo "# load avg:   $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15 min, before start)"
	echo "# postgres:   $("$PGBIN/postgres" --version)"
	echo "# trialvault: $(git -C "$repo" describe --always --dirty 2>/dev/null || echo unknown) (installed: $(pg_config --pkglibdir)/trialvault.so)"
	echo "# started:    $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
}

# other_load: CPU use of the whole machine over one second and the busiest
# processes in it; a hint that figures were taken on a loaded machine.
# Prints nothing when the machine is (nearly) idle.
other_load() {
	local a b
	a=$(awk '/^cpu / { print $2 + $3 + $4 + $7 + $8, $2 + $3 + $4 + $5 + $6 + $7 + $8 }' /proc/stat)
	sleep 1
	b=$(awk '/^cpu / { print $2 + $3 + $4 + $7 + $8, $2 + $3 + $4 + $5 + $6 + $7 + $8 }' /proc/stat)
	awk -v a="$a" -v b="$b" -v n="$(nproc)" 'BEGIN {
		split(a, x, " "); split(b, y, " ")
		busy = (y[2] > x[2]) ? 100 * (y[1] - x[1]) / (y[2] - x[2]) : 0
		if (busy >= 10) printf "#   machine %.0f%% busy (of %d cores) over 1 s\n", busy, n
	}'
	top -b -n 2 -d 1 -w 200 2>/dev/null | awk '
		/^top -/ { frame++ }
		frame == 2 && /^ *PID/ { inproc = 1; next }
		frame == 2 && inproc && $9 + 0 >= 10 { printf "#   %5s%% cpu  %s (pid %s, user %s)\n", $9, $12, $1, $2 }' | head -n 5
}

# parse_common_args NAME ARGS...: the arguments every benchmark takes.
# Sets quick=1 for --quick, prints the script's header comment for --help,
# refuses anything else.
parse_common_args() {
	local name=$1 arg
	shift
	quick=
	for arg in "$@"; do
		case $arg in
		--quick) quick=1 ;;
		-h | --help)
			sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
			exit 0
			;;
		*)
			echo "$name: unknown argument: $arg (try --help)" >&2
			exit 2
			;;
		esac
	done
}

# note_other_load [WHEN]: say so in the report when other processes were
# using the CPU (WHEN: "start", the default, or "the end").
note_other_load() {
	local busy
	busy=$(other_load)
	if [ -n "$busy" ]; then
		echo "# note: other processes were busy at ${1:-start}:"
		echo "$busy"
	fi
}

# install_build COMMIT PREFIX: build COMMIT of this repository and install
# it, with a copy of the system PostgreSQL, under PREFIX; prints the bin
# directory to use as that build's PGBIN.  PostgreSQL finds its lib and
# share directories relative to its binaries, so a server started from the
# copy loads that build's library and scripts and nothing of the system's:
# the benchmarks that compare with an earlier build run both in one run.
install_build() {
	local commit=$1 prefix=$2 bindir sharedir src
	bindir=$(pg_config --bindir)
	sharedir=$(pg_config --sharedir)
	src=$prefix/src
	mkdir -p "$src" "$prefix$(dirname "$bindir")" "$prefix$(dirname "$sharedir")"
	git -C "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)" archive "$commit" | tar -x -C "$src"
	cp -a "$(dirname "$bindir")/." "$prefix$(dirname "$bindir")/"
	cp -a "$sharedir" "$prefix$(dirname "$sharedir")/"
	rm -f "$prefix$(pg_config --pkglibdir)"/trialvault* "$prefix$sharedir"/extension/trialvault*
	if ! make -C "$src" -s -j"$(nproc)" >"$prefix/build.log" 2>&1 ||
		! make -C "$src" -s install DESTDIR="$prefix" >>"$prefix/build.log" 2>&1; then
		tail -n 30 "$prefix/build.log" >&2
		return 1
	fi
	chmod -R a+rX "$prefix"
	echo "$prefix$bindir"
}

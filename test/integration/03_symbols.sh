#!/usr/bin/env bash
# Every C function any install or upgrade script declares (AS
# 'MODULE_PATHNAME', 'symbol') must exist in the installed library, or
# installing an older version, or updating from it, fails at that CREATE
# FUNCTION.  The frozen scripts of old versions name symbols the current
# code may no longer use (tv_xml_nodes since 0.6): such a symbol must stay,
# as a stub that says what replaced it.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
source "$ROOT/test/lib/cluster.sh"

lib="$(pg_config --pkglibdir)/trialvault.so"
check "the library is installed ($lib)" [ -f "$lib" ]
defined=$(nm -D --defined-only "$lib" | awk '{ print $3 }' | sort -u)
declared=$(grep -ho "'MODULE_PATHNAME', *'[a-z_0-9]*'" "$ROOT"/extension/trialvault--*.sql "$ROOT"/extension/trialvault.sql |
	sed "s/.*, *'\(.*\)'/\1/" | sort -u)
missing=$(comm -13 <(echo "$defined") <(echo "$declared"))
n=$(echo "$declared" | wc -l)
is "$missing" "" "all $n C symbols the scripts of every version declare are in the library"
# The comparison finds a missing one: planted among the declared symbols.
is "$(comm -13 <(echo "$defined") <(printf '%s\n' "$declared" tv_no_such_symbol | sort -u))" tv_no_such_symbol \
	"... and names a declared symbol the library lacks"

done_testing

#!/usr/bin/env bash
# A parameter of type name is 64 bytes (NAMEDATALEN): SPI and the executor
# copy all 64 from the Datum they are given.  A short C string passed as
# CStringGetDatum() where the parameter type is NAMEOID makes them read past
# its end.  No test of behaviour shows that (the bytes after the string's NUL
# are never compared), so this reads the C sources: in every function, no
# value at an index whose parameter type is NAMEOID may come from
# CStringGetDatum().  0.5 had three such places (tv_call_as_owner,
# tv_still_member, tv_session_scope); this check failed on it.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
source "$ROOT/test/lib/cluster.sh"

out=$(python3 - "$ROOT"/extension/*.c "$ROOT"/worker/*.c <<'EOF'
import re, sys

bad = []
checked = 0
for path in sys.argv[1:]:
    text = open(path).read()
    # Function bodies: from a line "{" to the next line "}" at column 0.
    for body in re.findall(r'\n\{\n(.*?)\n\}', text, re.S):
        types = {}
        for m in re.finditer(r'Oid\s+(\w+)\[\w*\]\s*=\s*\{([^}]*)\}', body):
            for i, t in enumerate(x.strip() for x in m.group(2).split(',')):
                types[(m.group(1), i)] = t
        for m in re.finditer(r'(\w+)\[(\d+)\]\s*=\s*(\w+)\s*;', body):
            types[(m.group(1), int(m.group(2)))] = m.group(3)
        name_slots = {i for (arr, i), t in types.items() if t == 'NAMEOID'}
        if not name_slots:
            continue
        for m in re.finditer(r'(\w+)\[(\d+)\]\s*=\s*([^;]*);', body):
            i = int(m.group(2))
            if i in name_slots and m.group(1) != 'types' and not m.group(1).endswith('types'):
                checked += 1
                if 'CStringGetDatum' in m.group(3):
                    bad.append('%s: %s' % (path.split('/')[-1], m.group(0).strip()))
print(checked)
for b in bad:
    print(b)
EOF
)
checked=$(echo "$out" | head -n 1)
bad=$(echo "$out" | tail -n +2)
check "the sources pass name parameters to SPI ($checked places found)" [ "$checked" -ge 4 ]
is "$bad" "" "no name parameter is given a C string (CStringGetDatum) instead of a NameData"

done_testing

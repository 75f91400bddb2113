#!/usr/bin/env bash
# bench/certify_bench.sh: certified loads against unsigned loads, and
# verify_document against open_document.
#
# Loads: the same 4 KB document with PHI (encrypted, chained) loaded by a
# site staff member, through load_document, into two studies of one
# cluster:
#
#   unsigned   study BU, which allows unsigned loads
#   certified  study BC: each load carries a signature (ECDSA P-256) of its
#              certification statement, which the server checks (key,
#              time, nonce) and countersigns (ECDSA P-256) before storing
#
# The signatures are made before the timed runs, one per load (a fresh
# nonce each), by bench/sign_statements.c with OpenSSL, as `openssl dgst
# -sha256 -sign` makes them: signing is the client's work, not the server's.
# Both sides read their arguments from the same kind of table by a
# sequence, so that fetching them costs the same.  pgbench runs a fixed
# number of loads per client (-t) per run; the sides alternate run by run
# (unsigned, certified, unsigned, ...), each run after a CHECKPOINT, for
# BENCH_ROUNDS rounds at each client count; the report gives the median
# rate of each side, certified/unsigned as the ratio of the medians and as
# the median of the per-round ratios.  Target: certified >= 0.8 x unsigned.
#
# Then verify_document over 1,000 certified documents of study BC (each
# check decrypts and hashes the content, verifies both signatures, and is
# committed to the decryption log before it returns), alternating with
# open_document over the same documents (decrypt, log, return): the rate of
# each and their ratio.
#
# PASS/FAIL is printed, but this is a benchmark, not a test: the script
# exits 0 unless something went wrong.
#
# Usage (as root, from anywhere):
#   bash bench/certify_bench.sh            full run (~5 minutes with defaults)
#   bash bench/certify_bench.sh --quick    short runs, for trying it out
#
# Environment (defaults; --quick ones in brackets):
#   BENCH_LOADS=1000 [200]   loads per client per run
#   BENCH_ROUNDS=5 [3]       rounds; each round runs both sides once
#   BENCH_CLIENTS="1 2"      client counts
#   BENCH_PAYLOAD=4096       document bytes
#   BENCH_VERIFY=1000 [200]  documents verify_document checks per run
#   BENCH_TARGET=0.80        minimum certified/unsigned ratio
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
# shellcheck source=bench/common.sh
source "$HERE/common.sh"
CMDLINE=$(command_line BENCH_LOADS BENCH_ROUNDS BENCH_CLIENTS BENCH_PAYLOAD BENCH_VERIFY BENCH_TARGET -- "$0" "$@")

parse_common_args "$(basename "$0")" "$@"
if [ -n "$quick" ]; then
	: "${BENCH_LOADS:=200}" "${BENCH_ROUNDS:=3}" "${BENCH_VERIFY:=200}"
fi
: "${BENCH_LOADS:=1000}" "${BENCH_ROUNDS:=5}" "${BENCH_CLIENTS:=1 2}"
: "${BENCH_PAYLOAD:=4096}" "${BENCH_VERIFY:=1000}" "${BENCH_TARGET:=0.80}"
for v in BENCH_LOADS BENCH_ROUNDS BENCH_PAYLOAD BENCH_VERIFY; do
	if ! [[ ${!v} =~ ^[0-9]+$ ]] || [ "${!v}" -lt 1 ]; then
		die "$v must be a positive integer, not '${!v}'"
	fi
done
read -r -a CLIENTS <<<"$BENCH_CLIENTS"
SIDES=(unsigned certified)

# shellcheck source=test/lib/cluster.sh
source "$REPO/test/lib/cluster.sh"

CONF=(
	"shared_buffers = 512MB"
	"max_wal_size = 4GB"
	"checkpoint_timeout = 30min"
	"synchronous_commit = on"
	# The signatures are made before the runs; they must still be fresh.
	"trialvault.signature_window = 1d"
)
total_clients=0
for c in "${CLIENTS[@]}"; do total_clients=$((total_clients + c)); done
NSIG=$(((BENCH_ROUNDS * total_clients + 1) * BENCH_LOADS))

echo "# trialvault certification benchmark"
echo "# command:    $CMDLINE"
bench_context
echo "# settings:   BENCH_LOADS=$BENCH_LOADS BENCH_ROUNDS=$BENCH_ROUNDS BENCH_CLIENTS=\"$BENCH_CLIENTS\""
echo "#             BENCH_PAYLOAD=$BENCH_PAYLOAD BENCH_VERIFY=$BENCH_VERIFY BENCH_TARGET=$BENCH_TARGET"
echo "# server:     fresh cluster, unix socket, fsync = on, $(printf '%s, ' "${CONF[@]}" | sed 's/, $//')"
echo "# keys:       member ECDSA P-256 (openssl, before the runs), server ECDSA P-256"
echo "# workload:   pgbench -n -M prepared -t $BENCH_LOADS per client, one load_document per transaction,"
echo "#             CHECKPOINT before every run; $NSIG signatures made in advance"
note_other_load
echo

tv_cluster_start bench "${CONF[@]}"
tv_use bench
DIR=$(tv_dir bench)
W=$DIR/work
mkdir -p "$W"
chown -R "$TV_OS_USER" "$W"

echo "== setup: studies, member, key, document"
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$W/staff.pem" 2>/dev/null
openssl pkey -in "$W/staff.pem" -pubout -out "$W/staff.pub"
head -c "$BENCH_PAYLOAD" /dev/urandom >"$W/doc.bin"
META='<meta><visit>3</visit><form>consent</form></meta>'
sql >/dev/null <<SQL
SET client_min_messages = warning;
CREATE EXTENSION trialvault CASCADE;
CREATE ROLE staff LOGIN;
SELECT trialvault.create_study(s, 'bench') FROM (VALUES ('BU'), ('BC')) v(s);
SELECT trialvault.require_signatures('BU', false);
SELECT trialvault.add_site(s, 'S1', 'Site 1') FROM (VALUES ('BU'), ('BC')) v(s);
SELECT trialvault.grant_role('staff', s, 'S1', 'site_staff') FROM (VALUES ('BU'), ('BC')) v(s);
CREATE TABLE bench_content (content bytea NOT NULL, meta xml NOT NULL);
INSERT INTO bench_content VALUES (decode('$(od -An -v -tx1 "$W/doc.bin" | tr -d ' \n')', 'hex'), '$META');
CREATE TABLE bench_sigs (id bigint PRIMARY KEY, signed_at timestamptz NOT NULL, nonce bytea NOT NULL, signature bytea NOT NULL);
CREATE SEQUENCE bench_c_seq;
CREATE SEQUENCE bench_u_seq;
GRANT SELECT ON bench_content, bench_sigs TO staff;
GRANT USAGE ON bench_c_seq, bench_u_seq TO staff;
SQL
echo "SELECT trialvault.register_signing_key(:'pub')" | sql -U staff -At -v pub="$(cat "$W/staff.pub")" >/dev/null

echo "== setup: $NSIG certification statements, signed in advance (bench/sign_statements.c: openssl's ECDSA, one process)"
t0=$(date +%s)
fpr=$(openssl pkey -pubin -in "$W/staff.pub" -outform DER | sha256sum | cut -c1-64)
meta_sha=$(sql -At -c "SELECT encode(trialvault.metadata_sha256('$META'), 'hex')")
cc -O2 -o "$W/sign_statements" "$HERE/sign_statements.c" -lcrypto ||
	die "could not build bench/sign_statements.c (needs libssl-dev)"
python3 - "$W" "$NSIG" "$(sha256sum <"$W/doc.bin" | cut -c1-64)" "$meta_sha" "$fpr" <<'PY'
import datetime, os, sys
w, n, content, meta, fpr = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
now = datetime.datetime.now(datetime.timezone.utc)
with open(os.path.join(w, "sigs.csv"), "w") as out, open(os.path.join(w, "statements"), "w") as sts:
    for i in range(1, n + 1):
        at = now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        nonce = os.urandom(16).hex()
        sts.write("trialvault-certification-statement-v1\n"
                  f"content-sha256: {content}\nmetadata-sha256: {meta}\nstudy: BC\nsite: S1\n"
                  f"doc-type: source\nsigner: staff\nsigner-key-sha256: {fpr}\n"
                  f"meaning: certified_copy\nsigned-at: {at}\nnonce: {nonce}\n")
        out.write(f"{i},{at},{nonce}\n")
PY
"$W/sign_statements" "$W/staff.pem" <"$W/statements" >"$W/signatures"
paste -d, "$W/sigs.csv" "$W/signatures" |
	awk -F, '{ printf "%s\t%s\t\\\\x%s\t\\\\x%s\n", $1, $2, $3, $4 }' >"$W/sigs.copy"
sql -c "\\copy bench_sigs FROM '$W/sigs.copy'" >/dev/null
sql -c "VACUUM ANALYZE bench_sigs" >/dev/null
echo "   $(sql -At -c "SELECT count(*) FROM bench_sigs") signatures in $(($(date +%s) - t0)) s"

cat >"$DIR/load_unsigned.sql" <<'SQL'
SELECT trialvault.load_document('BU', 'S1', 'source', true, c.meta, c.content)
	FROM (SELECT nextval('bench_u_seq') AS id) k JOIN bench_sigs s ON s.id = k.id, bench_content c;
SQL
cat >"$DIR/load_certified.sql" <<'SQL'
SELECT trialvault.load_document('BC', 'S1', 'source', true, c.meta, c.content,
		signed_at => s.signed_at, nonce => s.nonce, signature => s.signature)
	FROM (SELECT nextval('bench_c_seq') AS id) k JOIN bench_sigs s ON s.id = k.id, bench_content c;
SQL

# run_side SIDE CLIENTS: one pgbench run of BENCH_LOADS per client; sets TPS.
run_side() {
	local side=$1 clients=$2 out
	sql -c "CHECKPOINT" >/dev/null
	if ! out=$("$PGBIN/pgbench" -n -M prepared -U staff -c "$clients" -j "$clients" -t "$BENCH_LOADS" \
		-f "$DIR/load_$side.sql" postgres 2>&1); then
		echo "$out" >&2
		die "pgbench failed for $side at $clients clients"
	fi
	if grep -q '^number of failed transactions: [1-9]' <<<"$out"; then
		echo "$out" >&2
		die "pgbench reported failed transactions for $side"
	fi
	TPS=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)$/\1/p' <<<"$out")
	[ -n "$TPS" ] || { echo "$out" >&2; die "could not read pgbench's result"; }
}

echo "== warm-up: one run per side at 1 client (not counted)"
for s in "${SIDES[@]}"; do
	run_side "$s" 1
	printf '   %-10s %8.1f loads/s\n' "$s" "$TPS"
done

declare -A MED=() ALL=()
for c in "${CLIENTS[@]}"; do
	echo "== $c client(s): $BENCH_ROUNDS rounds x $BENCH_LOADS loads per client per side, sides alternating"
	declare -A RUNS=([unsigned]="" [certified]="")
	for ((r = 1; r <= BENCH_ROUNDS; r++)); do
		line=$(printf '   round %d/%d:' "$r" "$BENCH_ROUNDS")
		for s in "${SIDES[@]}"; do
			run_side "$s" "$c"
			RUNS[$s]+=" $TPS"
			line+=$(printf '  %s %.1f' "$s" "$TPS")
		done
		echo "$line"
	done
	for s in "${SIDES[@]}"; do
		# shellcheck disable=SC2086
		MED[$s,$c]=$(median ${RUNS[$s]})
		ALL[$s,$c]=${RUNS[$s]}
	done
	unset RUNS
done

echo "== sanity checks"
expect_c=$(sql -At -c "SELECT last_value FROM bench_c_seq")
is_c=$(sql -At -c "SELECT count(*) FROM trialvault.documents WHERE study = 'BC'")
is_s=$(sql -At -c "SELECT count(*) FROM trialvault.signatures WHERE study = 'BC'")
[ "$is_c" = "$expect_c" ] && [ "$is_s" = "$expect_c" ] ||
	die "study BC has $is_c documents and $is_s signatures, but $expect_c certified loads ran"
echo "   study BC: $is_c certified documents, each with its countersigned signature"
for t in documents signatures; do
	ok=$(sql -At -c "SELECT ok FROM trialvault.verify('trialvault.$t')")
	[ "$ok" = t ] || die "trialvault.$t does not verify"
done
echo "   trialvault.documents and trialvault.signatures verify"

echo "== verify_document against open_document: $BENCH_VERIFY certified documents, $BENCH_ROUNDS rounds, alternating"
# timed SQL: seconds the statement took, in one session with the study open.
timed() {
	sql -U staff -At <<SQL | tail -n 1
SELECT trialvault.open_study('BC') \g /dev/null
SELECT extract(epoch FROM clock_timestamp()) AS t0 \gset
SELECT count(*) FROM ($1) x \g /dev/null
SELECT round((extract(epoch FROM clock_timestamp()) - :t0)::numeric, 3);
SQL
}
ids="SELECT doc_id FROM trialvault.my_documents ORDER BY doc_id LIMIT $BENCH_VERIFY"
sql -U staff -At -c "SELECT trialvault.open_study('BC')" -c "SELECT count(*) FROM trialvault.my_documents" >/dev/null
VR="" OR=""
for ((r = 1; r <= BENCH_ROUNDS; r++)); do
	to=$(timed "SELECT length(trialvault.open_document(d.doc_id)) FROM ($ids) d")
	tv=$(timed "SELECT v.* FROM ($ids) d, trialvault.verify_document(d.doc_id) v WHERE v.user_signature_ok AND v.countersignature_ok AND v.content_matches")
	OR+=" $(awk -v n="$BENCH_VERIFY" -v t="$to" 'BEGIN { printf "%.1f", n / t }')"
	VR+=" $(awk -v n="$BENCH_VERIFY" -v t="$tv" 'BEGIN { printf "%.1f", n / t }')"
	echo "   round $r/$BENCH_ROUNDS:  open_document $(awk -v n="$BENCH_VERIFY" -v t="$to" 'BEGIN { printf "%.1f", n / t }')/s  verify_document $(awk -v n="$BENCH_VERIFY" -v t="$tv" 'BEGIN { printf "%.1f", n / t }')/s"
done
ok_rows=$(sql -U staff -At -c "SELECT trialvault.open_study('BC')" -c "SELECT count(*) FROM ($ids) d, trialvault.verify_document(d.doc_id) v WHERE v.user_signature_ok AND v.countersignature_ok AND v.content_matches" | tail -n 1)
[ "$ok_rows" = "$BENCH_VERIFY" ] || die "verify_document found $ok_rows of $BENCH_VERIFY signatures good"
echo "   every one of the $BENCH_VERIFY signatures verified (user signature, countersignature, content)"

echo
echo "== results: median of $BENCH_ROUNDS rounds, loads/s (target certified/unsigned >= $BENCH_TARGET)"
echo "   ratio = median(certified) / median(unsigned); paired = median over rounds of certified/unsigned"
printf '%-8s %10s %10s %6s %6s %6s\n' clients unsigned certified ratio paired result
overall=PASS
for c in "${CLIENTS[@]}"; do
	u=${MED[unsigned,$c]}
	k=${MED[certified,$c]}
	rq=$(ratio "$k" "$u")
	pq=$(paired_ratio "${ALL[certified,$c]}" "${ALL[unsigned,$c]}")
	if at_least "$rq" "$BENCH_TARGET" && at_least "$pq" "$BENCH_TARGET"; then verdict=PASS; else verdict=FAIL overall=FAIL; fi
	printf '%-8s %10.1f %10.1f %6s %6s %6s\n' "$c" "$u" "$k" "$rq" "$pq" "$verdict"
done
echo "overall: $overall (certified/unsigned >= $BENCH_TARGET at every client count, both ratios)"
# shellcheck disable=SC2086
vm=$(median $VR)
# shellcheck disable=SC2086
om=$(median $OR)
echo "verify_document: $vm documents/s (median; one signature each), open_document: $om/s; verify/open $(ratio "$vm" "$om"), paired $(paired_ratio "$VR" "$OR")"
note_other_load "the end"
echo "# finished: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
exit 0

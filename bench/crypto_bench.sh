#!/usr/bin/env bash
# bench/crypto_bench.sh: AES-256-GCM encrypt and decrypt throughput of the
# extension's own field encryption on 1 MB values, against pgcrypto
# (encrypt_iv/decrypt_iv with 'aes-cbc', and pgp_sym_encrypt_bytea/
# pgp_sym_decrypt_bytea with 'cipher-algo=aes256') in the same run, and
# against `openssl speed -evp aes-256-gcm` (16 KB blocks) as the physical
# limit of this machine.
#
# BENCH_VALUES random values of BENCH_SIZE bytes (1 MB) are generated once
# into a table, together with their ciphertexts from each method.  Every
# timed run is one call of a plpgsql function bench_run(side, N) in its own
# psql session.  It first loads the values it needs into an array variable
# (untimed, so reading them from TOAST is not measured), makes one untimed
# call on a small value (so the extension's data key is unwrapped and
# cached, as it is in any session after its first use), then times with
# clock_timestamp() two loops of N iterations over the values, one after the
# other:
#
#   baseline   total := total + length(v[j])                 (just the loop)
#   side       total := total + length(f(v[j]))  or  f(v[j]) true -> count
#
# and the side's time is the second minus the first.  The sides are
#
#   ext_enc    trialvault._encrypt(study_id, 'BENCH', j, 'content', v)
#   ext_dec    trialvault._ciphertext_ok(study_id, 'BENCH', j, 'content', ct)
#              (decrypts and authenticates in full, wipes the plaintext,
#              returns true)
#   cbc_enc    encrypt_iv(v, key32, iv16, 'aes-cbc')       (pgcrypto)
#   cbc_dec    decrypt_iv(ct, key32, iv16, 'aes-cbc')
#   pgp_enc    pgp_sym_encrypt_bytea(v, 'pw', 'cipher-algo=aes256')
#   pgp_dec    pgp_sym_decrypt_bytea(ct, 'pw')
#   ossl_enc   openssl speed -evp aes-256-gcm -bytes 16384 -seconds S -elapsed
#   ossl_dec   the same with -decrypt
#
# Every call must come out right (the total is N * BENCH_SIZE plaintext
# bytes, every _ciphertext_ok true), or the script stops with an error.
# N is calibrated per side so that a run lasts about BENCH_SECONDS (from two
# untimed runs: one pass over the values, then one of about BENCH_SECONDS/4).
# Then the sides run alternately, one run each per round, for BENCH_ROUNDS
# rounds.  Throughput is MB/s of
# plaintext (1 MB/s = 10^6 bytes/s, as openssl counts).  The report gives
# medians, the ratio of the medians and a paired ratio (median over rounds
# of the ratio within one round).  Targets: ext / cbc >= 3 and
# ext / openssl >= 0.5, for encryption and for decryption.  The information
# run adds `openssl speed -evp aes-256-cbc -decrypt`: openssl's own GCM/CBC
# decryption ratio bounds ext / cbc on decryption.  PASS/FAIL is
# printed; the script exits 0 unless something went wrong.
#
# Usage (as root, from anywhere):
#   bash bench/crypto_bench.sh            full run (about 3 minutes)
#   bash bench/crypto_bench.sh --quick    about 35 seconds
#
# Environment (defaults; --quick ones in brackets):
#   BENCH_SECONDS=4 [1]    length of each timed run, per side (whole seconds:
#                          openssl speed -seconds takes an integer)
#   BENCH_ROUNDS=5 [3]     rounds; each round runs every side once
#   BENCH_VALUES=32 [8]    number of distinct random values
#   BENCH_SIZE=1048576     bytes per value
#   BENCH_INFO=1           0 skips the information run (fixed cost per call)
#   BENCH_TARGET_CBC=3     minimum ext / pgcrypto aes-cbc ratio
#   BENCH_TARGET_OPENSSL=0.5   minimum ext / openssl ratio
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
# shellcheck source=bench/common.sh
source "$HERE/common.sh"
CMDLINE=$(command_line BENCH_SECONDS BENCH_ROUNDS BENCH_VALUES BENCH_SIZE BENCH_INFO BENCH_TARGET_CBC BENCH_TARGET_OPENSSL -- "$0" "$@")

parse_common_args "$(basename "$0")" "$@"
if [ -n "$quick" ]; then
	: "${BENCH_SECONDS:=1}" "${BENCH_ROUNDS:=3}" "${BENCH_VALUES:=8}"
fi
: "${BENCH_SECONDS:=4}" "${BENCH_ROUNDS:=5}" "${BENCH_VALUES:=32}" "${BENCH_SIZE:=1048576}"
: "${BENCH_TARGET_CBC:=3}" "${BENCH_TARGET_OPENSSL:=0.5}" "${BENCH_INFO:=1}"

for v in BENCH_SECONDS BENCH_ROUNDS BENCH_VALUES BENCH_SIZE; do
	if ! [[ ${!v} =~ ^[0-9]+$ ]] || [ "${!v}" -lt 1 ]; then
		echo "crypto_bench.sh: $v must be a positive integer, not '${!v}'" >&2
		exit 2
	fi
done
if [ "$BENCH_INFO" != 0 ] && [ "$BENCH_INFO" != 1 ]; then
	echo "crypto_bench.sh: BENCH_INFO must be 0 or 1, not '$BENCH_INFO'" >&2
	exit 2
fi
if [ "$BENCH_SIZE" -gt 104857600 ]; then
	echo "crypto_bench.sh: BENCH_SIZE must be at most 100 MB" >&2
	exit 2
fi
command -v openssl >/dev/null || {
	echo "crypto_bench.sh: needs the openssl command line tool" >&2
	exit 2
}

# shellcheck source=test/lib/cluster.sh
source "$REPO/test/lib/cluster.sh"

# One backend does all the work; no parallel plans, no JIT.
CONF=(
	"shared_buffers = 256MB"
	"max_parallel_workers_per_gather = 0"
	"jit = off"
)

SQL_SIDES=(ext_enc ext_dec cbc_enc cbc_dec pgp_enc pgp_dec)
SIDES=(ext_enc ext_dec cbc_enc cbc_dec pgp_enc pgp_dec ossl_enc ossl_dec)
nsides=${#SIDES[@]}
est=$((BENCH_ROUNDS * nsides * BENCH_SECONDS * 11 / 10 + ${#SQL_SIDES[@]} * (BENCH_SECONDS / 4 + 1) + 10 + BENCH_VALUES * BENCH_SIZE / 3000000))

echo "# trialvault crypto benchmark"
echo "# command:    $CMDLINE"
bench_context
echo "# openssl:    $(openssl version)"
echo "# settings:   BENCH_SECONDS=$BENCH_SECONDS BENCH_ROUNDS=$BENCH_ROUNDS BENCH_VALUES=$BENCH_VALUES BENCH_SIZE=$BENCH_SIZE BENCH_INFO=$BENCH_INFO"
echo "#             BENCH_TARGET_CBC=$BENCH_TARGET_CBC BENCH_TARGET_OPENSSL=$BENCH_TARGET_OPENSSL"
echo "# server:     fresh cluster, unix socket, one backend per run, $(printf '%s, ' "${CONF[@]}" | sed 's/, $//')"
echo "# values:     $BENCH_VALUES random values of $BENCH_SIZE bytes, held in a plpgsql array during a run (loaded untimed)"
echo "# timing:     clock_timestamp() around N calls, minus the same loop doing length(v) only; MB/s = 10^6 bytes/s of plaintext"
echo "# ext:        trialvault._encrypt(sid, 'BENCH', j, 'content', v) / trialvault._ciphertext_ok(sid, 'BENCH', j, 'content', ct)"
echo "# cbc:        pgcrypto encrypt_iv(v, key32, iv16, 'aes-cbc') / decrypt_iv(ct, key32, iv16, 'aes-cbc')"
echo "# pgp:        pgcrypto pgp_sym_encrypt_bytea(v, 'pw', 'cipher-algo=aes256') / pgp_sym_decrypt_bytea(ct, 'pw')"
echo "# openssl:    openssl speed -evp aes-256-gcm -bytes 16384 -seconds $BENCH_SECONDS -elapsed [-decrypt] (wall clock, like the SQL sides)"
echo "# estimated:  ~$((est / 60)) min $((est % 60)) s"
note_other_load
echo

tv_cluster_start bench "${CONF[@]}"



echo "== setup: study BENCH, $BENCH_VALUES x $BENCH_SIZE random bytes and their ciphertexts"
t0=$(date +%s.%N)
sql -v nvals="$BENCH_VALUES" -v size="$BENCH_SIZE" >/dev/null <<-'SQL'
	CREATE EXTENSION trialvault CASCADE;
	SELECT trialvault.create_study('BENCH', 'bench') AS sid \gset
	SELECT trialvault.require_signatures('BENCH', false);
	-- The pgcrypto aes-cbc key (32 bytes: AES-256) and IV.
	CREATE TABLE bench_cbc (key bytea NOT NULL, iv bytea NOT NULL);
	INSERT INTO bench_cbc VALUES (gen_random_bytes(32), gen_random_bytes(16));
	-- Out of line, uncompressed (random bytes do not compress anyway).
	CREATE TABLE bench_vals (n int PRIMARY KEY, x bytea NOT NULL,
		ext_ct bytea, cbc_ct bytea, pgp_ct bytea);
	ALTER TABLE bench_vals ALTER x SET STORAGE EXTERNAL, ALTER ext_ct SET STORAGE EXTERNAL,
		ALTER cbc_ct SET STORAGE EXTERNAL, ALTER pgp_ct SET STORAGE EXTERNAL;
	INSERT INTO bench_vals (n, x)
		SELECT i, substring(string_agg(gen_random_bytes(1024), ''::bytea) FROM 1 FOR :size)
		FROM generate_series(1, :nvals) i, generate_series(1, (:size + 1023) / 1024) k
		GROUP BY i;
	UPDATE bench_vals SET
		ext_ct = trialvault._encrypt(:sid, 'BENCH', n, 'content', x),
		cbc_ct = encrypt_iv(x, (SELECT key FROM bench_cbc), (SELECT iv FROM bench_cbc), 'aes-cbc'),
		pgp_ct = pgp_sym_encrypt_bytea(x, 'pw', 'cipher-algo=aes256');
	VACUUM ANALYZE bench_vals;

	-- bench_run(side, n): see the header of bench/crypto_bench.sh.
	CREATE FUNCTION bench_run(side text, calls int,
		OUT crypto_ms float8, OUT base_ms float8, OUT bytes bigint, OUT ok_calls bigint)
		LANGUAGE plpgsql AS $$
	DECLARE
		v bytea[];
		nv int;
		sid int;
		key bytea;
		iv bytea;
		j int;
		total bigint := 0;
		good bigint := 0;
		t0 timestamptz;
		size int;
		pgp_ovh int := 0;
	BEGIN
		SELECT study_id INTO STRICT sid FROM trialvault.studies WHERE code = 'BENCH';
		SELECT c.key, c.iv INTO STRICT key, iv FROM bench_cbc c;
		SELECT length(x) INTO STRICT size FROM bench_vals WHERE n = 1;
		CASE side
		WHEN 'ext_enc', 'cbc_enc', 'pgp_enc' THEN
			SELECT array_agg(x ORDER BY n) INTO v FROM bench_vals;
		WHEN 'ext_dec' THEN
			SELECT array_agg(ext_ct ORDER BY n) INTO v FROM bench_vals;
		WHEN 'cbc_dec' THEN
			SELECT array_agg(cbc_ct ORDER BY n) INTO v FROM bench_vals;
		WHEN 'pgp_dec' THEN
			SELECT array_agg(pgp_ct ORDER BY n) INTO v FROM bench_vals;
		END CASE;
		nv := array_length(v, 1);

		-- Untimed: one call on a small value (the extension unwraps and
		-- caches the study's data key on first use in a session).
		PERFORM trialvault._ciphertext_ok(sid, 'BENCH', 0, 'content',
			trialvault._encrypt(sid, 'BENCH', 0, 'content', '\x00'::bytea));
		PERFORM decrypt_iv(encrypt_iv('\x00'::bytea, key, iv, 'aes-cbc'), key, iv, 'aes-cbc');
		-- What the PGP packets add to a value of this size (the same for
		-- every value of the same size).
		IF side = 'pgp_enc' THEN
			pgp_ovh := length(pgp_sym_encrypt_bytea(v[1], 'pw', 'cipher-algo=aes256')) - size;
		END IF;

		-- The baseline: the same loop, only reading the values.
		t0 := clock_timestamp();
		FOR i IN 0 .. calls - 1 LOOP
			j := i % nv + 1;
			total := total + length(v[j]);
		END LOOP;
		base_ms := 1000 * extract(epoch FROM clock_timestamp() - t0);
		IF total < 0 THEN RAISE EXCEPTION 'impossible'; END IF;

		total := 0;
		t0 := clock_timestamp();
		CASE side
		WHEN 'ext_enc' THEN
			FOR i IN 0 .. calls - 1 LOOP
				j := i % nv + 1;
				total := total + length(trialvault._encrypt(sid, 'BENCH', j, 'content', v[j])) - 39;
			END LOOP;
		WHEN 'ext_dec' THEN
			FOR i IN 0 .. calls - 1 LOOP
				j := i % nv + 1;
				IF trialvault._ciphertext_ok(sid, 'BENCH', j, 'content', v[j]) THEN
					good := good + 1;
				END IF;
			END LOOP;
			total := good * size;
		WHEN 'cbc_enc' THEN
			FOR i IN 0 .. calls - 1 LOOP
				j := i % nv + 1;
				-- PKCS#7 padding: 16 - size % 16 bytes more than the plaintext.
				total := total + length(encrypt_iv(v[j], key, iv, 'aes-cbc')) - 16 + size % 16;
			END LOOP;
		WHEN 'cbc_dec' THEN
			FOR i IN 0 .. calls - 1 LOOP
				j := i % nv + 1;
				total := total + length(decrypt_iv(v[j], key, iv, 'aes-cbc'));
			END LOOP;
		WHEN 'pgp_enc' THEN
			FOR i IN 0 .. calls - 1 LOOP
				j := i % nv + 1;
				total := total + length(pgp_sym_encrypt_bytea(v[j], 'pw', 'cipher-algo=aes256')) - pgp_ovh;
			END LOOP;
		WHEN 'pgp_dec' THEN
			FOR i IN 0 .. calls - 1 LOOP
				j := i % nv + 1;
				total := total + length(pgp_sym_decrypt_bytea(v[j], 'pw'));
			END LOOP;
		END CASE;
		crypto_ms := 1000 * extract(epoch FROM clock_timestamp() - t0);
		bytes := total;
		ok_calls := CASE WHEN side = 'ext_dec' THEN good ELSE calls END;
	END
	$$;

	-- bench_small(calls): microseconds per call on a 16-byte value, i.e. the
	-- fixed cost of a call apart from the bulk cipher work.
	CREATE FUNCTION bench_small(calls int, OUT fn text, OUT us float8)
		RETURNS SETOF record LANGUAGE plpgsql AS $$
	DECLARE
		sid int;
		key bytea;
		iv bytea;
		x bytea := '\x000102030405060708090a0b0c0d0e0f';
		c bytea;
		ok bigint := 0;
		t0 timestamptz;
	BEGIN
		SELECT study_id INTO STRICT sid FROM trialvault.studies WHERE code = 'BENCH';
		SELECT b.key, b.iv INTO STRICT key, iv FROM bench_cbc b;
		c := trialvault._encrypt(sid, 'BENCH', 1, 'content', x);
		t0 := clock_timestamp();
		FOR i IN 1 .. calls LOOP
			ok := ok + length(trialvault._encrypt(sid, 'BENCH', 1, 'content', x));
		END LOOP;
		fn := 'trialvault._encrypt';
		us := 1e6 * extract(epoch FROM clock_timestamp() - t0) / calls;
		RETURN NEXT;
		t0 := clock_timestamp();
		FOR i IN 1 .. calls LOOP
			IF trialvault._ciphertext_ok(sid, 'BENCH', 1, 'content', c) THEN ok := ok + 1; END IF;
		END LOOP;
		fn := 'trialvault._ciphertext_ok';
		us := 1e6 * extract(epoch FROM clock_timestamp() - t0) / calls;
		RETURN NEXT;
		c := encrypt_iv(x, key, iv, 'aes-cbc');
		t0 := clock_timestamp();
		FOR i IN 1 .. calls LOOP
			ok := ok + length(encrypt_iv(x, key, iv, 'aes-cbc'));
		END LOOP;
		fn := 'encrypt_iv aes-cbc';
		us := 1e6 * extract(epoch FROM clock_timestamp() - t0) / calls;
		RETURN NEXT;
		t0 := clock_timestamp();
		FOR i IN 1 .. calls LOOP
			ok := ok + length(decrypt_iv(c, key, iv, 'aes-cbc'));
		END LOOP;
		fn := 'decrypt_iv aes-cbc';
		us := 1e6 * extract(epoch FROM clock_timestamp() - t0) / calls;
		RETURN NEXT;
		IF ok <> calls::bigint * (16 + 39 + 1 + 32 + 16) THEN
			RAISE EXCEPTION 'bench_small: wrong results (%)', ok;
		END IF;
	END
	$$;
SQL
t1=$(date +%s.%N)

# Sanity: every ciphertext decrypts to its value; the extension's really
# authenticates (a wrong document id, a flipped bit fail); a fresh IV per call.
read -r N EXT_OK EXT_LEN WRONG_ID FLIPPED FRESH CBC_OK PGP_OK < <(sql -At -F ' ' <<-'SQL'
	SELECT count(*),
		count(*) FILTER (WHERE trialvault._ciphertext_ok(s.study_id, 'BENCH', n, 'content', ext_ct)),
		min(length(ext_ct) - length(x)),
		count(*) FILTER (WHERE trialvault._ciphertext_ok(s.study_id, 'BENCH', n + 1, 'content', ext_ct)),
		count(*) FILTER (WHERE trialvault._ciphertext_ok(s.study_id, 'BENCH', n, 'content',
			set_byte(ext_ct, length(ext_ct) / 2, get_byte(ext_ct, length(ext_ct) / 2) # 1))),
		count(*) FILTER (WHERE trialvault._encrypt(s.study_id, 'BENCH', n, 'content', x) <> ext_ct),
		count(*) FILTER (WHERE decrypt_iv(cbc_ct, c.key, c.iv, 'aes-cbc') = x),
		count(*) FILTER (WHERE pgp_sym_decrypt_bytea(pgp_ct, 'pw') = x)
	FROM bench_vals, bench_cbc c, trialvault.studies s WHERE s.code = 'BENCH'
SQL
)
printf '   %s values generated and encrypted three ways in %.1f s\n' "$N" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')"
echo "   ext: $EXT_OK/$N authenticate, $EXT_LEN bytes overhead, $WRONG_ID pass under another doc id, $FLIPPED pass with a bit flipped, $FRESH/$N differ when encrypted again"
echo "   pgcrypto: aes-cbc $CBC_OK/$N and pgp $PGP_OK/$N decrypt to their value"
[ "$N" = "$BENCH_VALUES" ] || die "expected $BENCH_VALUES values, got $N"
[ "$EXT_OK" = "$N" ] || die "only $EXT_OK of $N extension ciphertexts authenticate"
[ "$WRONG_ID" = 0 ] || die "$WRONG_ID extension ciphertexts authenticate under another document id"
[ "$FLIPPED" = 0 ] || die "$FLIPPED extension ciphertexts authenticate with a bit flipped"
[ "$FRESH" = "$N" ] || die "encrypting the same value again gave the same ciphertext ($((N - FRESH)) of $N)"
[ "$CBC_OK" = "$N" ] || die "only $CBC_OK of $N aes-cbc ciphertexts decrypt to their values"
[ "$PGP_OK" = "$N" ] || die "only $PGP_OK of $N pgp ciphertexts decrypt to their values"

# sql_run SIDE N: one timed run of a SQL side in its own session; sets MS
# (side minus baseline), BASE_US (baseline per call) and RATE (MB/s).
sql_run() {
	local side=$1 n=$2 out cms bms bytes okc
	out=$(sql -At -F ' ' -c "SELECT crypto_ms, base_ms, bytes, ok_calls FROM bench_run('$side', $n)")
	read -r cms bms bytes okc <<<"$out"
	[ -n "$okc" ] || die "no result from bench_run('$side', $n): $out"
	[ "$okc" = "$n" ] || die "$side: only $okc of $n calls succeeded"
	[ "$bytes" = "$((n * BENCH_SIZE))" ] || die "$side: $bytes plaintext bytes processed, expected $((n * BENCH_SIZE))"
	MS=$(awk -v c="$cms" -v b="$bms" 'BEGIN { printf "%.3f\n", c - b }')
	BASE_US=$(awk -v b="$bms" -v n="$n" 'BEGIN { printf "%.3f\n", 1000 * b / n }')
	at_least "$MS" 0.001 || die "$side: $MS ms after subtracting the baseline"
	RATE=$(awk -v b="$bytes" -v ms="$MS" 'BEGIN { printf "%.1f\n", b / ms / 1000 }')
}

# ossl_run SIDE [CIPHER]: one openssl speed run (aes-256-gcm unless told);
# sets RATE (MB/s at 16 KB blocks).
ossl_run() {
	local extra=() out bps
	[ "$1" = ossl_dec ] && extra=(-decrypt)
	out=$(openssl speed -evp "${2:-aes-256-gcm}" -bytes 16384 -seconds "$BENCH_SECONDS" -elapsed -mr "${extra[@]}" 2>&1) ||
		die "openssl speed failed: $out"
	bps=$(awk -F: '/^\+F:/ { print $NF; exit }' <<<"$out")
	[ -n "$bps" ] || die "could not read openssl speed's result: $out"
	RATE=$(awk -v b="$bps" 'BEGIN { printf "%.1f\n", b / 1e6 }')
}

run_side() {
	case $1 in
	ossl_*) ossl_run "$1" ;;
	*) sql_run "$1" "${NCALLS[$1]}" ;;
	esac
}

declare -A NCALLS=()
echo "== calibration (untimed; also the warm-up): N calls so that a run lasts ~${BENCH_SECONDS} s"
# calls_for RATE SECONDS: calls of BENCH_SIZE bytes that take SECONDS at RATE MB/s.
calls_for() {
	awk -v r="$1" -v s="$2" -v size="$BENCH_SIZE" 'BEGIN {
		n = int(r * 1e6 * s / size + 0.5); if (n < 1) n = 1; print n }'
}
# Two steps: one pass over the values (a few ms: too short to trust), then
# a run of about a quarter of BENCH_SECONDS, which sets N.
for s in "${SQL_SIDES[@]}"; do
	sql_run "$s" "$BENCH_VALUES"
	n1=$(calls_for "$RATE" "$(awk -v s="$BENCH_SECONDS" 'BEGIN { print s / 4 }')")
	sql_run "$s" "$n1"
	NCALLS[$s]=$(calls_for "$RATE" "$BENCH_SECONDS")
	printf '   %-9s %5d calls in %9.1f ms (%8.1f MB/s) -> N = %d\n' "$s" "$n1" "$MS" "$RATE" "${NCALLS[$s]}"
done

declare -A RUNS=() BASE=()
for s in "${SIDES[@]}"; do RUNS[$s]=""; done
echo "== $BENCH_ROUNDS rounds, sides alternating (${SIDES[*]}), MB/s"
for ((r = 1; r <= BENCH_ROUNDS; r++)); do
	line=$(printf '   round %d/%d:' "$r" "$BENCH_ROUNDS")
	for s in "${SIDES[@]}"; do
		run_side "$s"
		RUNS[$s]+=" $RATE"
		case $s in ossl_*) ;; *) BASE[$s]+=" $BASE_US" ;; esac
		line+=$(printf ' %s %.0f' "$s" "$RATE")
	done
	echo "$line"
done

declare -A MED=()
for s in "${SIDES[@]}"; do
	# shellcheck disable=SC2086
	MED[$s]=$(median ${RUNS[$s]})
done


echo
echo "== results: median of $BENCH_ROUNDS rounds, MB/s of plaintext ($BENCH_SIZE-byte values; openssl: 16384-byte blocks)"
echo "   ratio = median(ext) / median(other); paired = median over rounds of ext/other in the same round"
printf '%-8s %10s %10s %10s %10s | %-22s %-22s %-16s\n' "" ext "cbc" "pgp" "openssl" "ext/cbc (paired)" "ext/openssl (paired)" "ext/pgp"
overall=PASS
declare -A RES=()
for op in enc dec; do
	e=${MED[ext_$op]}
	rc=$(ratio "$e" "${MED[cbc_$op]}")
	ro=$(ratio "$e" "${MED[ossl_$op]}")
	rp=$(ratio "$e" "${MED[pgp_$op]}")
	if at_least "$rc" "$BENCH_TARGET_CBC"; then vc=PASS; else vc=FAIL overall=FAIL; fi
	if at_least "$ro" "$BENCH_TARGET_OPENSSL"; then vo=PASS; else vo=FAIL overall=FAIL; fi
	RES[$op]="$vc $vo"
	printf '%-8s %10.1f %10.1f %10.1f %10.1f | %-22s %-22s %-16s\n' \
		"$([ $op = enc ] && echo encrypt || echo decrypt)" "$e" "${MED[cbc_$op]}" "${MED[pgp_$op]}" "${MED[ossl_$op]}" \
		"$rc ($(paired_ratio "${RUNS[ext_$op]}" "${RUNS[cbc_$op]}")) $vc" "$ro ($(paired_ratio "${RUNS[ext_$op]}" "${RUNS[ossl_$op]}")) $vo" "$rp"
done
if [ "$BENCH_INFO" = 1 ]; then
	echo
	echo "== information (not part of the verdict): fixed cost per call, on a 16-byte value, one run"
	while IFS='|' read -r fn us; do
		case $fn in
		trialvault._encrypt) side=ext_enc ;;
		trialvault._ciphertext_ok) side=ext_dec ;;
		encrypt_iv*) side=cbc_enc ;;
		*) side=cbc_dec ;;
		esac
		printf '   %-26s %7.1f us/call   (one %d-byte value: %7.1f us at the median %s rate)\n' "$fn" "$us" \
			"$BENCH_SIZE" "$(awk -v r="${MED[$side]}" -v b="$BENCH_SIZE" 'BEGIN { print b / r }')" "$side"
	done < <(sql -At -c "SELECT fn, us FROM bench_small(2000)")
fi
if [ "$BENCH_INFO" = 1 ]; then
	# Why ext/cbc cannot reach the target on decryption here: CBC decrypts
	# its blocks in parallel, GCM must also authenticate every byte, so
	# even OpenSSL's own GCM decryption is this fraction of its CBC one.
	ossl_run ossl_dec aes-256-cbc
	echo "   openssl speed -evp aes-256-cbc -decrypt: $RATE MB/s; openssl's own GCM/CBC decryption ratio,"
	echo "   the ceiling of ext/cbc on decrypt for any AES-256-GCM code on this machine: $(ratio "${MED[ossl_dec]}" "$RATE")"
fi
# shellcheck disable=SC2086
echo "baseline loop (subtracted): median $(median ${BASE[ext_enc]} ${BASE[ext_dec]} ${BASE[cbc_enc]} ${BASE[cbc_dec]} ${BASE[pgp_enc]} ${BASE[pgp_dec]}) us per call"
echo "targets: ext/cbc >= $BENCH_TARGET_CBC, ext/openssl >= $BENCH_TARGET_OPENSSL (encrypt and decrypt)"
echo "overall: $overall (encrypt: ext/cbc ${RES[enc]% *}, ext/openssl ${RES[enc]#* }; decrypt: ext/cbc ${RES[dec]% *}, ext/openssl ${RES[dec]#* })"
note_other_load "the end"
echo "# finished: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
exit 0

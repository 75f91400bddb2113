# test/integration/lib/vx.sh: compare trialvault.verify() with
# scripts/trialvault-verify-export on an export of the same table.
#
# Source after cluster.sh and helpers.sh, with CL (the cluster, started)
# and DB (the database) set, and optionally:
#   CONN  libpq connection string prefix (the database name is appended;
#         by default the cluster's socket, as postgres)
#   VXD   a directory for exports and logs (by default vx/ in the cluster's)
#
#   vx_export TABLE FILE     export TABLE
#   vx_into FILE [opts]      run the verifier; sets X_RC, X_ERR, X_OK, ...
#   agree TABLE DESC         one TAP test: verify() and the verifier agree
#   guards TABLE D|A         disable / enable TABLE's guard trigger
#
# It sets VX, the verifier script, and PY, the python3 to run it with.

VX=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)/scripts/trialvault-verify-export
: "${VXD:=$(tv_dir "$CL")/vx}"
: "${CONN:=host=$(tv_dir "$CL") port=$(tv_port "$CL") user=postgres dbname=}"
mkdir -p "$VXD"
# Debian's python3 when there is one (what CI has; a python3 earlier in PATH,
# pyenv's say, may start much more slowly); its own #! line is tested in 75.
PY=${PYTHON:-/usr/bin/python3}
[ -x "$PY" ] || PY=python3

# vx_export TABLE FILE: export TABLE with the script (psql from PGBIN).
vx_export() {
	"$PY" "$VX" export --psql "$PGBIN/psql" -d "$CONN$DB" "$1" -o "$2" 2>>"$VXD/export.log"
}

# vx_into FILE [verify options]: run the verifier, set X_RC, X_ERR (its
# standard error) and X_OK X_ROWS X_FIRST_BAD X_BAD_ROWS X_HEADS X_DIGEST
# X_ANCHOR from its output.
vx_into() {
	local file=$1 out
	shift
	out=$("$PY" "$VX" verify "$@" "$file" 2>"$VXD/err") && X_RC=0 || X_RC=$?
	X_ERR=$(<"$VXD/err")
	X_OK='' X_ROWS='' X_FIRST_BAD='' X_BAD_ROWS='' X_HEADS='' X_DIGEST='' X_ANCHOR=''
	while IFS= read -r line; do
		case $line in
		"ok: "*) X_OK=${line#ok: } ;;
		"rows_checked: "*) X_ROWS=${line#rows_checked: } ;;
		"first_bad: "*) X_FIRST_BAD=${line#first_bad: } ;;
		"bad_rows: "*) X_BAD_ROWS=${line#bad_rows: } ;;
		"heads: "*) X_HEADS=${line#heads: } ;;
		"head_digest: "*) X_DIGEST=${line#head_digest: } ;;
		"anchor: "*) X_ANCHOR=${line#anchor: } ;;
		esac
	done <<<"$out"
}

# agree TABLE DESC: export TABLE, and compare the verifier's result on the
# export with verify()'s, field by field (the guard must be intact, so that
# verify()'s ok is about the chain alone).
agree() {
	local tbl=$1 desc=$2 file
	file=$VXD/$(tr -c 'a-zA-Z0-9_\n' _ <<<"$tbl").tvx
	vx_export "$tbl" "$file" || { not_ok "$desc (export failed: $(tail -n 3 "$VXD/export.log"))"; return; }
	verify_into $CL "$DB" "$tbl"
	vx_into "$file"
	local vok=false
	[ "$V_OK" = t ] && vok=true
	is "ok=$X_OK rows=$X_ROWS bad_rows=$X_BAD_ROWS heads=$X_HEADS digest=$X_DIGEST first_bad=[$X_FIRST_BAD]" \
		"ok=$vok rows=$V_ROWS bad_rows=$V_BAD_ROWS heads=$V_HEADS digest=$V_DIGEST first_bad=[$V_FIRST_BAD]" \
		"$desc ($V_GUARD)"
	AGREED_FILE=$file
}

guards() {
	q $CL postgres "UPDATE pg_trigger SET tgenabled = '$2'
	                 WHERE tgrelid = '$1'::regclass AND tgfoid = 'trialvault.guard()'::regprocedure" >/dev/null
}


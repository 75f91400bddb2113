# test/lib/backups.sh: helpers for the tests and the demo that ship backups
# (docs/backups.md).  Source after test/lib/cluster.sh.
#
#   tv_backup_setup ROOT
#       starts cluster "repo" (no trialvault) as the repository, prepared by
#       ROOT/scripts/trialvault-remote-init for role "shipper", and makes a
#       2048-bit key pair; sets RDIR and RPORT (the repository's socket
#       directory and port), REMOTE (a conninfo as the shipper), GNUPGHOME
#       (the private key's home; pass phrase in $RDIR/pass.txt) and KEYDIR
#       (the public key as $KEYDIR/backup-public.asc, readable by the
#       server).
#
#   tv_backup_keypair GNUPGHOME PASSFILE PUBFILE BITS
#       makes, in a new GNUPGHOME, an RSA key of BITS bits for signing with
#       an RSA encryption subkey, its private half protected by the pass
#       phrase in PASSFILE (which must exist), and exports the armored public
#       key to PUBFILE.  Prints the key's fingerprint.  The docs say 4096
#       bits; tests that only need a key use 2048, which is quicker to make.

tv_backup_keypair() {
	local home=$1 pass=$2 pub=$3 bits=$4 fpr
	mkdir -p "$home"
	chmod 700 "$home"
	GNUPGHOME=$home gpg --batch --pinentry-mode loopback --passphrase-file "$pass" \
		--quick-gen-key 'trialvault backups <backups@hospital.example>' "rsa$bits" sign never 2>/dev/null
	fpr=$(GNUPGHOME=$home gpg --list-keys --with-colons 'trialvault backups' 2>/dev/null |
		awk -F: '/^fpr:/ {print $10; exit}')
	GNUPGHOME=$home gpg --batch --pinentry-mode loopback --passphrase-file "$pass" \
		--quick-add-key "$fpr" "rsa$bits" encr never 2>/dev/null
	GNUPGHOME=$home gpg --armor --export "$fpr" >"$pub"
	echo "$fpr"
}

#   tv_restore_differences SRC SRCDB TGT TGTDB
#       compares every protected table of database TGTDB of cluster TGT (a
#       restore) with the same table in SRCDB of SRC: the restored rows must
#       be byte for byte the source's rows up to the newest restored
#       tv_seq (whole rows as text, chain columns included).  Prints one
#       line per table that differs, nothing when all agree.
#       trialvault.catalog_seal is not restored (each server seals its own
#       objects) and not compared.
tv_restore_differences() {
	local src=$1 srcdb=$2 tgt=$3 tgtdb=$4 t line max sum other tables
	tables=$(tv_psql "$tgt" -d "$tgtdb" -At -c "SELECT table_name FROM trialvault.protected_tables
			WHERE table_name <> 'trialvault.catalog_seal'::regclass ORDER BY 1" 2>&1) || {
		echo "cannot list the restored tables: $tables"
		return
	}
	[ -n "$tables" ] || echo "no protected table in the target"
	for t in $tables; do
		line=$(tv_psql "$tgt" -d "$tgtdb" -At -c "SELECT coalesce(max(tv_seq), 0) || ' ' ||
			md5(coalesce(string_agg(r::text, '|' ORDER BY tv_seq), '')) FROM $t r")
		max=${line%% *}
		sum=${line#* }
		other=$(tv_psql "$src" -d "$srcdb" -At -c "SELECT md5(coalesce(string_agg(r::text, '|' ORDER BY tv_seq), ''))
			FROM $t r WHERE tv_seq <= $max")
		[ "$sum" = "$other" ] || echo "$t differs (up to tv_seq $max)"
	done
}

tv_backup_setup() {
	local root=$1
	tv_cluster_start repo "shared_preload_libraries = ''"
	RDIR=$(tv_dir repo)
	RPORT=$(tv_port repo)
	REMOTE="host=$RDIR port=$RPORT user=shipper dbname=postgres"
	tv_psql repo -d postgres -c "CREATE ROLE shipper LOGIN" >/dev/null
	"$root/scripts/trialvault-remote-init" "host=$RDIR port=$RPORT user=postgres dbname=postgres" shipper >/dev/null
	export GNUPGHOME=$RDIR/gnupg
	echo 'correct horse battery staple' >"$RDIR/pass.txt"
	KEYDIR=$TV_TMP/keys
	mkdir -p "$KEYDIR"
	tv_backup_keypair "$GNUPGHOME" "$RDIR/pass.txt" "$KEYDIR/backup-public.asc" 2048 >/dev/null
	chmod 755 "$KEYDIR"
	chmod 644 "$KEYDIR"/*
}

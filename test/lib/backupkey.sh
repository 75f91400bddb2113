# test/lib/backupkey.sh: the OpenPGP key pair of docs/backups.md ("The key
# pair"), for the tests and the demo that ship backups.
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

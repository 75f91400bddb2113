#!/usr/bin/env bash
# scripts/install-deps.sh: install every Debian 12 package trialvault needs to
# build, test, benchmark and demo, then build and install the extension.
# Run as root.  Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
	build-essential
	postgresql-15
	postgresql-contrib
	postgresql-server-dev-15
	postgresql-15-cron
	postgresql-15-pgaudit
	postgresql-15-pgtap
	libtap-parser-sourcehandler-pgtap-perl
	libssl-dev
	libkrb5-dev
	libxml2-dev
	libxml2-utils
	libpq-dev
	gnupg
	openssl
	procps
	perl
	python3
	xxd
	liboath-dev
	oathtool
)

missing=()
for p in "${PACKAGES[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		missing+=("$p")
	fi
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "== installing Debian packages: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update
	apt-get install -y "${missing[@]}"
fi

# The Debian package starts a cluster on 5432; trialvault never uses it.
export PATH="$(pg_config --bindir):$PATH"

echo "== building and installing trialvault"
make -s clean >/dev/null
make -s
make -s install >/dev/null

# trialvault: PGXS build.
#
#   make && make install          build and install into the PostgreSQL found by pg_config
#   make installcheck             pg_regress in a throwaway instance (not as root)
#   bash scripts/test.sh          everything (what CI runs; also: make test-all)
#   bash scripts/demo.sh          the demo (also: make demo); make bench runs bench/

MODULE_big = trialvault
OBJS = \
	extension/trialvault.o \
	extension/canon.o \
	extension/chain.o \
	extension/guard.o \
	extension/ddlguard.o \
	extension/protect.o \
	extension/verify.o \
	extension/toastscan.o \
	extension/xmldoc.o \
	extension/xmlschema.o \
	extension/xmlscreen.o \
	extension/c14n.o \
	extension/xmlextract.o \
	extension/inspect.o \
	extension/crypto.o \
	extension/factor.o \
	extension/certify.o \
	extension/digest.o \
	extension/auth.o \
	extension/login.o \
	extension/lockout.o \
	extension/accounts.o \
	extension/rules.o \
	extension/access.o \
	extension/load.o \
	extension/session.o \
	extension/owner.o \
	extension/catalog.o \
	worker/logwriter.o \
	worker/shipper.o

EXTENSION = trialvault
EXTVERSION = $(shell sed -n "s/^default_version = '\\(.*\\)'/\\1/p" $(srcdir)/trialvault.control)
# The install script of the current version is built from the one schema
# file (as pgvector does); the older install and upgrade scripts are frozen.
DATA_built = extension/trialvault--$(EXTVERSION).sql
DATA = $(filter-out $(DATA_built),$(wildcard extension/trialvault--*.sql))
SCRIPTS = scripts/trialvault-getkey scripts/trialvault-sign scripts/trialvault-verify-certificate \
	scripts/trialvault-remote-init scripts/trialvault-restore

REGRESS = protect guard deny bad_input verify xml access views certify
# As pg_cron does: `make installcheck` starts its own throwaway instance
# (initdb, the settings of test/regress.conf, a unix socket in a temp dir),
# so any unprivileged user can run it after `make install`.
REGRESS_OPTS = --inputdir=. --temp-config=$(srcdir)/test/regress.conf --temp-instance=./tmp_check

PG_CONFIG ?= pg_config
# -Wno-unused-parameter: PostgreSQL's own headers (ilist.h, bufpage.h, fmgr.h)
# and callback signatures trip it; everything else in -Wextra stays on.
PG_CPPFLAGS = -I$(srcdir)/extension -I$(libpq_srcdir) -DTV_EXTVERSION='"$(EXTVERSION)"' -Wall -Wextra -Wno-unused-parameter -Werror
SHLIB_LINK = -lcrypto -lxml2 -loath $(libpq)

PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# After the include, which sets it: the regression database, which the test
# cluster's log writer serves (trialvault.database).
CONTRIB_TESTDB = trialvault_regression

# Convenience targets (each runs as root, like the README's commands).
.PHONY: demo test-all bench
demo:
	bash scripts/demo.sh
test-all:
	bash scripts/test.sh
bench:
	bash bench/insert_bench.sh
	bash bench/verify_bench.sh
	bash bench/xml_bench.sh
	bash bench/crypto_bench.sh
	bash bench/open_bench.sh
	bash bench/views_bench.sh
	bash bench/certify_bench.sh
	bash bench/login_bench.sh
	bash bench/backup_bench.sh
	bash bench/step_up_bench.sh

extension/trialvault--$(EXTVERSION).sql: extension/trialvault.sql trialvault.control
	cp $< $@

# The library checks that the database's objects are of its version
# (TV_EXTVERSION, from the control file): rebuild it when the version moves.
extension/trialvault.o extension/trialvault.bc: trialvault.control

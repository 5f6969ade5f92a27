# Makefile for enrich: the extension (PGXS), the mock API server, and the
# one-command targets demo, test and bench.
#
#   make            build enrich.so and test/mock/aggk-mock
#   make install    install the extension into the PostgreSQL of $(PG_CONFIG)
#   make test       install missing packages, build, install, run every test
#   make demo       install missing packages, build, install, run the demo
#   make bench      install missing packages, build, install, run the benchmark
#   make fuzz       fuzz the wire module's response parsers (FUZZ_SECONDS, default 60)
#   make test-sanitize  every test again, with enrich.so built with ASan + UBSan
#   make test-matrix    make test against each PostgreSQL major (ENRICH_MAJORS,
#                   default 15 17 18), in a Debian root filesystem for a major
#                   this machine's Debian does not package (test/matrix.sh)
#   make deps       only install the missing Debian packages
#   make dist       the release archive enrich-VERSION.zip (PGXN's layout),
#                   from git archive of HEAD
#
# PG_CONFIG=/path/to/pg_config or PG_MAJOR=17 chooses the PostgreSQL.

# the server to build against: PG_CONFIG, else PG_MAJOR, else the newest
# installed (test/pg-config.sh says how it chooses)
PG_CONFIG ?= $(shell bash $(CURDIR)/test/pg-config.sh 2>/dev/null)
PGXS := $(shell $(PG_CONFIG) --pgxs 2>/dev/null)

MODULE_big = enrich
OBJS = $(patsubst %.c,%.o,$(sort $(wildcard src/*.c)))
EXTENSION = enrich
DATA = sql/enrich--1.0.sql sql/enrich--1.0--1.1.sql
REGRESS = create_extension api_calls api_processing api_errors api_cancel api_security api_tls requests watch real_names
REGRESS_OPTS = --inputdir=.

# the library's version is the control file's (PostgreSQL 18 shows it)
EXTVERSION := $(shell sed -n "s/^default_version = '\(.*\)'/\1/p" $(CURDIR)/enrich.control)
PG_CPPFLAGS = -I$(srcdir)/src $(shell pkg-config --cflags json-c libcurl 2>/dev/null) \
	-DENRICH_VERSION='"$(EXTVERSION)"'
# -Wextra on our files; unused parameters are allowed because PostgreSQL's own
# headers and its fixed hook signatures (GUC check hooks, callbacks) have them
PG_CFLAGS = -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers
SHLIB_LINK = $(shell pkg-config --libs json-c libcurl 2>/dev/null || echo -ljson-c -lcurl)

EXTRA_CLEAN = results regression.diffs regression.out log tmp_check enrich-*.zip

MOCK = test/mock/aggk-mock

.DEFAULT_GOAL := all
.PHONY: deps test demo bench fuzz test-sanitize test-matrix mock print-regress dist

# the harness asks which pg_regress tests to run
print-regress:
	@echo $(REGRESS)

ifneq ($(PGXS),)
include $(PGXS)

all: mock

# every object depends on our headers (PGXS tracks no header dependencies)
$(OBJS): $(wildcard src/*.h)

mock:
	$(MAKE) -C test/mock

clean: clean-mock
.PHONY: clean-mock
clean-mock:
	$(MAKE) -C test/mock clean
else
all install:
	@echo "pg_config was not found: run 'make deps' (or 'make test', which does it) first" >&2
	@exit 1
endif

deps:
	@bash test/deps.sh

# Each one-command target first installs what is missing, then re-enters make
# so that PGXS is found even on a machine that had no PostgreSQL before.
test: deps
	@$(MAKE) --no-print-directory all
	@bash test/install.sh
	@bash test/harness.sh test

demo: deps
	@$(MAKE) --no-print-directory all
	@bash test/install.sh
	@bash test/harness.sh demo

bench: deps
	@$(MAKE) --no-print-directory all
	@bash test/install.sh
	@bash test/harness.sh bench

fuzz: deps
	@bash test/fuzz/run.sh

test-sanitize: deps
	@bash test/sanitize.sh

test-matrix:
	@bash test/matrix.sh

# the release archive: what HEAD has committed, under enrich-VERSION/, where
# VERSION is META.json's (a test keeps it equal to the control file's)
DISTVERSION := $(shell sed -n 's/^   "version": "\(.*\)",$$/\1/p' $(CURDIR)/META.json)
dist:
	@test -n "$(DISTVERSION)" || { echo "dist: META.json has no version" >&2; exit 1; }
	@git cat-file -e HEAD:META.json || { echo "dist: META.json is not committed" >&2; exit 1; }
	@git diff --quiet HEAD -- || echo "dist: uncommitted changes are not in the archive" >&2
	git archive --format=zip --prefix=enrich-$(DISTVERSION)/ -o enrich-$(DISTVERSION).zip HEAD
	@echo "dist: enrich-$(DISTVERSION).zip"

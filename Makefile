# walsafe build. `make` builds libwalsafe.a and the programs; `make check` runs every test.
# SANITIZE=1 builds with ASan + UBSan (what `make check` uses for the unit tests).

PREFIX  ?= /usr/local
DESTDIR ?=
CC      ?= cc
PKGS     = libzstd libcrypto
CFLAGS  ?= -O2 -g
# libcurl: headers only; common/storage/curl_api.c loads the library when a network repo is used.
CFLAGS  += -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wshadow -Wformat=2 -Icommon \
           $(shell pkg-config --cflags $(PKGS) libcurl libpq)
LDLIBS  += $(shell pkg-config --libs $(PKGS)) -lpthread -ldl

ifeq ($(FUZZ),1)
# libFuzzer (tests/fuzz): the library instrumented for coverage under ASan + UBSan, built with
# clang; each harness is linked with libFuzzer's main.
CC       = clang
CFLAGS  += -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer \
           -fno-sanitize-recover=all
BUILD   ?= build/fuzz
else ifeq ($(COVERAGE),1)
# make coverage: gcov counters, no optimisation (each line counts where it is written). Without
# the optimiser's value ranges -Wformat-truncation flags snprintf calls the other builds accept.
CFLAGS  += -O0 --coverage -Wno-format-truncation
LDFLAGS += --coverage
BUILD   ?= build/coverage
# Processes that end with _exit() write their counts too (tests/gcov_exit.c, in the library).
COV_OBJ  = $(BUILD)/tests/gcov_exit.o
else ifeq ($(SANITIZE),1)
CFLAGS  += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
LDFLAGS += -fsanitize=address,undefined
BUILD   ?= build/asan
else
BUILD   ?= build/release
endif

LIB_SRC  = $(wildcard common/*/*.c)
LIB_OBJ  = $(LIB_SRC:%.c=$(BUILD)/%.o) $(COV_OBJ)
LIB      = $(BUILD)/libwalsafe.a
PROGRAMS = wal-push wal-fetch basebackup wal-prune wal-receive logicalbackup
BINS     = $(PROGRAMS:%=$(BUILD)/bin/%)
UNIT_SRC = $(wildcard tests/unit/test_*.c)
UNIT_BIN = $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
# Helper programs the integration tests run (fault proxy, ...): one .c file each.
TOOL_SRC = $(wildcard tests/tools/*.c)
TOOL_BIN = $(TOOL_SRC:tests/tools/%.c=$(BUILD)/tests/tools/%)
# Fuzzing harnesses: tests/fuzz/fuzz_<name>.c, seeds in tests/fuzz/corpus/<name>/, an optional
# dictionary tests/fuzz/<name>.dict (tests/fuzz/run.sh).
FUZZ_SRC = $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BIN = $(FUZZ_SRC:tests/fuzz/%.c=build/fuzz/tests/fuzz/%)
FUZZ_SECONDS ?=

# A stand-in libcurl.so.4 (tests/shim) that t_sftp loads through LD_LIBRARY_PATH.
SHIM_LIB = $(BUILD)/tests/shim/libcurl.so.4

# The archive module (walsafe_archive/, PostgreSQL 15+ archive_library): a shared object over a
# position-independent, uninstrumented build of the library (PIC_DIR), built when the server
# headers of PG_CONFIG's PostgreSQL are installed (Debian: postgresql-server-dev-15); tests load it
# from $(BUILD)/lib by its absolute path, `make install` puts it into the server's pkglibdir.
# PIC_CFLAGS drop the sanitizer and coverage flags, so the release, ASan and coverage builds
# would compile the same objects: they share build/pic/ (make check compiled it twice). The fuzz
# build (clang) keeps its own.
PG_CONFIG  ?= /usr/lib/postgresql/15/bin/pg_config
PG_SERVER_INC := $(shell $(PG_CONFIG) --includedir-server 2>/dev/null)
PG_PKGLIBDIR  := $(shell $(PG_CONFIG) --pkglibdir 2>/dev/null)
HAVE_PG_SERVER := $(if $(PG_SERVER_INC),$(wildcard $(PG_SERVER_INC)/postgres.h))
PIC_CFLAGS = $(filter-out -fsanitize=% -fno-sanitize-recover=% --coverage -O0,$(CFLAGS)) -O2 -fPIC
PIC_DIR  = $(if $(filter 1,$(FUZZ)),$(BUILD)/pic,build/pic)
PIC_OBJ  = $(LIB_SRC:%.c=$(PIC_DIR)/%.o)
PIC_LIB  = $(PIC_DIR)/libwalsafe.a
MODULE   = $(BUILD)/lib/walsafe_archive.so

.SECONDARY:
.PHONY: all module bench-module check check-unit check-fuzz test-build unit integration install clean lint demo bench bench-backup bench-remote bench-recovery bench-logical deps \
        fuzz fuzz-check fuzz-build coverage coverage-build
all: $(BINS) module

ifneq ($(HAVE_PG_SERVER),)
module: $(MODULE)
else
module:
	@echo "walsafe_archive not built: no PostgreSQL server headers at $(PG_CONFIG) (install postgresql-server-dev-15)"
endif

$(PIC_DIR)/%.o: %.c $(wildcard common/*/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(PIC_CFLAGS) -c -o $@ $<

$(PIC_LIB): $(PIC_OBJ)
	@rm -f $@
	ar rcs $@ $^

# PostgreSQL's headers are not -Wextra -Wshadow clean; the library's symbols stay inside the
# module (--exclude-libs), so none can interpose the server's or another module's.
$(MODULE): walsafe_archive/walsafe_archive.c $(PIC_LIB) $(wildcard common/*/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(filter-out -Wextra -Wshadow,$(PIC_CFLAGS)) -I$(PG_SERVER_INC) -shared \
	    -Wl,--exclude-libs,ALL -o $@ $< $(PIC_LIB) -lzstd -lcrypto -lpthread -ldl

$(BUILD)/%.o: %.c $(wildcard common/*/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

$(LIB): $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/bin/%: $(BUILD)/%/main.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# Only basebackup, wal-receive and logicalbackup talk to PostgreSQL, so only they link libpq.
$(BUILD)/bin/basebackup $(BUILD)/bin/wal-receive $(BUILD)/bin/logicalbackup: $(BUILD)/bin/%: $(BUILD)/%/main.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(shell pkg-config --libs libpq) $(LDLIBS)

# The in-memory storage driver (fault injection) is the unit tests' own, not the library's;
# fixture.o is their shared set-up (tests/unit/fixture.h).
UNIT_LIB = $(BUILD)/tests/unit/unit.o $(BUILD)/tests/unit/fixture.o $(BUILD)/tests/unit/storage_mem.o
$(UNIT_SRC:%.c=$(BUILD)/%.o) $(UNIT_LIB): $(wildcard tests/unit/*.h)
$(BUILD)/tests/%: $(BUILD)/tests/unit/%.o $(UNIT_LIB) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/tools/%: tests/tools/%.c $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(LIB) $(LDLIBS)

# replcat opens replication connections (pg/repl.h): it links libpq, as basebackup does.
$(BUILD)/tests/tools/replcat: tests/tools/replcat.c $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(LIB) $(shell pkg-config --libs libpq) $(LDLIBS)

build/fuzz/tests/fuzz/%: tests/fuzz/%.c build/fuzz/libwalsafe.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -fsanitize=fuzzer -o $@ $< build/fuzz/libwalsafe.a $(LDLIBS)

# fuzz-check: each harness FUZZ_SECONDS (default 20) on a copy of its committed corpus, failing
# on any crash (part of `make check`). fuzz: long runs (default 600 s each) that keep what they
# find in build/fuzz/corpus/<name>/ (tests/fuzz/run.sh says how to adopt new seeds).
fuzz-build:
	$(MAKE) FUZZ=1 $(FUZZ_BIN)
fuzz-check: fuzz-build
	tests/fuzz/run.sh check $(or $(FUZZ_SECONDS),20) $(FUZZ_BIN)
fuzz: fuzz-build
	tests/fuzz/run.sh long $(or $(FUZZ_SECONDS),600) $(FUZZ_BIN)

# Not instrumented: it only passes calls on to the real libcurl.
$(SHIM_LIB): tests/shim/libcurl_no_host_keys.c
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -D_GNU_SOURCE -O2 -Wall -Wextra -Werror -fPIC -shared \
	    $(shell pkg-config --cflags libcurl) -o $@ $< -ldl

# Unit tests run under ASan/UBSan; integration tests use the release build of the programs.
unit:
	$(MAKE) SANITIZE=1 unit-run
unit-run: $(UNIT_BIN)
	@$(SAN_ENV) tests/unit/run.sh $(UNIT_BIN)

# Sanitizer reports must fail loudly, also inside programs PostgreSQL runs for us (exit 66 is
# neither success nor "not found" for wal-fetch).
SAN_ENV = ASAN_OPTIONS=exitcode=66:detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1:exitcode=66

integration: all $(TOOL_BIN) $(SHIM_LIB) $(BUILD)/tests/test_storage
	$(SAN_ENV) tests/integration/run.sh $(BUILD)/bin
# The ASan pass leaves out the scenarios tests/integration/release_pass_only lists: each runs
# under ASan against a local repository, and the S3 and SFTP drivers by other tests.
ifeq ($(SANITIZE),1)
integration: export IT_PASS = asan
endif

# Everything: unit tests and the integration suite under ASan/UBSan, then the integration
# suite again on the optimised build that users run. The three builds first, one job per CPU
# (the tests then run as before: their own parallelism is IT_JOBS and FUZZ_JOBS).
NPROC := $(shell nproc 2>/dev/null || echo 1)
test-build: all $(UNIT_BIN) $(TOOL_BIN) $(SHIM_LIB) $(BUILD)/tests/test_storage
check: deps
	scripts/banned.sh
	scripts/layers.sh
	$(MAKE) -j$(NPROC) test-build man
	$(MAKE) -j$(NPROC) SANITIZE=1 test-build
	$(MAKE) -j$(NPROC) fuzz-build
	$(MAKE) man-check
	$(MAKE) -j2 -Orecurse check-unit check-fuzz
	$(MAKE) SANITIZE=1 integration
	$(MAKE) integration

# The unit tests and fuzz-check at the same time, each one's lines printed whole when it ends:
# fuzz-check runs each harness a fixed time (FUZZ_SECONDS) on its two cores, so the unit tests
# (one process at a time, a third of their time asleep in waits they test) take no time of
# their own; the harnesses only run fewer inputs meanwhile.
check-unit:
	$(MAKE) SANITIZE=1 unit-run
check-fuzz:
	$(MAKE) fuzz-check

# Line coverage of common/, per layer folder, from the unit tests and the integration suite
# (tests/coverage.sh; lcov is installed on first use, `make check` does not need it). Takes the
# integration suite's time; IT_JOBS (default 1) and TEST_TIMEOUT (default 300) reach its runner.
coverage:
	WALSAFE_COVERAGE=1 scripts/install-deps.sh
	$(MAKE) COVERAGE=1 coverage-build
	tests/coverage.sh build/coverage
coverage-build: all $(UNIT_BIN) $(TOOL_BIN) $(SHIM_LIB)

# Installs the Debian packages it needs (as root; a no-op when present).
deps:
	scripts/install-deps.sh

demo: deps
	$(MAKE) all
	scripts/demo.sh $(BUILD)/bin

bench: all
	bench/wal.sh $(BUILD)/bin

# The archive module against archive_command = wal-push and pgBackRest's async archive-push, each
# driven by a real PostgreSQL archiver (bench/wal_module.sh: SEGMENTS, ROUNDS, MODULE_RSS, ...).
bench-module: all
	MODE=module bench/wal.sh $(BUILD)/bin

# Full backups and restores against pgBackRest and pg_basebackup, then (MODE=incr) incremental
# backups and delta restores against pgBackRest's.
bench-backup: all
	bench/backup.sh $(BUILD)/bin
	MODE=incr bench/backup.sh $(BUILD)/bin

# Remote create (BASE_BACKUP over TCP 127.0.0.1) against local create and pg_basebackup -Ft with
# client-side zstd, on the same pgbench data set (SCALE, RUNS).
bench-remote: all
	bench/remote.sh $(BUILD)/bin

# A real PostgreSQL replaying RECOVERY_GB (default 3) GiB of archived WAL: wal-fetch with and
# without prefetch against pgBackRest async archive-get.
bench-recovery: all
	bench/recovery.sh $(BUILD)/bin

# logicalbackup create (pg_dump streamed through zstd and encryption into the repository) against
# pg_dump -Fc | zstd to a local file, on a pgbench database (SCALE, RUNS).
bench-logical: all
	bench/logical.sh $(BUILD)/bin

install: all
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 0755 $(BINS) $(DESTDIR)$(PREFIX)/bin/
ifneq ($(HAVE_PG_SERVER),)
	install -d $(DESTDIR)$(PG_PKGLIBDIR)
	install -m 0755 $(MODULE) $(DESTDIR)$(PG_PKGLIBDIR)/
endif

lint:
	clang-format --dry-run --Werror common/*/*.[ch] */main.c tests/unit/*.[ch] tests/fuzz/*.[ch] \
	    tests/gcov_exit.c walsafe_archive/*.c
	cppcheck --quiet --error-exitcode=1 --enable=warning,portability --inline-suppr -Icommon common */main.c
	scripts/layers.sh
	scripts/banned.sh

clean:
	rm -rf build

# ---- manual pages, install, uninstall, Debian package ----
.PHONY: uninstall install-man man man-check deb
# Pages are scdoc sources in docs/man/<name>.<section>.scd, built into build/man/. `make` builds
# them when scdoc is installed and still works without it; `make check` needs it (man-check,
# tests/man_check.sh). scdoc 1.11 writes .nh and .ad l before .TH, which resets them: the sed
# repeats them after it, so an option such as --target-time is never hyphenated. VERSION is
# read from common/base/cli.h, the one place it is written, so --version and the package agree.
VERSION   := $(shell sed -n 's/^\#define WS_VERSION "\(.*\)"$$/\1/p' common/base/cli.h)
SCDOC     := $(shell command -v scdoc 2>/dev/null)
MAN_SRC    = $(wildcard docs/man/*.scd)
MAN_ALL    = $(MAN_SRC:docs/man/%.scd=build/man/%)
# What install puts under share/man: the page of every program built, and walsafe.conf(5).
MAN1       = $(PROGRAMS:%=build/man/%.1)
MAN5       = build/man/walsafe.conf.5
DEB        = build/walsafe_$(VERSION)_amd64.deb

ifneq ($(SCDOC),)
all: man
endif
man: $(MAN_ALL)
build/man/%: docs/man/%.scd
	@test -n "$(SCDOC)" || { echo "scdoc is not installed (apt-get install scdoc)" >&2; exit 1; }
	@mkdir -p $(dir $@)
	scdoc < $< | sed -e '/^\.TH /a .nh' -e '/^\.TH /a .ad l' > $@.tmp && mv $@.tmp $@

# Every option of each program's --help in its page and back, every config key in
# walsafe.conf(5) and back, each page rendered by man without a warning; then install and
# uninstall into a temp DESTDIR (part of `make check`).
man-check: all man
	tests/man_check.sh $(BUILD)/bin build/man $(PROGRAMS)
	tests/install_check.sh $(PROGRAMS)

# make install also runs install-man.
install: install-man
install-man: all
ifneq ($(SCDOC),)
	install -d $(DESTDIR)$(PREFIX)/share/man/man1 $(DESTDIR)$(PREFIX)/share/man/man5
	install -m 0644 $(MAN1) $(DESTDIR)$(PREFIX)/share/man/man1/
	install -m 0644 $(MAN5) $(DESTDIR)$(PREFIX)/share/man/man5/
else
	@echo "scdoc is not installed: manual pages not installed (apt-get install scdoc)" >&2
endif

# Removes exactly the files install puts there (directories stay: they may hold other files),
# the archive module too where install puts one (MODULE, HAVE_PG_SERVER: walsafe_archive).
uninstall:
	rm -f $(PROGRAMS:%=$(DESTDIR)$(PREFIX)/bin/%) \
	      $(MAN1:build/man/%=$(DESTDIR)$(PREFIX)/share/man/man1/%) \
	      $(MAN5:build/man/%=$(DESTDIR)$(PREFIX)/share/man/man5/%) \
	      $(if $(and $(MODULE),$(HAVE_PG_SERVER)),$(DESTDIR)$(PG_PKGLIBDIR)/$(notdir $(MODULE)))

# build/walsafe_<version>_amd64.deb with dpkg-deb from the release build (scripts/deb/build.sh).
# Programs and pages go through `make install` into a staging tree, so the package holds
# exactly what install puts there.
deb:
	$(MAKE) SANITIZE= COVERAGE= FUZZ= BUILD=build/release all man
	rm -rf build/deb
	$(MAKE) SANITIZE= COVERAGE= FUZZ= BUILD=build/release install DESTDIR=$(CURDIR)/build/deb PREFIX=/usr
	scripts/deb/build.sh build/deb $(VERSION) $(DEB)

# The release pass of the integration suite also installs that package once (t_deb.sh; the
# ASan pass skips it).
ifeq ($(BUILD),build/release)
integration: deb
integration: export IT_DEB = $(CURDIR)/$(DEB)
endif

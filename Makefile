# Ember — one Makefile for the library, the jobs, the examples, the `ember` command, tests and benchmarks.
#
#   make            build everything under build/
#   make deps       install missing Debian packages (apt-get as root; otherwise prints the command)
#   make test       deps + build + every test suite; ends with "N passed, N failed"
#   make demo       deps + build + the shipped jobs on their defaults through `ember run`
#   make bench      benchmarks against baselines, printed as a markdown table
#   make SANITIZE=address,undefined test
#
# Flags come from pkg-config. Our own flags live in EM_CFLAGS so that a command-line CFLAGS+=... adds to them
# instead of replacing them (a command-line variable overrides every assignment in the Makefile).

CC       := gcc
PKGS     := ompi-c hdf5 zlib sqlite3
SANITIZE ?=
BUILD    := build

# Recursively expanded (=) on purpose: pkg-config is asked only when a recipe needs the flags, i.e. after `deps` ran.
PKG_CFLAGS = $(patsubst -I%,-isystem %,$(shell pkg-config --cflags $(PKGS) 2>/dev/null))
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lpthread -lm
CRIT_CFLAGS = $(patsubst -I%,-isystem %,$(shell pkg-config --cflags criterion 2>/dev/null))
CRIT_LIBS   = $(shell pkg-config --libs criterion 2>/dev/null)

WARN      := -Wall -Wextra -Wpedantic -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wvla -Werror
EM_CFLAGS  = -std=c11 -O2 -g -D_GNU_SOURCE $(WARN) -Iinclude -I. $(PKG_CFLAGS) -MMD -MP
EM_LDFLAGS =
ifneq ($(SANITIZE),)
EM_CFLAGS  += -fsanitize=$(SANITIZE) -fno-omit-frame-pointer
EM_LDFLAGS += -fsanitize=$(SANITIZE)
endif

LIB_SRC   := $(wildcard runtime/*.c operators/*.c operators/sources/*.c operators/sinks/*.c scheduler/*.c)
JOBCOMMON := $(wildcard jobs/common/*.c)
JOB_SRC   := $(wildcard jobs/*.c)
EX_SRC    := $(wildcard examples/*.c)
CLI_SRC   := $(wildcard scheduler/cli/*.c)
UNIT_SRC  := $(wildcard tests/unit/test_*.c)
MPIT_SRC  := $(wildcard tests/mpi/*.c)
BENCH_SRC := $(wildcard bench/*.c)

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))

LIB       := $(BUILD)/lib/libember.a
JOBLIB    := $(BUILD)/lib/libemberjobs.a
JOBS      := $(patsubst jobs/%.c,$(BUILD)/bin/%,$(JOB_SRC))
EXAMPLES  := $(patsubst examples/%.c,$(BUILD)/examples/%,$(EX_SRC))
CLI       := $(BUILD)/bin/ember
UNITS     := $(patsubst tests/unit/%.c,$(BUILD)/tests/unit/%,$(UNIT_SRC))
MPITESTS  := $(patsubst tests/mpi/%.c,$(BUILD)/tests/mpi/%,$(MPIT_SRC))
BENCHES   := $(patsubst bench/%.c,$(BUILD)/bench/%,$(BENCH_SRC))

.PHONY: all deps test demo bench clean
all: $(LIB) $(JOBS) $(EXAMPLES) $(CLI) $(UNITS) $(MPITESTS) $(BENCHES)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(EM_CFLAGS) $(CFLAGS) -c $< -o $@

# Unit tests need Criterion's headers.
$(BUILD)/obj/tests/unit/%.o: tests/unit/%.c
	@mkdir -p $(dir $@)
	$(CC) $(EM_CFLAGS) $(CRIT_CFLAGS) $(CFLAGS) -c $< -o $@

$(LIB): $(call obj,$(LIB_SRC))
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(JOBLIB): $(call obj,$(JOBCOMMON)) $(LIB)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $(call obj,$(JOBCOMMON))

$(BUILD)/bin/%: $(BUILD)/obj/jobs/%.o $(JOBLIB) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(EM_LDFLAGS) $(LDFLAGS) $< $(JOBLIB) $(LIB) $(PKG_LIBS) -o $@

$(BUILD)/examples/%: $(BUILD)/obj/examples/%.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(EM_LDFLAGS) $(LDFLAGS) $< $(LIB) $(PKG_LIBS) -o $@

$(CLI): $(call obj,$(CLI_SRC)) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(EM_LDFLAGS) $(LDFLAGS) $(call obj,$(CLI_SRC)) $(LIB) $(PKG_LIBS) -o $@

$(BUILD)/tests/unit/%: $(BUILD)/obj/tests/unit/%.o $(JOBLIB) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(EM_LDFLAGS) $(LDFLAGS) $< $(JOBLIB) $(LIB) $(PKG_LIBS) $(CRIT_LIBS) -o $@

# Runtime unit tests run ranks over a fake transport (tests/unit/fakecomm.c implements runtime/comm.h without MPI):
# they link the runtime objects minus comm.o, and no MPI library, so nothing in them can reach MPI.
RT_NOMPI_OBJ := $(call obj,$(filter-out runtime/comm.c,$(wildcard runtime/*.c)))
FAKECOMM_UNITS := $(BUILD)/tests/unit/test_loop $(BUILD)/tests/unit/test_membership
ZLIB_LIBS = $(shell pkg-config --libs zlib 2>/dev/null)
$(FAKECOMM_UNITS): $(BUILD)/tests/unit/%: $(BUILD)/obj/tests/unit/%.o $(BUILD)/obj/tests/unit/fakecomm.o $(RT_NOMPI_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(EM_LDFLAGS) $(LDFLAGS) $^ $(ZLIB_LIBS) -lpthread -lm $(CRIT_LIBS) -o $@

$(BUILD)/tests/mpi/%: $(BUILD)/obj/tests/mpi/%.o $(JOBLIB) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(EM_LDFLAGS) $(LDFLAGS) $< $(JOBLIB) $(LIB) $(PKG_LIBS) -o $@

# Benchmark programs: baselines do not call libember (linking it costs them nothing); ember ones do.
$(BUILD)/bench/%: $(BUILD)/obj/bench/%.o $(JOBLIB) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(EM_LDFLAGS) $(LDFLAGS) $< $(JOBLIB) $(LIB) $(PKG_LIBS) -o $@

deps:
	@sh scripts/deps.sh

test:
	@$(MAKE) --no-print-directory deps
	@$(MAKE) --no-print-directory -j2 all
	@SANITIZE="$(SANITIZE)" sh tests/run.sh

demo:
	@$(MAKE) --no-print-directory deps
	@$(MAKE) --no-print-directory -j2 all
	@sh scripts/demo.sh

bench:
	@$(MAKE) --no-print-directory deps
	@$(MAKE) --no-print-directory -j2 all
	@sh bench/run.sh

clean:
	rm -rf $(BUILD)

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)

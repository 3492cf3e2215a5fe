# libllmserve: plain GNU make.
#   make                 library (lib/libllmserve.so.X.Y.Z, .so.X, .so, .a)
#   make examples        example programs in build/bin/
#   make test            every test (cmocka); SANITIZE=address,undefined for ASan+UBSan
#   make check           test + check-exports + check-headers
#   make abi-check       compare the ABI with the committed baseline (libabigail)
#   make fuzz            build and run the GGUF fuzzer (clang, libFuzzer)
#   make install/uninstall  honour PREFIX and DESTDIR

# The version lives in include/llmserve_version.h only.
ver = $(shell sed -n 's/^\#define LLMS_VERSION_$(1) \([0-9]*\).*/\1/p' include/llmserve_version.h)
MAJOR := $(call ver,MAJOR)
MINOR := $(call ver,MINOR)
PATCH := $(call ver,PATCH)
VERSION := $(MAJOR).$(MINOR).$(PATCH)

PREFIX ?= /usr/local
DESTDIR ?=
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include

CC ?= cc
CXX ?= c++
OPT ?= -O2
CFLAGS_BASE := -std=c11 $(OPT) -g -Wall -Wextra -fPIC -fvisibility=hidden -D_GNU_SOURCE \
	-Iinclude -Isrc -pthread
LIBS := -lopenblas -lm -lpthread
SANITIZE ?=
FIXTURES ?= $(abspath ../shared/fixtures)

comma := ,
ifneq ($(SANITIZE),)
BUILD := build/san-$(subst $(comma),-,$(SANITIZE))
SANFLAGS := -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=all
else
BUILD := build
SANFLAGS :=
endif
CFLAGS := $(CFLAGS_BASE) $(SANFLAGS) $(EXTRA_CFLAGS)
LDFLAGS := $(SANFLAGS)

SRCS := $(sort $(wildcard src/*/*.c src/*/*/*.c))
OBJS := $(SRCS:%.c=$(BUILD)/obj/%.o)
# The installable libraries are always built without sanitizers.
LIB_OBJS := $(SRCS:%.c=build/obj/%.o)
DEPS := $(OBJS:.o=.d)
GEN_HDRS :=

SONAME := libllmserve.so.$(MAJOR)
SHLIB := lib/libllmserve.so.$(VERSION)
STLIB := lib/libllmserve.a
MAPFILE := lib/libllmserve.map

TEST_SRCS := $(sort $(wildcard tests/test_*.c))
TEST_BINS := $(TEST_SRCS:tests/%.c=$(BUILD)/tests/%)
TEST_SUPPORT := $(wildcard tests/support/*.c)
EXAMPLE_SRCS := $(sort $(wildcard examples/*.c))
EXAMPLE_BINS := $(EXAMPLE_SRCS:examples/%.c=build/bin/%)
BENCH_SRCS := $(sort $(wildcard bench/*.c))
BENCH_BINS := $(BENCH_SRCS:bench/%.c=build/bin/%)
PUBLIC_HDRS := include/llmserve.h include/llmserve_version.h

.PHONY: install-check deps ci all lib examples test check check-exports check-headers abi-check abi-baseline \
	install uninstall clean fuzz run bench
all: lib

lib: $(SHLIB) lib/$(SONAME) lib/libllmserve.so $(STLIB)

build/obj/%.o: %.c $(GEN_HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) $(EXTRA_CFLAGS) -MMD -MP -c $< -o $@

ifneq ($(SANITIZE),)
$(BUILD)/obj/%.o: %.c $(GEN_HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@
endif

-include $(DEPS) $(LIB_OBJS:.o=.d)

$(SHLIB): $(LIB_OBJS) $(MAPFILE)
	$(CC) -shared -Wl,-soname,$(SONAME) -Wl,--version-script=$(MAPFILE) -Wl,-z,defs \
		-o $@ $(LIB_OBJS) $(LIBS)

lib/$(SONAME): $(SHLIB)
	ln -sf $(notdir $(SHLIB)) $@
lib/libllmserve.so: lib/$(SONAME)
	ln -sf $(SONAME) $@

# The static library is one relocatable object with the hidden symbols made
# local, so internal names cannot clash with the host's.
$(STLIB): $(LIB_OBJS)
	@mkdir -p build
	ld -r -o build/llmserve_all.o $(LIB_OBJS)
	objcopy --localize-hidden build/llmserve_all.o
	rm -f $@ && ar rcs $@ build/llmserve_all.o

# Examples use only the public API, through the shared library.
# Benchmarks (bench/) build the same way, into the same folder.
examples: $(EXAMPLE_BINS) $(BENCH_BINS)
EXAMPLE_CC = $(CC) -std=c11 $(OPT) -g -Wall -Wextra -D_GNU_SOURCE -Iinclude -o $@ $< \
	-Llib -lllmserve -Wl,-rpath,'$$ORIGIN/../../lib' -lm -lpthread
build/bin/%: examples/%.c $(SHLIB) lib/libllmserve.so $(PUBLIC_HDRS) $(wildcard examples/common/*.h)
	@mkdir -p build/bin
	$(EXAMPLE_CC)
build/bin/%: bench/%.c $(SHLIB) lib/libllmserve.so $(PUBLIC_HDRS) $(wildcard examples/common/*.h)
	@mkdir -p build/bin
	$(EXAMPLE_CC)

# Tests link an archive of the objects (not the .so) so they can reach the
# internal interfaces; the archive pulls in only the objects a test uses.
TEST_ARCHIVE := $(BUILD)/libllmserve_test.a
$(TEST_ARCHIVE): $(OBJS)
	rm -f $@ && ar rcs $@ $(OBJS)

$(BUILD)/tests/%: tests/%.c $(TEST_ARCHIVE) $(TEST_SUPPORT)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests -o $@ $< $(TEST_SUPPORT) $(TEST_ARCHIVE) $(LDFLAGS) $(LIBS) -lcmocka -lcjson

test: $(TEST_BINS) examples
	@LLMS_FIXTURES=$(FIXTURES) LLMS_BIN=$(abspath build/bin) sh tests/run_tests.sh $(TEST_BINS)

check: test check-exports check-headers

check-exports: $(SHLIB)
	@bad=$$(nm -D --defined-only $(SHLIB) | awk '{print $$3}' | grep -v '^llms_' | grep -v '^LLMS_' || true); \
	if [ -n "$$bad" ]; then echo "check-exports: symbols outside the llms_ prefix:"; echo "$$bad"; exit 1; fi; \
	echo "check-exports: OK ($$(nm -D --defined-only $(SHLIB) | grep -c ' T llms_') llms_ functions)"

check-headers:
	@mkdir -p $(BUILD)/hdr
	@for h in $(PUBLIC_HDRS); do \
		printf '#include "%s"\nint llms_header_check;\n' $$(basename $$h) > $(BUILD)/hdr/one.c; \
		cp $(BUILD)/hdr/one.c $(BUILD)/hdr/one.cpp; \
		$(CC) -std=c99 -pedantic -Wall -Wextra -Werror -Iinclude -c $(BUILD)/hdr/one.c -o /dev/null || exit 1; \
		$(CXX) -std=c++11 -Wall -Wextra -Werror -Iinclude -c $(BUILD)/hdr/one.cpp -o /dev/null || exit 1; \
		echo "check-headers: $$h OK (C99, C++11)"; \
	done

ABI_BASELINE := lib/abi/libllmserve.abi
ABI_SUPPR := lib/abi/suppressions.abignore
abi-check: $(SHLIB)
	@sh lib/abi/abi-check.sh $(SHLIB) $(ABI_BASELINE) $(ABI_SUPPR)

# Regenerate the baseline (only together with a soname major bump, or for
# compatible additions).
abi-baseline: $(SHLIB)
	abidw --no-corpus-path --drop-private-types --headers-dir include --out-file $(ABI_BASELINE) $(SHLIB)

install: lib
	install -d $(DESTDIR)$(LIBDIR)/pkgconfig $(DESTDIR)$(INCLUDEDIR)
	install -m 644 $(PUBLIC_HDRS) $(wildcard include/llmserve.hpp) $(DESTDIR)$(INCLUDEDIR)/
	install -m 755 $(SHLIB) $(DESTDIR)$(LIBDIR)/
	ln -sf $(notdir $(SHLIB)) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/libllmserve.so
	install -m 644 $(STLIB) $(DESTDIR)$(LIBDIR)/
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@LIBDIR@|$(LIBDIR)|g' -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|g' \
		-e 's|@VERSION@|$(VERSION)|g' pkgconfig/llmserve.pc.in > $(DESTDIR)$(LIBDIR)/pkgconfig/llmserve.pc

uninstall:
	rm -f $(addprefix $(DESTDIR)$(INCLUDEDIR)/,llmserve.h llmserve_version.h llmserve.hpp)
	rm -f $(DESTDIR)$(LIBDIR)/libllmserve.so* $(DESTDIR)$(LIBDIR)/libllmserve.a
	rm -f $(DESTDIR)$(LIBDIR)/pkgconfig/llmserve.pc

# libFuzzer target for the GGUF reader; FUZZ_SECONDS bounds the run.
FUZZ_SECONDS ?= 60
fuzz:
	@mkdir -p build/fuzz
	clang -std=c11 -O1 -g -D_GNU_SOURCE -Iinclude -Isrc -fsanitize=fuzzer,address,undefined \
		-fno-sanitize-recover=all \
		-o build/fuzz/fuzz_gguf tests/fuzz/fuzz_gguf.c \
		src/core/alloc.c src/core/error.c $(filter src/gguf/%.c,$(SRCS)) src/quant/types.c
	@mkdir -p build/fuzz/corpus
	build/fuzz/fuzz_gguf -max_total_time=$(FUZZ_SECONDS) -max_len=65536 -rss_limit_mb=2048 \
		build/fuzz/corpus tests/fuzz/corpus

# Installs into a scratch DESTDIR, then builds and runs a program against the
# installed copy through pkg-config alone (dynamic and static), and uninstalls.
install-check: lib
	@rm -rf build/install-check && mkdir -p build/install-check
	$(MAKE) --no-print-directory install DESTDIR=$(abspath build/install-check) PREFIX=/usr/local >/dev/null
	@root=$(abspath build/install-check); pc=$$root/usr/local/lib/pkgconfig; \
	cflags=$$(PKG_CONFIG_PATH=$$pc PKG_CONFIG_SYSROOT_DIR=$$root pkg-config --cflags llmserve) && \
	libs=$$(PKG_CONFIG_PATH=$$pc PKG_CONFIG_SYSROOT_DIR=$$root pkg-config --libs llmserve) && \
	slibs=$$(PKG_CONFIG_PATH=$$pc PKG_CONFIG_SYSROOT_DIR=$$root pkg-config --static --libs llmserve) && \
	printf '#include <llmserve.h>\n#include <stdio.h>\n#include <string.h>\nint main(void){printf("%%s\\n", llms_version_string());return strcmp(llms_version_string(), "%s") != 0;}\n' $(VERSION) > build/install-check/t.c && \
	$(CC) $$cflags -o build/install-check/t build/install-check/t.c $$libs && \
	LD_LIBRARY_PATH=$$root/usr/local/lib build/install-check/t && \
	$(CC) $$cflags -o build/install-check/ts build/install-check/t.c -Wl,-Bstatic $$(echo $$slibs | sed 's/-lllmserve//') $$root/usr/local/lib/libllmserve.a -Wl,-Bdynamic -lopenblas -lm -lpthread && \
	build/install-check/ts && \
	$(MAKE) --no-print-directory uninstall DESTDIR=$$root PREFIX=/usr/local >/dev/null && \
	left=$$(find $$root/usr \( -type f -o -type l \)) && [ -z "$$left" ] || { echo "install-check: left behind: $$left"; exit 1; }; \
	echo "install-check: OK (pkg-config, shared and static, uninstall clean)"

clean:
	rm -rf build lib/libllmserve.so* lib/libllmserve.a

# ---- set-up and the two top-level jobs --------------------------------------
# Debian packages the build, the tests and the examples need. `make deps`
# installs the missing ones when run as root (and says what to install
# otherwise).
DEB_PACKAGES := build-essential pkg-config libopenblas-dev libcmocka-dev libcjson-dev \
	abigail-tools clang libclang-rt-14-dev unicode-data
deps:
	@missing=$$(for p in $(DEB_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | \
		grep -q 'install ok installed' || echo $$p; done); \
	if [ -z "$$missing" ]; then echo "deps: all Debian packages present"; \
	elif [ "$$(id -u)" = 0 ]; then \
		echo "deps: installing$$(echo $$missing | sed 's/^/ /')"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	else echo "deps: missing Debian packages (run as root: apt-get install $$missing)"; exit 1; fi

# The test job CI runs: everything in one command.
ci: deps
	$(MAKE) check
	$(MAKE) abi-check
	$(MAKE) install-check
	$(MAKE) SANITIZE=address,undefined test
	$(MAKE) fuzz FUZZ_SECONDS=$(CI_FUZZ_SECONDS)
CI_FUZZ_SECONDS ?= 120

# The main job: a generation demo on a fixture model (MODEL=path.gguf to use your own).
MODEL ?= $(FIXTURES)/models/aidreams260K.gguf
PROMPT ?= The robot
run: deps lib examples
	build/bin/llms-generate --model "$(MODEL)" --prompt "$(PROMPT)" --max-tokens 90 --temperature 0

# libllmserve: plain GNU make.
#   make                 library (lib/libllmserve.so.X.Y.Z, .so.X, .so, .a)
#   make examples        example programs in build/bin/
#   make test            every test (cmocka); SANITIZE=address,undefined for ASan+UBSan
#   make check           test + check-exports + check-headers
#   make abi-check       compare the ABI with the committed baseline (libabigail)
#   make fuzz            build and run the GGUF fuzzer (clang, libFuzzer)
#   make install/uninstall  honour PREFIX and DESTDIR; install-check tries them
#   make tsan-test / python-test / go-test / cpp-test / server-test
#   make bench           benchmarks (bench/), JSON report in build/bench/
#   make bench-compare   the same models through llama.cpp and llms-bench, interleaved
#   make ci              everything CI runs (installs Debian packages as root)
#   make run             the main job: the HTTP server on MODEL=path.gguf

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

# Compute shaders: GLSL compiled to SPIR-V (Vulkan 1.2 = SPIR-V 1.5, what
# lavapipe and Debian 12's loader take), validated, and embedded as arrays
# in a generated C file compiled into the library.
SHADERS := $(sort $(wildcard shaders/*.comp))
SPVS := $(SHADERS:shaders/%.comp=build/spv/%.spv)
GEN_SRCS := build/gen/vk_shaders.c
SRCS := $(sort $(wildcard src/*/*.c src/*/*/*.c)) $(GEN_SRCS)
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
# llms-decode-parts links the library's objects (its own rule, below).
BENCH_SRCS := $(filter-out bench/llms-decode-parts.c,$(sort $(wildcard bench/*.c)))
BENCH_BINS := $(BENCH_SRCS:bench/%.c=build/bin/%)
PUBLIC_HDRS := include/llmserve.h include/llmserve_version.h

.PHONY: bench-compare install-check deps ci all lib examples test check tsan-test check-exports check-headers abi-check abi-baseline \
	install uninstall clean fuzz run bench python-test go-test cpp-test server-test
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

build/spv/%.spv: shaders/%.comp $(wildcard shaders/*.glsl)
	@mkdir -p build/spv
	glslangValidator -V --target-env vulkan1.2 -Ishaders -o $@ $< >/dev/null || \
		glslangValidator -V --target-env vulkan1.2 -Ishaders -o $@ $<
	spirv-val --target-env vulkan1.2 $@

build/gen/vk_shaders.c: $(SPVS) shaders/embed.sh
	@mkdir -p build/gen
	sh shaders/embed.sh $@ $(SPVS)

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
# The HTTP server also links Debian's libmicrohttpd and cJSON.
build/bin/llms-server: examples/llms-server.c $(SHLIB) lib/libllmserve.so $(PUBLIC_HDRS) $(wildcard examples/common/*.h)
	@mkdir -p build/bin
	$(EXAMPLE_CC) -lmicrohttpd -lcjson
build/bin/%: bench/%.c $(SHLIB) lib/libllmserve.so $(PUBLIC_HDRS) $(wildcard examples/common/*.h) $(wildcard bench/*.h)
	@mkdir -p build/bin
	$(EXAMPLE_CC)
# llms-bench measures OpenBLAS sgemm beside the prompt figures (the float
# weights' compute ceiling), so it links the library's BLAS too.
build/bin/llms-bench: bench/llms-bench.c $(SHLIB) lib/libllmserve.so $(PUBLIC_HDRS) $(wildcard examples/common/*.h) $(wildcard bench/*.h)
	@mkdir -p build/bin
	$(EXAMPLE_CC) -lopenblas

# The C++ wrapper (include/llmserve.hpp, header-only) and its example,
# built as C++17 against the shared library.
CXX_PROG = $(CXX) -std=c++17 $(OPT) -g -Wall -Wextra -Iinclude -o $@ $< \
	-Llib -lllmserve -Wl,-rpath,'$$ORIGIN/../../lib'
examples: build/bin/cpp-example
build/bin/cpp-example: examples/cpp_example.cpp include/llmserve.hpp $(SHLIB) lib/libllmserve.so $(PUBLIC_HDRS)
	@mkdir -p build/bin
	$(CXX_PROG)
build/tests/test_cpp: tests/test_cpp.cpp include/llmserve.hpp $(SHLIB) lib/libllmserve.so $(PUBLIC_HDRS)
	@mkdir -p build/tests
	$(CXX_PROG)

# Tests link an archive of the objects (not the .so) so they can reach the
# internal interfaces; the archive pulls in only the objects a test uses.
TEST_ARCHIVE := $(BUILD)/libllmserve_test.a
$(TEST_ARCHIVE): $(OBJS)
	rm -f $@ && ar rcs $@ $(OBJS)

$(BUILD)/tests/%: tests/%.c $(TEST_ARCHIVE) $(TEST_SUPPORT)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests -o $@ $< $(TEST_SUPPORT) $(TEST_ARCHIVE) $(LDFLAGS) $(LIBS) -lcmocka -lcjson

# llms-decode-parts looks inside the model (its weight matrices, the
# context's thread pool), so it links the objects' archive as the tests do.
# Built by `make bench` only (an unsanitized build).
build/bin/llms-decode-parts: bench/llms-decode-parts.c $(TEST_ARCHIVE) $(wildcard bench/*.h) $(wildcard examples/common/*.h)
	@mkdir -p build/bin
	$(CC) $(CFLAGS) -o $@ $< $(TEST_ARCHIVE) $(LDFLAGS) $(LIBS)

test: $(TEST_BINS) build/tests/test_cpp examples
	@LLMS_FIXTURES=$(FIXTURES) LLMS_BIN=$(abspath build/bin) sh tests/run_tests.sh $(TEST_BINS) build/tests/test_cpp

check: test check-exports check-headers

# ThreadSanitizer run of the concurrent tests (the scheduler's), built in
# their own folder. OpenBLAS runs single-threaded: its threads are not
# instrumented. LLMS_SOAK_SECONDS sets the soak's length (default 10 here).
TSAN_TESTS := test_scheduler test_kvcache
tsan-test:
	$(MAKE) --no-print-directory SANITIZE=thread $(TSAN_TESTS:%=build/san-thread/tests/%)
	@for t in $(TSAN_TESTS); do \
		LLMS_FIXTURES=$(FIXTURES) LLMS_SOAK_SECONDS=$${LLMS_SOAK_SECONDS:-10} OPENBLAS_NUM_THREADS=1 \
		TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 suppressions=$(abspath tests/tsan.supp)" build/san-thread/tests/$$t || exit 1; \
	done

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
	@printf '#include "llmserve.hpp"\nint llms_header_check;\n' > $(BUILD)/hdr/hpp.cpp
	@$(CXX) -std=c++17 -pedantic -Wall -Wextra -Werror -Iinclude -c $(BUILD)/hdr/hpp.cpp -o /dev/null
	@echo "check-headers: include/llmserve.hpp OK (C++17)"

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

# ---- bindings -----------------------------------------------------------------
# Python (ctypes, bindings/python) with Debian's python3 and pytest; the
# package finds lib/libllmserve.so from the source tree by itself.
PYTHON ?= /usr/bin/python3
python-test: lib
	cd bindings/python && LLMS_FIXTURES=$(FIXTURES) $(PYTHON) -m pytest -q -p no:cacheprovider tests

# Go (cgo, bindings/go) against the build tree: the llms_buildtree tag
# swaps pkg-config for these flags. Offline: no external modules.
GO ?= go
# Go's caches live in the build tree, so the tests need neither $$HOME nor
# anything outside the checkout.
GO_ENV := GOCACHE=$(abspath build/go-cache) GOPATH=$(abspath build/gopath)
go-test: lib
	cd bindings/go && export CGO_CFLAGS="-I$(abspath include)" \
		CGO_LDFLAGS="-L$(abspath lib) -Wl,-rpath,$(abspath lib)" GOFLAGS=-mod=mod GOPROXY=off \
		LLMS_FIXTURES=$(FIXTURES) && \
	$(GO_ENV) $(GO) vet -tags llms_buildtree ./... && $(GO_ENV) $(GO) test -tags llms_buildtree -race -count=1 ./...
	@# The default build: pkg-config on an installed copy (a scratch DESTDIR).
	@rm -rf build/go-install && $(MAKE) --no-print-directory install DESTDIR=$(abspath build/go-install) >/dev/null
	cd bindings/go && root=$(abspath build/go-install) && \
	PKG_CONFIG_PATH=$$root$(LIBDIR)/pkgconfig PKG_CONFIG_SYSROOT_DIR=$$root \
		CGO_LDFLAGS="-Wl,-rpath,$$root$(LIBDIR)" GOFLAGS=-mod=mod GOPROXY=off LLMS_FIXTURES=$(FIXTURES) \
		$(GO_ENV) $(GO) test -count=1 -run 'TestGenerateMatchesC|TestErrorsCarryStatus' ./...

# The HTTP server end to end on loopback (curl and the openai npm client:
# tests/test_server.sh), then two servers behind nginx (tests/test_scaleout.sh).
server-test: lib build/bin/llms-server
	LLMS_FIXTURES=$(FIXTURES) sh tests/test_server.sh $(abspath build/bin) $(FIXTURES)
	LLMS_FIXTURES=$(FIXTURES) sh tests/test_scaleout.sh $(abspath build/bin) $(FIXTURES)

# The C++ wrapper's test and the chat / C++ example programs.
cpp-test: build/tests/test_cpp examples
	LLMS_FIXTURES=$(FIXTURES) build/tests/test_cpp
	sh tests/examples.sh build/bin $(FIXTURES)

# ---- set-up and the two top-level jobs --------------------------------------
# Debian packages the build, the tests and the examples need. `make deps`
# installs the missing ones when run as root (and says what to install
# otherwise).
DEB_PACKAGES := build-essential pkg-config libopenblas-dev libcmocka-dev libcjson-dev \
	abigail-tools clang libclang-rt-14-dev unicode-data \
	g++ python3-pytest python3-setuptools python3-pip golang-go \
	glslang-tools spirv-tools libvulkan-dev mesa-vulkan-drivers vulkan-validationlayers \
	libmicrohttpd-dev curl nginx-light
deps:
	@missing=$$(for p in $(DEB_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | \
		grep -q 'install ok installed' || echo $$p; done); \
	if [ -z "$$missing" ]; then echo "deps: all Debian packages present"; \
	elif [ "$$(id -u)" = 0 ]; then \
		echo "deps: installing$$(echo $$missing | sed 's/^/ /')"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	else echo "deps: missing Debian packages (run as root: apt-get install $$missing)"; exit 1; fi

# The test job CI runs: everything in one command.
# The scheduler soak runs 2 minutes here (the issue's floor); 20 s elsewhere.
ci: deps
	LLMS_SOAK_SECONDS=120 $(MAKE) check
	$(MAKE) tsan-test
	$(MAKE) cpp-test
	$(MAKE) python-test
	$(MAKE) go-test
	$(MAKE) abi-check
	$(MAKE) install-check
	$(MAKE) SANITIZE=address,undefined test
	$(MAKE) fuzz FUZZ_SECONDS=$(CI_FUZZ_SECONDS)
	$(MAKE) server-test
CI_FUZZ_SECONDS ?= 120

# The main job: the OpenAI-compatible server (examples/llms-server.c) on
# MODEL=path.gguf. Without one it serves a small random-weight llama model
# that the project generates itself (build/demo/demo.gguf, by llms-mkmodel:
# the server and API work end to end, but its text is noise) and says so.
# The demo model has no chat template, so chat requests use ChatML there.
# SERVER_HOST, SERVER_PORT and SERVER_ARGS override the address and add
# options (e.g. --api-keys FILE).
DEMO_MODEL := build/demo/demo.gguf
MODEL ?= $(DEMO_MODEL)
SERVER_HOST ?= 127.0.0.1
SERVER_PORT ?= 8080
ifeq ($(origin MODEL),file)
SERVER_ARGS ?= --chat-template chatml
endif
$(DEMO_MODEL): | examples
	@mkdir -p $(dir $@)
	build/bin/llms-mkmodel --dims 256,4,4,2,768,4096 --type Q8_0 --out $@
run: deps lib examples $(if $(filter file,$(origin MODEL)),$(DEMO_MODEL))
	@if [ "$(origin MODEL)" = file ]; then \
		echo "run: no MODEL given: serving $(DEMO_MODEL), a random-weight demo model this project generated"; \
		echo "run: (its output is noise; no chat template, so ChatML is used)."; \
		echo "run: serve a real model with: make run MODEL=/path/to/model.gguf"; fi
	@echo "run: try: curl http://$(SERVER_HOST):$(SERVER_PORT)/v1/completions -d '{\"prompt\":\"Hello\",\"max_tokens\":40}'"
	build/bin/llms-server --model "$(MODEL)" --host "$(SERVER_HOST)" --port $(SERVER_PORT) $(SERVER_ARGS)

# ---- benchmarks ---------------------------------------------------------------
# `make bench`: random-weight models of real shapes (generated into
# build/bench/ when absent; they are large and never committed), each run
# through llms-bench --json and llms-decode-parts --json; results and llama.cpp's reference figures for
# this machine (issue 4: build 9821, CPU backend, 2 threads, tinyllama-1.1b
# shape) go to build/bench/report.json, and a summary with the ratios is
# printed. BENCH_SHAPES / BENCH_TYPES / BENCH_ARGS override the set.
BENCH_DIR := build/bench
BENCH_SHAPES ?= tinyllama-1.1b
BENCH_TYPES ?= Q4_0 Q8_0 Q4_K_M F16
BENCH_ARGS ?= --threads 2 --prompt 512 --gen 64 --reps 3 --backend cpu
BENCH_PARTS_ARGS ?= --threads 2 --tokens 48 --context 512
bench: lib examples build/bin/llms-decode-parts
	@mkdir -p $(BENCH_DIR)
	@set -e; out=$(BENCH_DIR)/report.json; rm -f $$out.tmp; sep=''; \
	printf '{"args": "%s",\n "llama_cpp_reference": {"Q4_0": [124, 45], "Q8_0": [101, 27], "Q4_K_M": [120, 48], "F16": [89, 20]},\n "reference_fields": ["prompt_tok_s", "gen_tok_s"],\n "results": [\n' \
		"$(BENCH_ARGS)" > $$out.tmp; \
	for s in $(BENCH_SHAPES); do for t in $(BENCH_TYPES); do \
		f=$(BENCH_DIR)/$$s-$$t.gguf; \
		if [ ! -f $$f ]; then echo "bench: generating $$f"; \
			build/bin/llms-mkmodel --shape $$s --type $$t --out $$f.part && mv $$f.part $$f; fi; \
		j=$$(build/bin/llms-bench --model $$f $(BENCH_ARGS) --json | tail -n 1); \
		d=$$(build/bin/llms-decode-parts --model $$f $(BENCH_PARTS_ARGS) --json | tail -n 1); \
		printf '%b  {"shape": "%s", "type": "%s", "bench": %s,\n   "decode_parts": %s}' "$$sep" $$s $$t "$$j" "$$d" >> $$out.tmp; sep=',\n'; \
		echo "$$j" | awk -v s=$$s -v t=$$t 'BEGIN { rp["Q4_0"]=124; rg["Q4_0"]=45; rp["Q8_0"]=101; rg["Q8_0"]=27; \
			rp["Q4_K_M"]=120; rg["Q4_K_M"]=48; rp["F16"]=89; rg["F16"]=20 } \
			{ match($$0, /"prompt_tok_s": [0-9.]+/); pp = substr($$0, RSTART + 16, RLENGTH - 16); \
			  match($$0, /"gen_tok_s": [0-9.]+/); tg = substr($$0, RSTART + 13, RLENGTH - 13); \
			  match($$0, /"gen_fraction_of_bandwidth_limit": [0-9.]+/); fr = substr($$0, RSTART + 35, RLENGTH - 35); \
			  match($$0, /"gen_fraction_token_median": [0-9.]+/); ft = substr($$0, RSTART + 29, RLENGTH - 29); \
			  line = sprintf("%-16s %-7s prompt %8.2f tok/s  gen %7.2f tok/s  %5.1f%% of the bandwidth limit (token by token %5.1f%%)", s, t, pp, tg, 100 * fr, 100 * ft); \
			  if (s == "tinyllama-1.1b" && (t in rp)) line = line sprintf("  (vs llama.cpp: prompt %.2fx, gen %.2fx)", pp / rp[t], tg / rg[t]); \
			  print line }'; \
		echo "$$d" | awk '{ match($$0, /"read_fraction": [0-9.]+/); r = substr($$0, RSTART + 17, RLENGTH - 17); \
			  match($$0, /"products_fraction": [0-9.]+/); p = substr($$0, RSTART + 21, RLENGTH - 21); \
			  match($$0, /"decode_fraction": [0-9.]+/); d = substr($$0, RSTART + 19, RLENGTH - 19); \
			  match($$0, /"context": [0-9]+/); c = substr($$0, RSTART + 11, RLENGTH - 11); \
			  match($$0, /"decode_at_context_fraction": [0-9.]+/); l = substr($$0, RSTART + 30, RLENGTH - 30); \
			  printf "%25s decode parts: loads only %.1f%%, products %.1f%%, passes %.1f%% (short context), %.1f%% (at %d) of the probe\n", "", 100 * r, 100 * p, 100 * d, 100 * l, c }'; \
	done; done; printf '\n ]}\n' >> $$out.tmp; mv $$out.tmp $$out; echo "bench: wrote $$out"

# `make bench-compare`: the reference figures above were measured at another
# time on a shared VM whose memory bandwidth drifts by tens of percent, so
# this runs llama.cpp (the prebuilt CPU build in npm's node-llama-cpp,
# installed into build/bench/ on first use; needs npm) and llms-bench on the
# same files, interleaved, and prints the ratios measured side by side
# (build/bench/side_by_side.json). ROUNDS=2 by default.
ROUNDS ?= 2
bench-compare: lib examples
	BENCH_DIR=$(BENCH_DIR) TYPES="$(BENCH_TYPES)" bench/llamacpp/side_by_side.sh $(ROUNDS)

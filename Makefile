# lfp — the Linux Filtering Platform.
#
# Targets:
#   make deps    install what is missing (apt-get: libbpf-dev libelf-dev zlib1g-dev bpftool ...); idempotent
#   make         build the BPF object (bpf/build/lfp.bpf.o) and the Swift package (lfp CLI)
#   make demo    deps + build + the main job: load a policy, run a workload under it, show events
#   make test    deps + build + every test (unit, and kernel-path tests on real cgroups/sockets)
#   make bench   deps + build + benchmarks (connect rate, event loss); prints the numbers
#   make install [PREFIX=/usr/local] [DESTDIR=…] / make uninstall / make deb   (mk/install.mk)
#   make fuzz    libFuzzer over the policy parser, validator and compiler (mk/fuzz.mk)
#   make format / make lint   clang-format for bpf/ and C targets
#   make clean
#
# Must run as root for demo/test/bench (BPF programs, cgroups, bpffs).

SHELL := /bin/bash
CLANG ?= $(shell command -v clang)
BPFTOOL ?= $(shell command -v bpftool || echo /usr/sbin/bpftool)
# The Swift toolchain ships llvm-objcopy beside its clang; Debian 12 needs no extra package then.
OBJCOPY ?= $(shell test -x $(dir $(CLANG))llvm-objcopy && echo $(dir $(CLANG))llvm-objcopy || command -v llvm-objcopy)
SWIFT ?= swift
SWIFT_FLAGS ?=
BUILD_DIR := bpf/build
ABI := Sources/KernelABI/include/lfp_abi.h
BPF_SRCS := $(wildcard bpf/lfp_*.bpf.c)
BPF_LIB := $(wildcard bpf/lib/*.h)
BPF_CFLAGS := -O2 -g -target bpf -mcpu=v3 -D__TARGET_ARCH_x86 -Wall -Werror -Wno-unused-function \
	-Ibpf -I$(BUILD_DIR) -ISources/KernelABI/include
APT_PACKAGES := libbpf-dev libelf-dev zlib1g-dev bpftool pkg-config iproute2 curl python3 clang-format \
	dpkg-dev man-db libsqlite3-dev
BENCH_PACKAGES := iptables nftables gcc
LFP := .build/debug/lfp

.DELETE_ON_ERROR:
.PHONY: all deps bpf swift demo test bench clean format lint
all: bpf swift

include mk/install.mk
include mk/fuzz.mk

deps:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y $$missing || { apt-get update && apt-get install -y $$missing; }; \
	fi
	@command -v clang >/dev/null || { echo "clang (the Swift toolchain's) not on PATH"; exit 1; }

EMBED_SKEL := Sources/EmbeddedBPF/generated/lfp.skel.h
bpf: $(BUILD_DIR)/lfp.bpf.o $(BUILD_DIR)/lfp_test.bpf.o $(EMBED_SKEL) $(BUILD_DIR)/lfp_wrong_abi.bpf.o

$(BUILD_DIR)/vmlinux.h:
	@mkdir -p $(BUILD_DIR)
	$(BPFTOOL) btf dump file /sys/kernel/btf/vmlinux format c > $@.tmp && mv $@.tmp $@

# The test-runnable classifier (bpf/tests/): the real lib/classify.h behind BPF_PROG_TEST_RUN.
$(BUILD_DIR)/lfp_test.bpf.o: bpf/tests/lfp_classify_test.bpf.c $(BPF_LIB) $(ABI) $(BUILD_DIR)/vmlinux.h
	$(CLANG) $(BPF_CFLAGS) -c $< -o $@

# One object for the loader: bpf/lfp.bpf.c includes every hook family's entry file.
$(BUILD_DIR)/lfp.bpf.o: bpf/lfp.bpf.c $(BPF_SRCS) $(BPF_LIB) $(ABI) $(BUILD_DIR)/vmlinux.h
	$(CLANG) $(BPF_CFLAGS) -c $< -o $@

# The object embedded in the lfp binary (Sources/EmbeddedBPF): DWARF stripped (a third of the
# size; the loader needs only BTF, which stays), then bpftool's skeleton, whose elf_bytes() holds
# it as a C string. SwiftPM tracks the header, so `swift build` relinks lfp when it changes.
$(BUILD_DIR)/lfp.embed.o: $(BUILD_DIR)/lfp.bpf.o
	$(OBJCOPY) --strip-debug $< $@

$(EMBED_SKEL): $(BUILD_DIR)/lfp.embed.o
	@mkdir -p $(dir $@)
	$(BPFTOOL) gen skeleton $< name lfp_bpf > $@.tmp && mv $@.tmp $@

# A test fixture: lfp.bpf.o claiming another ABI version (its .rodata rewritten), which the
# loader must refuse (Tests/KernelPathTests/EmbeddedObjectTests).
$(BUILD_DIR)/lfp_wrong_abi.bpf.o: $(BUILD_DIR)/lfp.embed.o
	printf '\xff\xff\xff\x7f' > $@.rodata
	$(OBJCOPY) --update-section .rodata=$@.rodata $< $@ && rm -f $@.rodata

# SwiftPM does not always rebuild Swift modules when a C header they import changes; after an
# edit of lfp_abi.h that leaves a stale struct layout in FilterEngine (seen: a crash decoding
# events). Mark the importing sources changed whenever the header is newer than the last build.
.build/abi.stamp: $(ABI)
	@mkdir -p .build
	@touch Sources/PolicyCompiler/*.swift Sources/FilterEngine/*.swift Sources/BPFKit/*.swift Sources/lfp/*.swift \
		Tests/PolicyCompilerTests/*.swift Tests/KernelPathTests/*.swift Tests/KernelPathTests/Support/*.swift
	@touch $@

swift: bpf .build/abi.stamp
	$(SWIFT) build $(SWIFT_FLAGS)

demo: deps all
	./Tests/demo/demo.sh $(LFP)

test: deps all
	$(SWIFT) build --build-tests $(SWIFT_FLAGS)
	@# The event stress test runs alone after the others: its 500,000 events briefly take
	@# gigabytes of the test process's memory, and a fork() of another test meanwhile (lfp run
	@# spawns by clone3) can then fail with ENOMEM under the kernel's overcommit heuristic.
	$(SWIFT) test --skip-build $(SWIFT_FLAGS) --skip StressTests
	$(SWIFT) test --skip-build $(SWIFT_FLAGS) --filter StressTests
	./Tests/install/install-test.sh
	./Tests/install/deb-test.sh
	@# The fuzz corpus and every input a fuzz run once crashed on, through the replay build.
	.build/debug/lfp-fuzz-policy Tests/Fuzz/corpus/* $(wildcard Tests/Fuzz/regressions/*) >/dev/null
	$(MAKE) --no-print-directory fuzz-smoke

bench: deps all
	@missing=""; for p in $(BENCH_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then DEBIAN_FRONTEND=noninteractive apt-get install -y $$missing || { apt-get update && apt-get install -y $$missing; }; fi
	$(SWIFT) build -c release $(SWIFT_FLAGS)
	./Tests/bench/bench.sh .build/release/lfp

# swift-format ships with the toolchain; clang-format comes from Debian (apt-get install clang-format).
C_SOURCES := bpf/*.c bpf/lib/*.h bpf/tests/*.c $(ABI) Sources/KernelABI/*.c Sources/CLibBPF/*.h \
	Sources/CSpawn/*.c Sources/CSpawn/include/*.h Sources/EmbeddedBPF/*.c Sources/EmbeddedBPF/include/*.h
format:
	swift-format format -i -r Sources Tests Package.swift
	@if command -v clang-format >/dev/null; then clang-format -i $(C_SOURCES); else echo "clang-format not installed: C sources left as they are"; fi

lint:
	swift-format lint --strict -r Sources Tests Package.swift
	@if command -v clang-format >/dev/null; then clang-format --dry-run -Werror $(C_SOURCES); else echo "clang-format not installed: C sources not checked"; fi

clean:
	rm -rf $(BUILD_DIR) .build Sources/EmbeddedBPF/generated

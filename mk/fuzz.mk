# Coverage-guided fuzzing of the policy parser, validator and compiler (issue 10), with libFuzzer
# from the Swift toolchain. Included by the Makefile.
#
#   make fuzz [FUZZ_SECONDS=600] [FUZZ_JOBS=1]   fuzz for minutes (FUZZ_JOBS > 1: libFuzzer's -fork);
#                                                new inputs go to .build-fuzz/corpus
#   make fuzz-smoke [FUZZ_SMOKE_SECONDS=30]      the bounded pass `make test` runs
#
# The target is Tests/Fuzz/PolicyFuzz (policy text -> Policy.parse -> BaseFilteringEngine.load ->
# PolicyCompiler.compile -> classify). Seeds: Tests/Fuzz/corpus (the policies of the reference
# cases, the demo and the netsh import fixtures). A crash, a sanitizer report, an input taking
# over 1 s, or a rejection that is not a typed lfp error stops the run and leaves the input in
# .build-fuzz/artifacts/; replay it with `.build/debug/lfp-fuzz-policy FILE`, fix, and add it to
# Tests/Fuzz/regressions/ (the FuzzRegressionTests replay every file there).
#
# Its own scratch path: the sanitizer flags apply to every module of the build, which must not
# invalidate the normal one. ld.gold cannot link the toolchain's ASan runtime (an internal error),
# so this build links with the toolchain's lld.

FUZZ_SCRATCH := .build-fuzz
FUZZ_BIN := $(FUZZ_SCRATCH)/release/lfp-fuzz-policy
FUZZ_SECONDS ?= 600
FUZZ_SMOKE_SECONDS ?= 30
FUZZ_JOBS ?= 1
FUZZ_BUILD_FLAGS := -c release --product lfp-fuzz-policy --scratch-path $(FUZZ_SCRATCH) \
	-Xswiftc -sanitize=fuzzer,address -Xcc -fsanitize=fuzzer-no-link,address -Xswiftc -DLFP_FUZZ \
	-Xswiftc -enable-experimental-feature -Xswiftc Extern -Xswiftc -Xclang-linker -Xswiftc -fuse-ld=lld
# 1 s per input is the issue's bound on a hang; inputs up to 4 KiB (the seeds are at most 3).
FUZZ_RUN_FLAGS := -dict=Tests/Fuzz/policy.dict -timeout=1 -max_len=4096 -rss_limit_mb=4096 -artifact_prefix=$(FUZZ_SCRATCH)/artifacts/ -print_final_stats=1

.PHONY: fuzz fuzz-build fuzz-smoke

fuzz-build:
	$(SWIFT) build $(FUZZ_BUILD_FLAGS)

fuzz: fuzz-build
	mkdir -p $(FUZZ_SCRATCH)/corpus $(FUZZ_SCRATCH)/artifacts
	$(FUZZ_BIN) $(FUZZ_RUN_FLAGS) -max_total_time=$(FUZZ_SECONDS) $(if $(filter-out 1,$(FUZZ_JOBS)),-fork=$(FUZZ_JOBS)) \
		$(FUZZ_SCRATCH)/corpus Tests/Fuzz/corpus

# The bounded pass: a fresh corpus from the seeds only, so every run starts from the same place.
fuzz-smoke: fuzz-build
	rm -rf $(FUZZ_SCRATCH)/smoke && mkdir -p $(FUZZ_SCRATCH)/smoke $(FUZZ_SCRATCH)/artifacts
	$(FUZZ_BIN) $(FUZZ_RUN_FLAGS) -max_total_time=$(FUZZ_SMOKE_SECONDS) $(FUZZ_SCRATCH)/smoke Tests/Fuzz/corpus
	rm -rf $(FUZZ_SCRATCH)/smoke

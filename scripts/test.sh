#!/usr/bin/env bash
# Sets up, builds and runs every test.
#   scripts/test.sh              the suite on the build in build/
#   scripts/test.sh --sanitize   the suite built with AddressSanitizer and
#                                UndefinedBehaviorSanitizer in build-sanitize/;
#                                any report fails the test it happens in
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--sanitize" ]; then
  scripts/setup.sh build-sanitize -DNCD_SANITIZE=ON
  # A report aborts (a signal, which every test treats as a failure, unlike
  # the sanitizers' default exit status 1, which some error tests expect);
  # an allocation too large for the machine returns null (std::bad_alloc) as
  # it does without the sanitizers, so ncd's out-of-memory errors are tested.
  export ASAN_OPTIONS=abort_on_error=1:allocator_may_return_null=1:detect_leaks=1:strict_string_checks=1
  export UBSAN_OPTIONS=halt_on_error=1:abort_on_error=1:print_stacktrace=1
  export LSAN_OPTIONS=suppressions=$PWD/tests/sanitize/lsan.supp:print_suppressions=0
  # Left out, as documented in tests/README.md: nvcc compiling emitted CUDA
  # (no ncd code runs; cuda.golden* and cuda.errors cover the emitter), an
  # install plus an out-of-tree plugin build (plugins.out_of_tree), nvcc on
  # optimized emitted code (cuda.optimized), and the per-file SVG sweeps
  # (render.svg.*: render.crossings draws every stdlib and example diagram,
  # in both styles and layouts, through the same layout and writer).
  ctest --test-dir build-sanitize --output-on-failure -j "$(nproc)" \
    -E '^(cuda\.compile\.|cuda\.optimized$|render\.svg\.|plugins\.out_of_tree$)'
  exit
fi
scripts/setup.sh build
ctest --test-dir build --output-on-failure -j "$(nproc)"

#!/usr/bin/env bash
# Sanitise the compiled Cython kernels once: build them with bounds checking (boundscheck,
# wraparound, initializedcheck on) and AddressSanitizer into a scratch copy of this tree,
# then run part of the test suite against that build with libasan preloaded.
#
#   scripts/asan_check.sh [pytest arguments...]
#
# Default tests: the Cython backend's own tests, backend parity, sparse input, hardening and
# the fuzz module (its ci profile). A bounds violation shows as an IndexError (or an
# "Exception ignored" line from a nogil function); an out-of-bounds access bounds checking
# cannot see (raw pointers) stops the run with an AddressSanitizer report. Leak detection is
# off: the Python interpreter itself does not free everything at exit.
# Not part of CI (a sanitised build is several times slower); run it after changing the .pyx.
#
# Findings of the first run (2026-12-01, kernels of main a0a19c3; tests/test_backend_cython.py,
# tests/test_sparse.py, tests/test_hardening.py and the fuzz module's 2,000 ci examples):
# no AddressSanitizer report; two bounds-check findings, both an address taken out of range
# without a read: _kernels.pyx:652 takes &X[i, 0] to prefetch a row when X has zero columns
# (test_feature_counts[0], a direct kernel call; the estimators refuse zero features, and a
# prefetch of 0 bytes reads nothing), and _kernels.pyx:1204 takes &work[1, 0] before the
# shape check that refuses a too-small work buffer (test_epoch_csr_bad_buffers_are_refused:
# the check then raises the ValueError; built without bounds checks, nothing is read). With fastgd's
# CSR check bypassed, an out-of-range column index is reported as a heap-buffer-overflow READ
# in epoch_csr (_kernels.pyx:1302): the sanitiser sees what the Python check now prevents.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/fastgd-asan.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
LIBASAN="$("${CC:-gcc}" -print-file-name=libasan.so)"
[ -f "$LIBASAN" ] || { echo "libasan not found (gcc with AddressSanitizer is needed)" >&2; exit 2; }

cp -r "$ROOT/fastgd" "$ROOT/tests" "$ROOT/setup.py" "$ROOT/pyproject.toml" "$WORK/"
find "$WORK" \( -name '*.so' -o -name '_kernels.c' -o -name '__pycache__' \) -prune -exec rm -rf {} +
# Turn the file-level speed directives into checks (the directives in the .pyx header win over
# any passed to cythonize, so edit the copy).
sed -i -e 's/boundscheck=False/boundscheck=True/g; s/wraparound=False/wraparound=True/g' \
       -e 's/initializedcheck=False/initializedcheck=True/g; s/boundscheck(False)/boundscheck(True)/g' \
       -e 's/wraparound(False)/wraparound(True)/g' "$WORK/fastgd/_backends/_cython/_kernels.pyx"

cd "$WORK"
# The sanitiser flags go into the compiler and linker commands themselves, so that setup.py's
# OpenMP probe (which links a test program) also links libasan and OpenMP stays on.
CC_BIN="${CC:-gcc}"
CC="$CC_BIN -fsanitize=address -fno-omit-frame-pointer" LDSHARED="$CC_BIN -shared -fsanitize=address" \
    CFLAGS="-g -O1" python setup.py -q build_ext --inplace
if [ "$#" -eq 0 ]; then
    set -- -q -p no:randomly tests/test_backend_cython.py tests/test_parity.py tests/test_sparse.py \
        tests/test_hardening.py tests/test_fuzz.py
fi
export FASTGD_BACKEND=cython PYTHONPATH="$WORK"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:${ASAN_OPTIONS:-}"
LD_PRELOAD="$LIBASAN" python -m pytest "$@" 2>&1 | tee "$WORK/asan.log"
status=${PIPESTATUS[0]}
echo "--- findings: $(grep -c -E 'ERROR: AddressSanitizer|IndexError|Exception ignored' "$WORK/asan.log" || true) lines"
grep -E 'ERROR: AddressSanitizer|IndexError|Exception ignored' "$WORK/asan.log" | sort | uniq -c | head -20 || true
exit "$status"

#!/usr/bin/env bash
# Build the Linux bundle from build.spec and smoke-test it (tests/packaging), printing the
# build time and the bundle size.  Called by .ci/run after the test suite; runs alone too:
#
#     bash .ci/build_bundle.sh            # -> dist/TickDesk, then the smoke tests
#
# Knobs: TICKDESK_BUNDLE_TARGET_MB (default 150: above it, a warning) and
#        TICKDESK_BUNDLE_MAX_MB (default 165: above it, the build fails -- something big,
#        e.g. Qt translations or a Qt module, came back into the bundle).
set -euo pipefail
cd "$(dirname "$0")/.."
target_mb="${TICKDESK_BUNDLE_TARGET_MB:-150}"
max_mb="${TICKDESK_BUNDLE_MAX_MB:-165}"
t0=$(date +%s)

py=.venv/bin/python

# setup.sh installs Qt's libraries, the xcb ones included (they go into the bundle); the build
# adds binutils (objdump, readelf, strip: PyInstaller and build.spec on Linux).
bash .ci/setup.sh
if ! command -v objdump >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  echo "bundle: installing binutils"
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends binutils >/dev/null
fi

# PyInstaller comes with the project's optional "build" extra.
if ! $py -c "import PyInstaller" >/dev/null 2>&1; then
  echo "bundle: installing the build extra (PyInstaller)"
  $py -m pip install -q -e ".[build]"
fi
echo "bundle: PyInstaller $($py -c 'import PyInstaller; print(PyInstaller.__version__)'), $($py --version)"

# Build from a clean work dir so the timing is a CI build's, not an incremental one.
rm -rf build/pyinstaller dist/TickDesk
mkdir -p build
b0=$(date +%s)
if ! $py -m PyInstaller --noconfirm --clean --distpath dist --workpath build/pyinstaller build.spec >build/pyinstaller.log 2>&1; then
  tail -n 60 build/pyinstaller.log
  echo "bundle: PyInstaller failed (full log: build/pyinstaller.log)" >&2
  exit 1
fi
build_s=$(( $(date +%s) - b0 ))
grep -E "^build\.spec:" build/pyinstaller.log | cut -c1-400 || true
grep -E "WARNING: Library not found" build/pyinstaller.log | grep -v "platformthemes/libqgtk3" | sed 's/^[0-9]* //' | sort -u | head -n 10 || true

size_mb=$(du -sm dist/TickDesk | cut -f1)
# The research stack (recordings, backtests, sweeps: pyarrow, dask, distributed and what they
# bring: tornado, yaml, psutil, toolz, cloudpickle, msgpack, jinja2, ...) has its own
# budget of 100 MiB on top of the workstation's 150 (docs/packaging.md); the workstation is
# what is left.  Each part is counted once: the package folders, and TLS (libssl, libcrypto,
# _ssl, _hashlib), which the bundle carries only because dask.distributed's TCP comm imports ssl.
research_pkgs="pyarrow dask distributed tornado yaml _yaml psutil toolz tlz cloudpickle zict tblib sortedcontainers msgpack markupsafe jinja2 fsspec partd locket click urllib3 importlib_metadata zipp"
research_dirs=()
for p in $research_pkgs; do research_dirs+=("dist/TickDesk/_internal/$p"); done
research_mb=$( { du -smc "${research_dirs[@]}" \
                 dist/TickDesk/_internal/*.dist-info \
                 dist/TickDesk/_internal/libssl* dist/TickDesk/_internal/libcrypto* \
                 dist/TickDesk/_internal/lib-dynload/_ssl* dist/TickDesk/_internal/lib-dynload/_hashlib* \
                 2>/dev/null || true; } | tail -n 1 | cut -f1)
# ... and their pure-Python modules, which live compressed in the executable's PYZ archive
research_pyz_mb=$(RESEARCH_PKGS="$research_pkgs" $py - <<'PY'
import os
from PyInstaller.archive.readers import CArchiveReader
top = set(os.environ["RESEARCH_PKGS"].split())
exe = CArchiveReader("dist/TickDesk/TickDesk")
n = sum(e[2] for name, (*_, kind) in exe.toc.items() if kind == "z"
        for m, e in exe.open_embedded_archive(name).toc.items() if m.split(".")[0] in top)
print(round(n / 2**20))
PY
)
research_mb=$(( research_mb + research_pyz_mb ))
research_target_mb="${TICKDESK_RESEARCH_TARGET_MB:-100}"
echo "bundle: research stack ${research_mb} MiB (pyarrow, dask, distributed, ${research_pyz_mb} MiB of it in the PYZ; target < ${research_target_mb} MiB)"
if [ "$research_mb" -ge "$research_target_mb" ]; then
  echo "bundle: WARNING: the research stack's ${research_mb} MiB is not under its ${research_target_mb} MiB target"
fi
size_mb=$(( size_mb - research_mb ))
files=$(find dist/TickDesk -type f | wc -l)
echo "bundle: built dist/TickDesk in ${build_s} s"
echo "bundle: size $(du -sh dist/TickDesk | cut -f1) in all; the workstation ${size_mb} MiB without the research stack (${files} files; target < ${target_mb} MiB)"
echo "bundle: largest parts:"
du -sm dist/TickDesk/_internal/* dist/TickDesk/TickDesk 2>/dev/null | sort -rn | head -n 8 | sed 's/^/  /'
if [ "$size_mb" -gt "$max_mb" ]; then
  echo "bundle: ${size_mb} MiB is over the ${max_mb} MiB ceiling: see build/pyinstaller.log and docs/packaging.md" >&2
  exit 1
elif [ "$size_mb" -ge "$target_mb" ]; then
  echo "bundle: WARNING: ${size_mb} MiB is not under the ${target_mb} MiB target"
fi

# Smoke tests of the frozen executable: headless fleet, offscreen window, module coverage.
TICKDESK_BUNDLE="$PWD/dist/TickDesk" QT_QPA_PLATFORM=offscreen $py -m pytest tests/packaging -q -p no:cacheprovider
echo "bundle: build ${build_s} s, total $(( $(date +%s) - t0 )) s"

#!/usr/bin/env bash
# Set up TickDesk on a fresh Linux machine: Qt's system libraries (Debian/Ubuntu, when
# missing), a virtualenv in .venv and the project's Python dependencies. Safe to re-run:
# packages already installed cost one `dpkg -s` each, an up-to-date venv is left alone.
#
#     bash .ci/setup.sh                # what the README's commands run
#     bash .ci/setup.sh --with-xvfb    # CI: also Xvfb, to run the window on a real X server
set -euo pipefail
cd "$(dirname "$0")/.."

with_xvfb=0
for a in "$@"; do
  case "$a" in
    --with-xvfb) with_xvfb=1 ;;
    *) echo "setup: unknown option $a (known: --with-xvfb)" >&2; exit 2 ;;
  esac
done

# Every Debian package whose library the Qt libraries TickDesk loads, the xcb platform plugin
# (libqxcb.so + libQt6XcbQpa) and its GL integrations link directly (DT_NEEDED; the list came
# from `objdump -p` on PySide6 6.11's files, see docs/packaging.md). Dependencies of these
# come with apt. Without libxcb-icccm4 / libxcb-keysyms1 a real display fails with Qt's
# misleading "xcb-cursor0 is needed"; the ldd check after the venv catches whatever a newer
# PySide6 adds. .ci/build_bundle.sh runs this script, so the bundle carries the same set.
qt_libs=(libegl1 libgl1 libopengl0 libxkbcommon0 libxkbcommon-x11-0 libfontconfig1 libfreetype6 libdbus-1-3
         libglib2.0-0 libzstd1 fonts-dejavu-core
         libx11-6 libx11-xcb1 libxcb1 libxcb-cursor0 libxcb-glx0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1
         libxcb-randr0 libxcb-render0 libxcb-render-util0 libxcb-shape0 libxcb-shm0 libxcb-sync1 libxcb-util1
         libxcb-xfixes0 libxcb-xkb1)
[ "$with_xvfb" = 1 ] && qt_libs+=(xvfb)
if command -v dpkg >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  missing=()
  # Ubuntu 24.04 renamed some for 64-bit time (libglib2.0-0t64): the old name is only provided
  for p in "${qt_libs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || dpkg -s "${p}t64" >/dev/null 2>&1 || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing system packages: ${missing[*]}"
    sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
elif [ "$with_xvfb" = 1 ] && ! command -v Xvfb >/dev/null 2>&1; then
  echo "setup: Xvfb is needed (--with-xvfb) and this is not a Debian/Ubuntu system: install it by hand" >&2
  exit 1
fi

py="${PYTHON:-}"
if [ -z "$py" ]; then
  for c in python3.11 python3.12 python3.13 python3; do
    if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then py="$c"; break; fi
  done
fi
[ -n "$py" ] || { echo "setup: Python >= 3.11 is required" >&2; exit 1; }

[ -x .venv/bin/python ] || "$py" -m venv .venv
stamp=.venv/.tickdesk-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[dev]"
  touch "$stamp"
fi

# Qt only says which library is missing with QT_DEBUG_PLUGINS, and then names the wrong one:
# ask the dynamic linker instead, for the xcb plugin and everything it loads.
if [ "$(uname -s)" = Linux ]; then
  qt="$(.venv/bin/python -c 'import os, PySide6; print(os.path.join(os.path.dirname(PySide6.__file__), "Qt"))')"
  notfound="$( (ldd "$qt"/plugins/platforms/libqxcb.so "$qt"/lib/libQt6XcbQpa.so.6 "$qt"/plugins/xcbglintegrations/*.so \
              "$qt"/lib/libQt6Widgets.so.6 2>/dev/null || true) | awk '/not found/ {print $1}' | sort -u | tr '\n' ' ')"
  if [ -n "$notfound" ]; then
    echo "setup: Qt's X11 (xcb) plugin cannot load, these libraries are missing: $notfound" >&2
    echo "setup: install the packages that provide them (Debian/Ubuntu: apt-file search <name>);" \
         "offscreen use (QT_QPA_PLATFORM=offscreen) and --headless still work" >&2
    exit 1
  fi
fi
echo "setup: ready ($(.venv/bin/python --version))"

#!/usr/bin/env bash
# Installs the Debian libraries MuJoCo needs to render offscreen on a CPU (EGL via Mesa, or OSMesa),
# and Chromium for the headless report test.
set -euo pipefail
have_lib() { ldconfig -p 2>/dev/null | grep -q "$1"; }
missing=()
have_lib libEGL_mesa.so || missing+=(libegl-mesa0 libegl1)
have_lib libOSMesa.so || missing+=(libosmesa6)
[ -e /usr/lib/x86_64-linux-gnu/dri/swrast_dri.so ] || [ -e /usr/lib/aarch64-linux-gnu/dri/swrast_dri.so ] \
  || ls /usr/lib/*/dri/*swrast* >/dev/null 2>&1 || missing+=(libgl1-mesa-dri)
# Headless Chromium renders the HTML report in its test (tests/monitor).
[ -x /usr/bin/chromium ] || missing+=(chromium)
if [ ${#missing[@]} -eq 0 ]; then exit 0; fi
echo "installing rendering libraries: ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO=sudo; else
    echo "error: need root (or sudo) to install: apt-get install ${missing[*]}" >&2; exit 1; fi
fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null

#!/usr/bin/env bash
# Debian packages the test suite needs: PostgreSQL (multi-worker studies), Chromium (browser tests),
# Mesa EGL/OSMesa (offscreen VTK rendering), a C compiler (the optional compiled kernels of
# proxy/_native.py and training/fused_loss.py, so their tests run). Installs only what is missing; needs root
# (or sudo).
set -euo pipefail
need=()
[ -x /usr/bin/chromium ] || need+=(chromium)
command -v cc >/dev/null 2>&1 || command -v gcc >/dev/null 2>&1 || need+=(gcc libc6-dev)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
dpkg -s libegl1 libegl-mesa0 libgl1-mesa-dri libosmesa6 >/dev/null 2>&1 || need+=(libegl1 libegl-mesa0 libgl1-mesa-dri libosmesa6)
if [ ${#need[@]} -eq 0 ]; then echo "system packages present"; exit 0; fi
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq "${need[@]}"

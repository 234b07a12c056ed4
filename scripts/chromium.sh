#!/usr/bin/env bash
# Installs headless Chromium and its driver from Debian when they are absent, for
# the dashboard's browser test (gateway/dashboard). Idempotent: does nothing when
# /usr/bin/chromium is already there. Needs root (or sudo) and apt.
set -euo pipefail

if [[ -x /usr/bin/chromium ]]; then
  echo "chromium: already installed ($(/usr/bin/chromium --version 2>/dev/null || echo unknown version))"
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "chromium: apt-get not found; install Chromium yourself (the browser test skips without it)" >&2
  exit 1
fi
SUDO=
if [[ $(id -u) -ne 0 ]]; then SUDO=sudo; fi

echo "chromium: installing chromium and chromium-driver from Debian"
$SUDO apt-get update -q
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends chromium chromium-driver fonts-dejavu-core
/usr/bin/chromium --version

#!/usr/bin/env bash
# Install Debian's chromium for the end-to-end browser test (tests/e2e), only if it is missing.
# Playwright drives this system browser (executable_path=/usr/bin/chromium); we never run
# `playwright install`.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi
echo "install-browser: /usr/bin/chromium missing; installing Debian's chromium with apt-get" >&2
$SUDO apt-get update
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends chromium
test -x /usr/bin/chromium

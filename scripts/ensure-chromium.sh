#!/usr/bin/env bash
# The browser check drives Debian's Chromium (never a browser downloaded by a test tool).
# Installs it with apt when it is missing and we are root (as in CI); otherwise says what to do.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "Installing Debian's chromium for the browser check..."
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends chromium >/dev/null
    command -v chromium >/dev/null 2>&1 && exit 0
fi
echo "Chromium is needed for the browser check: install it with your package manager" >&2
echo "(Debian/Ubuntu: apt-get install chromium) or set CHROMIUM=/path/to/chromium." >&2
[ -n "${CHROMIUM:-}" ] && [ -x "${CHROMIUM}" ] && exit 0
exit 1

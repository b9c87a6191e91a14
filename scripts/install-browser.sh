#!/usr/bin/env bash
# Debian's chromium + chromedriver for the headless MLflow UI test (tests/test_server.py).
# Installs only what is missing; needs apt-get and root (or passwordless sudo).
set -euo pipefail
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-browser: no apt-get here; install chromium and its chromedriver yourself for tests/test_server.py" >&2
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
        echo "install-browser: not root; run: sudo apt-get install -y chromium chromium-driver" >&2
        exit 0
    fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get install -y -q --no-install-recommends chromium chromium-driver >/dev/null 2>&1 || {
    $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q --no-install-recommends chromium chromium-driver >/dev/null
}
echo "install-browser: $(chromium --version 2>/dev/null | tail -1), $(chromedriver --version | head -1)"

#!/usr/bin/env bash
# Debian packages the test suite drives as real services, installed only when missing:
#   chromium + chromium-driver  headless MLflow UI test (tests/test_server.py)
#   postgresql                  distributed Optuna test (tests/test_optuna_postgres.py starts its own cluster)
# Needs apt-get and root (or passwordless sudo); otherwise it says what to install and leaves it to you.
set -euo pipefail
missing=()
{ command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; } || missing+=(chromium chromium-driver)
{ compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || command -v initdb >/dev/null 2>&1; } || missing+=(postgresql)
[ ${#missing[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-system: no apt-get here; install ${missing[*]} yourself for the browser and PostgreSQL tests" >&2
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
        echo "install-system: not root; run: sudo apt-get install -y ${missing[*]}" >&2
        exit 0
    fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null 2>&1 || {
    $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
}
echo "install-system: installed ${missing[*]}"

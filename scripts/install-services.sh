#!/usr/bin/env bash
# Debian's PostgreSQL server binaries for the distributed-Optuna test (tests/test_optuna_postgres.py starts its
# own throw-away cluster on 127.0.0.1). Installs only what is missing; needs apt-get and root or sudo.
set -euo pipefail
if compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || command -v initdb >/dev/null 2>&1; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-services: no apt-get here; install the PostgreSQL server (initdb, pg_ctl) yourself" >&2
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
        echo "install-services: not root; run: sudo apt-get install -y postgresql" >&2
        exit 0
    fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get install -y -q --no-install-recommends postgresql >/dev/null 2>&1 || {
    $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q --no-install-recommends postgresql >/dev/null
}
echo "install-services: $(compgen -G '/usr/lib/postgresql/*/bin/postgres' | head -1)"

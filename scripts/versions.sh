#!/usr/bin/env bash
# Print the version of every real server the tests use (for CI logs and bug reports).
# Reads the caches the install-*.sh scripts fill; prints "missing" instead of failing.
set -uo pipefail
cd "$(dirname "$0")/.."
CACHE=${PYMIRROR_CACHE:-$HOME/.cache/pymirror}
PY=${PY:-.venv/bin/python}

row() { printf '%-12s %s\n' "$1" "$2"; }
or_missing() { local out; out=$("$@" 2>/dev/null) && [[ -n $out ]] && echo "$out" || echo "missing"; }

row python "$(or_missing "$PY" -c 'import sys; print(sys.version.split()[0])')"
row moto "$(or_missing "$PY" -c 'from importlib.metadata import version; print(version("moto"))')"
row localstack "$(or_missing "$CACHE/localstack-venv/bin/python" -c \
    'import sys; from importlib.metadata import version; print(version("localstack-core"), "on Python", sys.version.split()[0])')"
kafka_version() {
    "$PY" -c 'import sys; from tests.servers.kafka import binary_version; print(binary_version(sys.argv[1]))' "$1"
}
row noida-db "$(or_missing kafka_version noida)"
row tansu "$(or_missing kafka_version tansu)"
helm_version() {
    local tmp out
    tmp=$(mktemp -d)
    out=$(XDG_CACHE_HOME=$tmp XDG_CONFIG_HOME=$tmp XDG_DATA_HOME=$tmp "$CACHE/helm/2.2.2/helm" version --short)
    rm -rf "$tmp"
    echo "$out"
}
row helm "$(or_missing helm_version)"
first_line() { # command... -> the first line of its output (no pipe: head would SIGPIPE it)
    local out
    out=$("$@" 2>&1) || return 1
    echo "${out%%$'\n'*}"
}
# The apiserver has no --version flag: its build recorded the version in VERSIONS.
apiserver_version() { [[ -x $CACHE/kube/apiextensions-apiserver ]] && first_line cat "$CACHE/kube/VERSIONS"; }
row apiserver "$(or_missing apiserver_version)"
row etcd "$(or_missing first_line "$CACHE/kube/etcd" --version)"
row tcpdump "$(PATH=$PATH:/usr/sbin:/sbin or_missing first_line tcpdump --version)"
row aiobotocore "$(or_missing "$PY" -c 'from importlib.metadata import version; print(version("aiobotocore"))')"
row aiokafka "$(or_missing "$PY" -c 'from importlib.metadata import version; print(version("aiokafka"))')"

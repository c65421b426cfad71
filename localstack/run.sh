#!/usr/bin/env bash
# Run LocalStack (SQS only) in host mode, without Docker, on 127.0.0.1:PORT.
#   localstack/run.sh [PORT]            (default 4566; Ctrl-C stops it)
# Needs scripts/install-localstack.sh first. The environment is the one measured in
# localstack/README.md; SQS_ENDPOINT_STRATEGY=path is required for queue URLs to work.
# Init hooks: every file in localstack/init/<stage>.d/ runs at that stage (boot, start,
# ready, shutdown); e.g. PYMIRROR_LOCALSTACK_QUEUES=orders,jobs.fifo creates those queues
# and PYMIRROR_LOCALSTACK_DEMO=1 the demo queues when LocalStack is ready (see
# localstack/README.md; localstack/compose.yaml runs the same hooks in Docker).
# FILESYSTEM_ROOT (state, logs, hooks) is a fresh temp dir removed on exit, unless set.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
PORT=${1:-4566}
CACHE=${PYMIRROR_CACHE:-$HOME/.cache/pymirror}
PY=$CACHE/localstack-venv/bin/python
if [[ ! -x $PY ]]; then
    echo "localstack/run.sh: LocalStack is not installed ($PY missing); run scripts/install-localstack.sh" >&2
    exit 1
fi

own_root=
if [[ -z ${FILESYSTEM_ROOT:-} ]]; then
    FILESYSTEM_ROOT=$(mktemp -d "${TMPDIR:-/tmp}/pymirror-localstack-XXXXXX")
    own_root=1
fi
mkdir -p "$FILESYSTEM_ROOT/etc/localstack" "$FILESYSTEM_ROOT/usr/lib/localstack"
# The service catalog index built by install-localstack.sh (saves ~3 s on the first request).
for f in "$CACHE"/localstack-venv/catalog/usr/lib/localstack/service-catalog-*.dill; do
    [[ -f $f ]] && ln -sf "$f" "$FILESYSTEM_ROOT/usr/lib/localstack/"
done
rm -rf "$FILESYSTEM_ROOT/etc/localstack/init"
cp -r "$HERE/init" "$FILESYSTEM_ROOT/etc/localstack/init"

export GATEWAY_LISTEN=127.0.0.1:$PORT LOCALSTACK_HOST=127.0.0.1:$PORT
export SERVICES=sqs EAGER_SERVICE_LOADING=1 SQS_ENDPOINT_STRATEGY=path
export DNS_ADDRESS=0 SKIP_SSL_CERT_DOWNLOAD=1 DISABLE_EVENTS=1 FILESYSTEM_ROOT
# LocalStack guesses it runs in a container on these machines and would then ignore
# FILESYSTEM_ROOT and use /var/lib/localstack, /tmp/localstack and /etc/localstack.
export OVERRIDE_IN_DOCKER=${OVERRIDE_IN_DOCKER:-0}

if [[ -z $own_root ]]; then
    exec "$PY" -m localstack.runtime.main
fi
"$PY" -m localstack.runtime.main &
child=$!
trap 'kill -TERM "$child" 2>/dev/null || true' INT TERM
rc=0
wait "$child" || rc=$?
# wait returns early when a trapped signal arrives: wait again for the real exit.
if kill -0 "$child" 2>/dev/null; then wait "$child" || rc=$?; fi
rm -rf "$FILESYSTEM_ROOT"
exit "$rc"

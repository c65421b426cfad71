# The pymirror image: `pymirror operator` and the split workers (`pymirror worker sqs|kafka`).
#   docker build -t ghcr.io/pymirror/pymirror:0.1.0 .
# Multi-stage: the build stage builds a wheel and installs it with its runtime
# dependencies only (no dev extra) into a venv; the final stage copies that venv
# onto the same pinned slim base and runs as a non-root user (uid 65532, the
# chart's runAsUser). The root filesystem can be read-only: nothing is written
# outside /tmp (an emptyDir in the chart) and the worker's state dir (/var/run/pymirror).
# Docs: docs/install.md#the-image.

ARG PYTHON_IMAGE=python:3.12.8-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/pymirror
COPY pyproject.toml README.md ./
COPY pymirror/ pymirror/
COPY splitter/ splitter/
COPY registry/ registry/
COPY traffic/ traffic/
COPY crds/ crds/
COPY scripts/install-kube-apiserver.sh scripts/install-kube-apiserver.sh
RUN /opt/pymirror/bin/pip install . \
    && /opt/pymirror/bin/pymirror --version

FROM ${PYTHON_IMAGE}
ENV PATH=/opt/pymirror/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PYMIRROR_LOG__FORMAT=json
RUN groupadd --system --gid 65532 pymirror \
    && useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin pymirror \
    && install -d -o 65532 -g 65532 /var/run/pymirror
COPY --from=build /opt/pymirror /opt/pymirror
USER 65532:65532
ENTRYPOINT ["pymirror"]
CMD ["operator", "--metrics-port", "9401"]

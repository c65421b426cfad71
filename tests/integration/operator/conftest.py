"""Fixtures shared by the operator's integration tests (helpers: support.py).

``kube`` is a client of the test API server with pymirror's CRDs installed;
``aws_credentials`` gives boto the dummy credentials and moto's region; ``sqs`` is a
client of moto; ``namespaces`` the test's own namespace and its operator namespace;
``local_runtime`` runs the workloads of both as local processes (the sandbox's
runtime: the stand-in Deployments and StatefulSets, the worker Deployments); ``cluster``
all of these as one :class:`~tests.integration.operator.support.Cluster` (the base of the
whole-operator tests' worlds).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pymirror.sandbox.runtime import LocalRuntime
from pymirror.sandbox.workloads import KINDS
from registry.objects import Kube
from splitter.sqs.client import SqsClient
from tests.integration.operator.support import Cluster, runtime_config, runtime_running
from tests.integration.sqs.support import client_for
from tests.servers.kube import KubeApi
from tests.servers.sqs import SqsEndpoint


@pytest.fixture
async def kube(kube_api: KubeApi, kube_crds: list[str]) -> AsyncIterator[Kube]:
    async with Kube.from_kubeconfig(kube_api.kubeconfig) as client:
        yield client


@pytest.fixture
def aws_credentials(moto_endpoint: SqsEndpoint, monkeypatch: pytest.MonkeyPatch) -> None:
    for var, value in (("AWS_ACCESS_KEY_ID", "test"), ("AWS_SECRET_ACCESS_KEY", "test")):
        monkeypatch.setenv(var, value)
    monkeypatch.setenv("AWS_DEFAULT_REGION", moto_endpoint.region)


@pytest.fixture
async def sqs(moto_endpoint: SqsEndpoint, aws_credentials: None) -> AsyncIterator[SqsClient]:
    async with client_for(moto_endpoint) as client:
        yield client


@pytest.fixture
def namespaces(unique_name: str) -> tuple[str, str]:
    """The test's namespace (sessions, workloads, registries) and its operator's."""
    return unique_name, f"{unique_name}-ops"


@pytest.fixture
async def local_runtime(
    kube: Kube, namespaces: tuple[str, str], tmp_path: Path
) -> AsyncIterator[LocalRuntime]:
    """The local runtime running the Deployments, StatefulSets and Rollouts of ``namespaces``."""
    config = runtime_config(namespaces, tmp_path, watch_kinds=KINDS)
    async with runtime_running(kube, config) as runtime:
        yield runtime


@pytest.fixture
def cluster(
    kube: Kube,
    kube_api: KubeApi,
    sqs: SqsClient,
    moto_endpoint: SqsEndpoint,
    namespaces: tuple[str, str],
    local_runtime: LocalRuntime,
) -> Cluster:
    """The test's servers, clients and namespaces, their workloads run by ``local_runtime``."""
    namespace, operator_namespace = namespaces
    return Cluster(kube, kube_api, sqs, moto_endpoint, namespace, operator_namespace)

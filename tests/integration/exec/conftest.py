"""Fixtures of the exec tests that run against the real operator.

The operator world (``operated``, tests/integration/operator/test_operator.py) is built
from the operator tests' shared fixtures (tests/integration/operator/conftest.py); they
are brought into this directory's scope here. test_exec.py's own ``kube`` (the same
client) takes precedence in that module.
"""

from __future__ import annotations

from tests.integration.operator.conftest import (  # noqa: F401 (fixtures)
    aws_credentials,
    kube,
    local_runtime,
    namespaces,
    sqs,
)

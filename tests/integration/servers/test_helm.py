"""Smoke: the cached helm binary runs offline and is a supported major version."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.servers.helm import helm_path, helm_version
from tests.servers.process import ServerError

pytestmark = pytest.mark.integration


def test_helm_version_reports_v4_or_v3(helm_bin: Path) -> None:
    version = helm_version(helm_bin)
    assert re.match(r"v[34]\.\d+\.\d+", version), version


def test_missing_helm_names_helm_and_its_install_script(tmp_path: Path) -> None:
    with pytest.raises(ServerError, match=r"helm is not installed.*scripts/install-helm\.sh"):
        helm_path(cache=tmp_path)


def test_broken_helm_binary_fails_with_a_message_naming_helm(tmp_path: Path) -> None:
    broken = tmp_path / "helm"
    broken.write_text("#!/bin/sh\necho 'segfault' >&2\nexit 139\n")
    broken.chmod(0o755)
    with pytest.raises(ServerError, match=r"helm at .* failed \(139\): segfault"):
        helm_version(broken)

"""The pymirror error tree.

Every error a user can meet derives from one of four roots, one per layer.
The lower layers (``splitter``, ``registry``, ``traffic``) cannot import this
package, so each owns its root; this module names them all so the CLI and the
operator can treat them alike::

    Exception
    ├── PymirrorError              pymirror/errors.py (CLI, operator wiring)
    │   ├── ConfigError            bad settings or client config file; exit 2 on the CLI
    │   └── UsageError             bad command-line use; exit 2
    ├── SplitterError              splitter/errors.py (queue engine, SQS/Kafka adapters)
    ├── RegistryError              registry/errors.py (CRD models, Kubernetes access)
    └── TrafficError               traffic/errors.py (capture, reassembly, replay)

Each class carries ``retriable`` (a temporary condition: retry later) as data,
in the manner of kopf's ``TemporaryError``/``PermanentError``. Vendor errors
(botocore, aiokafka, kubernetes) are translated at the adapter seam with
``raise X(...) from e`` and never leak past it.
"""

from __future__ import annotations

from typing import ClassVar

from registry.errors import RegistryError
from splitter.errors import SplitterError
from traffic.errors import TrafficError


class PymirrorError(Exception):
    """Root of the errors raised by the CLI and operator wiring."""

    retriable: ClassVar[bool] = False
    exit_code: ClassVar[int] = 1


class ConfigError(PymirrorError):
    """Settings or a client config file are invalid; the message names the field and the fix."""

    exit_code: ClassVar[int] = 2


class UsageError(PymirrorError):
    """The command line itself is wrong."""

    exit_code: ClassVar[int] = 2


#: Errors the CLI reports as ``Name: message`` without a traceback.
EXPECTED_ERRORS: tuple[type[Exception], ...] = (
    PymirrorError,
    SplitterError,
    RegistryError,
    TrafficError,
)

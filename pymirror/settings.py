"""The one root ``Settings`` object, built once at start-up and passed down.

Environment variables use the ``PYMIRROR_`` prefix and ``__`` between a group
and its field (``PYMIRROR_LOG__LEVEL=debug``). Every field documents its unit
and why its default is what it is. Invalid values raise ``ConfigError`` at
start-up, never deep inside a running worker.
"""

from __future__ import annotations

from pydantic import BaseModel, Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from pymirror.errors import ConfigError
from pymirror.logs import LogFormat


class LogSettings(BaseModel):
    """Logging output."""

    level: str = Field("info", description="Minimum level: debug, info, warning or error.")
    format: LogFormat = Field(
        "auto", description="json | console | auto (console on a terminal, JSON otherwise)."
    )


class TrafficSettings(BaseModel):
    """Bounds of live mirroring and replay (``pymirror mirror``, ``pymirror replay``)."""

    write_timeout: float = Field(
        5.0, gt=0, description="Seconds a write to --to may stay unsent before its flow drops."
    )
    flow_backlog_bytes: int = Field(
        4 << 20, gt=0, description="Bytes one replayed flow may queue (4 MiB) before it drops."
    )
    idle_timeout: float = Field(
        120.0, gt=0, description="Seconds without a segment before a captured flow ends."
    )
    max_connections: int = Field(
        1024, gt=0, description="Concurrent local connections to --to; more flows are dropped."
    )


class Settings(BaseSettings):
    """Root of all pymirror settings."""

    model_config = SettingsConfigDict(
        env_prefix="PYMIRROR_", env_nested_delimiter="__", extra="forbid"
    )

    log: LogSettings = Field(default_factory=LogSettings)
    traffic: TrafficSettings = Field(default_factory=TrafficSettings)


def load_settings(**overrides: object) -> Settings:
    """Build ``Settings`` from the environment plus explicit overrides, or raise ``ConfigError``."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors()
        )
        raise ConfigError(
            f"invalid settings: {problems}. Fix the PYMIRROR_* environment variables or flags."
        ) from e

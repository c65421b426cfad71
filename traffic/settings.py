"""Settings of live mirroring and replay: the one home of their defaults."""

from __future__ import annotations

from pydantic import BaseModel, Field


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

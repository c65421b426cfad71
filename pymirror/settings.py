"""The one root ``Settings`` object, built once at start-up and passed down.

Environment variables use the ``PYMIRROR_`` prefix and ``__`` between a group
and its field (``PYMIRROR_LOG__LEVEL=debug``). Every field documents its unit
and why its default is what it is. Invalid values raise ``ConfigError`` at
start-up, never deep inside a running worker.

Empty and null values of the environment, the same for every setting:

* a variable set to the empty string (``PYMIRROR_SQS__VISIBILITY_TIMEOUT=``) counts as
  not set: the setting keeps its default (``env_ignore_empty``). A template that renders
  an empty value, or ``VAR=`` in a shell, changes nothing;
* a variable set to ``null`` or ``none`` (any case, surrounding blanks ignored) sets the
  setting to None (``env_parse_none_str``, extended to both words and any case): for an
  optional setting that is its "no value" (``PYMIRROR_SQS__VISIBILITY_TIMEOUT=null``: the
  queue's own visibility timeout; ``PYMIRROR_OPERATOR__WORKER_METRICS_PORT=none``: no
  worker metrics, whatever the default); a setting that needs a value refuses it with a
  ``ConfigError`` naming the variable's setting and saying to unset it for the default.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, TypeVar

from pydantic import (
    BaseModel,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from pydantic_settings.sources.types import EnvNoneType

from pymirror.errors import ConfigError, UsageError
from pymirror.logs import LogFormat
from pymirror.operator.settings import OperatorSettings
from splitter.kafka.settings import KafkaSettings
from splitter.naming import checked_format
from splitter.sqs.settings import SqsSettings
from traffic.settings import TrafficSettings

#: A settings group (``Settings.sqs``, ``Settings.kafka``, ...).
_Group = TypeVar("_Group", bound=BaseModel)
#: Environment values that mean None (compared stripped and lower-cased).
NONE_VALUES = frozenset({"null", "none"})


class _EnvSource(EnvSettingsSource):
    """The environment, with ``null``/``none`` in any case as None (see the docstring)."""

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {
            name: EnvNoneType(value)
            if isinstance(value, str) and value.strip().lower() in NONE_VALUES
            else value
            for name, value in super()._load_env_vars().items()
        }


class LogSettings(BaseModel):
    """Logging output."""

    level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Minimum level: debug, info, warning or error."
    )

    @field_validator("level", mode="before")
    @classmethod
    def _lower_level(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    format: LogFormat = Field(
        "auto", description="json | console | auto (console on a terminal, JSON otherwise)."
    )


class Settings(BaseSettings):
    """Root of all pymirror settings."""

    model_config = SettingsConfigDict(
        env_prefix="PYMIRROR_",
        env_nested_delimiter="__",
        extra="forbid",
        env_ignore_empty=True,
        env_parse_none_str="null",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """The usual sources, the environment read by :class:`_EnvSource`."""
        return init_settings, _EnvSource(settings_cls), dotenv_settings, file_secret_settings

    log: LogSettings = Field(default_factory=LogSettings)
    traffic: TrafficSettings = Field(default_factory=TrafficSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    sqs: SqsSettings = Field(default_factory=SqsSettings)
    operator: OperatorSettings = Field(default_factory=OperatorSettings)
    operator_sqs_queue_format: str | None = Field(
        None,
        validation_alias="OPERATOR_SQS_SPLITTING_QUEUE_FORMAT",
        exclude=True,
        description="mirrord's env name for sqs.queue_format; wins when set.",
    )
    operator_kafka_topic_format: str | None = Field(
        None,
        validation_alias="OPERATOR_KAFKA_SPLITTING_TOPIC_FORMAT",
        exclude=True,
        description="mirrord's env name for kafka.topic_format; wins when set.",
    )

    operator_sqs_splitting: bool | None = Field(
        None,
        validation_alias="OPERATOR_SQS_SPLITTING",
        exclude=True,
        description="mirrord's env name for operator.sqs_splitting; wins when set.",
    )
    operator_kafka_splitting: bool | None = Field(
        None,
        validation_alias="OPERATOR_KAFKA_SPLITTING",
        exclude=True,
        description="mirrord's env name for operator.kafka_splitting; wins when set.",
    )

    @field_validator("operator_kafka_topic_format", "operator_sqs_queue_format")
    @classmethod
    def _valid_operator_format(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None:
            checked_format(value, "kafka" if "kafka" in str(info.field_name) else "sqs")
        return value

    @model_validator(mode="after")
    def _operator_format_aliases(self) -> Settings:
        """mirrord's operator variables win over ``PYMIRROR_*`` (name formats, switches)."""
        if self.operator_sqs_queue_format is not None:
            self.sqs.queue_format = self.operator_sqs_queue_format
        if self.operator_kafka_topic_format is not None:
            self.kafka.topic_format = self.operator_kafka_topic_format
        if self.operator_sqs_splitting is not None:
            self.operator.sqs_splitting = self.operator_sqs_splitting
        if self.operator_kafka_splitting is not None:
            self.operator.kafka_splitting = self.operator_kafka_splitting
        return self


_NULL_HINT = (
    " (got null/none, which means no value, and this setting needs one: unset the "
    "variable for its default, or give a value)"
)


def load_settings(**overrides: object) -> Settings:
    """Build ``Settings`` from the environment plus explicit overrides, or raise ``ConfigError``."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
            + (_NULL_HINT if err.get("input", "") is None else "")
            for err in e.errors()
        )
        raise ConfigError(
            f"invalid settings: {problems}. Fix the PYMIRROR_* environment variables or flags."
        ) from e


def with_flags(group: _Group, **flags: object) -> _Group:
    """``group`` with the command-line flags that were given (not None) applied, validated
    like the environment is: a bad flag value is a ``UsageError`` naming the flag."""
    given = {name: value for name, value in flags.items() if value is not None}
    if not given:
        return group
    try:
        return type(group).model_validate({**group.model_dump(), **given})
    except ValidationError as e:
        problems = "; ".join(
            f"--{'.'.join(str(p) for p in err['loc']).replace('_', '-')}: {err['msg']}"
            for err in e.errors()
        )
        raise UsageError(f"invalid flag value: {problems}") from e

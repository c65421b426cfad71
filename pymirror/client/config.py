"""The client configuration of ``pymirror exec``: mirrord's config file, checked locally.

``find_config_file`` picks the file (``-f``, else ``MIRRORD_CONFIG_FILE``, else the
lexicographically first ``*.json|*.yaml|*.yml|*.toml`` in ``./.mirrord/``);
``load_config`` reads it (JSON, YAML or TOML by extension) and ``parse_config`` turns
the document into an ``ExecConfig``, raising ``ConfigError`` (exit 2) with the field and
the fix before anything is created in the cluster (DESIGN §3):

* ``target``: ``"deployment/NAME[/container/C]"`` (also ``deploy``, ``statefulset``,
  ``sts``, ``rollout``) or ``{"path": ..., "namespace": ...}``;
* ``feature.split_queues``: the map form ``{id: {queue_type, message_filter?,
  jq_filter?, queue_mode?}}`` or the list form ``[{queue_id, queue_type, ...}]``; id
  ``*`` = every queue of that type in the target's registry. Every regex and jq program
  is compiled here (``splitter.filters.compile_filter``, the worker's own rules);
* ``operator`` (must not be ``false``), ``kubeconfig`` and ``kube_context`` are used;
  other keys mirrord knows are ignored and named in ``ExecConfig.ignored`` (the caller
  warns once); a key neither knows is an error. ``feature.env.override`` names are kept
  so that a local override of a split queue's env var is refused once they are known.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

import yaml

from pymirror.errors import ConfigError
from splitter.errors import FilterError
from splitter.filters import FilterSpec, compile_filter

QueueKind = Literal["SQS", "Kafka"]
Mode = Literal["steal", "mirror"]
TargetKind = Literal["Deployment", "StatefulSet", "Rollout"]

CONFIG_ENV = "MIRRORD_CONFIG_FILE"
CONFIG_DIR = ".mirrord"
EXTENSIONS = (".json", ".yaml", ".yml", ".toml")

#: The target path's kind word -> the workload kind.
TARGET_KINDS: dict[str, TargetKind] = {
    "deployment": "Deployment",
    "deploy": "Deployment",
    "statefulset": "StatefulSet",
    "sts": "StatefulSet",
    "rollout": "Rollout",
}
#: Target kinds mirrord knows that cannot be split.
UNSPLITTABLE_TARGETS = ("pod", "job", "cronjob", "replicaset", "service", "targetless")
#: queue_type values mirrord knows and pymirror does not split.
OTHER_QUEUE_TYPES = ("RMQ", "GCPPubSub", "RedisPubSub", "AzureServiceBus", "Temporal", "BullMQ")
QUEUE_KEYS = ("queue_type", "message_filter", "jq_filter", "queue_mode")

#: Top-level keys mirrord knows and pymirror ignores.
MIRRORD_KEYS = frozenset(
    {
        "accept_invalid_certificates",
        "agent",
        "ci",
        "connect_tcp",
        "container",
        "experimental",
        "external_proxy",
        "internal_proxy",
        "key",
        "kube_context_name",
        "magic",
        "profile",
        "sip_binaries",
        "skip_build_tools",
        "skip_extra_build_tools",
        "skip_processes",
        "skip_sip",
        "startup_timeout",
        "telemetry",
        "use_proxy",
        "pause",
        "$schema",
    }
)
#: Keys of ``feature`` mirrord knows and pymirror ignores.
MIRRORD_FEATURE_KEYS = frozenset(
    {"network", "fs", "env", "hostname", "copy_target", "preview", "db_branches", "magic"}
)
USED_KEYS = frozenset({"target", "feature", "operator", "kubeconfig", "kube_context"})


@dataclass(frozen=True)
class TargetSpec:
    kind: TargetKind
    name: str
    container: str | None = None
    namespace: str | None = None

    @property
    def path(self) -> str:
        tail = f"/container/{self.container}" if self.container else ""
        return f"{self.kind.lower()}/{self.name}{tail}"


@dataclass(frozen=True)
class QueueRequest:
    """One entry of ``feature.split_queues``."""

    id: str
    kind: QueueKind
    message_filter: dict[str, str] = field(default_factory=dict)
    jq_filter: str | None = None
    mode: Mode = "steal"

    def to_spec(self) -> dict[str, Any]:
        """The ``SplitSession.spec.queues[]`` entry (wire form)."""
        body: dict[str, Any] = {
            "id": self.id,
            "kind": self.kind,
            "messageFilter": dict(self.message_filter),
            "mode": self.mode,
        }
        if self.jq_filter is not None:
            body["jqFilter"] = self.jq_filter
        return body


@dataclass(frozen=True)
class ExecConfig:
    target: TargetSpec | None
    queues: tuple[QueueRequest, ...]
    kubeconfig: str | None = None
    kube_context: str | None = None
    env_overrides: frozenset[str] = frozenset()
    """Names in ``feature.env.override``: a split queue's env var may not be among them."""
    ignored: tuple[str, ...] = ()
    """mirrord keys present in the file that pymirror does not use (warn once)."""
    source: str = "the config"


def find_config_file(
    explicit: str | None, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> Path:
    """The config file to read; ``ConfigError`` when there is none."""
    env = os.environ if env is None else env
    if explicit:
        return _existing(Path(explicit), "-f")
    if env.get(CONFIG_ENV):
        return _existing(Path(env[CONFIG_ENV]), CONFIG_ENV)
    folder = (cwd or Path.cwd()) / CONFIG_DIR
    found = sorted(p for p in folder.glob("*") if p.suffix in EXTENSIONS and p.is_file())
    if not found:
        raise ConfigError(
            "no config file: pass -f FILE, set MIRRORD_CONFIG_FILE, or put a mirrord.json "
            f"(or .yaml/.toml) in {folder}"
        )
    return found[0]


def _existing(path: Path, origin: str) -> Path:
    if not path.is_file():
        raise ConfigError(f"{origin}: config file {path} does not exist; fix the path")
    return path


def load_config(path: Path) -> ExecConfig:
    """Read and check ``path`` (format by extension; JSON when it has none we know)."""
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e}") from e
    return parse_config(parse_document(text, path.suffix.lower(), str(path)), str(path))


def parse_document(text: str, suffix: str, source: str) -> Any:
    """The document in ``text`` (``suffix`` picks the format); ``ConfigError`` if malformed."""
    try:
        if suffix in (".yaml", ".yml"):
            return yaml.safe_load(text)
        if suffix == ".toml":
            return tomllib.loads(text)
        return json.loads(text)
    except (ValueError, yaml.YAMLError) as e:
        fmt = {".yaml": "YAML", ".yml": "YAML", ".toml": "TOML"}.get(suffix, "JSON")
        raise ConfigError(f"{source}: not valid {fmt} ({e}); fix the file") from e


def parse_config(doc: Any, source: str = "the config") -> ExecConfig:
    """Check ``doc`` (a parsed mirrord config) and build the ``ExecConfig``."""
    top = _mapping(doc, "the config file", source)
    unknown = sorted(k for k in top if k not in USED_KEYS and k not in MIRRORD_KEYS)
    if unknown:
        raise ConfigError(
            f"{source}: unknown key(s) {', '.join(unknown)}: neither pymirror nor mirrord "
            "knows them; fix the spelling or remove them"
        )
    if top.get("operator") is False:
        raise ConfigError(
            f"{source}: operator: false, but queue splitting needs the operator; "
            "remove the key or set it to true"
        )
    feature = _mapping(top.get("feature", {}), "feature", source)
    bad = sorted(k for k in feature if k != "split_queues" and k not in MIRRORD_FEATURE_KEYS)
    if bad:
        raise ConfigError(
            f"{source}: unknown key(s) feature.{', feature.'.join(bad)}; "
            "fix the spelling or remove them"
        )
    ignored = [k for k in top if k in MIRRORD_KEYS]
    ignored += [f"feature.{k}" for k in feature if k in MIRRORD_FEATURE_KEYS]
    return ExecConfig(
        target=None if top.get("target") is None else parse_target(top["target"], source),
        queues=parse_split_queues(feature.get("split_queues"), source),
        kubeconfig=_optional_str(top, "kubeconfig", source),
        kube_context=_optional_str(top, "kube_context", source),
        env_overrides=_env_overrides(feature.get("env"), source),
        ignored=tuple(sorted(ignored)),
        source=source,
    )


def _mapping(value: Any, where: str, source: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{source}: {where} must be an object, got {type(value).__name__}")
    return cast(Mapping[str, Any], value)


def _optional_str(top: Mapping[str, Any], key: str, source: str) -> str | None:
    value = top.get(key)
    if value is not None and (not isinstance(value, str) or not value):
        raise ConfigError(f"{source}: {key} must be a non-empty string, got {value!r}")
    return value


def _env_overrides(env: Any, source: str) -> frozenset[str]:
    if not isinstance(env, Mapping):
        return frozenset()
    override = env.get("override")
    if override is None:
        return frozenset()
    return frozenset(_mapping(override, "feature.env.override", source))


# --- target -------------------------------------------------------------------------------


def parse_target(value: Any, source: str = "the config") -> TargetSpec:
    """``target`` as a path string or ``{path, namespace}``."""
    if isinstance(value, str):
        return parse_target_path(value, "target", source)
    if not isinstance(value, Mapping):
        raise ConfigError(
            f'{source}: target must be a path string (e.g. "deployment/meme-app") or an '
            f"object {{path, namespace}}, got {type(value).__name__}"
        )
    target = cast(Mapping[str, Any], value)
    unknown = sorted(set(target) - {"path", "namespace"})
    if unknown:
        raise ConfigError(
            f"{source}: target.{', target.'.join(unknown)}: unknown key(s); "
            "target takes path and namespace"
        )
    namespace = target.get("namespace")
    if namespace is not None and (not isinstance(namespace, str) or not namespace):
        raise ConfigError(f"{source}: target.namespace must be a non-empty string")
    if target.get("path") is None:
        raise ConfigError(f'{source}: target.path is missing; set it, e.g. "deployment/meme-app"')
    parsed = parse_target_path(target["path"], "target.path", source)
    return TargetSpec(parsed.kind, parsed.name, parsed.container, namespace)


def parse_target_path(path: Any, where: str = "--target", source: str = "") -> TargetSpec:
    """``KIND/NAME`` or ``KIND/NAME/container/CONTAINER``."""
    prefix = f"{source}: " if source else ""
    example = 'e.g. "deployment/meme-app" or "deployment/meme-app/container/main"'
    if not isinstance(path, str) or not path:
        raise ConfigError(f"{prefix}{where} must be a target path string, {example}")
    parts = path.split("/")
    word = parts[0].lower()
    if word in UNSPLITTABLE_TARGETS:
        raise ConfigError(
            f"{prefix}{where}: {path!r}: queue splitting needs a deployment, statefulset or "
            f"rollout target, not a {word}; {example}"
        )
    if word not in TARGET_KINDS:
        raise ConfigError(
            f"{prefix}{where}: {path!r}: unknown target kind {parts[0]!r}; use deployment, "
            f"statefulset or rollout, {example}"
        )
    shape_ok = len(parts) == 2 or (len(parts) == 4 and parts[2] == "container")
    if not shape_ok or not all(parts[1:]):
        raise ConfigError(f"{prefix}{where}: {path!r} is not a target path; {example}")
    return TargetSpec(TARGET_KINDS[word], parts[1], parts[3] if len(parts) == 4 else None)


# --- split_queues -------------------------------------------------------------------------


def parse_split_queues(value: Any, source: str = "the config") -> tuple[QueueRequest, ...]:
    """The map or list form of ``feature.split_queues``; at least one queue."""
    where = "feature.split_queues"
    if value is None:
        raise ConfigError(
            f"{source}: {where} is missing: pymirror exec splits queues; add e.g. "
            '{"my-queue": {"queue_type": "SQS", "message_filter": {"author": "^me$"}}}'
        )
    if isinstance(value, Mapping):
        entries = [(f"{where}.{k}", k, v) for k, v in value.items()]
    elif isinstance(value, Sequence) and not isinstance(value, str):
        entries = [
            (f"{where}[{i}]", _list_id(e, f"{where}[{i}]", source), e) for i, e in enumerate(value)
        ]
    else:
        raise ConfigError(
            f"{source}: {where} must be a map from queue id to its filter, or a list of "
            f"queue split entries; got {type(value).__name__}"
        )
    if not entries:
        raise ConfigError(f"{source}: {where} is empty; name at least one queue to split")
    queues = [_queue(path, qid, entry, source) for path, qid, entry in entries]
    _no_duplicates(queues, where, source)
    return tuple(queues)


def _list_id(entry: Any, where: str, source: str) -> str:
    qid = _mapping(entry, where, source).get("queue_id")
    if not isinstance(qid, str) or not qid:
        raise ConfigError(
            f"{source}: {where}.queue_id is missing or not a string; every list entry names "
            'its queue id (the registry\'s id, or "*")'
        )
    return qid


def _queue(where: str, qid: Any, entry: Any, source: str) -> QueueRequest:
    if not isinstance(qid, str) or not qid:
        raise ConfigError(f"{source}: {where}: a queue id must be a non-empty string")
    body = dict(_mapping(entry, where, source))
    body.pop("queue_id", None)
    unknown = sorted(k for k in body if k not in QUEUE_KEYS)
    if unknown:
        raise ConfigError(
            f"{source}: {where}: unknown field(s) {', '.join(unknown)}; a queue takes "
            f"{', '.join(QUEUE_KEYS)}"
        )
    kind = _queue_type(body.get("queue_type"), where, source)
    mode = body.get("queue_mode", "steal")
    if mode not in ("steal", "mirror"):
        raise ConfigError(
            f"{source}: {where}.queue_mode: {mode!r} is not steal or mirror; use 'steal' "
            "(the default) or 'mirror'"
        )
    message_filter = body.get("message_filter") or {}
    jq_filter = body.get("jq_filter")
    try:
        compile_filter(FilterSpec(message_filter, None, mode), where=f"{where}.message_filter")
        compile_filter(FilterSpec({}, jq_filter, mode), where=where)
    except FilterError as e:
        raise ConfigError(f"{source}: {e}") from e
    return QueueRequest(qid, kind, dict(message_filter), jq_filter, mode)


def _queue_type(value: Any, where: str, source: str) -> QueueKind:
    if value in ("SQS", "Kafka"):
        return cast(QueueKind, value)
    if value is None:
        raise ConfigError(f"{source}: {where}.queue_type is missing; set it to SQS or Kafka")
    if value in OTHER_QUEUE_TYPES:
        raise ConfigError(
            f"{source}: {where}.queue_type: {value} queues are not split by pymirror; "
            "use SQS or Kafka"
        )
    raise ConfigError(
        f"{source}: {where}.queue_type: {value!r}: unknown queue type; use SQS or Kafka"
    )


def _no_duplicates(queues: list[QueueRequest], where: str, source: str) -> None:
    keys = [(q.id, q.kind) for q in queues]
    twice = sorted({f"{i} ({k})" for i, k in keys if keys.count((i, k)) > 1})
    if twice:
        raise ConfigError(
            f"{source}: {where}: {', '.join(twice)} listed twice; merge the entries into one"
        )

"""librdkafka/Java client properties -> aiokafka keyword arguments (pure).

A resolved ``MirrordKafkaClientConfig`` is a flat ``name -> value`` map of
librdkafka/Java property names. :func:`translate_properties` turns it into
:class:`KafkaClientOptions`: arguments for every aiokafka client, extra ones
for consumers and for producers, and the TLS files (the adapter builds the
``SSLContext``). Rules:

* every property pymirror does not understand is an error naming it - nothing
  is silently ignored;
* ``group.id`` is always pymirror's (the workload's group id is passed to the
  worker), so a value here is dropped;
* guarantees are pymirror's too: ``enable.auto.commit`` may only be ``false``,
  ``acks`` only ``all``/``-1``, ``isolation.level`` only ``read_committed``
  (every consumer reads committed records only), ``transactional.id`` is refused;
* a few properties have no aiokafka equivalent but are harmless
  (``message.send.max.retries``: aiokafka retries until its request timeout);
  they are accepted and listed in ``KafkaClientOptions.ignored`` so the caller
  can log them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from splitter.errors import KafkaPropertyError

Parser = Callable[[str, str], Any]


def _int(name: str, value: str) -> int:
    try:
        number = int(value.strip())
    except ValueError:
        raise KafkaPropertyError(f"property {name!r} must be an integer, got {value!r}") from None
    if number < 0:
        raise KafkaPropertyError(f"property {name!r} must not be negative, got {value!r}")
    return number


def _bool(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise KafkaPropertyError(f"property {name!r} must be true or false, got {value!r}")


def _choice(options: Mapping[str, Any]) -> Parser:
    def parse(name: str, value: str) -> Any:
        key = value.strip().lower()
        if key not in options:
            allowed = ", ".join(sorted(options))
            raise KafkaPropertyError(
                f"property {name!r} has unsupported value {value!r}; use one of: {allowed}"
            )
        return options[key]

    return parse


def _text(name: str, value: str) -> str:
    if not value.strip():
        raise KafkaPropertyError(f"property {name!r} must not be empty")
    return value.strip()


def _servers(name: str, value: str) -> list[str]:
    servers = [s.strip() for s in value.split(",") if s.strip()]
    if not servers:
        raise KafkaPropertyError(f"property {name!r} must list at least one host:port")
    return servers


_SECURITY = _choice({p.lower(): p for p in ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")})
_SASL = _choice({m.lower(): m for m in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "GSSAPI")})
_RESET = _choice(
    {
        "earliest": "earliest",
        "smallest": "earliest",
        "beginning": "earliest",
        "latest": "latest",
        "largest": "latest",
        "end": "latest",
        "none": "none",
        "error": "none",
    }
)
_COMPRESSION = _choice(
    {"none": None, "gzip": "gzip", "snappy": "snappy", "lz4": "lz4", "zstd": "zstd"}
)
_ASSIGNOR = _choice({"range": "range", "roundrobin": "roundrobin", "cooperative-sticky": "sticky"})

#: property -> (aiokafka argument, parser), valid for every client.
COMMON: dict[str, tuple[str, Parser]] = {
    "bootstrap.servers": ("bootstrap_servers", _servers),
    "metadata.broker.list": ("bootstrap_servers", _servers),
    "client.id": ("client_id", _text),
    "security.protocol": ("security_protocol", _SECURITY),
    "sasl.mechanism": ("sasl_mechanism", _SASL),
    "sasl.mechanisms": ("sasl_mechanism", _SASL),
    "sasl.username": ("sasl_plain_username", _text),
    "sasl.password": ("sasl_plain_password", _text),
    "sasl.kerberos.service.name": ("sasl_kerberos_service_name", _text),
    "request.timeout.ms": ("request_timeout_ms", _int),
    "socket.timeout.ms": ("request_timeout_ms", _int),
    "retry.backoff.ms": ("retry_backoff_ms", _int),
    "metadata.max.age.ms": ("metadata_max_age_ms", _int),
    "topic.metadata.refresh.interval.ms": ("metadata_max_age_ms", _int),
    "connections.max.idle.ms": ("connections_max_idle_ms", _int),
}

#: Consumer-only properties.
CONSUMER: dict[str, tuple[str, Parser]] = {
    "fetch.wait.max.ms": ("fetch_max_wait_ms", _int),
    "fetch.max.wait.ms": ("fetch_max_wait_ms", _int),
    "fetch.min.bytes": ("fetch_min_bytes", _int),
    "fetch.max.bytes": ("fetch_max_bytes", _int),
    "max.partition.fetch.bytes": ("max_partition_fetch_bytes", _int),
    "fetch.message.max.bytes": ("max_partition_fetch_bytes", _int),
    "max.poll.records": ("max_poll_records", _int),
    "session.timeout.ms": ("session_timeout_ms", _int),
    "heartbeat.interval.ms": ("heartbeat_interval_ms", _int),
    "max.poll.interval.ms": ("max_poll_interval_ms", _int),
    "auto.offset.reset": ("auto_offset_reset", _RESET),
    "partition.assignment.strategy": ("partition_assignment_strategy", _ASSIGNOR),
    "check.crcs": ("check_crcs", _bool),
    "client.rack": ("client_rack", _text),
}

#: Producer-only properties.
PRODUCER: dict[str, tuple[str, Parser]] = {
    "linger.ms": ("linger_ms", _int),
    "queue.buffering.max.ms": ("linger_ms", _int),
    "batch.size": ("max_batch_size", _int),
    "compression.type": ("compression_type", _COMPRESSION),
    "compression.codec": ("compression_type", _COMPRESSION),
    "max.request.size": ("max_request_size", _int),
    "message.max.bytes": ("max_request_size", _int),
    "enable.idempotence": ("enable_idempotence", _bool),
}

#: Accepted, no aiokafka equivalent, harmless: property -> why.
IGNORED: dict[str, str] = {
    "message.send.max.retries": "aiokafka retries a produce until request.timeout.ms",
    "retries": "aiokafka retries a produce until request.timeout.ms",
    "socket.keepalive.enable": "aiokafka always enables TCP keepalive",
    "api.version.request": "aiokafka always negotiates API versions",
    "auto.commit.interval.ms": "pymirror commits offsets itself (auto-commit is off)",
}

_SSL_FILES = {
    "ssl.ca.location": "cafile",
    "ssl.certificate.location": "certfile",
    "ssl.key.location": "keyfile",
    "ssl.key.password": "password",
}

#: Properties whose value pymirror decides.
OWNED = {
    "group.id",
    "enable.auto.commit",
    "acks",
    "request.required.acks",
    "transactional.id",
    "isolation.level",
}


@dataclass(frozen=True)
class SslFiles:
    """TLS material by file path (librdkafka ``ssl.*.location``)."""

    cafile: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    password: str | None = None
    check_hostname: bool = True


@dataclass(frozen=True)
class KafkaClientOptions:
    """aiokafka arguments built from client properties."""

    common: Mapping[str, Any] = field(default_factory=dict)
    consumer: Mapping[str, Any] = field(default_factory=dict)
    producer: Mapping[str, Any] = field(default_factory=dict)
    ssl: SslFiles | None = None
    ignored: Mapping[str, str] = field(default_factory=dict)

    @property
    def bootstrap(self) -> str:
        servers: list[str] = self.common["bootstrap_servers"]
        return ",".join(servers)


def _check_owned(name: str, value: str) -> None:
    lowered = value.strip().lower()
    if name == "enable.auto.commit" and lowered != "false":
        raise KafkaPropertyError(
            "property 'enable.auto.commit' must be false (or absent): pymirror commits "
            "offsets only after every forwarded record is acknowledged"
        )
    if name in ("acks", "request.required.acks") and lowered not in ("all", "-1"):
        raise KafkaPropertyError(
            f"property {name!r} must be all/-1 (or absent): pymirror forwards with acks=all"
        )
    if name == "isolation.level" and lowered != "read_committed":
        raise KafkaPropertyError(
            "property 'isolation.level' must be read_committed (or absent): pymirror never "
            "forwards records of aborted transactions"
        )
    if name == "transactional.id":
        raise KafkaPropertyError(
            "property 'transactional.id' is not supported: pymirror forwards without transactions"
        )


def translate_properties(properties: Mapping[str, str]) -> KafkaClientOptions:
    """Translate a flat property map; raise ``KafkaPropertyError`` naming a bad property."""
    common: dict[str, Any] = {}
    consumer: dict[str, Any] = {}
    producer: dict[str, Any] = {}
    ssl: dict[str, Any] = {}
    ignored: dict[str, str] = {}
    for name, value in properties.items():
        if name in OWNED:
            _check_owned(name, value)
        elif name in COMMON:
            arg, parse = COMMON[name]
            common[arg] = parse(name, value)
        elif name in CONSUMER:
            arg, parse = CONSUMER[name]
            consumer[arg] = parse(name, value)
        elif name in PRODUCER:
            arg, parse = PRODUCER[name]
            producer[arg] = parse(name, value)
        elif name in _SSL_FILES:
            ssl[_SSL_FILES[name]] = _text(name, value)
        elif name == "ssl.endpoint.identification.algorithm":
            ssl["check_hostname"] = _choice({"https": True, "none": False, "": False})(name, value)
        elif name in IGNORED:
            ignored[name] = IGNORED[name]
        else:
            raise KafkaPropertyError(
                f"unsupported Kafka client property {name!r}; remove it from the "
                "MirrordKafkaClientConfig or use a supported librdkafka/Java property "
                "(see splitter/kafka/properties.py)"
            )
    if "bootstrap_servers" not in common:
        raise KafkaPropertyError(
            "property 'bootstrap.servers' is required (host:port[,host:port...])"
        )
    protocol = common.get("security_protocol", "PLAINTEXT")
    if "sasl_mechanism" in common and not protocol.startswith("SASL_"):
        raise KafkaPropertyError(
            "property 'sasl.mechanism' needs security.protocol SASL_PLAINTEXT or SASL_SSL, "
            f"got {protocol}"
        )
    if protocol.startswith("SASL_"):
        mechanism = common.setdefault("sasl_mechanism", "PLAIN")
        if mechanism != "GSSAPI" and not (
            "sasl_plain_username" in common and "sasl_plain_password" in common
        ):
            raise KafkaPropertyError(
                f"security.protocol {protocol} with sasl.mechanism {mechanism} needs "
                "'sasl.username' and 'sasl.password'"
            )
    tls_files: SslFiles | None = None
    if ssl:
        if protocol not in ("SSL", "SASL_SSL"):
            first = sorted(k for k in properties if k.startswith("ssl."))[0]
            raise KafkaPropertyError(
                f"property {first!r} needs security.protocol SSL or SASL_SSL, got {protocol}"
            )
        tls_files = SslFiles(**ssl)
    elif protocol in ("SSL", "SASL_SSL"):
        tls_files = SslFiles()
    return KafkaClientOptions(common, consumer, producer, tls_files, ignored)

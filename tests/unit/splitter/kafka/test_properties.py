"""librdkafka/Java client properties -> aiokafka arguments (splitter/kafka/properties.py)."""

from __future__ import annotations

import pytest

from splitter.errors import KafkaPropertyError
from splitter.kafka.properties import SslFiles, translate_properties

pytestmark = pytest.mark.unit


def test_documented_example_translates_bootstrap_and_client_id() -> None:
    options = translate_properties(
        {
            "bootstrap.servers": "kafka.default.svc.cluster.local:9092, other:9093",
            "client.id": "mirrord-operator",
            "message.send.max.retries": "4",
        }
    )
    assert options.common == {
        "bootstrap_servers": ["kafka.default.svc.cluster.local:9092", "other:9093"],
        "client_id": "mirrord-operator",
    }
    assert options.bootstrap == "kafka.default.svc.cluster.local:9092,other:9093"
    assert "message.send.max.retries" in options.ignored
    assert options.ssl is None


def test_sasl_ssl_properties_become_aiokafka_arguments_and_tls_files() -> None:
    options = translate_properties(
        {
            "bootstrap.servers": "b:9093",
            "security.protocol": "sasl_ssl",
            "sasl.mechanisms": "SCRAM-SHA-512",
            "sasl.username": "alice",
            "sasl.password": "secret",
            "ssl.ca.location": "/etc/ca.pem",
            "ssl.certificate.location": "/etc/cert.pem",
            "ssl.key.location": "/etc/key.pem",
            "ssl.endpoint.identification.algorithm": "none",
        }
    )
    assert options.common["security_protocol"] == "SASL_SSL"
    assert options.common["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options.common["sasl_plain_username"] == "alice"
    assert options.common["sasl_plain_password"] == "secret"
    assert options.ssl == SslFiles("/etc/ca.pem", "/etc/cert.pem", "/etc/key.pem", None, False)


def test_consumer_and_producer_tunables_go_to_their_clients() -> None:
    options = translate_properties(
        {
            "bootstrap.servers": "b:9092",
            "fetch.wait.max.ms": "50",
            "max.poll.records": "1000",
            "session.timeout.ms": "10000",
            "auto.offset.reset": "smallest",
            "partition.assignment.strategy": "roundrobin",
            "linger.ms": "10",
            "batch.size": "65536",
            "compression.codec": "none",
            "enable.idempotence": "true",
        }
    )
    assert options.consumer == {
        "fetch_max_wait_ms": 50,
        "max_poll_records": 1000,
        "session_timeout_ms": 10000,
        "auto_offset_reset": "earliest",
        "partition_assignment_strategy": "roundrobin",
    }
    assert options.producer == {
        "linger_ms": 10,
        "max_batch_size": 65536,
        "compression_type": None,
        "enable_idempotence": True,
    }


def test_group_id_is_always_ours_and_dropped() -> None:
    options = translate_properties({"bootstrap.servers": "b:9092", "group.id": "theirs"})
    assert "group_id" not in {**options.common, **options.consumer}


@pytest.mark.parametrize(
    ("properties", "message"),
    [
        (
            {"bootstrap.servers": "b:1", "foo.bar": "1"},
            r"unsupported .* 'foo\.bar'",
        ),
        ({"client.id": "x"}, r"'bootstrap\.servers' is required"),
        ({"bootstrap.servers": "b:1", "linger.ms": "soon"}, r"'linger\.ms' must be an integer"),
        ({"bootstrap.servers": "b:1", "security.protocol": "TLS"}, r"'security\.protocol'.*TLS"),
        ({"bootstrap.servers": "b:1", "enable.auto.commit": "true"}, r"'enable\.auto\.commit'"),
        ({"bootstrap.servers": "b:1", "acks": "1"}, r"'acks' must be all"),
        ({"bootstrap.servers": "b:1", "transactional.id": "t"}, r"'transactional\.id'"),
        (
            {"bootstrap.servers": "b:1", "isolation.level": "read_uncommitted"},
            r"'isolation\.level' must be read_committed",
        ),
        (
            {"bootstrap.servers": "b:1", "security.protocol": "SASL_PLAINTEXT"},
            r"needs 'sasl\.username' and 'sasl\.password'",
        ),
        ({"bootstrap.servers": "b:1", "ssl.ca.location": "/ca"}, r"'ssl\.ca\.location' needs"),
        ({"bootstrap.servers": "b:1", "sasl.mechanism": "PLAIN"}, r"'sasl\.mechanism' needs"),
    ],
)
def test_bad_property_is_a_clear_error_naming_it(properties: dict[str, str], message: str) -> None:
    with pytest.raises(KafkaPropertyError, match=message):
        translate_properties(properties)

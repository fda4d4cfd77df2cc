"""Kafka security settings -> aiokafka keyword arguments and Spark's `kafka.*` options."""

from __future__ import annotations

import asyncio
import base64
import os
import ssl
import subprocess
import zipfile
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.abc import AbstractTokenProvider
from pydantic import ValidationError

from clickstream_common.kafka_security import (
    MSK_IAM_CALLBACK_HANDLER,
    KafkaSecuritySettings,
    aiokafka_options,
    spark_kafka_options,
)

REPO = Path(__file__).resolve().parents[3]


def accepted_by_aiokafka(options: dict[str, object]) -> None:
    """aiokafka takes exactly these keyword arguments (it checks types and the provider)."""

    async def make() -> None:
        AIOKafkaProducer(bootstrap_servers="127.0.0.1:1", **options)

    asyncio.run(make())


def settings(**values: object) -> KafkaSecuritySettings:
    return KafkaSecuritySettings(**values)  # type: ignore[arg-type]


def test_plaintext_is_the_default_and_adds_nothing() -> None:
    s = settings()
    assert aiokafka_options(s) == {"security_protocol": "PLAINTEXT"}
    assert spark_kafka_options(s) == {"kafka.security.protocol": "PLAINTEXT"}


def test_scram_over_tls_with_a_private_ca(tmp_path: Path) -> None:
    ca = tmp_path / "ca.crt"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=test-ca", "-keyout", str(tmp_path / "ca.key"), "-out", str(ca)],
        check=True, capture_output=True,
    )  # fmt: skip
    s = settings(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="clickstream",
        kafka_sasl_password='p"a\\ss',
        kafka_ssl_cafile=str(ca),
    )
    options = aiokafka_options(s)
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_username"] == "clickstream"
    assert options["sasl_plain_password"] == 'p"a\\ss'
    assert isinstance(options["ssl_context"], ssl.SSLContext)
    assert options["ssl_context"].check_hostname
    accepted_by_aiokafka(options)

    spark = spark_kafka_options(s)
    assert spark["kafka.security.protocol"] == "SASL_SSL"
    assert spark["kafka.sasl.mechanism"] == "SCRAM-SHA-512"
    assert spark["kafka.ssl.truststore.type"] == "PEM"
    assert spark["kafka.ssl.truststore.location"] == str(ca)
    assert spark["kafka.sasl.jaas.config"] == (
        "org.apache.kafka.common.security.scram.ScramLoginModule required "
        'username="clickstream" password="p\\"a\\\\ss";'
    )
    assert "kafka.ssl.endpoint.identification.algorithm" not in spark
    assert 'p"a' not in s.describe() and "clickstream" in s.describe()


def test_hostname_check_can_be_switched_off_but_the_chain_is_still_verified() -> None:
    s = settings(kafka_security_protocol="SSL", kafka_ssl_check_hostname=False)
    context = aiokafka_options(s)["ssl_context"]
    assert not context.check_hostname and context.verify_mode == ssl.CERT_REQUIRED
    assert spark_kafka_options(s)["kafka.ssl.endpoint.identification.algorithm"] == ""


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"kafka_security_protocol": "SASL_SSL"}, "needs KAFKA_SASL_MECHANISM"),
        ({"kafka_sasl_mechanism": "SCRAM-SHA-512"}, "needs KAFKA_SECURITY_PROTOCOL"),
        (
            {"kafka_security_protocol": "SASL_SSL", "kafka_sasl_mechanism": "PLAIN"},
            "needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD",
        ),
        ({"kafka_ssl_cafile": "/ca.pem"}, "does not use TLS"),
        ({"kafka_security_protocol": "TLS"}, "PLAINTEXT"),
    ],
)
def test_inconsistent_settings_are_refused_with_the_setting_named(
    values: dict[str, str], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        settings(**values)


def test_msk_iam_signs_tokens_for_the_cluster_region(monkeypatch: pytest.MonkeyPatch) -> None:
    # Static keys stand for the pod's credentials (IRSA in EKS); signing needs no network.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
    s = settings(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="OAUTHBEARER",
        kafka_aws_region="eu-west-1",
    )
    options = aiokafka_options(s)
    provider = options["sasl_oauth_token_provider"]
    assert isinstance(provider, AbstractTokenProvider)  # aiokafka checks this
    accepted_by_aiokafka(options)
    token = asyncio.run(provider.token())
    url = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    parsed = urlparse(url)
    query = parse_qs(parsed.query)
    assert parsed.hostname == "kafka.eu-west-1.amazonaws.com"
    assert query["Action"] == ["kafka-cluster:Connect"]
    assert query["X-Amz-Credential"][0].startswith("AKIDEXAMPLE/")
    assert "/eu-west-1/kafka-cluster/aws4_request" in query["X-Amz-Credential"][0]

    spark = spark_kafka_options(s)
    assert spark["kafka.sasl.mechanism"] == "OAUTHBEARER"
    assert spark["kafka.sasl.login.callback.handler.class"] == MSK_IAM_CALLBACK_HANDLER
    assert spark["kafka.sasl.client.callback.handler.class"] == MSK_IAM_CALLBACK_HANDLER
    assert "OAuthBearerLoginModule required" in spark["kafka.sasl.jaas.config"]


def test_msk_iam_needs_a_region(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("S3_REGION", raising=False)
    s = settings(kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="OAUTHBEARER")
    with pytest.raises(ValueError, match="KAFKA_AWS_REGION"):
        aiokafka_options(s)


def test_the_msk_iam_handler_class_ships_with_the_spark_jars() -> None:
    """local/spark/pom.xml brings aws-msk-iam-auth: the class Spark's Kafka client loads."""
    state = Path(os.environ.get("CLICKSTREAM_STATE_DIR") or REPO / ".state")
    cache = Path(os.environ.get("CLICKSTREAM_CACHE_DIR") or state / "cache")
    jars = sorted((cache / "spark-jars").glob("aws-msk-iam-auth-*.jar"))
    assert jars, "aws-msk-iam-auth missing from .state/cache/spark-jars: run local/bootstrap.sh"
    with zipfile.ZipFile(jars[-1]) as jar:
        assert MSK_IAM_CALLBACK_HANDLER.replace(".", "/") + ".class" in jar.namelist()

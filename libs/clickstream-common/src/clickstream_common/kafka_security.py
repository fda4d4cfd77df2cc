"""How every client of the pipeline connects to Kafka: TLS, SASL/SCRAM, SASL/OAUTHBEARER (MSK IAM).

One set of settings (`KAFKA_SECURITY_PROTOCOL`, `KAFKA_SASL_*`, `KAFKA_SSL_*`), turned here
into the options of each client library the services use:

* `aiokafka_options()`: keyword arguments of aiokafka's producer, consumer and admin client
  (the collector, the loader and its notification source, the local platform's checks);
* `spark_kafka_options()`: the `kafka.*` options of Spark's Kafka source (the processor).
  They go to the Java client, so the same names work for its AdminClient too.

Managed Kafkas need one of: TLS with the provider's CA (`SSL`), a user and password over TLS
(`SASL_SSL` + `SCRAM-SHA-512`: MSK SCRAM, Confluent Cloud with `PLAIN`, Strimzi), or AWS IAM
(`SASL_SSL` + `OAUTHBEARER`: MSK IAM, tokens signed with the pod's AWS credentials, e.g. IRSA).
"""

from __future__ import annotations

import asyncio
import os
import ssl
from typing import Any, Literal

from pydantic import SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"]

# The Java login modules of the mechanisms that take a user name and password.
_JAAS_MODULES = {
    "PLAIN": "org.apache.kafka.common.security.plain.PlainLoginModule",
    "SCRAM-SHA-256": "org.apache.kafka.common.security.scram.ScramLoginModule",
    "SCRAM-SHA-512": "org.apache.kafka.common.security.scram.ScramLoginModule",
}
# software.amazon.msk:aws-msk-iam-auth (on the processor's classpath): signs the OAUTHBEARER
# token with the AWS default credential chain, region taken from the broker host names.
MSK_IAM_CALLBACK_HANDLER = "software.amazon.msk.auth.iam.IAMOAuthBearerLoginCallbackHandler"
_OAUTHBEARER_JAAS = "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required;"


class KafkaSecuritySettings(BaseSettings):
    """Connection security of every Kafka client (the Helm values `kafka.security.*`)."""

    model_config = SettingsConfigDict(extra="ignore", case_sensitive=False)

    # How clients connect: PLAINTEXT, SSL (TLS), or SASL over either (MSK, Confluent, Strimzi).
    kafka_security_protocol: SecurityProtocol = "PLAINTEXT"
    # Required with SASL_*: PLAIN and SCRAM-* take the user and password below; OAUTHBEARER
    # means AWS MSK IAM (the only token source built in).
    kafka_sasl_mechanism: SaslMechanism | None = None
    # SASL user (PLAIN, SCRAM-*).
    kafka_sasl_username: str | None = None
    # SASL password (PLAIN, SCRAM-*); from a Secret in Kubernetes.
    kafka_sasl_password: SecretStr | None = None
    # PEM file of the CA(s) that signed the brokers' certificates; empty: the system's trust
    # store (enough for MSK and Confluent Cloud, not for a private CA such as Strimzi's).
    kafka_ssl_cafile: str | None = None
    # Check that the broker's certificate names the host connected to (keep it on).
    kafka_ssl_check_hostname: bool = True
    # MSK IAM: region of the cluster, for the Python clients' token signer (the Java
    # handler reads it from the broker host names); empty: AWS_REGION, then S3_REGION.
    kafka_aws_region: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> KafkaSecuritySettings:
        sasl = self.kafka_security_protocol.startswith("SASL_")
        mechanism = self.kafka_sasl_mechanism
        if sasl and mechanism is None:
            raise ValueError(
                f"KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol} needs "
                "KAFKA_SASL_MECHANISM (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER)"
            )
        if mechanism is not None and not sasl:
            raise ValueError(
                f"KAFKA_SASL_MECHANISM={mechanism} needs KAFKA_SECURITY_PROTOCOL "
                "SASL_SSL (or SASL_PLAINTEXT)"
            )
        if mechanism in _JAAS_MODULES and not (
            self.kafka_sasl_username and self.kafka_sasl_password
        ):
            raise ValueError(
                f"KAFKA_SASL_MECHANISM={mechanism} needs KAFKA_SASL_USERNAME and "
                "KAFKA_SASL_PASSWORD"
            )
        if self.kafka_ssl_cafile and not self.uses_tls:
            raise ValueError(
                "KAFKA_SSL_CAFILE is set but KAFKA_SECURITY_PROTOCOL "
                f"{self.kafka_security_protocol} does not use TLS"
            )
        return self

    @property
    def uses_tls(self) -> bool:
        return self.kafka_security_protocol in ("SSL", "SASL_SSL")

    def msk_region(self) -> str:
        region = (
            self.kafka_aws_region or os.environ.get("AWS_REGION") or os.environ.get("S3_REGION")
        )
        if not region:
            raise ValueError("KAFKA_SASL_MECHANISM=OAUTHBEARER (MSK IAM) needs KAFKA_AWS_REGION")
        return region

    def describe(self) -> str:
        """One line for logs and errors: protocol, mechanism and user, never the password."""
        text: str = self.kafka_security_protocol
        if self.kafka_sasl_mechanism:
            text += f" {self.kafka_sasl_mechanism}"
            if self.kafka_sasl_username:
                text += f" user {self.kafka_sasl_username!r}"
        return text


class MskIamTokenProvider:
    """aiokafka's OAUTHBEARER token source for MSK IAM: a SigV4-signed token from the AWS
    default credential chain (IRSA web identity, instance role, environment keys).

    aiokafka asks for a token on each new connection; the signer is cheap (no network call
    unless the credential chain must fetch credentials), and tokens live 15 minutes."""

    def __init__(self, region: str) -> None:
        self.region = region

    async def token(self) -> str:
        from aws_msk_iam_sasl_signer import MSKAuthTokenProvider

        token, _expiry_ms = await asyncio.to_thread(
            MSKAuthTokenProvider.generate_auth_token, self.region
        )
        return str(token)

    def extensions(self) -> dict[str, str]:
        return {}


def ssl_context(settings: KafkaSecuritySettings) -> ssl.SSLContext:
    """TLS client context: the given CA file, or the system's trust store."""
    context = ssl.create_default_context(cafile=settings.kafka_ssl_cafile or None)
    context.check_hostname = settings.kafka_ssl_check_hostname
    if not settings.kafka_ssl_check_hostname:
        context.verify_mode = ssl.CERT_REQUIRED  # still verify the chain
    return context


def aiokafka_options(settings: KafkaSecuritySettings) -> dict[str, Any]:
    """Keyword arguments for AIOKafkaProducer / AIOKafkaConsumer / AIOKafkaAdminClient."""
    options: dict[str, Any] = {"security_protocol": settings.kafka_security_protocol}
    if settings.uses_tls:
        options["ssl_context"] = ssl_context(settings)
    mechanism = settings.kafka_sasl_mechanism
    if mechanism is None:
        return options
    options["sasl_mechanism"] = mechanism
    if mechanism == "OAUTHBEARER":
        from aiokafka.abc import AbstractTokenProvider

        # aiokafka checks the provider's class; the signer is registered, not subclassed,
        # so this module imports without aiokafka (the processor has no aiokafka).
        AbstractTokenProvider.register(MskIamTokenProvider)
        options["sasl_oauth_token_provider"] = MskIamTokenProvider(settings.msk_region())
    else:
        password = settings.kafka_sasl_password
        options["sasl_plain_username"] = settings.kafka_sasl_username
        options["sasl_plain_password"] = password.get_secret_value() if password else None
    return options


def _jaas_quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def java_client_properties(settings: KafkaSecuritySettings) -> dict[str, str]:
    """The Java client's properties (without Spark's `kafka.` prefix)."""
    props: dict[str, str] = {"security.protocol": settings.kafka_security_protocol}
    if settings.uses_tls:
        if settings.kafka_ssl_cafile:
            # The Java client reads PEM trust stores directly (no keytool, no JKS).
            props["ssl.truststore.type"] = "PEM"
            props["ssl.truststore.location"] = settings.kafka_ssl_cafile
        if not settings.kafka_ssl_check_hostname:
            props["ssl.endpoint.identification.algorithm"] = ""
    mechanism = settings.kafka_sasl_mechanism
    if mechanism is None:
        return props
    props["sasl.mechanism"] = mechanism
    if mechanism == "OAUTHBEARER":
        props["sasl.jaas.config"] = _OAUTHBEARER_JAAS
        props["sasl.login.callback.handler.class"] = MSK_IAM_CALLBACK_HANDLER
        props["sasl.client.callback.handler.class"] = MSK_IAM_CALLBACK_HANDLER
    else:
        password = settings.kafka_sasl_password
        secret = password.get_secret_value() if password else ""
        props["sasl.jaas.config"] = (
            f"{_JAAS_MODULES[mechanism]} required "
            f"username={_jaas_quote(settings.kafka_sasl_username or '')} "
            f"password={_jaas_quote(secret)};"
        )
    return props


def spark_kafka_options(settings: KafkaSecuritySettings) -> dict[str, str]:
    """Options of Spark's Kafka source: `kafka.`-prefixed Java client properties. Spark
    redacts `sasl.jaas.config` in its logs and UI."""
    return {f"kafka.{k}": v for k, v in java_client_properties(settings).items()}

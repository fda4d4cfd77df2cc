"""A TLS + SASL/SCRAM-SHA-512 listener on the local broker, like a managed Kafka's.

Turned on with `StackConfig.kafka_security = "SASL_SSL"`: the broker gets a third listener
(`SECURE`, on `kafka_secure_port`) whose certificate is signed by a CA generated for this
state dir, and a SCRAM user created through the admin API; the three services then connect
only through it, with the settings of clickstream_common.kafka_security. The PLAINTEXT
listener stays for the broker itself, versitygw's notifications and the platform's checks.
"""

from __future__ import annotations

import secrets
import subprocess
from pathlib import Path

SCRAM_MECHANISM = "SCRAM-SHA-512"
SCRAM_USER = "clickstream"
LISTENER = "SECURE"


class SecureListener:
    """Certificates, SCRAM password and broker properties of the secure listener."""

    def __init__(self, tls_dir: Path, port: int) -> None:
        self.dir = tls_dir
        self.port = port

    @property
    def ca_file(self) -> Path:
        return self.dir / "ca.crt"

    @property
    def keystore(self) -> Path:
        return self.dir / "broker.pem"

    @property
    def password_file(self) -> Path:
        return self.dir / "scram-password"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def password(self) -> str:
        return self.password_file.read_text().strip()

    def prepare(self) -> None:
        """A CA and a broker certificate for 127.0.0.1/localhost, and a SCRAM password; made
        once per state dir (idempotent)."""
        if self.keystore.is_file() and self.ca_file.is_file() and self.password_file.is_file():
            return
        self.dir.mkdir(parents=True, exist_ok=True)

        def openssl(*args: str) -> None:
            out = subprocess.run(
                ["openssl", *args], cwd=self.dir, capture_output=True, text=True, check=False
            )
            if out.returncode != 0:
                raise RuntimeError(f"openssl {args[0]} failed: {out.stderr}")

        openssl(
            "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "ca.key"
        )
        openssl(
            "req", "-x509", "-new", "-key", "ca.key", "-days", "3650",
            "-subj", "/CN=clickstream local Kafka CA", "-out", "ca.crt",
        )  # fmt: skip
        openssl(
            "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "broker.key"
        )
        openssl("req", "-new", "-key", "broker.key", "-subj", "/CN=127.0.0.1", "-out", "broker.csr")
        (self.dir / "broker.ext").write_text(
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"
        )
        openssl(
            "x509", "-req", "-in", "broker.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "3650", "-extfile", "broker.ext", "-out", "broker.crt",
        )  # fmt: skip
        # Kafka's PEM key store: the PKCS#8 key, then the certificate chain, in one file.
        self.keystore.write_text(
            (self.dir / "broker.key").read_text()
            + (self.dir / "broker.crt").read_text()
            + self.ca_file.read_text()
        )
        self.keystore.chmod(0o600)
        self.password_file.write_text(secrets.token_urlsafe(24) + "\n")
        self.password_file.chmod(0o600)

    def broker_properties(self) -> dict[str, str]:
        """Properties added to server.properties (listener-scoped, so PLAINTEXT is unchanged)."""
        name = LISTENER.lower()
        return {
            f"listener.name.{name}.sasl.enabled.mechanisms": SCRAM_MECHANISM,
            f"listener.name.{name}.{SCRAM_MECHANISM.lower()}.sasl.jaas.config": (
                "org.apache.kafka.common.security.scram.ScramLoginModule required;"
            ),
            f"listener.name.{name}.ssl.keystore.type": "PEM",
            f"listener.name.{name}.ssl.keystore.location": str(self.keystore),
        }

    def scram_user_command(self, java: str, classpath: str, plaintext_bootstrap: str) -> list[str]:
        """kafka-configs' main class: create (or update) the SCRAM user through the admin API."""
        return [
            java,
            "-cp",
            classpath,
            "kafka.admin.ConfigCommand",
            "--bootstrap-server",
            plaintext_bootstrap,
            "--alter",
            "--entity-type",
            "users",
            "--entity-name",
            SCRAM_USER,
            "--add-config",
            f"{SCRAM_MECHANISM}=[iterations=4096,password={self.password()}]",
        ]

    def client_env(self, password: str | None = None) -> dict[str, str]:
        """Settings of clickstream_common.kafka_security for a client of this listener."""
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "KAFKA_SASL_MECHANISM": SCRAM_MECHANISM,
            "KAFKA_SASL_USERNAME": SCRAM_USER,
            "KAFKA_SASL_PASSWORD": password if password is not None else self.password(),
            "KAFKA_SSL_CAFILE": str(self.ca_file),
        }

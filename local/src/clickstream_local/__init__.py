"""The local platform: real Kafka, S3 (versitygw), PostgreSQL and Prometheus processes."""

from clickstream_local.config import StackConfig, free_ports, read_versions
from clickstream_local.services import SERVICE_MODULES, service_env
from clickstream_local.stack import ComponentStatus, ConnectionInfo, Stack
from clickstream_local.supervisor import ReadinessError, Supervisor, wait_until

__all__ = [
    "SERVICE_MODULES",
    "ComponentStatus",
    "ConnectionInfo",
    "ReadinessError",
    "Stack",
    "StackConfig",
    "Supervisor",
    "free_ports",
    "read_versions",
    "service_env",
    "wait_until",
]

"""What a failed load means: wait for the warehouse or S3, or set the batch aside.

* **Unavailable** (`is_unavailable`): the warehouse or S3 cannot serve now. The loader retries
  the same batch, however long it takes, and loads nothing after it meanwhile.
* **Poison** (`poison_reason`): the warehouse refuses a value of the batch for good. Retrying
  cannot help and would hold up every later batch, so the batch is quarantined and the loader
  goes on; `python -m warehouse_loader replay` loads it again after a fix.

PostgreSQL names the poison cases by SQLSTATE. One of them, 54000 (an index row over the btree
limit, e.g. a page path of a few KB of non-ASCII text in page_views_minute's key), belongs to a
class psycopg maps to `OperationalError` together with "connection lost": it must be told
apart before the unavailable test, or the loader retries it forever.

Redshift reports most data errors of a COPY as SQLSTATE XX000 (internal error) with the
cause in the message and detail: "Spectrum Scan Error" with code 15001/15007 for Parquet
(e.g. "The length of the data column page_url is longer than the length defined in the
table"), or "Load into table ... failed. Check 'stl_load_errors'" with a load error code
(1204 value out of range, 1213 NULL in a NOT NULL column, 1220 invalid UTF-8, 1224 invalid
JSON for SUPER). The same XX000 also carries S3 and service failures, so the poison texts are
matched only after the transient ones. Statements on staged rows (INSERT, JSON_PARSE) fail with
SQLSTATE classes 22 and 23 like PostgreSQL.
"""

from __future__ import annotations

import psycopg
from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from clickstream_common.tables import Dialect

POISON_SQLSTATES: dict[str, str] = {
    "54000": "program_limit_exceeded (a value too large for an index row)",
    "22021": "character_not_in_repertoire (e.g. a NUL byte in text)",
    "22P05": "untranslatable_character (e.g. \\u0000 in JSON)",
    "22001": "string_data_right_truncation (a string longer than its column)",
}
"""SQLSTATEs the issue names; classes 22 (data exception) and 23 (integrity) are poison too."""

POISON_CLASSES = ("22", "23")

REDSHIFT_TRANSIENT_TEXTS = (
    "S3ServiceException",
    "Error in S3 request",
    "SlowDown",
    "Please reduce your request rate",
    "Access Denied",
    "AccessDenied",
    "timed out",
    "Timeout",
    "Connection reset",
    "Service Unavailable",
)
"""XX000 texts of S3 or service trouble inside a COPY: wait, do not quarantine."""

REDSHIFT_POISON_TEXTS = (
    "length of the data column",  # Spectrum 15001/15007: VARCHAR(65535) exceeded
    "incompatible Parquet schema",  # Spectrum 15007
    "Unmatched number of columns",  # Spectrum 15007
    "stl_load_errors",  # "Load into table 'x' failed. Check 'stl_load_errors' ..."
    "invalid or unsupported UTF-8",  # load error 1220
    "JSON parsing error",  # JSON_PARSE of text that is not JSON
    "Invalid JSON",
)
"""XX000 texts of a value Redshift will never store."""

_UNAVAILABLE_S3_CODES = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestTimeout",
    "ServiceUnavailable",
    "InternalError",
    # Credentials and permissions are fixed by an operator, not by quarantining data.
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
}


def _text(exc: psycopg.Error) -> str:
    detail = getattr(exc.diag, "message_detail", None) or ""
    return f"{exc} {detail}"


def poison_reason(exc: BaseException, dialect: Dialect = Dialect.POSTGRES) -> str | None:
    """Why the warehouse will never store this batch, or None if the error is not about it."""
    if not isinstance(exc, psycopg.Error):
        return None
    state = exc.sqlstate or ""
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if state in POISON_SQLSTATES or state[:2] in POISON_CLASSES:
        return f"refused by the warehouse (SQLSTATE {state}): {first_line}"
    if dialect is Dialect.REDSHIFT and state == "XX000":
        text = _text(exc)
        if any(t in text for t in REDSHIFT_TRANSIENT_TEXTS):
            return None
        if any(t in text for t in REDSHIFT_POISON_TEXTS):
            return f"refused by the warehouse (SQLSTATE {state}): {' '.join(text.split())[:500]}"
    return None


def sqlstate_of(exc: BaseException) -> str:
    """The SQLSTATE behind an error (a PoisonBatch keeps its cause), or '' for other errors."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, psycopg.Error):
            return current.sqlstate or ""
        current = current.__cause__
    return ""


def is_unavailable(exc: BaseException, dialect: Dialect = Dialect.POSTGRES) -> bool:
    """The warehouse or S3 cannot serve now: wait and retry, however long it takes."""
    if poison_reason(exc, dialect) is not None:
        return False
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        return True
    if isinstance(
        exc,
        psycopg.errors.SerializationFailure
        | psycopg.errors.DeadlockDetected
        | psycopg.errors.LockNotAvailable,
    ):
        return True
    if dialect is Dialect.REDSHIFT and isinstance(exc, psycopg.errors.InternalError_):
        return any(t in _text(exc) for t in REDSHIFT_TRANSIENT_TEXTS)
    if isinstance(exc, BotoConnectionError | HTTPClientError):
        return True
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        return status >= 500 or str(error.get("Code", "")) in _UNAVAILABLE_S3_CODES
    return False

"""Snowplow tracker protocol v2 mapped onto native events (pure functions).

Snowplow trackers (JavaScript, mobile, server) send one flat object of text fields per event:
`POST /com.snowplowanalytics.snowplow/tp2` carries a `payload_data` document with a list of
them, `GET /i` one of them as its query string. `e` names the kind of event:

* `pv` page view -> `page_view`; `pp` page ping -> `page_ping`
* `se` structured event -> its action (`se_ac`) in snake_case, with category, label,
  property and value in `properties`
* `tr` transaction -> `purchase`; `ti` transaction item -> `transaction_item`
* `ue` self-describing event (`ue_pr` JSON or `ue_px` base64): the snowplow_ecommerce
  actions map onto the e-commerce event types, `link_click` onto `click` and `site_search`
  onto `search`; any other schema becomes a custom event named after the schema, its
  payload (`schema` and `data`) in `properties`.

Context entities (`co` JSON or `cx` base64) and the fields no event column holds are kept
whole in `raw_context`.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

from clickstream_common.schema import CURRENCY_PATTERN, PRICE_MAX, QUANTITY_MAX, REVENUE_MAX_ABS
from ingest_api.segment import MappingError, snake_case

PAYLOAD_DATA_SCHEMA = "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/"
ECOMMERCE_VENDOR = "com.snowplowanalytics.snowplow.ecommerce"
SNOWPLOW_VENDOR = "com.snowplowanalytics.snowplow"

# snowplow_ecommerce action types with a standard event type; checkout_step is `checkout`
# at its first step only (as Segment's "Checkout Started"), the later steps stay custom.
ECOMMERCE_EVENT_TYPES: dict[str, str] = {
    "product_view": "product_view",
    "add_to_cart": "add_to_cart",
    "remove_from_cart": "remove_from_cart",
    "transaction": "purchase",
}

# Protocol fields that become event columns or properties (everything else is kept in
# raw_context.fields).
_MAPPED = frozenset(
    {
        "e", "eid", "uid", "duid", "nuid", "tnuid", "sid", "url", "refr", "page", "ua",
        "lang", "tz", "res", "dtm", "stm", "ttm", "co", "cx", "ue_pr", "ue_px",
        "se_ca", "se_ac", "se_la", "se_pr", "se_va",
        "tr_id", "tr_af", "tr_tt", "tr_tx", "tr_sh", "tr_ci", "tr_st", "tr_co", "tr_cu",
        "ti_id", "ti_sk", "ti_nm", "ti_ca", "ti_pr", "ti_qu", "ti_cu",
        "pp_mix", "pp_max", "pp_miy", "pp_may",
    }
)  # fmt: skip
_IGLU = re.compile(r"^iglu:(?P<vendor>[^/]+)/(?P<name>[^/]+)/(?P<format>[^/]+)/(?P<version>[^/]+)$")
_RESOLUTION = re.compile(r"^(\d{1,6})x(\d{1,6})$")
# Trackers send codes in any case; the schema wants them upper case.
_CURRENCY = re.compile(CURRENCY_PATTERN)


def schema_parts(uri: Any) -> tuple[str, str] | None:
    """`iglu:vendor/name/jsonschema/1-0-0` -> (vendor, name)."""
    match = _IGLU.match(uri) if isinstance(uri, str) else None
    return (match["vendor"], match["name"]) if match else None


# --- request bodies ------------------------------------------------------------------------


def post_payloads(document: Any) -> list[Any]:
    """The events of a `tp2` body: `{"schema": "...payload_data...", "data": [...]}`.

    Raises MappingError for a body that is not such a document (the route answers 400).
    """
    if not isinstance(document, dict):
        raise MappingError("body must be a payload_data JSON object {schema, data}")
    schema = document.get("schema")
    if not isinstance(schema, str) or not schema.startswith(PAYLOAD_DATA_SCHEMA):
        raise MappingError(f"schema must be {PAYLOAD_DATA_SCHEMA}1-0-x, got {schema!r}")
    data = document.get("data")
    if not isinstance(data, list):
        raise MappingError("data must be a JSON array of events")
    return data


def query_payload(params: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The event of a `GET /i` query string; a repeated parameter keeps its first value."""
    payload: dict[str, str] = {}
    for name, value in params:
        payload.setdefault(name, value)
    return payload


# --- field readers -------------------------------------------------------------------------


def _text(payload: Mapping[str, Any], name: str, limit: int = 256) -> str | None:
    value = payload.get(name)
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    text = str(value).strip()
    return text[:limit] if text else None


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and value.strip():
        try:
            number = float(value)
        except ValueError:
            return None
        return number if number == number and abs(number) != float("inf") else None
    return None


def _integer(value: Any) -> int | None:
    number = _number(value)
    return int(number) if number is not None and number.is_integer() else None


def _millis(payload: Mapping[str, Any], name: str) -> datetime | None:
    """A timestamp field (epoch milliseconds); one that cannot be read is left out."""
    number = _number(payload.get(name))
    if number is None or not 0 < number < 32503680000000:  # before the year 3000
        return None
    return datetime.fromtimestamp(number / 1000, UTC)


def _json(payload: Mapping[str, Any], plain: str, encoded: str) -> Any:
    """The JSON document in `plain` (as text) or `encoded` (base64, URL-safe or not)."""
    if plain in payload and payload[plain] not in (None, ""):
        text = payload[plain]
        where = plain
    elif encoded in payload and payload[encoded] not in (None, ""):
        value = payload[encoded]
        where = encoded
        if not isinstance(value, str):
            raise MappingError(f"{encoded} must be base64 text")
        try:
            text = base64.urlsafe_b64decode(
                value.replace("+", "-").replace("/", "_") + "=" * (-len(value) % 4)
            )
        except (binascii.Error, ValueError) as exc:
            raise MappingError(f"{encoded} is not base64: {exc}") from exc
    else:
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise MappingError(f"{where} is not JSON: {exc}") from exc


def entities(payload: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The context entities of `co`/`cx` (`{"schema": ..contexts.., "data": [...]}`)."""
    document = _json(payload, "co", "cx")
    if document is None:
        return []
    data = document.get("data") if isinstance(document, dict) else None
    if not isinstance(data, list):
        raise MappingError("co/cx must be a contexts document {schema, data: [...]}")
    return [entity for entity in data if isinstance(entity, dict)]


def _entity_data(found: list[dict[str, Any]], vendor: str, name: str) -> list[dict[str, Any]]:
    return [
        e["data"]
        for e in found
        if schema_parts(e.get("schema")) == (vendor, name) and isinstance(e.get("data"), dict)
    ]


# --- the event -----------------------------------------------------------------------------


def _lift_product(event: dict[str, Any], product: Mapping[str, Any]) -> None:
    product_id = _text(product, "id")
    if product_id:
        event["product_id"] = product_id
    price = _number(product.get("price"))
    if price is not None and 0 <= price <= PRICE_MAX:
        event["price"] = price
    quantity = _integer(product.get("quantity"))
    if quantity is not None and 0 <= quantity <= QUANTITY_MAX:
        event["quantity"] = quantity
    _lift_currency(event, product.get("currency"))


def _lift_currency(event: dict[str, Any], value: Any) -> None:
    if isinstance(value, str) and value.isascii() and _CURRENCY.match(value.upper()):
        event["currency"] = value.upper()


def _ecommerce(
    event: dict[str, Any], action: Mapping[str, Any], found: list[dict[str, Any]]
) -> dict[str, Any]:
    """An ecommerce action's event type and typed fields; returns its properties."""
    kind = action.get("type")
    if not isinstance(kind, str) or not kind.strip():
        raise MappingError("snowplow_ecommerce_action without a type")
    products = _entity_data(found, ECOMMERCE_VENDOR, "product")
    properties: dict[str, Any] = {"ecommerce_action": dict(action)}
    if products:
        properties["products"] = products
    for name in ("cart", "transaction", "checkout_step", "promotion", "refund"):
        data = _entity_data(found, ECOMMERCE_VENDOR, name)
        if data:
            properties[name] = data[0]
    if kind == "checkout_step":
        step = _integer(properties.get("checkout_step", {}).get("step"))
        event["event_type"] = "checkout" if step in (None, 1) else "checkout_step"
    else:
        event["event_type"] = ECOMMERCE_EVENT_TYPES.get(kind) or snake_case(kind)
    # Typed product fields only when the action is about one product; a list stays in
    # properties (the per-product figures would otherwise count its first product only).
    if len(products) == 1:
        _lift_product(event, products[0])
        first = products[0]
        for ours, theirs in (("product_name", "name"), ("category", "category")):
            if isinstance(first.get(theirs), str):
                properties.setdefault(ours, first[theirs])
    transaction = properties.get("transaction")
    if isinstance(transaction, dict) and kind == "transaction":
        revenue = _number(transaction.get("revenue"))
        if revenue is not None and abs(revenue) <= REVENUE_MAX_ABS:
            event["revenue"] = revenue
        _lift_currency(event, transaction.get("currency"))
        order = _text(transaction, "transaction_id")
        if order:
            properties["order_id"] = order
        items = _integer(transaction.get("total_quantity"))
        if items is not None:
            properties["items"] = items
    cart = properties.get("cart")
    if isinstance(cart, dict) and "currency" not in event:
        _lift_currency(event, cart.get("currency"))
    return properties


def _self_describing(
    event: dict[str, Any], payload: Mapping[str, Any], found: list[dict[str, Any]]
) -> dict[str, Any]:
    envelope = _json(payload, "ue_pr", "ue_px")
    inner = envelope.get("data") if isinstance(envelope, dict) else None
    if not isinstance(inner, dict) or not isinstance(inner.get("data"), dict):
        raise MappingError("ue_pr/ue_px must hold an unstruct_event {schema, data: {schema, data}}")
    parts = schema_parts(inner.get("schema"))
    if parts is None:
        raise MappingError(f"self-describing event with an invalid schema {inner.get('schema')!r}")
    vendor, name = parts
    data: dict[str, Any] = inner["data"]
    if (vendor, name) == (ECOMMERCE_VENDOR, "snowplow_ecommerce_action"):
        return _ecommerce(event, data, found)
    if (vendor, name) == (SNOWPLOW_VENDOR, "link_click"):
        event["event_type"] = "click"
        return dict(data)
    if (vendor, name) == (SNOWPLOW_VENDOR, "site_search"):
        event["event_type"] = "search"
        terms = data.get("terms")
        if isinstance(terms, list) and terms:
            event["search_query"] = " ".join(str(t) for t in terms)[:1024]
        return dict(data)
    event["event_type"] = snake_case(name)
    return {"schema": inner["schema"], "data": data}


def _structured(event: dict[str, Any], payload: Mapping[str, Any]) -> dict[str, Any]:
    action = _text(payload, "se_ac")
    if not action:
        raise MappingError("structured event (e=se) without an action (se_ac)")
    event["event_type"] = snake_case(action)
    properties: dict[str, Any] = {"action": action}
    for ours, theirs in (("category", "se_ca"), ("label", "se_la"), ("property", "se_pr")):
        value = _text(payload, theirs, 1024)
        if value:
            properties[ours] = value
    number = _number(payload.get("se_va"))
    if number is not None:
        properties["value"] = number
    return properties


def _transaction(event: dict[str, Any], payload: Mapping[str, Any]) -> dict[str, Any]:
    event["event_type"] = "purchase"
    revenue = _number(payload.get("tr_tt"))
    if revenue is not None and abs(revenue) <= REVENUE_MAX_ABS:
        event["revenue"] = revenue
    _lift_currency(event, payload.get("tr_cu"))
    properties: dict[str, Any] = {}
    names = (
        ("order_id", "tr_id"),
        ("affiliation", "tr_af"),
        ("city", "tr_ci"),
        ("state", "tr_st"),
        ("country", "tr_co"),
    )
    for ours, theirs in names:
        value = _text(payload, theirs)
        if value:
            properties[ours] = value
    for ours, theirs in (("tax", "tr_tx"), ("shipping", "tr_sh")):
        number = _number(payload.get(theirs))
        if number is not None:
            properties[ours] = number
    return properties


def _transaction_item(event: dict[str, Any], payload: Mapping[str, Any]) -> dict[str, Any]:
    event["event_type"] = "transaction_item"
    _lift_product(
        event,
        {
            "id": payload.get("ti_sk"),
            "price": payload.get("ti_pr"),
            "quantity": payload.get("ti_qu"),
            "currency": payload.get("ti_cu"),
        },
    )
    properties: dict[str, Any] = {}
    for ours, theirs in (("order_id", "ti_id"), ("product_name", "ti_nm"), ("category", "ti_ca")):
        value = _text(payload, theirs)
        if value:
            properties[ours] = value
    return properties


def _page_ping(event: dict[str, Any], payload: Mapping[str, Any]) -> dict[str, Any]:
    event["event_type"] = "page_ping"
    properties: dict[str, Any] = {}
    for name in ("pp_mix", "pp_max", "pp_miy", "pp_may"):
        value = _integer(payload.get(name))
        if value is not None:
            properties[name.removeprefix("pp_")] = value
    return properties


def to_event(
    payload: Any, received_at: datetime, *, app_id_is_key: bool = False
) -> tuple[dict[str, Any], datetime | None]:
    """One tracker-protocol event -> (native event, the sent time to correct its clock with).

    `app_id_is_key`: the request's write key came from `aid`, which is then not recorded.
    """
    if not isinstance(payload, dict):
        raise MappingError("event must be an object of tracker-protocol fields")
    kind = payload.get("e")
    found = entities(payload)
    event: dict[str, Any] = {}
    event_id = _text(payload, "eid", 128)
    if event_id:
        event["event_id"] = event_id
    user_id = _text(payload, "uid")
    if user_id:
        event["user_id"] = user_id
    # The tracker's first-party cookie id, else the collector cookie's (network) id.
    anonymous_id = _text(payload, "duid") or _text(payload, "nuid") or _text(payload, "tnuid")
    if anonymous_id:
        event["anonymous_id"] = anonymous_id
    session_id = _text(payload, "sid")
    if session_id:
        event["session_id"] = session_id
    for ours, theirs in (("page_url", "url"), ("referrer", "refr")):
        value = _text(payload, theirs, 2048)
        if value:
            event[ours] = value

    # The true timestamp (set by the application) needs no correction; the device's
    # created time is corrected with the device's sent time, as Segment's.
    true_time = _millis(payload, "ttm")
    device_time = _millis(payload, "dtm")
    sent_at = None
    if true_time is not None:
        event["timestamp"] = true_time.isoformat()
    elif device_time is not None:
        event["timestamp"] = device_time.isoformat()
        sent_at = _millis(payload, "stm")
    else:
        event["timestamp"] = received_at.isoformat()

    if kind == "pv":
        event["event_type"] = "page_view"
        title = _text(payload, "page", 1024)
        properties: dict[str, Any] = {"title": title} if title else {}
    elif kind == "pp":
        properties = _page_ping(event, payload)
        title = _text(payload, "page", 1024)
        if title:
            properties["title"] = title
    elif kind == "se":
        properties = _structured(event, payload)
    elif kind == "ue":
        properties = _self_describing(event, payload, found)
    elif kind == "tr":
        properties = _transaction(event, payload)
    elif kind == "ti":
        properties = _transaction_item(event, payload)
    else:
        raise MappingError(f"unsupported event kind e={kind!r}; one of pv, pp, se, ue, tr, ti")
    if properties:
        event["properties"] = properties

    context = native_context(payload, None if app_id_is_key else _text(payload, "aid"))
    if context:
        event["context"] = context
    kept = {
        name: value
        for name, value in payload.items()
        if name not in _MAPPED and not (app_id_is_key and name == "aid")
    }
    raw: dict[str, Any] = {}
    if kept:
        raw["fields"] = kept
    if found:
        raw["contexts"] = found
    if raw:
        event["raw_context"] = raw
    return event, sent_at


def native_context(payload: Mapping[str, Any], app_id: str | None) -> dict[str, Any] | None:
    """The tracker's browser and device fields in the shape of the native EventContext."""
    context: dict[str, Any] = {}
    for ours, theirs, limit in (
        ("user_agent", "ua", 1024),
        ("locale", "lang", 256),
        ("timezone", "tz", 256),
    ):
        value = _text(payload, theirs, limit)
        if value:
            context[ours] = value
    resolution = _RESOLUTION.match(_text(payload, "res") or "")
    if resolution:
        context["screen_width"] = min(int(resolution[1]), 100_000)
        context["screen_height"] = min(int(resolution[2]), 100_000)
    if app_id:
        context["app_name"] = app_id
    return context or None

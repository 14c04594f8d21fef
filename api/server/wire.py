"""What clients may send: request bodies as msgspec Structs, query parameters, names.

Every check here answers 400 ``bad_request`` with a message naming the field, so a client
learns what to fix without reading server logs. The bounds:

- ``ttl``: seconds, > 0 and ≤ 3600, an upper bound that keeps a crashed holder from
  blocking a name for days. A grant may name a ``session`` instead (exactly one of the two):
  it then lives as long as the session (``coord_wire``).
- ``wait``, ``lock_delay``: seconds, 0..3600. ``observe``'s ``timeout``: 0..3600, default 30.
- ``value``: at most 4096 bytes of UTF-8 (the lease state machine's limit, §3).
- ``holder``/``candidate``/``request_id``: 1..256 characters.
- names and ``prefix``: ``[A-Za-z0-9._/-]``, 1..256 (prefix 0..256) characters.
- bodies: at most 1 MiB, else 413 ``payload_too_large``.

``request_id`` may come from the body or the ``Idempotency-Key`` header. Both at once must
agree: two different ids on one request is a client bug, answered 400 rather than guessed.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, TypeVar

import msgspec
from aiohttp import web

from paxlock.coordinator.errors import BadRequest, PayloadTooLarge

MAX_BODY_BYTES = 1024 * 1024
TTL_S_MAX = 3600.0
TOKEN_MAX = 2**63 - 1
WAIT_S_MAX = 3600.0
LOCK_DELAY_S_MAX = 3600.0
OBSERVE_TIMEOUT_S_DEFAULT = 30.0
VALUE_BYTES_MAX = 4096
ID_CHARS_MAX = 256
IDEMPOTENCY_HEADER = "Idempotency-Key"

NAME_PATTERN = re.compile(r"[A-Za-z0-9._/-]{1,256}")
PREFIX_PATTERN = re.compile(r"[A-Za-z0-9._/-]{0,256}")

Ttl = Annotated[float, msgspec.Meta(gt=0, le=TTL_S_MAX, description="seconds")]
Wait = Annotated[float, msgspec.Meta(ge=0, le=WAIT_S_MAX, description="seconds")]
LockDelay = Annotated[float, msgspec.Meta(ge=0, le=LOCK_DELAY_S_MAX, description="seconds")]
Ident = Annotated[str, msgspec.Meta(min_length=1, max_length=ID_CHARS_MAX)]
SessionId = Annotated[str, msgspec.Meta(pattern=r"^s[0-9]{1,19}$",
                                        description="a session id: s + its token")]
Token = Annotated[int, msgspec.Meta(ge=0, le=TOKEN_MAX)]
"""Fencing tokens are revisions: 64-bit signed on the wire and in the store, so larger is a
400, never an overflow deep inside (a 500)."""


def _check_value(value: str | None) -> None:
    """msgspec's ``max_length`` counts characters; the limit is on UTF-8 bytes."""
    if value is not None and len(value.encode()) > VALUE_BYTES_MAX:
        raise ValueError(f"`value` must be at most {VALUE_BYTES_MAX} bytes of UTF-8")


def check_ttl_or_session(ttl: float | None, session: str | None) -> None:
    """A grant lives by its own ``ttl`` or by its ``session``: exactly one is given."""
    if (ttl is None) == (session is None):
        raise ValueError("give either `ttl` (seconds) or `session` (an id), not "
                         + ("both" if ttl is not None else "neither"))


class _Body(msgspec.Struct, forbid_unknown_fields=True):
    pass


class AcquireBody(_Body):
    holder: Ident
    ttl: Ttl | None = None
    wait: Wait = 0.0
    value: str | None = None
    lock_delay: LockDelay = 0.0
    request_id: Ident | None = None
    session: SessionId | None = None

    def __post_init__(self) -> None:
        _check_value(self.value)
        check_ttl_or_session(self.ttl, self.session)


class RenewBody(_Body):
    holder: Ident
    token: Token


class ReleaseBody(_Body):
    holder: Ident
    token: Token
    request_id: Ident | None = None


class VerifyBody(_Body):
    token: Token


class CampaignBody(_Body):
    candidate: Ident
    ttl: Ttl | None = None
    value: str | None = None
    wait: Wait = 0.0
    request_id: Ident | None = None
    session: SessionId | None = None

    def __post_init__(self) -> None:
        _check_value(self.value)
        check_ttl_or_session(self.ttl, self.session)


class ProclaimBody(_Body):
    candidate: Ident
    token: Token
    value: str | None
    request_id: Ident | None = None

    def __post_init__(self) -> None:
        _check_value(self.value)


class ElectionRenewBody(_Body):
    candidate: Ident
    token: Token


class ResignBody(_Body):
    candidate: Ident
    token: Token
    request_id: Ident | None = None


B = TypeVar("B", bound=_Body)

_decoders: dict[type[Any], msgspec.json.Decoder[Any]] = {}


_check_encoder = msgspec.msgpack.Encoder()


def decode_body(raw: bytes, kind: type[B]) -> B:
    """Bytes to a validated body; every failure is a ``BadRequest`` saying what is wrong."""
    if not raw.strip():
        raise BadRequest("request body must be a JSON object")
    decoder = _decoders.get(kind)
    if decoder is None:
        decoder = _decoders[kind] = msgspec.json.Decoder(kind)
    try:
        body: B = decoder.decode(raw)
    except msgspec.ValidationError as error:
        if not _INT_GOT_FLOAT.search(str(error)):
            raise BadRequest(f"invalid request body: {error}") from None
        body = _with_integral_floats(raw, kind)
    except (msgspec.DecodeError, UnicodeDecodeError) as error:
        raise BadRequest(f"malformed JSON: {error}") from None
    try:  # JSON escapes can smuggle lone surrogates, which no log entry can encode
        _check_encoder.encode(body)
    except UnicodeEncodeError:
        raise BadRequest("strings must be valid Unicode (no lone surrogates)") from None
    return body


_INT_GOT_FLOAT = re.compile(r"Expected `int[^`]*`, got `float`")


def _with_integral_floats(raw: bytes, kind: type[B]) -> B:
    """JSON has one number type, and JSON Schema (so the OpenAPI document) counts ``2.0`` as
    an integer: a token or limit written ``2.0`` is 2, while ``2.5`` is still a 400. The slow
    path, taken only when the strict decoder met a float where an int belongs."""

    def integral(value: Any) -> Any:
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, dict):
            return {key: integral(item) for key, item in value.items()}
        if isinstance(value, list):
            return [integral(item) for item in value]
        return value

    try:
        return msgspec.convert(integral(msgspec.json.decode(raw)), kind)
    except msgspec.ValidationError as error:
        raise BadRequest(f"invalid request body: {error}") from None


async def read_body(request: web.Request, kind: type[B]) -> B:
    """The request body, bounded to 1 MiB whatever the (host) app's ``client_max_size``."""
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"request body too large (limit {MAX_BODY_BYTES} bytes)")
    try:
        raw = await request.read()  # cached: forwarding re-reads the same bytes
    except web.HTTPRequestEntityTooLarge:
        raise PayloadTooLarge(f"request body too large (limit {MAX_BODY_BYTES} bytes)") from None
    if len(raw) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"request body too large (limit {MAX_BODY_BYTES} bytes)")
    return decode_body(raw, kind)


def check_name(name: str) -> str:
    if not NAME_PATTERN.fullmatch(name):
        raise BadRequest(
            f"invalid name {name[:300]!r}: must match [A-Za-z0-9._/-]{{1,256}}", name=name[:300]
        )
    return name


def request_id_of(request: web.Request, from_body: str | None) -> str | None:
    """The request id from the body or the ``Idempotency-Key`` header (they must agree)."""
    header = request.headers.get(IDEMPOTENCY_HEADER)
    if header is not None and not 1 <= len(header) <= ID_CHARS_MAX:
        raise BadRequest(f"{IDEMPOTENCY_HEADER} must be 1..{ID_CHARS_MAX} characters")
    if header is not None:
        try:
            header.encode("utf-8")
        except UnicodeEncodeError:  # aiohttp keeps undecodable header bytes as surrogates
            raise BadRequest(f"{IDEMPOTENCY_HEADER} must be UTF-8") from None
    if header is not None and from_body is not None and header != from_body:
        raise BadRequest(f"request_id and {IDEMPOTENCY_HEADER} differ; send one, or the same")
    return from_body if from_body is not None else header


# -- query parameters ----------------------------------------------------------------------


def query_bool(request: web.Request, key: str, default: bool) -> bool:
    raw = request.query.get(key)
    if raw is None:
        return default
    lowered = raw.lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise BadRequest(f"query parameter {key} must be true or false, not {raw[:50]!r}")


def query_float(request: web.Request, key: str, default: float, low: float, high: float) -> float:
    raw = request.query.get(key)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise BadRequest(f"query parameter {key} must be a number, not {raw[:50]!r}") from None
    if not low <= value <= high:  # also rejects nan
        raise BadRequest(f"query parameter {key} must be within {low:g}..{high:g}")
    return value


def query_int(request: web.Request, key: str, default: int) -> int:
    raw = request.query.get(key)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"query parameter {key} must be an integer, not {raw[:50]!r}") from None
    if value < 0:
        raise BadRequest(f"query parameter {key} must be >= 0")
    return value


def query_prefix(request: web.Request) -> str:
    prefix = request.query.get("prefix", "")
    if not PREFIX_PATTERN.fullmatch(prefix):
        raise BadRequest("query parameter prefix must match [A-Za-z0-9._/-]{0,256}")
    return prefix

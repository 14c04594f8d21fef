"""The membership routes of DESIGN.md §8: list the members, add one (as a learner), promote
a learner to voter, remove a member.

    GET    /v1/members                  the configuration as this node knows it (200)
    POST   /v1/members  {"id", "url"}   add a learner (201 and the new configuration)
    POST   /v1/members/{id}:promote     the learner votes from now on (200)
    DELETE /v1/members/{id}             the member neither votes nor learns (200)

The changes run at the primary: a follower forwards them (the service raises
``NotPrimary``, and the forwarding middleware of ``api.server.app`` proxies the request).
An add asks the new member who it is first (``GET {url}/internal/identity``), so that the
configuration lists the member incarnation that actually answers at that URL — never a
guess — and refuses a URL that answers as another member or for another cluster.

The service refuses a change with ``core.membership.MembershipError``; its code becomes the
JSON ``error`` and picks the status (``STATUS_OF_CODE``). ``change_in_progress`` says when
to try again (``Retry-After``): a change is refused until the previous one took effect.

This module imports nothing of ``routes`` or ``app`` (they import it): what it needs of the
app comes through its own keys, ``MEMBERSHIP`` and ``IDENTITY_OF``, set by ``create_app``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Protocol, runtime_checkable

import aiohttp
import msgspec
from aiohttp import web
from yarl import URL

from paxlock.api.server import wire
from paxlock.api.server.bootstrap import IdentityError, fetch_identity
from paxlock.api.server.errors import error_response, json_response
from paxlock.coordinator.core.membership import MembershipError
from paxlock.coordinator.core.messages import URL_CHARS_MAX, Configuration, Member
from paxlock.coordinator.errors import LeaseError, NotPrimary

STATUS_OF_CODE: dict[str, int] = {
    "conflict": 409,
    "not_found": 404,
    "invalid": 400,
    "not_caught_up": 409,
    "change_in_progress": 409,
}
"""HTTP status of each ``MembershipError`` code (an unknown code is a 409: a refusal)."""
CHANGE_RETRY_AFTER_S = 1.0
"""What ``change_in_progress`` tells a client to wait: a change takes effect ALPHA slots
after it is chosen, and the primary fills them with no-ops at once."""
IDENTITY_TIMEOUT_S = 3.0
"""How long an add waits for the new member to say who it is (within the forwarding
timeout of a follower that sent the add on)."""
MEMBER_ID_PATTERN = r"^[A-Za-z0-9._-]{1,256}$"
"""A new member's id: it becomes a path segment (``/v1/members/{id}:promote``), so no ``/``
and no ``:``."""


@runtime_checkable
class MemberService(Protocol):
    """What the membership routes need of the service (``coordinator.service.LeaseService``)."""

    @property
    def node_id(self) -> str: ...

    def known_primary(self) -> str | None: ...

    def membership(self) -> dict[str, Any]:
        """``{"cluster_id", "epoch", "members": [...], "pending": {...} | None}``."""
        ...

    async def add_member(self, member: Member) -> Configuration: ...

    async def promote_member(self, member_id: str) -> Configuration: ...

    async def remove_member(self, member_id: str) -> Configuration: ...


class Identity(Protocol):
    """Who answers at a URL (``api.server.bootstrap.fetch_identity``)."""

    @property
    def member(self) -> str: ...

    @property
    def incarnation(self) -> str: ...

    @property
    def cluster_id(self) -> str | None: ...


IdentityOf = Callable[[str], Awaitable[Identity]]
"""``await identity_of(url)``: the identity the member at ``url`` reports; raises when it
cannot be reached or answers nonsense."""

MEMBERSHIP = web.AppKey("paxlock_membership", MemberService)
IDENTITY_OF: web.AppKey[IdentityOf] = web.AppKey("paxlock_identity_of")

IDENTITY_FAILURES: tuple[type[BaseException], ...] = (
    aiohttp.ClientError, OSError, asyncio.TimeoutError, ValueError, RuntimeError,
    IdentityError,
)  # fmt: skip
"""What fetching an identity raises when the member is down, refuses us or is not a
paxlock member: an answer 503 ``unavailable`` (the new member may still be starting)."""


class AddMemberBody(wire._Body):
    id: Annotated[str, msgspec.Meta(pattern=MEMBER_ID_PATTERN)]
    url: Annotated[str, msgspec.Meta(min_length=1, max_length=URL_CHARS_MAX)]

    def __post_init__(self) -> None:
        self.url = check_member_url(self.url)


def check_member_url(text: str) -> str:
    """``http(s)://host[:port][/path]`` without a trailing ``/``; ``ValueError`` saying what
    is wrong (msgspec turns it into the 400's message)."""
    try:
        url = URL(text)
    except (ValueError, TypeError):
        raise ValueError(f"`url` is not a URL: {text[:200]!r}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(f"`url` must be http(s)://HOST:PORT, not {text[:200]!r}")
    if url.user is not None or url.password is not None or url.query_string or url.fragment:
        raise ValueError("`url` must have no user, query or fragment: the member's base URL")
    return text.rstrip("/")


def identity_fetcher(session: Callable[[], aiohttp.ClientSession | None],
                     cluster_token: str | None, ssl: Any) -> IdentityOf:  # fmt: skip
    """``IDENTITY_OF`` over the app's shared session (``session()`` once it started), with
    the cluster token and the TLS context members use with each other."""

    async def identity_of(url: str) -> Identity:
        opened = session()
        if opened is None:
            raise RuntimeError("the app's client session is not open")
        async with asyncio.timeout(IDENTITY_TIMEOUT_S):
            identity: Identity = await fetch_identity(opened, url, cluster_token=cluster_token,
                                                      ssl=ssl)  # fmt: skip
        return identity

    return identity_of


def configuration_json(config: Configuration) -> dict[str, Any]:
    """A configuration as a JSON object (the struct itself encodes as an array)."""

    def member(m: Member) -> dict[str, str]:
        return {"id": m.id, "incarnation": m.incarnation, "url": m.url}

    return {"epoch": config.epoch, "voters": [member(m) for m in config.voters],
            "learners": [member(m) for m in config.learners]}  # fmt: skip


def refusal(error: MembershipError) -> web.Response:
    """The JSON answer of a change the service refused."""
    status = STATUS_OF_CODE.get(error.code, 409)
    if error.code == "change_in_progress":
        return error_response(status, error.code, str(error),
                              headers={"Retry-After": str(int(CHANGE_RETRY_AFTER_S))},
                              details={"retry_after_s": CHANGE_RETRY_AFTER_S})  # fmt: skip
    return error_response(status, error.code, str(error))


class MembershipUnsupported(LeaseError):
    """501: the app serves a service without membership methods (a test double, say)."""

    code = "not_implemented"
    status = 501


def _service(request: web.Request) -> MemberService:
    service = request.app.get(MEMBERSHIP)
    if service is None:
        raise MembershipUnsupported("this node's service does not manage membership")
    return service


async def _change(change: Awaitable[Configuration], status: int = 200) -> web.Response:
    try:
        config = await change
    except MembershipError as error:
        return refusal(error)
    return json_response(configuration_json(config), status=status)


# -- handlers ------------------------------------------------------------------------------


async def list_members(request: web.Request) -> web.StreamResponse:
    return json_response(_service(request).membership())


async def add_member(request: web.Request) -> web.StreamResponse:
    service = _service(request)
    body = await wire.read_body(request, AddMemberBody)
    primary = service.known_primary()
    if primary is not None and primary != service.node_id:
        raise NotPrimary(primary)  # forwarded before anything is asked of the new member
    try:
        identity = await request.app[IDENTITY_OF](body.url)
    except IDENTITY_FAILURES as error:
        why = str(error) or type(error).__name__
        return error_response(503, "unavailable", f"cannot learn who answers at {body.url} "
                              f"(is {body.id} running, started with --join?): {why}")  # fmt: skip
    if identity.member != body.id:
        return error_response(409, "conflict", f"{body.url} answers as member "
                              f"{identity.member!r}, not {body.id!r}",
                              details={"member": identity.member})  # fmt: skip
    cluster_id = service.membership().get("cluster_id")
    if identity.cluster_id is None:  # started with --join, it has not adopted the cluster yet
        return error_response(503, "unavailable", f"{body.id} at {body.url} is still joining "
                              "(no cluster id yet): retry in a moment",
                              retry_after_s=1.0)  # fmt: skip
    if identity.cluster_id != cluster_id:
        return error_response(409, "conflict", f"{body.id} at {body.url} reports cluster id "
                              f"{identity.cluster_id!r}, this cluster is {cluster_id!r}: start "
                              "it on an empty data dir with --join",
                              details={"cluster_id": identity.cluster_id})  # fmt: skip
    member = Member(body.id, identity.incarnation, body.url)
    return await _change(service.add_member(member), status=201)


async def promote_member(request: web.Request, member_id: str) -> web.StreamResponse:
    return await _change(_service(request).promote_member(member_id))


async def remove_member(request: web.Request, member_id: str) -> web.StreamResponse:
    return await _change(_service(request).remove_member(member_id))


MEMBER_ACTIONS: dict[tuple[str, str | None], Callable[[web.Request, str],
                                                      Awaitable[web.StreamResponse]]] = {
    ("POST", "promote"): promote_member,
    ("DELETE", None): remove_member,
}  # fmt: skip
"""The actions on one member (``routes.dispatcher`` splits ``{id}:verb``)."""

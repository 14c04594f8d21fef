"""Bootstrap and join: how a member whose store has no cluster id gets one.

DESIGN.md §2, Membership: an empty store may vote only while the whole cluster bootstraps.
So a member without a cluster id asks every other ``--peer`` for its identity
(``GET /internal/identity``) before its replica starts, and ``decide`` — pure, so that every
rule is tested on its own — says what the answers allow:

- every member answers, and none has a cluster id: the cluster bootstraps. The genesis
  configuration lists every member incarnation as a voter; every member computes the same
  one from the same answers (each member's own URL, as it advertises it), hence the same
  cluster id. Stores made by a paxlock before member identity (``legacy``) hold acceptor
  state: they bootstrap only all together, never mixed with empty stores (an empty store
  beside them would be an amnesiac voter).
- some member has a cluster id: this member adopts it and its genesis (the id is checked to
  be the genesis's digest) and starts as whatever the configurations make it: a learner
  when its incarnation is in none, as after a lost data dir. With
  ``--initial-cluster-state new`` that is an error instead, as in etcd.
- ``--join URL`` asks one member of a running cluster, and adopts.

Nothing here votes or writes: ``Node`` stores what was decided (``SqliteStore.bootstrap``).
"""

from __future__ import annotations

import asyncio
import ssl as ssl_module
import time
from base64 import b64decode, b64encode
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import aiohttp
import msgspec

from paxlock._logs import get_logger
from paxlock.api.server.peer import TOKEN_HEADER
from paxlock.coordinator.core import membership
from paxlock.coordinator.core.ballot import NodeIdText
from paxlock.coordinator.core.messages import (
    MEMBERS_MAX, URL_CHARS_MAX, Configuration, Incarnation, Member,
)  # fmt: skip

log = get_logger("paxlock.bootstrap")

IDENTITY_PATH = "/internal/identity"
InitialState = Literal["new", "existing"]
INITIAL_STATES: tuple[InitialState, ...] = ("new", "existing")
POLL_S_MIN = 0.05
POLL_S_MAX = 1.0
"""Backoff between rounds of identity requests while some member does not answer."""
FETCH_TIMEOUT_S = 2.0
WAIT_LOG_EVERY_S = 5.0
"""One line per member waited for, again at most this often."""

GENESIS_CHARS_MAX = 4 * MEMBERS_MAX * (URL_CHARS_MAX + 512)
"""base64 of a genesis of the most members, each with the longest URL."""

_genesis_decoder = msgspec.msgpack.Decoder(Configuration)


class IdentityError(Exception):
    """A member's identity could not be had: unreachable, refused, or a malformed answer
    (one sentence)."""


class BootstrapRefused(Exception):
    """This member must not start: one line for the operator, exit status 2."""


@dataclass(frozen=True, slots=True)
class Identity:
    """What ``GET /internal/identity`` answers: who this member incarnation is, the cluster
    it belongs to (None while it bootstraps) and the members it knows (id -> URL: from the
    configurations once running, the ``--peer`` list while bootstrapping)."""

    member: str
    incarnation: str
    cluster_id: str | None
    genesis: Configuration | None
    members: Mapping[str, str] = field(default_factory=dict)
    legacy: bool = False
    """A store of a paxlock before member identity, not bootstrapped since."""

    @property
    def url(self) -> str:
        """The member's own URL, as it advertises it."""
        return self.members.get(self.member, "")

    def as_member(self) -> Member:
        return Member(self.member, self.incarnation, self.url)

    def to_json(self) -> dict[str, Any]:
        genesis = None
        if self.genesis is not None:
            genesis = b64encode(msgspec.msgpack.encode(self.genesis)).decode()
        return {"member": self.member, "incarnation": self.incarnation,
                "cluster_id": self.cluster_id, "genesis": genesis,
                "members": dict(self.members), "legacy": self.legacy}  # fmt: skip


_Text = Annotated[str, msgspec.Meta(max_length=URL_CHARS_MAX)]


class _IdentityBody(msgspec.Struct):
    """The JSON of an identity as hostile input: every field typed and bounded."""

    member: NodeIdText
    incarnation: Incarnation
    cluster_id: Annotated[str, msgspec.Meta(max_length=64)] | None
    genesis: Annotated[str, msgspec.Meta(max_length=GENESIS_CHARS_MAX)] | None
    members: Annotated[dict[NodeIdText, _Text], msgspec.Meta(max_length=MEMBERS_MAX)]
    legacy: bool = False


def parse_identity(data: bytes, where: str) -> Identity:
    """An identity from its JSON; the genesis must decode and its digest be the cluster id
    (a member that reports a cluster id proves it with the genesis)."""
    try:
        body = msgspec.json.decode(data, type=_IdentityBody)
        genesis = None
        if body.genesis is not None:
            genesis = _genesis_decoder.decode(b64decode(body.genesis, validate=True))
    except (msgspec.DecodeError, ValueError) as error:
        raise IdentityError(f"{where} answered a malformed identity: {error}") from None
    if (genesis is None) != (body.cluster_id is None):
        raise IdentityError(f"{where} answered a cluster id without its genesis, or the reverse")
    if genesis is not None and membership.cluster_id_of(genesis) != body.cluster_id:
        raise IdentityError(f"{where} answered cluster id {body.cluster_id}, which is not the "
                            f"digest of the genesis it sent")  # fmt: skip
    return Identity(body.member, body.incarnation, body.cluster_id, genesis,
                    dict(body.members), body.legacy)  # fmt: skip


async def fetch_identity(session: aiohttp.ClientSession, url: str, *,
                         cluster_token: str | None,
                         ssl: ssl_module.SSLContext | None = None) -> Identity:  # fmt: skip
    """``GET {url}/internal/identity`` with the cluster token; ``IdentityError`` (one
    sentence) when the member cannot be reached, refuses, or answers nonsense."""
    headers = {TOKEN_HEADER: cluster_token} if cluster_token else {}
    where = url.rstrip("/")
    try:
        async with session.get(where + IDENTITY_PATH, headers=headers,
                               ssl=ssl if ssl is not None else True,
                               timeout=aiohttp.ClientTimeout(total=FETCH_TIMEOUT_S),
                               ) as response:  # fmt: skip
            data = await response.read()
            if response.status != 200:
                raise IdentityError(f"{where} answered {response.status} to {IDENTITY_PATH}: "
                                    f"{data[:200].decode(errors='replace')}")  # fmt: skip
    except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as error:
        raise IdentityError(f"{where} did not answer {IDENTITY_PATH} "
                            f"({type(error).__name__}: {error})") from None  # fmt: skip
    return parse_identity(data, where)


# --- the decision (pure) ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Bootstrap:
    """Every member answered with no cluster id: this genesis, every member a voter."""

    genesis: Configuration
    cluster_id: str


@dataclass(frozen=True, slots=True)
class Adopt:
    """A member reported this cluster: store its id and genesis, start as the
    configurations make this incarnation (a learner unless one lists it)."""

    genesis: Configuration
    cluster_id: str
    reported_by: str
    members: Mapping[str, str]
    """The members the reporter knows: where the transport dials first."""


@dataclass(frozen=True, slots=True)
class Wait:
    missing: tuple[str, ...]
    """The members whose identity is still needed."""


@dataclass(frozen=True, slots=True)
class Refuse:
    message: str


Decision = Bootstrap | Adopt | Wait | Refuse


def decide(own: Identity, reports: Mapping[str, Identity | None], *,
           initial_state: InitialState | None = None,
           expected_cluster_id: str | None = None) -> Decision:  # fmt: skip
    """What a member without a cluster id may do, given the identity each other configured
    member reported (None: no answer yet). See the module's docstring for the rules."""
    assert own.cluster_id is None, "only a member without a cluster id bootstraps"
    for member_id, report in sorted(reports.items()):
        if report is not None and report.member != member_id:
            return Refuse(f"--peer {member_id} answers as member {report.member!r}: "
                          f"check the --peer list")  # fmt: skip
    clusters: dict[str, Identity] = {}
    for _, report in sorted(reports.items()):
        if report is not None and report.cluster_id is not None:
            clusters.setdefault(report.cluster_id, report)
    if len(clusters) > 1:
        named = ", ".join(f"{r.member} reports {c}" for c, r in clusters.items())
        return Refuse(f"members report different cluster ids ({named}): "
                      f"the --peer list mixes clusters")  # fmt: skip
    if clusters:
        ((cluster_id, reporter),) = clusters.items()
        assert reporter.genesis is not None  # parse_identity checked it goes with the id
        if initial_state == "new":
            return Refuse(f"cluster already bootstrapped (member {reporter.member} reports "
                          f"cluster id {cluster_id}); start with --initial-cluster-state "
                          f"existing or --join")  # fmt: skip
        if expected_cluster_id is not None and expected_cluster_id != cluster_id:
            return Refuse(f"member {reporter.member} reports cluster id {cluster_id}, not "
                          f"{expected_cluster_id} (--cluster-id)")  # fmt: skip
        return Adopt(reporter.genesis, cluster_id, reporter.member, dict(reporter.members))
    missing = tuple(sorted(m for m, r in reports.items() if r is None))
    if missing:
        return Wait(missing)
    if initial_state == "existing":
        return Refuse("--initial-cluster-state existing, but no member reports a cluster id "
                      "(every store is empty): start without it to bootstrap a new cluster")
    everyone = [own, *(r for r in reports.values() if r is not None)]
    legacy = sorted(i.member for i in everyone if i.legacy)
    if legacy and len(legacy) != len(everyone):
        empty = sorted(i.member for i in everyone if not i.legacy)
        return Refuse(f"{', '.join(legacy)} hold the state of a paxlock before member "
                      f"identity but {', '.join(empty)} have empty stores: an empty store "
                      f"cannot vote beside them; restore its data dir, or start the members "
                      f"with state first and add the others later")  # fmt: skip
    genesis = membership.genesis(i.as_member() for i in everyone)
    cluster_id = membership.cluster_id_of(genesis)
    if expected_cluster_id is not None and expected_cluster_id != cluster_id:
        return Refuse(f"--cluster-id {expected_cluster_id}: the cluster is bootstrapping, "
                      f"and its id is the digest of its genesis ({cluster_id})")  # fmt: skip
    return Bootstrap(genesis, cluster_id)


# --- the I/O around it ----------------------------------------------------------------------


async def await_cluster(own: Identity, peers: Mapping[str, str], *,
                        cluster_token: str | None, ssl: ssl_module.SSLContext | None = None,
                        initial_state: InitialState | None = None,
                        expected_cluster_id: str | None = None) -> Bootstrap | Adopt:  # fmt: skip
    """Ask every other member in ``peers`` (id -> URL) for its identity, round after round
    with backoff, until ``decide`` bootstraps or adopts; ``BootstrapRefused`` when it
    refuses. One log line per member waited for (again every ``WAIT_LOG_EVERY_S``)."""
    others = {m: url for m, url in peers.items() if m != own.member}
    logged: dict[str, float] = {}
    pause_s = POLL_S_MIN
    async with aiohttp.ClientSession() as session:
        while True:
            answers = await asyncio.gather(*(
                fetch_identity(session, url, cluster_token=cluster_token, ssl=ssl)
                for url in others.values()
            ), return_exceptions=True)  # fmt: skip
            reports: dict[str, Identity | None] = {}
            errors: dict[str, str] = {}
            for member, answer in zip(others, answers, strict=True):
                if isinstance(answer, Identity):
                    reports[member] = answer
                elif isinstance(answer, IdentityError):
                    reports[member], errors[member] = None, str(answer)
                else:
                    raise answer
            decision = decide(own, reports, initial_state=initial_state,
                              expected_cluster_id=expected_cluster_id)  # fmt: skip
            match decision:
                case Bootstrap() | Adopt():
                    return decision
                case Refuse(message=message):
                    raise BootstrapRefused(message)
                case Wait(missing=missing):
                    now = time.monotonic()
                    for member in missing:
                        if now - logged.get(member, -WAIT_LOG_EVERY_S) >= WAIT_LOG_EVERY_S:
                            logged[member] = now
                            log.info("bootstrap_waiting", node=own.member, member=member,
                                     error=errors.get(member, ""))  # fmt: skip
            await asyncio.sleep(pause_s)  # backoff between polls of other processes
            pause_s = min(pause_s * 2, POLL_S_MAX)


async def join(own: Identity, url: str, *, cluster_token: str | None,
               ssl: ssl_module.SSLContext | None = None,
               expected_cluster_id: str | None = None) -> Adopt:  # fmt: skip
    """``--join URL``: adopt the cluster of the member at ``url`` (one request, no retry:
    a typo in the URL is one line, not a wait)."""
    async with aiohttp.ClientSession() as session:
        try:
            found = await fetch_identity(session, url, cluster_token=cluster_token, ssl=ssl)
        except IdentityError as error:
            raise BootstrapRefused(f"--join {url}: {error}") from None
    if found.cluster_id is None or found.genesis is None:
        raise BootstrapRefused(f"--join {url}: member {found.member} reports no cluster id "
                               f"(it is bootstrapping itself); join a running cluster")  # fmt: skip
    if expected_cluster_id is not None and expected_cluster_id != found.cluster_id:
        raise BootstrapRefused(f"--join {url}: member {found.member} reports cluster id "
                               f"{found.cluster_id}, not {expected_cluster_id} (--cluster-id)")
    if own.member in found.members and found.members[own.member] != own.url:
        log.warning("join_url_differs", node=own.member, ours=own.url,
                    theirs=found.members[own.member])  # fmt: skip
    return Adopt(found.genesis, found.cluster_id, found.member, dict(found.members))

"""A member's identity at the HTTP edge: ``GET /internal/identity``, the members it knows
(from the schedule of configurations), and what the public API says while the member is
bootstrapping or only a learner (``/readyz``, ``/v1/cluster``'s ``role``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

from paxlock.api.server.bootstrap import Identity
from paxlock.api.server.errors import json_response
from paxlock.coordinator.coordination import Coordination
from paxlock.coordinator.core.membership import Schedule
from paxlock.coordinator.core.messages import Configuration, Member
from paxlock.coordinator.errors import Unavailable
from paxlock.coordinator.service import LeaseService
from paxlock.coordinator.views import LeaseView

LEARNER_REASON = "learner: not admitted by any configuration (paxlock member add)"
BOOTSTRAP_REASON = "bootstrapping: waiting for the identity of every member (see the log)"


def member_urls(schedule: Schedule, node_id: str, url: str,
                configured: Mapping[str, str] | None = None) -> dict[str, str]:  # fmt: skip
    """Every member of a configuration in effect or pending, with its URL, and this node
    (a learner no configuration lists yet still knows where it is). A URL this node was
    configured with (``--peer``) wins over the one the member advertises: it is how this
    node reaches that member (through a proxy, a NAT, another name)."""
    configured = configured or {}
    urls = {m.id: configured.get(m.id, m.url) for c in schedule.configurations()
            for m in (*c.voters, *c.learners) if m.url or m.id in configured}  # fmt: skip
    urls[node_id] = url
    return urls


def identity_route(identity: Callable[[], Identity]
                   ) -> Callable[[web.Request], Any]:  # fmt: skip
    """``GET /internal/identity`` (behind the cluster token check of ``/internal/``)."""

    async def handle(request: web.Request) -> web.StreamResponse:
        return json_response(identity().to_json())

    return handle


class MemberLeasing:
    """The ``Leasing`` the app serves: until bootstrap is done, every lease call is a 503
    and ``/readyz`` says why; then the node's ``LeaseService``, except that a member no
    configuration lists is not ready (``LEARNER_REASON``) and ``/v1/cluster`` names this
    node's ``role`` (``voter`` or ``learner``)."""

    def __init__(self, node_id: str) -> None:
        self._node_id = node_id
        self.service: LeaseService | None = None
        self.role: Callable[[], tuple[bool, bool]] = lambda: (False, False)
        """(member, voter): listed in a configuration in effect or pending; voting in one."""

    @property
    def node_id(self) -> str:
        return self._node_id

    def _running(self) -> LeaseService:
        if self.service is None:
            raise Unavailable(f"this member is {BOOTSTRAP_REASON}")
        return self.service

    # -- the lease operations (``coordinator.leasing``) and the membership changes
    # (``api.server.members.MemberService``), once the service runs

    async def acquire(self, name: str, **options: Any) -> LeaseView:
        return await self._running().acquire(name, **options)

    async def renew(self, name: str, **options: Any) -> LeaseView:
        return await self._running().renew(name, **options)

    async def release(self, name: str, **options: Any) -> None:
        await self._running().release(name, **options)

    async def proclaim(self, name: str, **options: Any) -> LeaseView:
        return await self._running().proclaim(name, **options)

    async def get(self, name: str, *, consistent: bool = True) -> LeaseView:
        return await self._running().get(name, consistent=consistent)

    async def list(self, prefix: str = "", *, consistent: bool = True) -> list[LeaseView]:
        return await self._running().list(prefix, consistent=consistent)

    async def verify(self, name: str, *, token: int) -> tuple[bool, int | None]:
        return await self._running().verify(name, token=token)

    async def observe(self, name: str, *, after: int, timeout: float) -> LeaseView | None:
        return await self._running().observe(name, after=after, timeout=timeout)

    async def changes(self, *, after: int, timeout: float) -> int | None:
        return await self._running().changes(after=after, timeout=timeout)

    @property
    def coordination(self) -> Coordination:
        """Sessions, semaphores, read/write locks and groups (``api.server.dispatch``)."""
        return self._running().coordination

    def membership(self) -> dict[str, Any]:
        return self._running().membership()

    async def add_member(self, member: Member) -> Configuration:
        return await self._running().add_member(member)

    async def promote_member(self, member_id: str) -> Configuration:
        return await self._running().promote_member(member_id)

    async def remove_member(self, member_id: str) -> Configuration:
        return await self._running().remove_member(member_id)

    def known_primary(self) -> str | None:
        return None if self.service is None else self.service.known_primary()

    def readiness(self) -> tuple[bool, str]:
        if self.service is None:
            return False, BOOTSTRAP_REASON
        member, _ = self.role()
        if not member:
            return False, LEARNER_REASON
        return self.service.readiness()

    def cluster(self) -> dict[str, Any]:
        view = self._running().cluster()
        view["role"] = "voter" if self.role()[1] else "learner"
        return view

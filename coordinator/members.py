"""Membership at the asyncio edge: the view of ``GET /v1/members`` and the changes of
``POST /v1/members``, ``:promote`` and ``DELETE`` (DESIGN.md §8), as replica requests.

The pure rules (what a change may be, which configuration governs which slot) are
``core.membership``'s; this module adds what only the edge knows: whether a learner has
caught up enough to be promoted, and how long to wait for a change to be applied.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from paxlock.coordinator.core.keeper_effects import MembershipRefused, Reconfigured, Reply
from paxlock.coordinator.core.membership import MembershipError, Schedule
from paxlock.coordinator.core.membership import add_learner, promote, remove
from paxlock.coordinator.core.messages import Configuration, Member, Reconfigure
from paxlock.coordinator.core.replica_io import ReconfigureOp, ReplicaStatus, RequestOp
from paxlock.coordinator.core.proposer import Role
from paxlock.coordinator.errors import NotPrimary, Unavailable

PROMOTE_LAG_MAX = 256
"""A learner is promoted only once it is at most this many slots behind the primary (and
heard from lately): a voter that must first catch up would weaken the quorum it joins."""


class Membership:
    """``ask`` sends one request to the replica (``LeaseService._ask``); ``status`` and
    ``schedule`` read it; ``views`` are ``/v1/cluster``'s member views (reachability, lag)."""

    def __init__(self, ask: Callable[[RequestOp], Awaitable[Reply]],
                 status: Callable[[], ReplicaStatus], schedule: Callable[[], Schedule],
                 views: Callable[[dict[str, str]], list[dict[str, Any]]],
                 cluster_id: Callable[[], str | None]) -> None:  # fmt: skip
        self._ask = ask
        self._status = status
        self._schedule = schedule
        self._views = views
        self._cluster_id = cluster_id

    def view(self) -> dict[str, Any]:
        """Every member of the configurations in effect or pending, with its role."""
        schedule = self._schedule()
        current, latest, pending = schedule.current, schedule.latest, schedule.pending
        members = {m.id: m for c in schedule.configurations() for m in (*c.voters, *c.learners)}
        urls = {member_id: m.url for member_id, m in members.items()}
        status = self._status()
        views = {v["id"]: v for v in self._views(urls)}
        out = []
        for member_id, m in sorted(members.items()):
            view = views.get(member_id, {})
            out.append({
                "id": member_id, "url": m.url, "incarnation": m.incarnation,
                "role": "voter" if member_id in current.voter_ids else "learner",
                "primary": status.primary_hint == member_id,
                "reachable": view.get("reachable", False),
                "chosen_index": view.get("chosen_index"), "lag": view.get("lag"),
            })  # fmt: skip
        return {
            "cluster_id": self._cluster_id(),
            "epoch": current.epoch,
            "members": out,
            "pending": None if pending is None else {
                "first_slot": pending[0], "voters": list(latest.voter_ids),
                "learners": [m.id for m in latest.learners],
            },
        }  # fmt: skip

    async def add(self, member: Member) -> Configuration:
        self._on_the_primary()
        return await self._change(add_learner(self._schedule().latest, member))

    async def promote(self, member_id: str) -> Configuration:
        self._on_the_primary()
        latest = self._schedule().latest
        change = promote(latest, member_id)  # refuses a member that is no learner first
        self._check_caught_up(member_id, latest)
        return await self._change(change)

    async def remove(self, member_id: str) -> Configuration:
        self._on_the_primary()
        return await self._change(remove(self._schedule().latest, member_id))

    def _on_the_primary(self) -> None:
        """A change is judged against the primary's configurations, not a follower's (which
        may not have learned the last change yet): anywhere else it is sent on."""
        status = self._status()
        if status.role is not Role.PRIMARY:
            raise NotPrimary(status.primary_hint)

    def _check_caught_up(self, member_id: str, latest: Configuration) -> None:
        """Only on the primary (a follower forwards the request, whose answer is the
        primary's): it hears every member directly."""
        status = self._status()
        if status.primary_hint != status.node:
            return
        member = latest.member(member_id)
        urls = {member_id: member.url if member is not None else ""}
        (view,) = self._views(urls)
        if not view["reachable"] or view["lag"] is None or view["lag"] > PROMOTE_LAG_MAX:
            raise MembershipError(
                "not_caught_up",
                f"{member_id} has not caught up yet (lag {view['lag']}, reachable "
                f"{view['reachable']}); promote it once `paxlock member list` shows a lag "
                f"below {PROMOTE_LAG_MAX}",
            )

    async def _change(self, change: Reconfigure) -> Configuration:
        reply = await self._ask(ReconfigureOp(change))
        match reply.outcome:
            case Reconfigured(configuration=configuration):
                return configuration
            case MembershipRefused(code=code, reason=reason):
                raise MembershipError(code, reason)
            case other:
                raise Unavailable(f"unexpected answer to a membership change: {other!r}")

"""Deliberately broken membership, for ``test_membership_plants``: each breaks one rule of
``core.membership`` and must be caught by the simulator's checkers (whose ground truth
keeps the true rule), on seeds where the operator changes membership under faults."""

from __future__ import annotations

import random
from collections.abc import Collection

from msgspec.structs import replace

from paxlock.coordinator.core.messages import Configuration
from paxlock.coordinator.core.node import CoreConfig, Node
from paxlock.coordinator.core.ready import DurableState


def changes_too_early(config: CoreConfig, durable: DurableState, rng: random.Random) -> Node:
    """Every member lets a change govern from the slot right after its own (alpha 1 instead
    of the cluster's): a change takes effect before the slots already in flight are
    decided, and the next one may follow at once."""
    assert durable.genesis is not None, "run with the operator on"
    durable = durable.copy()
    durable.genesis = replace(durable.genesis, alpha=1)
    return Node(config, durable, rng)


class _Remembers(Node):
    """Knows every member incarnation any configuration ever listed."""

    def _ever(self) -> set[str]:
        ever: set[str] = self.__dict__.setdefault("ever_voted", set())
        for configuration in self.schedule.configurations():
            ever.update(configuration.voter_ids)
        return ever


class CountsRemovedMembers(_Remembers):
    """A removed member still counts: it keeps voting, and majorities are counted among the
    governing configuration's voters *and* every member that was ever one."""

    def _votes_in(self, configuration: Configuration) -> bool:
        return self.id in self._ever()

    def hears(self, member_id: str, incarnation: str) -> bool:
        return True

    def _slot_quorum(self, slot: int, ids: Collection[str]) -> bool | None:
        governing = self.schedule.governing(slot)
        if governing is None:
            return None
        counted = set(ids) & (set(governing.voter_ids) | self._ever())
        return len(counted) >= len(governing.voters) // 2 + 1


class AmnesiacVoter(Node):
    """The bug of issue 13: an empty store votes again under its member id (incarnations
    ignored, here and at the edge), having forgotten every promise it made."""

    def _votes_in(self, configuration: Configuration) -> bool:
        return self.id in configuration.voter_ids

    def hears(self, member_id: str, incarnation: str) -> bool:
        return member_id in self.schedule.member_ids() or not self.votes


def counts_removed_members(config: CoreConfig, durable: DurableState,
                           rng: random.Random) -> Node:  # fmt: skip
    return CountsRemovedMembers(config, durable, rng)


def amnesiac_voter(config: CoreConfig, durable: DurableState, rng: random.Random) -> Node:
    return AmnesiacVoter(config, durable, rng)

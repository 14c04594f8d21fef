"""The simulated operator: membership changes under every fault (DESIGN.md §2, Membership).

While faults are on, the operator asks whichever node is primary to make one change at a
time: add a member as a learner (a spare, a removed member, or a member whose store was
lost and came back as a new incarnation), promote a learner, remove a voter (the primary
itself included) or a learner. Now and then a member's store is *lost*: it restarts empty,
as a new incarnation that no configuration lists — the amnesia of issue 13, which must
never vote again under its old incarnation. The operator then *repairs*: it removes the
lost incarnation, adds the new one and promotes it, and keeps repairing after the faults
stop, so that every member of the final configuration is a live incarnation.

The choice is the operator's; whether a change takes effect is the protocol's (a change
proposed while another is pending, or against a stale configuration, changes nothing).
"""

from __future__ import annotations

import random

from paxlock.coordinator.core.membership import MembershipError, add_learner, promote, remove
from paxlock.coordinator.core.messages import MEMBERS_MAX, Configuration, Member, Reconfigure

VOTERS_MIN = 3
VOTERS_MAX = 5
"""Voters stay within this range: at least three, so that one lost store (which the
operator causes only while no change is on its way) leaves a live majority to replace it —
even when a change proposed long ago is recovered by phase 1 and takes effect later."""


def lost(config: Configuration, incarnations: dict[str, str]) -> list[str]:
    """Members whose listed incarnation is not the one their store has now."""
    return [m.id for m in (*config.voters, *config.learners)
            if incarnations.get(m.id) != m.incarnation]  # fmt: skip


def choose(rng: random.Random, config: Configuration, incarnations: dict[str, str],
           *, repair_only: bool) -> Reconfigure | None:  # fmt: skip
    """The next change to propose against ``config`` (the primary's newest), given each
    member's current store incarnation; None when there is nothing to do."""
    gone = lost(config, incarnations)
    if gone:
        try:
            return remove(config, rng.choice(gone))
        except MembershipError:
            return None  # the last voter: nothing the operator can do
    learners = list(config.learner_ids)
    voters = list(config.voter_ids)
    if repair_only:  # after the faults: only back to three voters, if learners allow
        return promote(config, rng.choice(learners)) if learners and len(voters) < 3 else None
    outside = [m for m in sorted(incarnations) if config.member(m) is None]
    options: list[Reconfigure] = []
    if outside and len(voters) + len(learners) < MEMBERS_MAX:
        member = rng.choice(outside)
        options.append(add_learner(config, Member(member, incarnations[member])))
    if learners and len(voters) < VOTERS_MAX:
        options.append(promote(config, rng.choice(learners)))
    if len(voters) > VOTERS_MIN:
        options.append(remove(config, rng.choice(voters)))
    if learners and rng.random() < 0.2:
        options.append(remove(config, rng.choice(learners)))
    return rng.choice(options) if options else None


def may_lose_a_store(configs: tuple[Configuration, ...], incarnations: dict[str, str]) -> bool:
    """A store is lost only while at least three vote and no lost one awaits repair in any
    configuration in effect or pending (two lost among four voters would leave no
    majority to remove either)."""
    return all(len(c.voters) >= 3 and not lost(c, incarnations) for c in configs)

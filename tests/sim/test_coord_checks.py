"""The checkers of ``coord_checks`` on hand-made histories: each fires on the one it names and
stays quiet on its legal twin (the planted parts in ``test_coord_sim`` show them firing on
the simulated cluster)."""

from __future__ import annotations

import math
from typing import Any

from paxlock.coordinator.core.ballot import Ballot
from paxlock.coordinator.core.coord_commands import (
    AcquireShared,
    CloseSession,
    ExpireSession,
    Freed,
    OpenSession,
    Permit,
    Session,
    SessionEnded,
)
from paxlock.coordinator.core.membership import Member, genesis
from paxlock.coordinator.core.messages import Batch
from paxlock.coordinator.core.replica_io import Applied
from paxlock.coordinator.simulation.checkers import Checker
from paxlock.coordinator.simulation.coord_checks import CoordChecks, Hold, SessionView


class _Machine:
    def bound(self, id: str) -> list[Freed]:
        return []


def checks() -> CoordChecks:
    checker = Checker(genesis([Member("n1", "")]))
    return CoordChecks(checker, lambda node: _Machine(), lambda: 0.0)


def fired(c: CoordChecks) -> list[str]:
    return [v.check for v in c.checker.violations]


def hold(kind: str, mode: str, token: int, start: float, end: float, limit: int = 0,
         session: SessionView | None = None) -> Hold:  # fmt: skip
    return Hold(kind, "n", mode, f"h{token}", token, limit, start, end, 0.1, session)


def test_limit_fires_only_when_more_than_limit_permits_are_valid_at_once() -> None:
    c = checks()
    c.on_hold(hold("semaphore", "permit", 1, 0.0, 1.0, 2), 0.0)
    c.on_hold(hold("semaphore", "permit", 2, 0.1, 1.0, 2), 0.1)
    c.on_hold(hold("semaphore", "permit", 3, 1.0, 2.0, 2), 1.0)  # the first two ended
    assert fired(c) == []
    c.on_hold(hold("semaphore", "permit", 4, 1.5, 2.0, 2), 1.5)
    c.on_hold(hold("semaphore", "permit", 5, 1.6, 2.0, 2), 1.6)
    assert fired(c) == ["limit"]


def test_exclusive_fires_for_a_writer_beside_a_reader_not_for_two_readers() -> None:
    c = checks()
    c.on_hold(hold("rwlock", "read", 1, 0.0, 1.0), 0.0)
    c.on_hold(hold("rwlock", "read", 2, 0.1, 1.0), 0.1)
    c.on_hold(hold("rwlock", "write", 3, 1.0, 2.0), 1.0)
    assert fired(c) == []
    c.on_hold(hold("rwlock", "read", 4, 1.5, 2.5), 1.5)
    assert fired(c) == ["exclusive"]


def test_a_session_renewal_extends_its_bound_holds_into_an_overlap() -> None:
    c = checks()
    session = SessionView("s1", 1, 0.2, 0.0, 0.5, [])
    bound = hold("rwlock", "write", 2, 0.0, math.inf, session=session)
    session.holds.append(bound)
    c.on_hold(bound, 0.0)
    c.on_hold(hold("rwlock", "write", 3, 0.6, 1.0), 0.6)
    assert fired(c) == []
    session.end = 0.7  # renewed from a send before 0.6: the writer's hold is valid on
    c.on_session_renewed(session, 0.55)
    assert fired(c) == ["exclusive"]


def _apply(c: CoordChecks, node: str, slot: int, entries: list[tuple[Any, Any]]) -> None:
    state = c.checker._slot(slot)
    if not state.chosen:
        state.chosen.append((Ballot(1, "n1"), Batch(tuple(b"x" for _ in entries))))
    for command, result in entries:
        c.on_applied(node, 1, b"x", Applied(slot, command, result, True))


def _permit(token: int, session: str | None) -> tuple[AcquireShared, Permit]:
    command = AcquireShared("semaphore", "n", f"h{token}", "permit", 2, 0.0, session)
    return command, Permit("semaphore", "n", f"h{token}", token, token, "permit", 2, 0.1,
                           session, 0.0)  # fmt: skip


def test_session_fires_when_an_end_frees_less_than_was_bound() -> None:
    opened = (OpenSession("h", 0.2), Session("s1", "h", 0.2, 1, 1))
    ends = [(CloseSession("s1", "h"),
             SessionEnded("s1", "h", 1, 4, False, (Freed("semaphore", "n", "h2", 2),)))]
    c = checks()
    _apply(c, "n1", 1, [opened, _permit(2, "s1")])
    _apply(c, "n1", 2, ends)
    assert fired(c) == []
    c = checks()
    _apply(c, "n1", 1, [opened, _permit(2, "s1"), _permit(3, "s1")])
    _apply(c, "n1", 2, ends)
    assert fired(c) == ["session"]


def test_tokens_and_results_fire_on_a_reused_token_and_a_divergent_replica() -> None:
    c = checks()
    _apply(c, "n1", 1, [_permit(2, None)])
    _apply(c, "n1", 2, [_permit(2, None)])
    assert fired(c) == ["tokens"]
    c = checks()
    _apply(c, "n1", 1, [_permit(2, None)])
    _apply(c, "n2", 1, [_permit(3, None)])
    assert fired(c) == ["results"]


def test_expiry_fires_for_a_session_ended_while_its_client_trusts_it() -> None:
    now = [0.3]
    c = CoordChecks(Checker(genesis([Member("n1", "")])), lambda node: _Machine(),
                    lambda: now[0])  # fmt: skip
    session = SessionView("s1", 1, 0.2, 0.0, 0.5, [])
    c.on_session(session)
    ended = (ExpireSession("s1", 1), SessionEnded("s1", "h", 1, 2, True))
    now[0] = 0.6
    _apply(c, "n1", 1, [ended])
    assert fired(c) == []
    session.end = 0.7  # a renewal answered after the expiry: trusted past it
    c.on_session_renewed(session, 0.6)
    assert fired(c) == ["expiry"]

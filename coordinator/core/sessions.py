"""Sessions of the state machine (DESIGN.md §7): who is open, and which holds each one binds.

A session is a grant like any other (its token is the revision its open raised, its id
``s<token>``). A hold bound to it (a lease, a permit, a read/write hold, a membership) has
no timer of its own: it ends by its own release or when the session ends, and the session's
end frees all of them in one log entry (``LeaseMachine`` drives that end across the
sub-machines). The index ``bound`` is kept in token order, which is grant order, so a
session's end lists what it freed in token order with no sort.
"""

from __future__ import annotations

from paxlock.coordinator.core.coord_commands import Freed, HoldKind, Session
from paxlock.coordinator.core.lease_commands import Refused

BoundHold = tuple[HoldKind, str, str]
"""(kind, name, holder) of a bound hold; for a member (``"member"``, group, member)."""


class Sessions:
    def __init__(self) -> None:
        self._sessions: dict[str, Session] = {}
        """By id, in token order."""
        self._bound: dict[str, dict[int, BoundHold]] = {}
        """Session id -> its bound holds by token, in token order."""

    def __len__(self) -> int:
        return len(self._sessions)

    def get(self, id: str) -> Session | None:
        return self._sessions.get(id)

    def listing(self, holder: str | None = None) -> list[Session]:
        """Open sessions (of ``holder``, when given) in token order."""
        return [s for s in self._sessions.values() if holder is None or s.holder == holder]

    def bound(self, id: str) -> list[Freed]:
        """What session ``id`` holds, in token order (``Freed.blocked`` false)."""
        return [Freed(kind, name, holder, token)
                for token, (kind, name, holder) in self._bound.get(id, {}).items()]  # fmt: skip

    def bound_count(self, id: str) -> int:
        return len(self._bound.get(id, {}))

    def binding(self, id: str, principal: str, about: str) -> Session | Refused:
        """The session a new hold on ``about`` binds to, or why it cannot: ``not_found``, or
        ``forbidden`` when it is another principal's session."""
        session = self._sessions.get(id)
        if session is None:
            return Refused("not_found", about, message=f"no session {id}")
        if session.owner != principal:
            return Refused("forbidden", about, message=f"session {id} belongs to another "
                           "principal")  # fmt: skip
        return session

    def open(self, session: Session) -> None:
        assert session.id not in self._sessions
        assert all(session.token > s.token for s in self._last()), "sessions open in order"
        self._sessions[session.id] = session

    def _last(self) -> list[Session]:
        return [self._sessions[next(reversed(self._sessions))]] if self._sessions else []

    def end(self, id: str) -> list[tuple[int, BoundHold]]:
        """Forget session ``id``; its bound holds, in token order, for the caller to free."""
        del self._sessions[id]
        return list(self._bound.pop(id, {}).items())

    def bind(self, id: str, token: int, hold: BoundHold) -> None:
        assert id in self._sessions, f"a hold binds to an open session ({id})"
        mine = self._bound.setdefault(id, {})
        assert token not in mine and all(token > t for t in mine), "binds in token order"
        mine[token] = hold

    def unbind(self, id: str, token: int) -> None:
        mine = self._bound[id]
        del mine[token]
        if not mine:
            del self._bound[id]

    def restore(self, sessions: tuple[Session, ...],
                bound: list[tuple[str, int, BoundHold]]) -> None:  # fmt: skip
        """Sessions in token order, and every bound hold as (session, token, hold)."""
        for session in sessions:
            self.open(session)
        for id, token, hold in sorted(bound, key=lambda b: b[1]):
            self.bind(id, token, hold)

"""The counters every part of the state machine shares (``leases``, ``shared``, ``groups``):
the cluster-wide revision, the last fencing token, and the counts the keeper's limits read.
One object, passed to each sub-machine, so that a session's end that frees holds in all of
them still raises the revision once."""

from __future__ import annotations


class Ledger:
    def __init__(self, revision: int = 0, last_token: int = 0) -> None:
        assert 0 <= last_token <= revision
        self.revision = revision
        self.last_token = last_token
        self.holds_by_owner: dict[str, int] = {}
        """Leases, permits, read/write holds and memberships per owning principal."""
        self.value_bytes = 0
        """Bytes of lease values and member capabilities, for the limits."""

    def bump(self) -> int:
        before = self.revision
        self.revision += 1
        assert self.revision > before, "the revision never goes down"
        return self.revision

    def grant(self) -> int:
        """A new fencing token: the revision it raises."""
        token = self.bump()
        assert token > self.last_token, "fencing tokens strictly increase"
        self.last_token = token
        return token

    def holds(self) -> int:
        return sum(self.holds_by_owner.values())

    def add_hold(self, owner: str, size_bytes: int = 0) -> None:
        self.holds_by_owner[owner] = self.holds_by_owner.get(owner, 0) + 1
        self.value_bytes += size_bytes

    def drop_hold(self, owner: str, size_bytes: int = 0) -> None:
        left = self.holds_by_owner[owner] - 1
        assert left >= 0 and self.value_bytes >= size_bytes
        if left:
            self.holds_by_owner[owner] = left
        else:
            del self.holds_by_owner[owner]
        self.value_bytes -= size_bytes

    def resize(self, old_bytes: int, new_bytes: int) -> None:
        assert self.value_bytes >= old_bytes
        self.value_bytes += new_bytes - old_bytes

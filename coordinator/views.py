"""What lease operations return to the edges (HTTP, SDK, embedded callers): the lease and
leader objects of DESIGN.md §4, as plain frozen dataclasses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class LeaseView:
    name: str
    holder: str | None
    token: int | None
    revision: int
    ttl: float | None
    expires_in: float | None
    value: str | None
    lock_delay: float

    def as_lease(self) -> dict[str, Any]:
        return {
            "name": self.name, "holder": self.holder, "token": self.token,
            "revision": self.revision, "ttl": self.ttl, "expires_in": self.expires_in,
            "value": self.value, "lock_delay": self.lock_delay,
        }  # fmt: skip

    def as_leader(self) -> dict[str, Any]:
        return {
            "name": self.name, "leader": self.holder, "value": self.value, "token": self.token,
            "revision": self.revision, "ttl": self.ttl, "expires_in": self.expires_in,
        }  # fmt: skip

"""A client process that holds one lock (or leads one election) until told otherwise, for the
pause and handover tests. It reports JSON lines to ``--events``: ``{"event", "t", ...}``,
``t`` being ``time.monotonic()`` (one clock for every process of the machine).

Modes:
- ``lock-async``: ``AsyncClient.lock(cancel_on_loss=True)``; the body sleeps; reports
  ``acquired``, then ``body_cancelled`` and ``lease_lost`` when the lease is lost.
- ``lock-sync``: ``Client.lock(cancel_on_loss=True)``; the body waits on ``lease.lost``
  (a ``threading.Event``); reports ``acquired``, ``body_saw_lost``, ``lease_lost``.
- ``campaign``: ``AsyncClient.election(name).campaign(value)``; reports ``leading`` and
  holds leadership until killed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

from paxlock.api.client.aio import AsyncClient
from paxlock.api.client.errors import LeaseLost
from paxlock.api.client.sync import Client

BODY_S_MAX = 60.0


class Events:
    def __init__(self, path: str) -> None:
        self.path = path

    def emit(self, event: str, **fields: Any) -> None:
        with open(self.path, "a") as file:
            file.write(json.dumps({"event": event, "t": time.monotonic(), **fields}) + "\n")


async def lock_async(args: argparse.Namespace, events: Events) -> int:
    async with AsyncClient(args.endpoints.split(","), identity=args.identity) as client:
        try:
            async with client.lock(args.name, ttl=args.ttl, cancel_on_loss=True) as lease:
                events.emit("acquired", token=lease.token)
                try:
                    await asyncio.sleep(BODY_S_MAX)
                except asyncio.CancelledError:
                    events.emit("body_cancelled", lost=lease.lost.is_set())
                    raise
        except LeaseLost as error:
            events.emit("lease_lost", message=error.message, lost_reason=lease.lost_reason)
            return 0
    events.emit("body_finished")
    return 1


def lock_sync(args: argparse.Namespace, events: Events) -> int:
    with Client(args.endpoints.split(","), identity=args.identity) as client:
        try:
            with client.lock(args.name, ttl=args.ttl, cancel_on_loss=True) as lease:
                events.emit("acquired", token=lease.token)
                if lease.lost.wait(BODY_S_MAX):
                    events.emit("body_saw_lost", lost_reason=lease.lost_reason)
        except LeaseLost as error:
            events.emit("lease_lost", message=error.message, lost_reason=lease.lost_reason)
            return 0
    events.emit("body_finished")
    return 1


async def campaign(args: argparse.Namespace, events: Events) -> int:
    async with AsyncClient(args.endpoints.split(","), identity=args.identity) as client:
        election = client.election(args.name)
        async with election.campaign(args.value, ttl=args.ttl) as term:
            events.emit("leading", token=term.token)
            await term.lost.wait()
            events.emit("term_lost", lost_reason=term.lost_reason)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--endpoints", required=True, help="comma-separated URLs")
    parser.add_argument("--events", required=True)
    parser.add_argument("--mode", choices=("lock-async", "lock-sync", "campaign"), required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--identity", required=True)
    parser.add_argument("--ttl", type=float, default=1.5)
    parser.add_argument("--value", default=None)
    args = parser.parse_args()
    events = Events(args.events)
    if args.mode == "lock-sync":
        return lock_sync(args, events)
    return asyncio.run(lock_async(args, events) if args.mode == "lock-async"
                       else campaign(args, events))  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())

"""A tooz backend on paxlock: ``tooz.coordination.get_coordinator("paxlock://h1:7001,h2:7001")``.

tooz (OpenStack's coordination library) holds every driver to one test suite; this one maps
its calls onto the HTTP API (issue 15 spec §3, §5):

- ``start()`` opens one paxlock *session* (ttl = the URL's ``timeout``, default 30 s);
  ``heartbeat()`` renews it (one quorum round, no log write, however many locks and groups
  hang on it) and opens a new one if it was lost; ``stop()`` closes it, which ends at once
  every membership, lock and group leadership bound to it.
- groups are paxlock groups, members are bound to the session, capabilities travel as
  tooz's msgpack bytes (``utils.dumps``) in base64.
- locks are read/write locks bound to the session (``tooz_lock``), each acquisition with a
  fresh holder ``<member>/<coordinator>-<n>``; ``break_()`` releases whatever holds the name.
- elections: ``run_watchers()`` runs the cached-members watchers, then campaigns, without
  waiting, for the leadership of each group with an elected-as-leader watcher (bound to the
  session); ``stand_down_group_leader()`` resigns.

tooz ids are bytes, sent as paxlock names by ``tooz_lock.encode_id`` (reversibly).

URL options: ``timeout`` (session ttl, s), ``request_timeout`` and ``retry_deadline`` (the
SDK's failover policy, s), ``token`` (bearer token of a cluster run with ``--auth``),
``ca_file`` (PEM of the CA for ``https``; then ``host:port`` means ``https://``).
"""

from __future__ import annotations

import base64
import contextlib
import logging
import secrets
import threading
import uuid
from collections.abc import Coroutine
from concurrent import futures
from typing import Any, TypeVar
from urllib.parse import quote

import tooz
from tooz import coordination, utils

from paxlock.api.client.errors import LeaseHeld, NotHolder, PaxlockError
from paxlock.api.client.keepalive import TaskSet
from paxlock.api.client.sync_loop import _LoopThread
from paxlock.api.client.tooz_lock import PaxlockLock, decode_id, encode_id, raise_tooz
from paxlock.api.client.transport import (
    RetryPolicy, Transport, client_ssl_context, normalize_endpoints,
)  # fmt: skip

__all__ = ["PaxlockDriver"]

log = logging.getLogger("paxlock.tooz")
T = TypeVar("T")

DEFAULT_TIMEOUT_S = 30.0
BEATS_PER_TTL = 3


class PaxlockDriver(coordination.CoordinationDriverCachedRunWatchers,
                    coordination.CoordinationDriverWithExecutor):  # fmt: skip
    """The ``paxlock://`` tooz backend; see the module docstring."""

    CHARACTERISTICS = (
        coordination.Characteristics.DISTRIBUTED_ACROSS_THREADS,
        coordination.Characteristics.DISTRIBUTED_ACROSS_PROCESSES,
        coordination.Characteristics.DISTRIBUTED_ACROSS_HOSTS,
        coordination.Characteristics.LINEARIZABLE,
        coordination.Characteristics.SERIALIZABLE,
    )

    def __init__(self, member_id: bytes, parsed_url: Any, options: dict[str, Any]) -> None:
        super().__init__(member_id, parsed_url, options)
        self._member_id = utils.to_binary(member_id, "utf-8")
        opts = self._options
        if "executor" not in opts:  # futurist's pool takes a second to shut down; this none
            self._executor.default_executor_factory = _one_thread_executor
        ca_file = opts.get("ca_file")
        self._endpoints = normalize_endpoints(str(parsed_url.netloc) or "127.0.0.1:7001",
                                              "https" if ca_file else "http")  # fmt: skip
        self._ssl = client_ssl_context(ca_file) if ca_file else None
        self._token = opts.get("token")
        self._policy = RetryPolicy(float(opts.get("request_timeout", 5.0)),
                                   float(opts.get("retry_deadline", 10.0)))  # fmt: skip
        self.timeout_s = float(opts.get("timeout", DEFAULT_TIMEOUT_S))
        self._member = encode_id(self._member_id)
        self._holder_prefix = f"{self._member[:200]}/{secrets.token_hex(4)}"
        self._holders = 0
        self._state = threading.Lock()
        self._runner: _LoopThread | None = None
        self._transport: Transport | None = None
        self._tasks: TaskSet | None = None
        self._session_id: str | None = None
        self._terms: dict[bytes, tuple[str, int]] = {}
        """Groups this coordinator leads: group id -> (group name, term token)."""
        self._held_locks: set[PaxlockLock] = set()

    # -- plumbing ---------------------------------------------------------------------------

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        runner = self._runner
        if runner is None:
            coro.close()
            raise tooz.ToozError("the paxlock coordinator is not started")
        try:
            return runner.run(coro)
        except RuntimeError as error:  # closed under us by stop()
            utils.raise_with_cause(tooz.ToozError, str(error), cause=error)

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        transport = self._transport
        if transport is None:
            raise tooz.ToozError("the paxlock coordinator is not started")
        return self._run(transport.call(method, path, body=body, deadline=transport.deadline()))

    def _new_holder(self) -> str:
        with self._state:
            self._holders += 1
            return f"{self._holder_prefix}-{self._holders}"

    def _submit(self, fn: Any, *args: Any) -> coordination.CoordinatorResult[Any]:
        return coordination.CoordinatorResult(self._executor.submit(fn, *args))

    # -- the session ------------------------------------------------------------------------

    def _start(self) -> None:
        self._runner = _LoopThread()
        self._transport = Transport(self._endpoints, self._policy, ssl_context=self._ssl,
                                    token=self._token)  # fmt: skip
        self._tasks = TaskSet()
        try:
            self._session_id = self._open_session()
        except BaseException:
            self._teardown()
            raise

    def _open_session(self) -> str:
        body = {"holder": self._member, "ttl": self.timeout_s, "request_id": uuid.uuid4().hex}
        try:
            raw = self._call("POST", "/v1/sessions", body)
        except PaxlockError as error:
            raise_tooz(error)
        return str(raw["id"])

    def _session(self) -> str:
        session = self._session_id
        if session is None:
            raise tooz.ToozError("the paxlock coordinator is not started")
        return session

    def _session_lost(self, lost: str) -> str:
        """The cluster does not know session ``lost`` (it expired): forget what hung on it
        and open a new one (once, whichever thread notices first)."""
        with self._state:
            if self._session_id != lost:
                return self._session()
            log.warning("paxlock session %s of %r was lost: its locks, memberships and "
                        "leaderships ended; opening a new one", lost, self._member)  # fmt: skip
            self._forget_holds()
            self._session_id = self._open_session()
            return self._session_id

    def _forget_holds(self) -> None:
        for lock in list(self._held_locks):
            lock.forget()
        self._held_locks.clear()
        self._terms.clear()
        self._joined_groups.clear()

    def heartbeat(self) -> float:
        """Renew the session (a new one if it was lost); seconds until the next beat."""
        session = self._session()
        try:
            self._call("POST", f"/v1/sessions/{quote(session)}:renew", {"holder": self._member})
        except PaxlockError as error:
            if error.code != "not_found":
                raise_tooz(error)
            self._session_lost(session)
        return self.timeout_s / BEATS_PER_TTL

    def _stop(self) -> None:
        """Close the session (ending every hold bound to it at once), then the client."""
        session, self._session_id = self._session_id, None
        try:
            if session is not None:
                self._call("POST", f"/v1/sessions/{quote(session)}:close",
                           {"holder": self._member})  # fmt: skip
        except (PaxlockError, tooz.ToozError) as error:
            log.warning("paxlock session %s not closed (it will expire): %s", session, error)
        finally:
            self._forget_holds()
            self._teardown()

    def _teardown(self) -> None:
        runner, transport, tasks = self._runner, self._transport, self._tasks
        if runner is not None and transport is not None and tasks is not None:
            with contextlib.suppress(Exception):
                runner.run(_close(tasks, transport))
        if runner is not None:
            runner.stop()
        self._runner = self._transport = self._tasks = None

    # -- groups -----------------------------------------------------------------------------

    def _group_call(self, group_id: bytes, method: str, verb: str, body: dict[str, Any] | None,
                    member_id: bytes | None = None) -> Any:  # fmt: skip
        """One call on ``/v1/groups/{group}{verb}``, paxlock's errors as tooz's."""
        path = f"/v1/groups/{encode_id(group_id)}{verb}"
        try:
            return self._call(method, path, body)
        except PaxlockError as error:
            raise_tooz(error, group_id, member_id)

    def create_group(self, group_id: bytes) -> coordination.CoordinatorResult[None]:
        def create() -> None:
            self._group_call(utils.to_binary(group_id, "utf-8"), "PUT", "", None)

        return self._submit(create)

    def delete_group(self, group_id: bytes) -> coordination.CoordinatorResult[None]:
        def delete() -> None:
            self._group_call(utils.to_binary(group_id, "utf-8"), "DELETE", "", None)

        return self._submit(delete)

    def get_groups(self) -> coordination.CoordinatorResult[list[bytes]]:
        def groups() -> list[bytes]:
            try:
                raw = self._call("GET", "/v1/groups")
            except PaxlockError as error:
                raise_tooz(error)
            return [decode_id(name) for name in raw["groups"]]

        return self._submit(groups)

    def join_group(self, group_id: bytes, capabilities: coordination.Capabilities | None = None
                   ) -> coordination.CoordinatorResult[None]:  # fmt: skip
        encoded = base64.b64encode(utils.dumps(capabilities)).decode()

        def join() -> None:
            gid = utils.to_binary(group_id, "utf-8")
            verb = f"/members/{self._member}:join"
            session = self._session()
            body = {"holder": self._member, "capabilities": encoded, "session": session}
            try:
                self._group_call(gid, "POST", verb, body, self._member_id)
            except coordination.GroupNotCreated:
                if self._session_known(session):
                    raise
                body["session"] = self._session_lost(session)
                self._group_call(gid, "POST", verb, body, self._member_id)
            self._joined_groups.add(group_id)

        return self._submit(join)

    def _session_known(self, session: str) -> bool:
        try:
            self._call("GET", f"/v1/sessions/{quote(session)}")
        except PaxlockError as error:
            if error.code == "not_found":
                return False
            raise_tooz(error)
        return True

    def leave_group(self, group_id: bytes) -> coordination.CoordinatorResult[None]:
        def leave() -> None:
            gid = utils.to_binary(group_id, "utf-8")
            verb = f"/members/{self._member}:leave"
            self._group_call(gid, "POST", verb, {"holder": self._member}, self._member_id)
            self._joined_groups.discard(group_id)

        return self._submit(leave)

    def _members(self, group_id: bytes) -> dict[bytes, Any]:
        """Member id -> raw capabilities, ``GroupNotCreated`` if there is no such group."""
        gid = utils.to_binary(group_id, "utf-8")
        raw = self._group_call(gid, "GET", "/members", None)
        return {decode_id(m["member"]): m.get("capabilities") for m in raw["members"]}

    def get_members(self, group_id: bytes) -> coordination.CoordinatorResult[set[bytes]]:
        return self._submit(lambda: set(self._members(group_id)))

    def get_members_with_capabilities(self, group_id: bytes) -> coordination.CoordinatorResult[
            dict[bytes, coordination.Capabilities | None]]:  # fmt: skip
        def members() -> dict[bytes, Any]:
            return {m: _capabilities(c) for m, c in self._members(group_id).items()}

        return self._submit(members)

    def _member_json(self, group_id: bytes, member_id: bytes) -> Any:
        gid, mid = utils.to_binary(group_id, "utf-8"), utils.to_binary(member_id, "utf-8")
        return self._group_call(gid, "GET", f"/members/{encode_id(mid)}", None, mid)

    def get_member_capabilities(self, group_id: bytes, member_id: bytes
                                ) -> coordination.CoordinatorResult[Any]:  # fmt: skip
        return self._submit(
            lambda: _capabilities(self._member_json(group_id, member_id).get("capabilities")))

    def get_member_info(self, group_id: bytes, member_id: bytes
                        ) -> coordination.CoordinatorResult[dict[str, Any]]:  # fmt: skip
        """Capabilities, plus paxlock's ``token`` (the join's revision), ``revision`` (of
        the last update) and ``session``; paxlock keeps no wall-clock times."""

        def info() -> dict[str, Any]:
            raw = self._member_json(group_id, member_id)
            return {"capabilities": _capabilities(raw.get("capabilities")),
                    "token": raw.get("token"), "revision": raw.get("revision"),
                    "session": raw.get("session")}  # fmt: skip

        return self._submit(info)

    def update_capabilities(self, group_id: bytes, capabilities: coordination.Capabilities
                            ) -> coordination.CoordinatorResult[None]:  # fmt: skip
        encoded = base64.b64encode(utils.dumps(capabilities)).decode()

        def update() -> None:
            gid = utils.to_binary(group_id, "utf-8")
            self._group_call(gid, "PATCH", f"/members/{self._member}",
                             {"capabilities": encoded}, self._member_id)  # fmt: skip

        return self._submit(update)

    # -- group leaders ------------------------------------------------------------------------

    def run_watchers(self, timeout: float | None = None) -> list[Any]:
        result = super().run_watchers(timeout)
        self.run_elect_coordinator()
        return result

    def run_elect_coordinator(self) -> None:
        """Campaign, without waiting, for each watched group this coordinator does not lead;
        run the group's elected-as-leader hooks on a win."""
        for group_id, hooks in list(self._hooks_elected_leader.items()):
            if group_id in self._terms:
                continue
            name = encode_id(utils.to_binary(group_id, "utf-8"))
            body = {"candidate": self._member, "session": self._session(), "wait": 0.0,
                    "request_id": uuid.uuid4().hex}  # fmt: skip
            try:
                raw = self._call("POST", f"/v1/groups/{name}/leader:campaign", body)
            except LeaseHeld:
                continue  # someone else leads
            except PaxlockError as error:
                if error.code == "not_found":
                    continue  # no such group: no leader to be
                raise_tooz(error)
            self._terms[group_id] = (name, int(raw["token"]))
            hooks.run(coordination.LeaderElected(group_id, self._member_id))

    def get_leader(self, group_id: bytes) -> coordination.CoordinatorResult[bytes]:
        """The leader's member id, None (despite tooz's annotation) when nobody leads."""

        def leader() -> bytes | None:
            raw = self._group_call(utils.to_binary(group_id, "utf-8"), "GET", "/leader", None)
            who = raw.get("leader") if isinstance(raw, dict) else None
            return decode_id(who) if isinstance(who, str) else None

        return self._submit(leader)

    def stand_down_group_leader(self, group_id: bytes) -> bool:
        term = self._terms.pop(group_id, None)
        if term is None:
            return False
        name, token = term
        body = {"candidate": self._member, "token": token, "request_id": uuid.uuid4().hex}
        try:
            self._call("POST", f"/v1/groups/{name}/leader:resign", body)
        except NotHolder:
            return False
        except PaxlockError as error:
            raise_tooz(error)
        return True

    # -- locks --------------------------------------------------------------------------------

    def get_lock(self, name: bytes) -> PaxlockLock:
        return PaxlockLock(self, utils.to_binary(name, "utf-8"))

    def _plumbing(self) -> tuple[Transport, TaskSet]:
        transport, tasks = self._transport, self._tasks
        if transport is None or tasks is None:
            raise tooz.ToozError("the paxlock coordinator is not started")
        return transport, tasks


def _one_thread_executor() -> futures.Executor:
    return futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="paxlock-tooz")


async def _close(tasks: TaskSet, transport: Transport) -> None:
    await tasks.close(1.0)
    await transport.close()


def _capabilities(raw: Any) -> Any:
    """A member's capabilities (base64 of ``utils.dumps``) back as tooz was given them."""
    data = base64.b64decode(raw) if isinstance(raw, str) and raw else b""
    return utils.loads(data) if data else None

"""The membership routes (DESIGN.md §8, issue 13 item 4) against a fake service: what each
route asks of the service, how bad input and the service's refusals are answered, that an
add asks the new member who it is first and refuses a URL that answers as someone else,
and that a follower forwards a change to the primary before asking anything.

Real aiohttp servers on OS-chosen loopback ports; the identity of the member to add comes
from a fake ``IDENTITY_OF`` (the real one is ``api.server.bootstrap.fetch_identity``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from paxlock.api.server.app import PRIMARY_HEADER, create_app
from paxlock.api.server.auth import Authenticator, Grant, Principal, token_sha256
from paxlock.api.server.members import IDENTITY_OF, MEMBERSHIP, check_member_url
from paxlock.coordinator.core.membership import MembershipError
from paxlock.coordinator.core.messages import Configuration, Member
from paxlock.coordinator.errors import NotPrimary
from paxlock.coordinator.metrics import Metrics

CLUSTER_ID = "c0ffee"
N1, N2 = Member("n1", "i1", "http://n1:1"), Member("n2", "i2", "http://n2:1")


@dataclass(frozen=True)
class Identity:
    member: str
    incarnation: str
    cluster_id: str | None


class FakeMembers:
    """The service's membership methods in memory. ``refuse`` makes the next change raise
    it; ``primary`` other than ``node_id`` makes every change raise ``NotPrimary``."""

    def __init__(self, node_id: str = "n1", primary: str | None = "n1") -> None:
        self.node_id = node_id
        self.primary = primary
        self.config = Configuration(0, (N1, N2), ())
        self.calls: list[tuple[str, Any]] = []
        self.refuse: MembershipError | None = None

    def known_primary(self) -> str | None:
        return self.primary

    def readiness(self) -> tuple[bool, str]:
        return True, "ready"

    def membership(self) -> dict[str, Any]:
        members = [{"id": m.id, "url": m.url, "incarnation": m.incarnation,
                    "role": "voter" if m in self.config.voters else "learner",
                    "primary": m.id == self.primary, "reachable": True, "chosen_index": 9,
                    "lag": 0} for m in (*self.config.voters, *self.config.learners)]  # fmt: skip
        return {"cluster_id": CLUSTER_ID, "epoch": self.config.epoch, "members": members,
                "pending": None}  # fmt: skip

    def _enter(self, op: str, arg: Any) -> None:
        self.calls.append((op, arg))
        if self.primary != self.node_id:
            raise NotPrimary(self.primary)
        if self.refuse is not None:
            raise self.refuse

    async def add_member(self, member: Member) -> Configuration:
        self._enter("add", member)
        self.config = Configuration(70, self.config.voters, (*self.config.learners, member))
        return self.config

    async def promote_member(self, member_id: str) -> Configuration:
        self._enter("promote", member_id)
        return self.config

    async def remove_member(self, member_id: str) -> Configuration:
        self._enter("remove", member_id)
        return self.config


class FakeIdentities:
    """``IDENTITY_OF``: what answers at each URL (an exception: it cannot be reached)."""

    def __init__(self, answers: dict[str, Identity | BaseException] | None = None) -> None:
        self.answers = answers or {}
        self.asked: list[str] = []

    async def __call__(self, url: str) -> Identity:
        self.asked.append(url)
        answer = self.answers.get(url, aiohttp.ClientConnectionError("connection refused"))
        if isinstance(answer, BaseException):
            raise answer
        return answer


Client = TestClient[web.Request, web.Application]
Serve = Callable[..., Awaitable[Client]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    clients: list[Client] = []

    async def start(service: FakeMembers, identities: FakeIdentities, *,
                    peers: dict[str, str] | None = None, **kw: Any) -> Client:  # fmt: skip
        peers = peers or {service.node_id: "http://127.0.0.1:9"}
        app = create_app(service, peers=peers, metrics=Metrics(service.node_id),  # type: ignore[arg-type]
                         **kw)  # fmt: skip
        app[IDENTITY_OF] = identities
        client = TestClient(TestServer(app))
        await client.start_server()
        clients.append(client)
        return client

    yield start
    for client in reversed(clients):
        await client.close()


async def call(client: Client, method: str, path: str, body: Any = None,
               **kw: Any) -> tuple[int, Any, Any]:  # fmt: skip
    async with client.request(method, path, json=body, **kw) as resp:
        payload = await resp.json() if resp.content_type == "application/json" else None
        return resp.status, payload, resp.headers


N3 = Identity("n3", "i3", CLUSTER_ID)
ADD = {"id": "n3", "url": "http://127.0.0.1:7003/"}


async def test_the_list_is_the_services_membership_as_it_is(serve: Serve) -> None:
    fake = FakeMembers()
    status, body, _ = await call(await serve(fake, FakeIdentities()), "GET", "/v1/members")
    assert status == 200 and body == fake.membership()
    assert [m["role"] for m in body["members"]] == ["voter", "voter"]


async def test_an_add_asks_the_new_member_who_it_is_and_adds_that_incarnation(
        serve: Serve) -> None:  # fmt: skip
    fake, identities = FakeMembers(), FakeIdentities({"http://127.0.0.1:7003": N3})
    status, body, _ = await call(await serve(fake, identities), "POST", "/v1/members", ADD)
    assert status == 201
    assert identities.asked == ["http://127.0.0.1:7003"], "the URL without its trailing /"
    assert fake.calls == [("add", Member("n3", "i3", "http://127.0.0.1:7003"))]
    assert body == {"epoch": 70, "voters": [{"id": "n1", "incarnation": "i1", "url": N1.url},
                                            {"id": "n2", "incarnation": "i2", "url": N2.url}],
                    "learners": [{"id": "n3", "incarnation": "i3",
                                  "url": "http://127.0.0.1:7003"}]}  # fmt: skip


@pytest.mark.parametrize("body", [
    {"url": "http://h:1"}, {"id": "n3"}, {"id": "", "url": "http://h:1"},
    {"id": "a/b", "url": "http://h:1"}, {"id": "n3:promote", "url": "http://h:1"},
    {"id": "n3", "url": "ftp://h:1"}, {"id": "n3", "url": "h:1"}, {"id": "n3", "url": "http://"},
    {"id": "n3", "url": "http://h:1/?x=1"}, {"id": "n3", "url": "http://u:p@h:1"},
    {"id": "n3", "url": "http://h:1", "role": "voter"}, {"id": 3, "url": "http://h:1"},
    {"id": "n3", "url": "http://h:1" + "x" * 3000}, [], "n3",
])  # fmt: skip
async def test_a_bad_add_body_is_a_400_and_nobody_is_asked(serve: Serve, body: Any) -> None:
    fake, identities = FakeMembers(), FakeIdentities()
    status, answer, _ = await call(await serve(fake, identities), "POST", "/v1/members", body)
    assert status == 400 and answer["error"] == "bad_request" and answer["message"]
    assert fake.calls == [] and identities.asked == []


async def test_malformed_json_is_a_400(serve: Serve) -> None:
    client = await serve(FakeMembers(), FakeIdentities())
    async with client.post("/v1/members", data=b"{not json") as resp:
        assert resp.status == 400 and (await resp.json())["error"] == "bad_request"


def test_member_urls_keep_a_mount_path_and_lose_the_trailing_slash() -> None:
    assert check_member_url("https://h.example:7001/paxlock/") == "https://h.example:7001/paxlock"
    with pytest.raises(ValueError, match="http"):
        check_member_url("unix:///tmp/sock")


@pytest.mark.parametrize("answer, what", [
    (Identity("n4", "i4", CLUSTER_ID), "answers as member 'n4'"),
    (Identity("n3", "i3", "another"), "reports cluster id 'another'"),
])  # fmt: skip
async def test_a_url_that_answers_as_another_member_or_cluster_is_refused_409(
        serve: Serve, answer: Identity, what: str) -> None:  # fmt: skip
    fake = FakeMembers()
    identities = FakeIdentities({"http://127.0.0.1:7003": answer})
    status, body, _ = await call(await serve(fake, identities), "POST", "/v1/members", ADD)
    assert status == 409 and body["error"] == "conflict" and what in body["message"]
    assert fake.calls == [], "nothing is added"


async def test_a_member_still_joining_is_a_503_to_retry(serve: Serve) -> None:
    """No cluster id yet: it was started with ``--join`` and has not adopted the cluster."""
    fake = FakeMembers()
    identities = FakeIdentities({"http://127.0.0.1:7003": Identity("n3", "i3", None)})
    status, body, headers = await call(await serve(fake, identities), "POST", "/v1/members", ADD)
    assert status == 503 and body["error"] == "unavailable" and "still joining" in body["message"]
    assert headers["Retry-After"] == "1" and fake.calls == []


@pytest.mark.parametrize("failure", [aiohttp.ClientConnectionError("refused"),
                                     TimeoutError(), ValueError("not a paxlock member")])
async def test_a_member_that_cannot_be_asked_is_a_503_that_says_so(
        serve: Serve, failure: BaseException) -> None:  # fmt: skip
    fake = FakeMembers()
    identities = FakeIdentities({"http://127.0.0.1:7003": failure})
    status, body, headers = await call(await serve(fake, identities), "POST", "/v1/members", ADD)
    assert status == 503 and body["error"] == "unavailable" and headers["Retry-After"]
    assert "http://127.0.0.1:7003" in body["message"] and fake.calls == []


async def test_promote_and_remove_reach_the_service_and_answer_the_configuration(
        serve: Serve) -> None:  # fmt: skip
    fake = FakeMembers()
    client = await serve(fake, FakeIdentities())
    status, body, _ = await call(client, "POST", "/v1/members/n2:promote")
    assert status == 200 and body["epoch"] == 0 and len(body["voters"]) == 2
    status, body, _ = await call(client, "DELETE", "/v1/members/n2")
    assert status == 200 and [v["id"] for v in body["voters"]] == ["n1", "n2"]
    assert fake.calls == [("promote", "n2"), ("remove", "n2")]


@pytest.mark.parametrize("code, status", [
    ("conflict", 409), ("not_found", 404), ("invalid", 400), ("not_caught_up", 409),
    ("change_in_progress", 409),
])  # fmt: skip
@pytest.mark.parametrize("method, path", [("POST", "/v1/members/n3:promote"),
                                          ("DELETE", "/v1/members/n3"), ("POST", "/v1/members")])
async def test_each_refusal_of_the_service_has_its_status_and_code(
        serve: Serve, code: str, status: int, method: str, path: str) -> None:  # fmt: skip
    fake = FakeMembers()
    fake.refuse = MembershipError(code, f"refused: {code}")
    client = await serve(fake, FakeIdentities({"http://127.0.0.1:7003": N3}))
    got, body, headers = await call(client, method, path, ADD if method == "POST" and
                                    path == "/v1/members" else None)  # fmt: skip
    assert (got, body["error"], body["message"]) == (status, code, f"refused: {code}")
    if code == "change_in_progress":
        assert headers["Retry-After"] == "1" and body["retry_after_s"] == 1.0
    else:
        assert "Retry-After" not in headers


async def test_unknown_actions_and_methods_are_json_errors(serve: Serve) -> None:
    client = await serve(FakeMembers(), FakeIdentities())
    status, body, _ = await call(client, "POST", "/v1/members/n2:demote")
    assert status == 404 and ":promote" in body["message"]
    status, body, headers = await call(client, "GET", "/v1/members/n2")
    assert status == 405 and body["error"] == "method_not_allowed" and "DELETE" in headers["Allow"]
    status, body, _ = await call(client, "PUT", "/v1/members")
    assert status == 405 and body["error"] == "method_not_allowed"


async def test_a_follower_forwards_a_change_before_asking_the_new_member(serve: Serve) -> None:
    primary, at_primary = FakeMembers("n2", primary="n2"), FakeIdentities(
        {"http://127.0.0.1:7003": N3})  # fmt: skip
    upstream = await serve(primary, at_primary)
    follower, at_follower = FakeMembers("n1", primary="n2"), FakeIdentities()
    peers = {"n1": "http://127.0.0.1:9", "n2": str(upstream.make_url(""))}
    client = await serve(follower, at_follower, peers=peers)
    status, body, headers = await call(client, "POST", "/v1/members", ADD)
    assert status == 201 and headers[PRIMARY_HEADER] == "n2"
    assert at_follower.asked == [] and follower.calls == []
    assert at_primary.asked == ["http://127.0.0.1:7003"]
    assert primary.calls == [("add", Member("n3", "i3", "http://127.0.0.1:7003"))]
    for method, path in (("POST", "/v1/members/n3:promote"), ("DELETE", "/v1/members/n3")):
        status, _, headers = await call(client, method, path)
        assert status == 200 and headers[PRIMARY_HEADER] == "n2"
    assert [op for op, _ in primary.calls] == ["add", "promote", "remove"]


async def test_without_a_known_primary_a_change_is_a_503(serve: Serve) -> None:
    lost = FakeMembers("n1", primary=None)
    client = await serve(lost, FakeIdentities({"http://127.0.0.1:7003": N3}))
    for method, path in (("POST", "/v1/members"), ("DELETE", "/v1/members/n2")):
        status, body, headers = await call(client, method, path, ADD)
        assert status == 503 and body["error"] == "unavailable" and headers["Retry-After"]


async def test_a_service_without_membership_answers_501(serve: Serve) -> None:
    class Bare:
        node_id = "n1"

        def known_primary(self) -> str | None:
            return "n1"

    app = create_app(Bare(), peers={"n1": "http://127.0.0.1:9"},  # type: ignore[arg-type]
                     metrics=Metrics("n1"))  # fmt: skip
    assert MEMBERSHIP not in app
    async with TestClient(TestServer(app)) as client:
        status, body, _ = await call(client, "GET", "/v1/members")
    assert (status, body["error"]) == (501, "not_implemented")
    assert body["message"] == "this node's service does not manage membership"


# -- roles (--auth) ------------------------------------------------------------------------

ADMIN, READER, PARTIAL, LOCKER = "admin-token", "reader-token", "partial-token", "lock-token"


def authenticator() -> Authenticator:
    def principal(name: str, token: str, *grants: Grant) -> Principal:
        return Principal(name, token_sha256(token), grants)

    return Authenticator({
        "ops": principal("ops", ADMIN, Grant("", "admin")),
        "monitor": principal("monitor", READER, Grant("", "read")),
        "team": principal("team", PARTIAL, Grant("a/", "read")),
        "app": principal("app", LOCKER, Grant("", "lock")),
    })  # fmt: skip


@pytest.mark.parametrize("token, read, change", [
    (ADMIN, 200, (201, 200, 200)), (READER, 200, (403, 403, 403)),
    (PARTIAL, 403, (403, 403, 403)), (LOCKER, 200, (403, 403, 403)), (None, 401, (401,) * 3),
])  # fmt: skip
async def test_changes_need_admin_and_the_list_needs_read_over_every_name(
        serve: Serve, token: str | None, read: int, change: tuple[int, ...]) -> None:  # fmt: skip
    fake = FakeMembers()
    client = await serve(fake, FakeIdentities({"http://127.0.0.1:7003": N3}),
                         auth=authenticator())  # fmt: skip
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    assert (await call(client, "GET", "/v1/members", headers=headers))[0] == read
    got = tuple([
        (await call(client, "POST", "/v1/members", ADD, headers=headers))[0],
        (await call(client, "POST", "/v1/members/n3:promote", headers=headers))[0],
        (await call(client, "DELETE", "/v1/members/n3", headers=headers))[0],
    ])  # fmt: skip
    assert got == change
    assert len(fake.calls) == (3 if token == ADMIN else 0)


# -- the real IDENTITY_OF, over a stand-in for api.server.bootstrap ------------------------


async def test_identity_of_asks_fetch_identity_with_the_apps_session_token_and_tls(
        monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    from paxlock.api.server import members

    asked: list[tuple[Any, str, Any, Any]] = []

    async def fetch_identity(session: Any, url: str, *, cluster_token: str | None,
                             ssl: Any) -> Identity:  # fmt: skip
        asked.append((session, url, cluster_token, ssl))
        if url.endswith(":9"):
            await asyncio.Event().wait()  # never answers
        return N3

    monkeypatch.setattr(members, "fetch_identity", fetch_identity)
    monkeypatch.setattr(members, "IDENTITY_TIMEOUT_S", 0.05)
    session, tls = object(), object()
    identity_of = members.identity_fetcher(lambda: session, "tok", tls)  # type: ignore[arg-type,return-value]
    assert await identity_of("http://h:3") == N3
    assert asked == [(session, "http://h:3", "tok", tls)]
    with pytest.raises(TimeoutError):
        await identity_of("http://h:9")
    closed = members.identity_fetcher(lambda: None, None, None)
    with pytest.raises(members.IDENTITY_FAILURES):
        await closed("http://h:3")

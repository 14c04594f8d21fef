"""The SDK's membership calls and ``paxlock member`` (issue 13, item 4) against a canned HTTP
server: what goes on the wire, how answers and errors come back (typed errors in the SDK;
one line and an exit status in the CLI), and the CLI's own usage errors.

The server answers fixed JSON in the shapes of ``api.server.members`` (those handlers are
tested in test_members_api.py; the real-process test is
tests/integration/test_members_cli.py). The CLI runs in a worker thread (it runs its own
event loop) while the server runs in the test's."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from paxlock.api.cli.main import build_parser, main
from paxlock.api.client.aio import AsyncClient
from paxlock.api.client.errors import BadRequest, Conflict, NotFound, Unavailable
from paxlock.api.client.sync import Client
from paxlock.api.client.types import MemberIncarnation, MemberStatus, PendingChange

MEMBERSHIP = {
    "cluster_id": "c0ffee", "epoch": 130,
    "members": [
        {"id": "n1", "url": "http://h:1", "incarnation": "i1", "role": "voter",
         "primary": True, "reachable": True, "chosen_index": 200, "lag": 0},
        {"id": "n4", "url": "http://h:4", "incarnation": "i4", "role": "learner",
         "primary": False, "reachable": False, "chosen_index": None, "lag": None},
    ],
    "pending": {"first_slot": 260, "voters": ["n1", "n4"], "learners": []},
}  # fmt: skip
CONFIG = {"epoch": 196, "voters": [{"id": "n1", "incarnation": "i1", "url": "http://h:1"}],
          "learners": [{"id": "n4", "incarnation": "i4", "url": "http://h:4"}]}  # fmt: skip
REFUSALS = {  # member id -> (status, code): the canned server's refusals
    "n5": (409, "not_caught_up"), "n6": (409, "change_in_progress"), "n7": (404, "not_found"),
    "n8": (503, "unavailable"), "n9": (409, "conflict"), "n10": (400, "invalid"),
}  # fmt: skip


def _answer(member: str, ok: int) -> web.Response:
    if member not in REFUSALS:
        return web.json_response(CONFIG, status=ok)
    status, code = REFUSALS[member]
    body = {"error": code, "message": f"{member}: refused ({code})"}
    if code == "change_in_progress":
        body["retry_after_s"] = 1.0
    return web.json_response(body, status=status)


class Canned:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str, Any, str | None]] = []
        """(method, raw path, JSON body, Authorization) of every request."""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json() if request.can_read_body else None
        self.seen.append((request.method, request.raw_path, body,
                          request.headers.get("Authorization")))  # fmt: skip
        tail = request.match_info.get("tail", "")
        if request.method == "GET":
            return web.json_response(MEMBERSHIP)
        if request.method == "POST" and not tail:
            return _answer(body["id"], 201)
        return _answer(tail.removesuffix(":promote"), 200)


@pytest.fixture
async def canned() -> AsyncIterator[tuple[Canned, str]]:
    fake = Canned()
    app = web.Application()
    app.router.add_route("*", "/v1/members", fake.handle)
    app.router.add_route("*", "/v1/members/{tail}", fake.handle)
    server = TestServer(app)
    await server.start_server()
    yield fake, str(server.make_url("")).rstrip("/")
    await server.close()


# -- the SDK -------------------------------------------------------------------------------


async def test_the_sdk_sends_each_call_and_parses_each_answer(canned: Any) -> None:
    fake, url = canned
    async with AsyncClient(url) as client:
        membership = await client.members()
        added = await client.add_member("n4", "http://h:4")
        promoted = await client.promote_member("n4")
        removed = await client.remove_member("n4")
    assert [(m, p, b) for m, p, b, _ in fake.seen] == [
        ("GET", "/v1/members", None), ("POST", "/v1/members", {"id": "n4", "url": "http://h:4"}),
        ("POST", "/v1/members/n4:promote", None), ("DELETE", "/v1/members/n4", None)]
    assert (membership.cluster_id, membership.epoch) == ("c0ffee", 130)
    assert membership.member("n4") == MemberStatus("n4", "http://h:4", "i4", "learner", False,
                                                   False, None, None)  # fmt: skip
    assert membership.member("n1") is not None and membership.member("n1").primary  # type: ignore[union-attr]
    assert membership.pending == PendingChange(260, ("n1", "n4"), ())
    assert added == promoted == removed
    assert added.epoch == 196 and added.learners == (MemberIncarnation("n4", "i4", "http://h:4"),)


@pytest.mark.parametrize("member, kind, code", [
    ("n5", Conflict, "not_caught_up"), ("n6", Conflict, "change_in_progress"),
    ("n7", NotFound, "not_found"), ("n9", Conflict, "conflict"), ("n10", BadRequest, "invalid"),
])  # fmt: skip
async def test_refusals_are_the_sdks_typed_errors_with_the_servers_code(
        canned: Any, member: str, kind: type[Exception], code: str) -> None:  # fmt: skip
    _, url = canned
    async with AsyncClient(url) as client:
        with pytest.raises(kind) as raised:
            await client.promote_member(member)
    assert raised.value.code == code and member in raised.value.message  # type: ignore[attr-defined]
    if code == "change_in_progress":
        assert isinstance(raised.value, Conflict) and raised.value.retry_after_s == 1.0


async def test_a_503_is_retried_until_the_deadline_then_unavailable(canned: Any) -> None:
    fake, url = canned
    async with AsyncClient(url, retry_deadline=0.3, backoff_base=0.01) as client:
        with pytest.raises(Unavailable):
            await client.remove_member("n8")
    assert len(fake.seen) >= 2, "retried"


async def test_the_sync_client_has_the_same_calls(canned: Any) -> None:
    fake, url = canned

    def use() -> tuple[Any, ...]:
        with Client(url) as client:
            return (client.members().epoch, client.add_member("n4", "http://h:4").epoch,
                    client.promote_member("n4").epoch, client.remove_member("n4").epoch)

    assert await asyncio.to_thread(use) == (130, 196, 196, 196)
    assert [m for m, _, _, _ in fake.seen] == ["GET", "POST", "POST", "DELETE"]


# -- the CLI -------------------------------------------------------------------------------


async def paxlock(*words: str) -> int:
    return await asyncio.to_thread(main, list(words))


async def test_list_prints_the_table_and_json_prints_the_membership(
        canned: Any, capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    _, url = canned
    assert await paxlock("member", "list", "--endpoint", url) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "cluster c0ffee  configuration of slot 130"
    assert lines[1].split() == ["ID", "ROLE", "URL", "PRIMARY", "REACHABLE", "LAG"]
    assert lines[2].split() == ["n1", "voter", "http://h:1", "yes", "yes", "0"]
    assert lines[3].split() == ["n4", "learner", "http://h:4", "no", "NO", "-"]
    assert lines[4] == "pending from slot 260: voters n1,n4  learners -"
    assert await paxlock("member", "list", "--json", "--endpoints", url) == 0
    assert json.loads(capsys.readouterr().out) == MEMBERSHIP


async def test_each_change_prints_what_it_did_and_exits_0(
        canned: Any, capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    fake, url = canned
    assert await paxlock("member", "add", "n4", "http://h:4", "--endpoint", url) == 0
    out = capsys.readouterr().out
    assert out.startswith("added n4 as a learner") and "paxlock member promote n4" in out
    assert "voters n1  learners n4" in out
    assert await paxlock("member", "promote", "n4", "--endpoint", url) == 0
    assert capsys.readouterr().out.startswith("promoted n4: it votes from slot 260 on")
    assert await paxlock("member", "remove", "n4", "--json", "--endpoint", url) == 0
    assert json.loads(capsys.readouterr().out) == CONFIG
    assert [(m, p) for m, p, _, _ in fake.seen] == [
        ("POST", "/v1/members"), ("POST", "/v1/members/n4:promote"),
        ("DELETE", "/v1/members/n4")]  # fmt: skip


@pytest.mark.parametrize("words, status", [
    (("promote", "n5"), 1), (("promote", "n6"), 1), (("remove", "n7"), 1),
    (("add", "n9", "http://h:9"), 1), (("remove", "n8", "--retry-deadline", "0.2"), 4),
])  # fmt: skip
async def test_a_refusal_is_one_line_and_its_exit_status(
        canned: Any, capsys: pytest.CaptureFixture[str], words: tuple[str, ...],
        status: int) -> None:  # fmt: skip
    _, url = canned
    assert await paxlock("member", *words, "--endpoint", url) == status
    captured = capsys.readouterr()
    assert captured.out == ""
    (line,) = captured.err.splitlines()
    assert line.startswith(f"paxlock member {words[0]}: ") and words[1] in line
    if status == 4:
        assert "cluster unavailable" in line


async def test_no_endpoint_answering_is_exit_4(capsys: pytest.CaptureFixture[str]) -> None:
    assert await paxlock("member", "list", "--endpoint", "http://127.0.0.1:1",
                         "--retry-deadline", "0.2") == 4  # fmt: skip
    assert "cluster unavailable" in capsys.readouterr().err


async def test_the_token_and_the_environments_endpoints_are_used(
        canned: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    fake, url = canned
    (tmp_path / "token").write_text("s3cret\n")
    monkeypatch.setenv("PAXLOCK_ENDPOINTS", url)
    assert await paxlock("member", "list", "--token-file", str(tmp_path / "token")) == 0
    monkeypatch.setenv("PAXLOCK_AUTH_TOKEN", "from-env")
    assert await paxlock("member", "list") == 0
    assert [auth for _, _, _, auth in fake.seen] == ["Bearer s3cret", "Bearer from-env"]


@pytest.mark.parametrize("words, says", [
    (("member",), "required"), (("member", "add", "n4"), "required"),
    (("member", "add", "a/b", "http://h:1"), "invalid member id"),
    (("member", "add", "n4", "h:1"), "http(s)://HOST:PORT"),
    (("member", "promote", "n:4"), "invalid member id"),
    (("member", "list", "--retry-deadline", "-1"), "at least 0"),
    (("member", "list", "--ca", "/nonexistent/ca.pem"), "ca.pem"),
])  # fmt: skip
def test_usage_errors_are_one_line_and_exit_2(capsys: pytest.CaptureFixture[str],
                                              words: tuple[str, ...], says: str) -> None:
    try:
        status = main(list(words))
    except SystemExit as exit_:
        status = exit_.code  # type: ignore[assignment]
    assert status == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("paxlock member") and says in line


@pytest.mark.parametrize("action", ["list", "add", "promote", "remove"])
def test_help_is_plain_text_and_shows_every_default(action: str) -> None:
    parser = build_parser()
    for word in ("member", action):
        (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        parser = commands.choices[word]
    text = " ".join(parser.format_help().split())
    assert "`" not in text
    assert "(default: 10.0)" in text and "$PAXLOCK_ENDPOINTS" in text

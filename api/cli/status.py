"""``paxlock status``: the cluster as its members see it.

It asks every endpoint it is given for ``GET /v1/cluster`` at once (``--endpoint``, which
takes a comma-separated list and may be repeated, else ``PAXLOCK_ENDPOINTS``, else the
three ports of ``paxlock up``), and prints one table of members: role, whether the cluster
hears from it (``up``/``DOWN``: heard within twice the election timeout, by the primary's
view when the primary answered), the chosen index each last reported, the applied index
of those that answered, and the lag behind the most advanced one. ``--json`` prints the
same as one object, with every raw view.

The primary is the member that answered and says it is primary (the highest ballot, should
a deposed one not know yet); if it did not answer, the one the others name and still hear.

Exit status: 0 a primary is known; 4 the cluster is unavailable: no endpoint answered, or
members answered but none knows a primary (no lease can be granted, as ``paxlock lock``'s
4); 2 usage errors.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import ssl
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import aiohttp

from paxlock.api.cli.arguments import add_endpoint_argument, add_token_argument, token_from
from paxlock.api.cli.output import EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE, cell, duration
from paxlock.api.cli.output import table as aligned

DEFAULT_ENDPOINTS = ("http://127.0.0.1:7001", "http://127.0.0.1:7002", "http://127.0.0.1:7003")
TIMEOUT_S = 2.0


def add_status_arguments(parser: argparse.ArgumentParser) -> None:
    add_endpoint_argument(parser)
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object: primary, ballot, members, every raw "
                        "view and the endpoints that did not answer")  # fmt: skip
    parser.add_argument("--timeout", type=float, default=TIMEOUT_S, metavar="S",
                        help=f"seconds to wait for each endpoint (default: {TIMEOUT_S})")
    add_token_argument(parser)


def endpoints_from(given: Sequence[str] | None, environ: Mapping[str, str]) -> list[str]:
    """The endpoints to ask: the flags', else ``PAXLOCK_ENDPOINTS``'s, else the defaults;
    comma-separated lists split, blanks and repeats dropped, order kept."""
    items = list(given or []) or [environ.get("PAXLOCK_ENDPOINTS", "")]
    urls = [url.strip().rstrip("/") for item in items for url in item.split(",")]
    return list(dict.fromkeys(url for url in urls if url)) or list(DEFAULT_ENDPOINTS)


# -- asking ---------------------------------------------------------------------------------


async def _ask(session: aiohttp.ClientSession, endpoint: str) -> dict[str, Any] | str:
    """The member's ``/v1/cluster`` object, or a sentence saying why there is none."""
    try:
        async with session.get(endpoint + "/v1/cluster") as response:
            if response.status != 200:
                return f"answered HTTP {response.status}"
            view = await response.json(content_type=None)
    except asyncio.TimeoutError:
        return "no answer in time"
    except aiohttp.ClientSSLError as error:
        from paxlock.api.client.transport import tls_failure

        return tls_failure(error)
    except aiohttp.ClientConnectorError as error:
        code = error.os_error.errno  # negative for a name that does not resolve
        why = os.strerror(code) if code and code > 0 else error.os_error.strerror
        return f"cannot connect ({why or error.os_error})"
    except (aiohttp.ClientError, ValueError) as error:
        return f"no cluster object ({type(error).__name__})"
    if not isinstance(view, dict) or not isinstance(view.get("members"), list):
        return "no cluster object in the answer"
    return view


async def ask_all(endpoints: Sequence[str], timeout_s: float, tls: ssl.SSLContext | None = None,
                  token: str | None = None) -> dict[str, dict[str, Any] | str]:  # fmt: skip
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    connector = aiohttp.TCPConnector(ssl=tls) if tls is not None else None
    headers = {"Authorization": f"Bearer {token}"} if token else None
    async with aiohttp.ClientSession(timeout=timeout, connector=connector,
                                     headers=headers) as session:  # fmt: skip
        answers = await asyncio.gather(*(_ask(session, e) for e in endpoints))
    return dict(zip(endpoints, answers, strict=True))


# -- combining the views ----------------------------------------------------------------------


@dataclass(slots=True)
class Row:
    id: str
    url: str
    role: str
    reachable: bool
    """Heard from within the window, by the view the report is based on."""
    answered: bool
    """Answered this command itself."""
    chosen_index: int | None
    applied_index: int | None
    lag: int | None
    heard_s_ago: float | None
    ballot: str | None = None
    """The highest ballot the member itself reports (only of those that answered)."""


@dataclass(slots=True)
class Report:
    primary: str | None
    ballot: str | None
    learn_mode: str | None
    seen_by: str | None
    """The member whose view gives reachability: the primary's when it answered, else one
    that names it, else the first that answered."""
    members: list[Row] = field(default_factory=list)
    views: dict[str, dict[str, Any]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


def _round(ballot: Any) -> int:
    head = str(ballot).partition(".")[0]
    return int(head) if head.isdigit() else -1


def _member(view: Mapping[str, Any], node: str | None) -> Mapping[str, Any]:
    found = [m for m in view["members"] if isinstance(m, dict) and m.get("id") == node]
    return found[0] if found else {}


def _primary(views: Mapping[str, Mapping[str, Any]]) -> str | None:
    claims = [v for node, v in views.items() if v.get("primary") == node]
    if claims:
        return str(max(claims, key=lambda v: _round(v.get("ballot")))["node"])
    named = [str(v["primary"]) for v in views.values()
             if v.get("primary") and _member(v, v["primary"]).get("reachable") is True]  # fmt: skip
    return max(set(named), key=named.count) if named else None


def _opt_text(value: Any) -> str | None:
    return None if value is None else str(value)


def combine(answers: Mapping[str, dict[str, Any] | str]) -> Report:
    views: dict[str, dict[str, Any]] = {}
    errors: dict[str, str] = {}
    for endpoint, answer in answers.items():
        if isinstance(answer, str):
            errors[endpoint] = answer
        else:
            views.setdefault(str(answer.get("node")), answer)
    primary = _primary(views)
    if not views:
        return Report(None, None, None, None, [], views, errors)
    naming = [node for node, view in views.items() if view.get("primary") == primary]
    seen_by = primary if primary in views else (naming or list(views))[0]
    reference = views[seen_by]
    rows = []
    for raw in reference["members"]:
        node = str(raw.get("id"))
        own = views.get(node)
        chosen = own.get("chosen_index") if own is not None else raw.get("chosen_index")
        rows.append(Row(
            node, str(raw.get("url")), "primary" if node == primary else "follower",
            raw.get("reachable") is True, own is not None,
            chosen if isinstance(chosen, int) else None,
            own.get("applied_index") if own is not None else None, None,
            raw.get("heard_s_ago"), None if own is None else _opt_text(own.get("ballot")),
        ))  # fmt: skip
    top = max((r.chosen_index for r in rows if r.chosen_index is not None), default=0)
    for row in rows:
        row.lag = None if row.chosen_index is None else top - row.chosen_index
    ballot = (views[primary].get("ballot") if primary in views else None)
    return Report(primary, ballot, reference.get("learn_mode"), seen_by, rows, views, errors)


# -- printing ---------------------------------------------------------------------------------


def table(report: Report) -> str:
    lines = [f"primary {cell(report.primary)}  ballot {cell(report.ballot)}  "
             f"learn {cell(report.learn_mode)}  (reachability as {report.seen_by} sees it)"]  # fmt: skip
    header = ("MEMBER", "URL", "ROLE", "REACHABLE", "BALLOT", "CHOSEN", "APPLIED", "LAG",
              "HEARD")  # fmt: skip
    lines.append(aligned(header, [
        (r.id, r.url, r.role, "up" if r.reachable else "DOWN", cell(r.ballot),
         cell(r.chosen_index), cell(r.applied_index), cell(r.lag),
         "-" if r.heard_s_ago is None else f"{duration(r.heard_s_ago)} ago")
        for r in report.members
    ]))  # fmt: skip
    return "\n".join(lines)


def run_status(args: argparse.Namespace) -> int:
    from paxlock.api.cli.arguments import ca_file
    from paxlock.api.client.transport import client_ssl_context

    endpoints = endpoints_from(args.endpoints, os.environ)
    if not args.timeout > 0:
        print("paxlock status: --timeout must be > 0", file=sys.stderr)
        return EXIT_USAGE
    try:
        ca = ca_file(args, os.environ)
    except ValueError as unusable:
        print(f"paxlock status: {unusable}", file=sys.stderr)
        return EXIT_USAGE
    if ca and endpoints == list(DEFAULT_ENDPOINTS):
        endpoints = [url.replace("http://", "https://", 1) for url in endpoints]
    tls = client_ssl_context(ca) if ca else None
    token = token_from("paxlock status", args.token_file, os.environ)
    report = combine(asyncio.run(ask_all(endpoints, args.timeout, tls, token)))
    for endpoint, error in report.errors.items():
        print(f"paxlock status: {endpoint}: {error}", file=sys.stderr)
    if args.json:
        print(json.dumps(asdict(report), indent=2))
    elif report.members:
        print(table(report))
    if not report.views:
        print(f"paxlock status: no endpoint answered ({', '.join(endpoints)})", file=sys.stderr)
        return EXIT_UNAVAILABLE
    if report.primary is None:
        print("paxlock status: no primary: no lease can be granted until a majority of "
              "members hear each other", file=sys.stderr)  # fmt: skip
        return EXIT_UNAVAILABLE
    return EXIT_OK

"""``paxlock status`` without a cluster: where the endpoints come from, and how the views
of several members become one report (issue 11, item 4). The real-process test is
tests/integration/test_cluster_status.py."""

from __future__ import annotations

from typing import Any

from paxlock.api.cli.status import DEFAULT_ENDPOINTS, combine, endpoints_from, table


def view(node: str, primary: str | None, chosen: int, ballot: str | None = None,
         reachable: tuple[str, ...] = ("n1", "n2", "n3"),
         chosen_of: dict[str, int | None] | None = None) -> dict[str, Any]:  # fmt: skip
    known = {"n1": chosen, "n2": chosen, "n3": chosen, **(chosen_of or {})}
    return {
        "node": node, "primary": primary, "ballot": ballot, "learn_mode": "primary",
        "chosen_index": chosen, "applied_index": chosen,
        "members": [{"id": m, "url": f"http://{m}:7001", "reachable": m in reachable,
                     "chosen_index": known[m], "heard_s_ago": 0.1} for m in ("n1", "n2", "n3")],
    }  # fmt: skip


def test_endpoints_come_from_the_flags_then_the_environment_then_the_defaults() -> None:
    env = {"PAXLOCK_ENDPOINTS": "http://a:1, http://b:2/,,http://a:1"}
    assert endpoints_from(["http://x:1,http://y:2", "http://z:3"], env) == [
        "http://x:1", "http://y:2", "http://z:3"]  # fmt: skip
    assert endpoints_from(None, env) == ["http://a:1", "http://b:2"]
    assert endpoints_from(None, {}) == list(DEFAULT_ENDPOINTS)


def test_the_primarys_own_view_gives_reachability_and_the_others_their_own_indexes() -> None:
    report = combine({
        "http://n1:7001": view("n1", "n1", 10, "4.n1", reachable=("n1", "n2"),
                               chosen_of={"n3": 6}),
        "http://n2:7001": view("n2", "n1", 9),
        "http://n3:7001": "no answer in time",
    })  # fmt: skip
    assert (report.primary, report.ballot, report.seen_by) == ("n1", "4.n1", "n1")
    rows = {row.id: row for row in report.members}
    assert [rows[n].role for n in ("n1", "n2", "n3")] == ["primary", "follower", "follower"]
    assert [rows[n].reachable for n in ("n1", "n2", "n3")] == [True, True, False]
    assert [rows[n].answered for n in ("n1", "n2", "n3")] == [True, True, False]
    assert [rows[n].chosen_index for n in ("n1", "n2", "n3")] == [10, 9, 6]  # own, else n1's
    assert [rows[n].applied_index for n in ("n1", "n2", "n3")] == [10, 9, None]
    assert [rows[n].lag for n in ("n1", "n2", "n3")] == [0, 1, 4]
    assert report.errors == {"http://n3:7001": "no answer in time"}
    lines = table(report).splitlines()
    assert lines[2].split()[:4] == ["n1", "http://n1:7001", "primary", "up"]
    assert lines[4].split()[3] == "DOWN"


def test_a_deposed_primary_that_still_claims_office_loses_to_the_higher_ballot() -> None:
    report = combine({"a": view("n1", "n1", 5, "3.n1"), "b": view("n2", "n2", 7, "4.n2")})
    assert report.primary == "n2" and report.ballot == "4.n2"


def test_a_primary_that_did_not_answer_is_the_one_the_others_name_and_hear() -> None:
    assert combine({"b": view("n2", "n1", 5)}).primary == "n1"
    unheard = combine({"b": view("n2", "n1", 5, reachable=("n2", "n3"))})
    assert unheard.primary is None and unheard.seen_by == "n2" and unheard.members


def test_no_view_no_primary() -> None:
    report = combine({"a": "cannot connect (Connection refused)"})
    assert report.primary is None and not report.members and not report.views

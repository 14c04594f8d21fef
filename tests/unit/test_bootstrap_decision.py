"""``api.server.bootstrap.decide``: an empty store votes only while the whole cluster
bootstraps (DESIGN.md §2, Membership); otherwise it adopts the cluster a member reports."""

from __future__ import annotations

import msgspec
import pytest

from paxlock.api.server.bootstrap import (
    Adopt, Bootstrap, Identity, IdentityError, Refuse, Wait, decide, parse_identity,
)  # fmt: skip
from paxlock.coordinator.core import membership
from paxlock.coordinator.core.messages import Member

URLS = {"n1": "http://a:1", "n2": "http://b:2", "n3": "http://c:3"}


def fresh(member: str, incarnation: str | None = None, *, legacy: bool = False) -> Identity:
    return Identity(member, incarnation or f"inc-{member}", None, None, dict(URLS), legacy)


def bootstrapped(member: str, genesis: membership.Configuration) -> Identity:
    return Identity(member, f"inc-{member}", membership.cluster_id_of(genesis), genesis,
                    dict(URLS))  # fmt: skip


GENESIS = membership.genesis(Member(m, f"inc-{m}", u) for m, u in URLS.items())


def test_every_member_empty_bootstraps_one_genesis_of_every_incarnation() -> None:
    decisions = [
        decide(fresh(me), {m: fresh(m) for m in URLS if m != me}) for me in URLS
    ]
    assert all(d == Bootstrap(GENESIS, membership.cluster_id_of(GENESIS)) for d in decisions)
    assert GENESIS.voter_ids == ("n1", "n2", "n3")


def test_the_genesis_takes_each_members_own_url_so_every_member_computes_the_same() -> None:
    n2 = Identity("n2", "inc-n2", None, None, {**URLS, "n2": "http://b:2"})
    other_view = {"n1": "http://a:1/", "n2": "http://b:2", "n3": "http://c:3"}
    n1 = Identity("n1", "inc-n1", None, None, {**other_view, "n1": "http://a:1"})
    decision = decide(n1, {"n2": n2, "n3": fresh("n3")})
    assert isinstance(decision, Bootstrap) and decision.genesis == GENESIS


def test_a_member_that_has_not_answered_is_waited_for_even_with_new() -> None:
    reports = {"n2": fresh("n2"), "n3": None}
    assert decide(fresh("n1"), reports) == Wait(("n3",))
    assert decide(fresh("n1"), reports, initial_state="new") == Wait(("n3",))


def test_an_empty_store_beside_a_bootstrapped_member_adopts_without_waiting() -> None:
    """The amnesia case: n1 lost its data dir; n2 still has the cluster (n3 is down)."""
    decision = decide(fresh("n1", "new-incarnation"), {"n2": bootstrapped("n2", GENESIS),
                                                       "n3": None})  # fmt: skip
    assert isinstance(decision, Adopt)
    assert decision.cluster_id == membership.cluster_id_of(GENESIS)
    assert decision.reported_by == "n2"
    assert not decision.genesis.votes("n1", "new-incarnation")  # it will be a learner


def test_new_refuses_when_a_member_reports_a_cluster() -> None:
    decision = decide(fresh("n1"), {"n2": bootstrapped("n2", GENESIS), "n3": fresh("n3")},
                      initial_state="new")  # fmt: skip
    assert isinstance(decision, Refuse)
    assert decision.message.startswith("cluster already bootstrapped (member n2 reports "
                                       f"cluster id {membership.cluster_id_of(GENESIS)})")
    assert "--initial-cluster-state existing or --join" in decision.message


def test_existing_never_bootstraps_a_new_cluster() -> None:
    decision = decide(fresh("n1"), {"n2": fresh("n2"), "n3": fresh("n3")},
                      initial_state="existing")  # fmt: skip
    assert isinstance(decision, Refuse) and "no member reports a cluster id" in decision.message


def test_members_of_two_clusters_are_refused() -> None:
    other = membership.genesis([Member("n3", "x", "http://c:3")])
    decision = decide(fresh("n1"), {"n2": bootstrapped("n2", GENESIS),
                                    "n3": bootstrapped("n3", other)})  # fmt: skip
    assert isinstance(decision, Refuse) and "different cluster ids" in decision.message


def test_a_peer_answering_under_another_id_is_refused() -> None:
    decision = decide(fresh("n1"), {"n2": fresh("n3"), "n3": fresh("n3")})
    assert decision == Refuse("--peer n2 answers as member 'n3': check the --peer list")


def test_legacy_stores_bootstrap_only_all_together() -> None:
    all_legacy = decide(fresh("n1", legacy=True),
                        {m: fresh(m, legacy=True) for m in ("n2", "n3")})  # fmt: skip
    assert isinstance(all_legacy, Bootstrap)
    mixed = decide(fresh("n1"), {m: fresh(m, legacy=True) for m in ("n2", "n3")})
    assert isinstance(mixed, Refuse)
    assert mixed.message.startswith("n2, n3 hold the state of a paxlock before member identity")


def test_an_expected_cluster_id_is_checked() -> None:
    wanted = membership.cluster_id_of(GENESIS)
    ok = decide(fresh("n1"), {"n2": bootstrapped("n2", GENESIS), "n3": None},
                expected_cluster_id=wanted)  # fmt: skip
    assert isinstance(ok, Adopt)
    wrong = decide(fresh("n1"), {"n2": bootstrapped("n2", GENESIS), "n3": None},
                   expected_cluster_id="f" * 32)  # fmt: skip
    assert isinstance(wrong, Refuse) and "(--cluster-id)" in wrong.message


def test_an_identity_round_trips_through_its_json() -> None:
    identity = bootstrapped("n2", GENESIS)
    assert parse_identity(msgspec.json.encode(identity.to_json()), "n2") == identity
    empty = fresh("n3")
    assert parse_identity(msgspec.json.encode(empty.to_json()), "n3") == empty


@pytest.mark.parametrize("change", [
    {"cluster_id": "0" * 32},  # not the digest of the genesis sent
    {"genesis": None},  # a cluster id without its genesis
    {"genesis": "not base64!"},
    {"member": 7},
    {"members": {"n1": "u" * 5000}},
], ids=["forged-id", "no-genesis", "bad-genesis", "bad-member", "long-url"])  # fmt: skip
def test_a_forged_or_malformed_identity_is_an_identity_error(change: dict[str, object]) -> None:
    body = {**bootstrapped("n2", GENESIS).to_json(), **change}
    with pytest.raises(IdentityError):
        parse_identity(msgspec.json.encode(body), "http://b:2")

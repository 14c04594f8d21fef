"""The primary changes a node records for ``GET /v1/cluster`` and the status page."""

from __future__ import annotations

from paxlock.coordinator.cluster_view import PRIMARY_CHANGES_MAX, PrimaryChanges


def test_a_primary_heard_of_before_its_ballot_gets_the_ballot_once_known() -> None:
    """A follower can hear who leads (a heartbeat) before it promises or accepts under that
    primary's ballot: the entry is filled in later, not left without a ballot (CI saw a
    follower's last entry name the primary with ballot null for good)."""
    changes = PrimaryChanges(None, None, 100.0)
    assert not changes.ballot_unknown  # no primary: no ballot to learn
    changes.saw("n2", None, 101.0)
    assert changes.ballot_unknown
    changes.learned_ballot(None)
    assert changes.as_json()[-1] == {"at": 101.0, "primary": "n2", "ballot": None}
    changes.learned_ballot("3.n2")
    assert changes.as_json()[-1] == {"at": 101.0, "primary": "n2", "ballot": "3.n2"}
    assert not changes.ballot_unknown
    changes.learned_ballot("4.n2")  # only an unknown ballot is filled in
    assert changes.as_json()[-1]["ballot"] == "3.n2"


def test_only_changes_are_recorded_and_only_the_last_ones_kept() -> None:
    changes = PrimaryChanges(None, None, 0.0)
    changes.saw(None, None, 1.0)
    assert len(changes.as_json()) == 1
    for at in range(1, 2 * PRIMARY_CHANGES_MAX):
        changes.saw(f"n{at % 3}", f"{at}.n{at % 3}", float(at))
    history = changes.as_json()
    assert len(history) == PRIMARY_CHANGES_MAX
    assert history[-1] == {"at": float(2 * PRIMARY_CHANGES_MAX - 1), "primary": "n0",
                           "ballot": f"{2 * PRIMARY_CHANGES_MAX - 1}.n0"}  # fmt: skip

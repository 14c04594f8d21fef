"""The limits' bookkeeping, one class at a time: settings checked, token buckets that refill
at their rate and stay bounded in keys, Retry-After spread over [base, 2 x base), waiters
per name counted in and out, and each ``paxlock serve`` flag reaching ``Limits``."""

from __future__ import annotations

import argparse
import random

import pytest

from paxlock.api.cli.serve import ConfigError, LIMIT_SETTINGS, add_serve_arguments, node_config
from paxlock.api.cli.serve import resolve
from paxlock.api.server.errors import protocol_error_response
from paxlock.api.server.limits import Limiter, Limits, TokenBuckets
from paxlock.coordinator.errors import TooMany
from paxlock.coordinator.metrics import Metrics
from paxlock.coordinator.watch import WaitingAcquires


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


# -- Limits -----------------------------------------------------------------------------------


@pytest.mark.parametrize("field, bad", [
    ("rate_per_s", -1.0), ("rate_burst", 0), ("waiters_per_name_max", 0), ("streams_max", 0),
    ("header_timeout_s", 0.0), ("body_timeout_s", -1.0), ("idle_timeout_s", float("nan")),
    ("stream_write_timeout_s", 0.0),
])  # fmt: skip
def test_a_limit_out_of_range_is_refused_naming_it(field: str, bad: float) -> None:
    with pytest.raises(ValueError, match=f"^{field} must"):
        Limits(**{field: bad})


def test_a_rate_of_zero_turns_the_rate_limit_off() -> None:
    limiter = Limiter(Limits(rate_per_s=0, rate_burst=1), Metrics("n1"))
    for _ in range(1000):
        limiter.admit(None, "127.0.0.1")
        limiter.admit("alice", "127.0.0.1")
    assert limiter.buckets is None


def test_by_default_the_rate_counts_principals_and_no_ip() -> None:
    """Without --auth an IP is no principal (a NAT, or every benchmark client on one host,
    would share its bucket): the default rate applies under --auth only, and a rate given
    explicitly counts by client IP too."""
    default = Limiter(Limits(rate_burst=1), Metrics("n1"))
    for _ in range(100):
        default.admit(None, "127.0.0.1")
    default.admit("alice", "127.0.0.1")
    with pytest.raises(TooMany):
        default.admit("alice", "127.0.0.1")
    explicit = Limiter(Limits(rate_per_s=1000.0, rate_burst=1), Metrics("n2"))
    explicit.admit(None, "127.0.0.1")
    with pytest.raises(TooMany):
        explicit.admit(None, "127.0.0.1")


# -- token buckets ----------------------------------------------------------------------------


def test_a_bucket_gives_its_burst_then_refuses_until_it_refills() -> None:
    clock = Clock()
    buckets = TokenBuckets(rate_per_s=2.0, burst=3, clock=clock)
    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a") == pytest.approx(0.5)  # one token at 2/s
    assert buckets.take("b") == 0.0  # another key has its own bucket
    clock.now += 0.5
    assert buckets.take("a") == 0.0
    assert buckets.take("a") > 0
    clock.now += 100  # refills to the burst, never beyond
    assert [buckets.take("a") for _ in range(4)][-1] > 0


def test_a_refused_request_spends_no_token() -> None:
    clock = Clock()
    buckets = TokenBuckets(rate_per_s=1.0, burst=1, clock=clock)
    buckets.take("a")
    for _ in range(10):  # hammering while refused does not push the next token further away
        assert buckets.take("a") == pytest.approx(1.0)
    clock.now += 1.0
    assert buckets.take("a") == 0.0


def test_the_buckets_keep_at_most_keys_max_keys_least_recently_used_first() -> None:
    clock = Clock()
    buckets = TokenBuckets(rate_per_s=1.0, burst=1, clock=clock, keys_max=100)
    for i in range(10_000):
        buckets.take(f"ip:{i}")
    assert len(buckets) == 100
    buckets.take("ip:9999")
    assert buckets.take("ip:9999") > 0  # recent keys are kept, refused as they should be


# -- the limiter ------------------------------------------------------------------------------


def test_refusals_are_counted_by_limit_and_retry_after_is_spread() -> None:
    metrics = Metrics("n1")
    limiter = Limiter(Limits(rate_per_s=1.0, rate_burst=1), metrics, rng=random.Random(7))
    limiter.admit("k", None)
    draws = []
    for _ in range(50):
        with pytest.raises(TooMany) as refused:
            limiter.admit("k", None)
        assert refused.value.details == {"limit": "rate"}
        draws.append(limiter.spread(refused.value).retry_after_s)
    assert all(1.0 <= d < 2.0 for d in draws) and len(set(draws)) > 10, draws
    assert metrics.registry.get_sample_value("paxlock_limit_refusals_total",
                                             {"limit": "rate"}) == 50  # fmt: skip


def test_the_stream_slots_are_taken_and_given_back() -> None:
    metrics = Metrics("n1")
    limiter = Limiter(Limits(streams_max=2), metrics)

    class Request:
        transport = None

    with limiter.stream(Request()), limiter.stream(Request()):  # type: ignore[arg-type]
        assert metrics.registry.get_sample_value("paxlock_streams_open") == 2
        with pytest.raises(TooMany) as refused, limiter.stream(Request()):  # type: ignore[arg-type]
            pass
        assert refused.value.details == {"limit": "streams"}
    assert limiter.streams_open == 0


# -- waiters per name -------------------------------------------------------------------------


def test_waiters_per_name_are_refused_beyond_the_limit_and_counted_out() -> None:
    waiting = WaitingAcquires(per_name_max=2)
    with waiting.waiting("a"), waiting.waiting("a"), waiting.waiting("b"):
        with pytest.raises(TooMany) as refused, waiting.waiting("a"):
            pass
        assert refused.value.details == {"limit": "waiters_per_name"}
        assert len(waiting) == 3
    with pytest.raises(RuntimeError), waiting.waiting("a"):
        raise RuntimeError("a waiter that failed leaves too")
    assert len(waiting) == 0 and waiting._counts == {}


# -- parser errors and flags ------------------------------------------------------------------


def test_a_parser_error_is_one_line_of_json() -> None:
    response = protocol_error_response(400, "Invalid char in url path:\n\n  b'GET /\\x00'\n ^",
                                       None)  # fmt: skip
    assert response.content_type == "application/json"
    assert response.body == (b'{"error":"bad_request","message":'
                             b'"malformed HTTP request: Invalid char in url path"}')  # fmt: skip


def settings(*argv: str) -> dict[str, object]:
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    args = parser.parse_args(["--id", "n1", "--listen", "127.0.0.1:7001", "--data-dir", "d",
                              *argv])  # fmt: skip
    return resolve(args, {})


def test_each_limit_has_a_flag_that_reaches_the_node_config() -> None:
    config = node_config(settings(
        "--rate-limit", "5", "--rate-burst", "7", "--max-waiters-per-name", "9",
        "--max-streams", "11", "--header-timeout", "1.5", "--body-timeout", "2.5",
        "--idle-timeout", "3.5", "--stream-write-timeout", "4.5",
    ))  # fmt: skip
    assert config.limits == Limits(5.0, 7, 9, 11, 1.5, 2.5, 3.5, 4.5)
    assert len(LIMIT_SETTINGS) == 8
    assert node_config(settings()).limits == Limits()


def test_a_bad_limit_flag_is_one_line_naming_the_flag() -> None:
    with pytest.raises(ConfigError, match="^--max-streams must be at least 1, not 0$"):
        node_config(settings("--max-streams", "0"))
    with pytest.raises(ConfigError, match="^--header-timeout must be above 0 seconds"):
        node_config(settings("--header-timeout", "-1"))

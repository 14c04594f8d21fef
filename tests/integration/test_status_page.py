"""The status page at ``/ui/`` in a real browser: Debian's chromium driven by Selenium through
Debian's chromium-driver (both paths given, so Selenium Manager never downloads anything).

One scenario on one 3-node cluster (the page from each node, a lease's appearance after its
acquire and its removal after its release, a screenshot of a busy cluster, a kill -9 of the
primary), and one on a 1-node cluster under ``--auth`` (the page asks for a token). Skipped
without chromium or chromedriver, unless ``PAXLOCK_REQUIRE_BROWSER=1`` (``.ci/run`` sets it).

The screenshot is kept under ``$PAXLOCK_ARTIFACTS`` (else ``tests/artifacts/``); with
``PAXLOCK_UPDATE_SCREENSHOT=1`` it also replaces ``docs/status-page.png``, the README's.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

harness = sys.modules["paxlock_test_harness"]  # registered by tests/conftest.py
http = harness.http
wait_for = harness.wait_for

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
APPEAR_S_MAX = 1.0
"""A lease shows (and goes) within this long of its acquire's (release's) answer."""
TOKEN = "tok-viewer"


def _browser_or_skip() -> None:
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package")
    if missing:
        why = f"no {', '.join(missing)} (apt-get install chromium chromium-driver)"
        if os.environ.get("PAXLOCK_REQUIRE_BROWSER") == "1":
            pytest.fail(f"PAXLOCK_REQUIRE_BROWSER=1 but {why}")
        pytest.skip(why)


def artifacts() -> Path:
    path = Path(os.environ.get("PAXLOCK_ARTIFACTS") or ROOT / "tests" / "artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    _browser_or_skip()
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                     "--no-first-run", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync",
                     "--disable-dev-shm-usage", "--window-size=1360,900",
                     f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):  # fmt: skip
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def page_shows(driver: Any, script: str, timeout_s: float, what: str) -> Any:
    """Poll the page with ``script`` (JavaScript returning a value) until it is truthy."""
    return wait_for(lambda: driver.execute_script(script), timeout_s, what, interval_s=0.01)


def text_of(driver: Any, testid: str) -> str:
    text: str = driver.execute_script(
        f"return document.querySelector('[data-testid=\"{testid}\"]').textContent")
    return text


def lease_row(name: str) -> str:
    return f"return document.querySelector('[data-lease=\"{name}\"]') !== null"


def post(url: str, body: Any, headers: dict[str, str] | None = None) -> Any:
    status, _, answer = http("POST", url, body, headers=headers)
    assert status in (200, 201), (url, answer)
    return answer


# -- a 3-node cluster ------------------------------------------------------------------------


def test_status_page_follows_the_cluster(browser: Any, tmp_path: Path) -> None:
    with harness.running_cluster(tmp_path / "cluster") as cluster:
        primary = cluster.wait_ready()
        loads_from_every_node(browser, cluster, primary)
        follower = cluster.followers(primary)[0]
        browser.get(f"{cluster.url(follower)}/ui/")
        page_shows(browser, "return document.querySelector('[data-testid=\"live\"]')"
                            ".dataset.state === 'live'", 10.0, "the change stream open")  # fmt: skip
        latencies = lease_comes_and_goes(browser, cluster, primary)
        print(f"acquire answer -> lease on the page: median {statistics.median(latencies):.3f} s, "
              f"max {max(latencies):.3f} s over {len(latencies)} (the page on {follower})")
        (artifacts() / "status-page-latency.txt").write_text(
            " ".join(f"{s:.3f}" for s in latencies) + "\n")
        with busy_cluster(cluster, primary):
            screenshot(browser)
        primary_killed(browser, cluster, primary)


def loads_from_every_node(browser: Any, cluster: Any, primary: str) -> None:
    for node in cluster.members:
        browser.get(f"{cluster.url(node)}/ui")  # redirected to /ui/
        page_shows(browser, f"return document.querySelector('[data-testid=\"primary\"]')"
                            f".textContent === '{primary}'", 10.0, f"the primary, at {node}")  # fmt: skip
        assert browser.current_url == f"{cluster.url(node)}/ui/"
        assert text_of(browser, "served-by") == node
        page_shows(browser, "return document.querySelectorAll('[data-member]').length === 3",
                   5.0, "the three members")  # fmt: skip
        roles = browser.execute_script(
            "return [...document.querySelectorAll('[data-member]')]"
            ".map(row => [row.dataset.member, row.dataset.role])")
        assert dict(roles) == {n: "primary" if n == primary else "follower"
                               for n in cluster.members}  # fmt: skip


def lease_comes_and_goes(browser: Any, cluster: Any, primary: str, runs: int = 5) -> list[float]:
    """Seconds from each acquire's answer to its row on the page (and the row goes after
    the release's answer): acquired at the primary, shown by a follower's page."""
    base = f"{cluster.url(primary)}/v1/leases"
    latencies = []
    for run in range(runs):
        name = f"ui/latency-{run}"
        lease = post(f"{base}/{name}:acquire", {"holder": f"h{run}", "ttl": 30})
        answered = time.monotonic()
        page_shows(browser, lease_row(name), 5.0, f"{name} on the page")
        latencies.append(time.monotonic() - answered)
        row = browser.execute_script(
            f"const r = document.querySelector('[data-lease=\"{name}\"]');"
            "return [...r.cells].map(c => c.textContent)")
        assert row[1] == f"h{run}" and row[3] == str(lease["token"]), row
        post(f"{base}/{name}:release", {"holder": f"h{run}", "token": lease["token"]})
        released = time.monotonic()
        page_shows(browser, f"return !document.querySelector('[data-lease=\"{name}\"]')", 5.0,
                   f"{name} gone from the page")  # fmt: skip
        gone_s = time.monotonic() - released
        assert gone_s <= APPEAR_S_MAX, (name, gone_s)
    assert max(latencies) <= APPEAR_S_MAX, latencies
    return latencies


class busy_cluster:
    """What the README's picture shows: leases (one with a waiter), an election, a session
    with a lease bound to it, a group of two, a semaphore and a read/write lock."""

    def __init__(self, cluster: Any, primary: str) -> None:
        self.v1 = f"{cluster.url(primary)}/v1"
        self.waiter: threading.Thread | None = None

    def __enter__(self) -> busy_cluster:
        v1 = self.v1
        self.db = post(f"{v1}/leases/db/primary:acquire",
                       {"holder": "web-1", "ttl": 30, "value": "10.0.0.12:5432"})  # fmt: skip
        post(f"{v1}/leases/jobs/nightly-report:acquire",
             {"holder": "cron-7", "ttl": 60, "lock_delay": 5})  # fmt: skip
        post(f"{v1}/elections/svc/scheduler:campaign",
             {"candidate": "scheduler-b", "ttl": 20, "value": "http://10.0.0.21:8080"})  # fmt: skip
        session = post(f"{v1}/sessions", {"holder": "worker-3", "ttl": 15})
        post(f"{v1}/leases/queue/shard-4:acquire",
             {"holder": "worker-3", "session": session["id"]})  # fmt: skip
        assert http("PUT", f"{v1}/groups/agents")[0] == 201
        for member in ("agent-a", "agent-b"):
            post(f"{v1}/groups/agents/members/{member}:join", {"session": session["id"]})
        for holder in ("api-1", "api-2"):
            post(f"{v1}/semaphores/pool/db-conn:acquire",
                 {"holder": holder, "limit": 5, "ttl": 30})  # fmt: skip
        post(f"{v1}/rwlocks/config/routes:acquire", {"holder": "reader-1", "mode": "read",
                                                      "ttl": 30})  # fmt: skip
        self.waiter = threading.Thread(target=http, args=(
            "POST", f"{v1}/leases/db/primary:acquire",
            {"holder": "web-2", "ttl": 30, "wait": 20}, 30))  # fmt: skip
        self.waiter.start()
        return self

    def __exit__(self, *_: object) -> None:
        post(f"{self.v1}/leases/db/primary:release", {"holder": "web-1",
                                                     "token": self.db["token"]})  # fmt: skip
        assert self.waiter is not None
        self.waiter.join(timeout=10)


def screenshot(browser: Any) -> None:
    page_shows(browser, "const w = document.querySelector('[data-lease=\"db/primary\"] "
                        "[data-testid=\"waiters\"]'); return w && w.textContent === '1'", 10.0,
               "the waiter of db/primary counted")  # fmt: skip
    page_shows(browser, "const g = document.querySelector('[data-group=\"agents\"] "
                        "[data-testid=\"group-size\"]'); return g && g.textContent === '2'", 5.0,
               "the group's two members")  # fmt: skip
    for hook in ('[data-lease="svc/scheduler"]', '[data-lease="queue/shard-4"]',
                 '[data-session]', '[data-shared="semaphore/pool/db-conn"]',
                 '[data-shared="rwlock/config/routes"]'):  # fmt: skip
        page_shows(browser, f"return document.querySelector('{hook}') !== null", 5.0, hook)
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {  # the whole page
        "width": 1360, "height": int(height), "deviceScaleFactor": 1, "mobile": False})
    path = artifacts() / "status-page.png"
    try:
        assert browser.save_screenshot(str(path))
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    assert path.stat().st_size > 20_000
    if os.environ.get("PAXLOCK_UPDATE_SCREENSHOT") == "1":
        shutil.copyfile(path, ROOT / "docs" / "status-page.png")


def primary_killed(browser: Any, cluster: Any, primary: str) -> None:
    """The page open on a follower shows the new primary after a kill -9 of the old one."""
    served_by = text_of(browser, "served-by")
    assert served_by != primary
    cluster.kill(primary)
    successor = cluster.wait_ready(20.0)
    page_shows(browser, f"return document.querySelector('[data-testid=\"primary\"]')"
                        f".textContent === '{successor}'", 10.0, "the new primary")  # fmt: skip
    page_shows(browser, f"return document.querySelector('[data-member=\"{primary}\"]')"
                        ".dataset.reachable === 'false'", 10.0, "the old primary unreachable")  # fmt: skip
    history = browser.execute_script(
        "return [...document.querySelectorAll('[data-testid=\"primary-changes\"] tbody tr')]"
        ".map(r => r.cells[1].textContent)")
    assert history[0] == successor and primary in history, history


# -- a 1-node cluster under --auth ------------------------------------------------------------


def test_status_page_asks_for_a_token_under_auth(browser: Any, tmp_path: Path) -> None:
    root = tmp_path / "auth"
    root.mkdir()
    auth_file = root / "auth.toml"
    auth_file.write_text(
        f'[principals.viewer]\ntoken_sha256 = "{hashlib.sha256(TOKEN.encode()).hexdigest()}"\n'
        'roles = [{ prefix = "", role = "lock" }]\n')
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    cluster = harness.Cluster(root, 1, ["--auth", str(auth_file)], headers=bearer)
    try:
        cluster.start_all()
        base = cluster.url("n1")
        status, headers, _ = http("GET", f"{base}/ui/")  # the page itself is open
        assert status == 200 and headers["Content-Type"].startswith("text/html")
        status, headers, _ = http("GET", f"{base}/ui/app.js")
        assert status == 200 and headers["Content-Type"].startswith("text/javascript")
        assert http("GET", f"{base}/ui/secrets.toml")[0] == 404  # only the page's own files
        for path in ("/v1/cluster", "/v1/leases", "/v1/changes?timeout=0"):
            assert http("GET", base + path)[0] == 401, path  # its data is not
        browser.get(f"{base}/ui/")
        form_visible(browser)
        assert text_of(browser, "primary") == "–"
        submit_token(browser, "not-the-token")
        page_shows(browser, "return document.querySelector('[data-testid=\"token-error\"]')"
                            ".textContent !== ''", 5.0, "a wrong token refused")  # fmt: skip
        submit_token(browser, TOKEN)
        page_shows(browser, "return document.querySelector('[data-testid=\"primary\"]')"
                            ".textContent === 'n1'", 10.0, "the primary, with the token")  # fmt: skip
        assert browser.execute_script(
            "return document.querySelector('[data-testid=\"token-form\"]').hidden")
        lease = post(f"{base}/v1/leases/auth/a:acquire", {"holder": "h", "ttl": 30}, bearer)
        page_shows(browser, lease_row("auth/a"), 5.0, "a lease, through the long poll")
        post(f"{base}/v1/leases/auth/a:release", {"holder": "h", "token": lease["token"]}, bearer)
        page_shows(browser, "return !document.querySelector('[data-lease=\"auth/a\"]')", 5.0,
                   "the lease gone")  # fmt: skip
    finally:
        cluster.stop_all()


def form_visible(browser: Any) -> None:
    page_shows(browser, "return !document.querySelector('[data-testid=\"token-form\"]').hidden",
               10.0, "the token form")  # fmt: skip


def submit_token(browser: Any, token: str) -> None:
    from selenium.webdriver.common.by import By

    field = browser.find_element(By.CSS_SELECTOR, '[data-testid="token-input"]')
    field.clear()
    field.send_keys(token)
    browser.find_element(By.CSS_SELECTOR, '[data-testid="token-submit"]').click()


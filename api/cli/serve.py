"""``paxlock serve``: configuration from flags, ``PAXLOCK_*`` environment variables and a
TOML file (in that order of precedence), and the process lifecycle of one member."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import tomllib
from collections.abc import Coroutine, Mapping
from typing import TYPE_CHECKING, Any

from paxlock.api.cli.cluster_token import (
    CONFIG_REFUSAL, RefuseTokenOnArgv, TokenError, check_peer_credential, cluster_token,
    has_credential, merge_env_token, warn_unauthenticated,
)  # fmt: skip
if TYPE_CHECKING:  # the server is loaded when a member starts: other commands start quicker
    from paxlock.api.server.node import NodeConfig

ENV_PREFIX = "PAXLOCK_"
SETTINGS = {
    # setting: (type, help)
    "id": (str, "this node's id (required)"),
    "listen": (str, "HOST:PORT to bind (required)"),
    "advertise": (str, "this node's URL as peers reach it (default: http://LISTEN, "
                  "https:// with --tls-cert)"),
    "peer": (list, "another member as ID=URL; repeat for each (env: comma-separated)"),
    "data_dir": (str, "directory of this node's store (required)"),
    "cluster_id": (str, "the cluster id this member must belong to, checked against its "
                   "store and what members report (default: whichever it bootstraps or "
                   "joins; ids are made at bootstrap, see GET /internal/identity)"),
    "initial_cluster_state": (str, "new: refuse to start if a member reports a cluster "
                              "already; existing: never bootstrap a new one (default: "
                              "bootstrap when every --peer has an empty store, else start "
                              "as a learner of the cluster they report)"),
    "join": (str, "URL of a member of a running cluster: start as its learner, taking the "
             "members from it (no --peer)"),
    "tls_cert": (str, "PEM certificate (chain) of this node: the listener speaks only TLS, "
                 "peer URLs are https:// (SIGHUP reloads it)"),
    "tls_key": (str, "PEM private key of --tls-cert"),
    "tls_ca": (str, "PEM CA of the cluster: peers must present a certificate it signed "
               "(mutual TLS on /internal/); outbound links trust only it"),
    "cluster_token_file": (str, "a file whose first line is the secret peers show on "
                           "/internal/ (or the secret itself in PAXLOCK_CLUSTER_TOKEN)"),
    "insecure_peers": (bool, "start beyond loopback without a peer credential (a cluster "
                       "token or a TLS CA): anyone who reaches the port can act as a peer"),
    "learn_mode": (str, "broadcast | primary | set:K (default: primary)"),
    "election_timeout": (float, "seconds T: a silent primary is replaced after [T, 2T]"),
    "heartbeat": (float, "seconds between primary heartbeats (below the election timeout)"),
    "snapshot_every": (int, "snapshot and compact the log every N slots (default: 5000)"),
    "log_level": (str, "debug | info | warning | error (default: info)"),
    "auth": (str, "TOML file of principals (token hashes, roles): /v1 needs a bearer token"),
    "auth_metrics": (bool, "with --auth, /metrics needs a valid bearer token too"),
    "max_holds_per_principal": (int, "leases one principal may hold (default: 10000)"),
    "max_holds": (int, "leases held in total (default: 100000)"),
    "max_value_bytes": (int, "bytes of lease values in total (default: 67108864)"),
    # limits (README, Limits): at one, 429 too_many with Retry-After, or the connection closed
    "rate_limit": (float, "requests/s per principal, 0: off (default: 1000 with "
                          "authentication, off without; given, it counts by client IP "
                          "without authentication)"),
    "rate_burst": (int, "requests at once above the rate (default: 2000)"),
    "max_waiters_per_name": (int, "acquires waiting for one name (default: 1000)"),
    "max_streams": (int, "open observe long polls and event streams per node (default: 10000)"),
    "header_timeout": (float, "seconds to send a request's header (default: 10)"),
    "body_timeout": (float, "seconds to send a request's body (default: 30)"),
    "idle_timeout": (float, "seconds an idle keep-alive connection stays open (default: 75)"),
    "stream_write_timeout": (float, "seconds an event stream's reader may stall (default: 10)"),
}
_LIMITS = {"max_holds_per_principal": "holds_per_principal_max", "max_holds": "holds_max",
           "max_value_bytes": "value_bytes_max"}  # fmt: skip
LIMIT_SETTINGS = {
    # setting: api.server.limits.Limits field (the limits at the HTTP edge)
    "rate_limit": "rate_per_s", "rate_burst": "rate_burst",
    "max_waiters_per_name": "waiters_per_name_max", "max_streams": "streams_max",
    "header_timeout": "header_timeout_s", "body_timeout": "body_timeout_s",
    "idle_timeout": "idle_timeout_s", "stream_write_timeout": "stream_write_timeout_s",
}  # fmt: skip


class ConfigError(ValueError):
    """A configuration mistake: reported on one line, exit status 2."""


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="a TOML file with the settings below")
    parser.add_argument("--cluster-token", nargs="?", action=RefuseTokenOnArgv,
                        help=argparse.SUPPRESS)  # fmt: skip
    for name, (kind, text) in SETTINGS.items():
        flag = "--" + name.replace("_", "-")
        if kind is list:
            parser.add_argument(flag, action="append", metavar="ID=URL", help=text)
        elif kind is bool:
            parser.add_argument(flag, action="store_true", default=None, help=text)
        else:
            parser.add_argument(flag, type=kind, help=text)


def resolve(args: argparse.Namespace, environ: Mapping[str, str]) -> dict[str, Any]:
    """Merge TOML < environment < flags into one settings dict."""
    merged: dict[str, Any] = {}
    if args.config:
        try:
            with open(args.config, "rb") as file:
                table = tomllib.load(file)
        except (OSError, tomllib.TOMLDecodeError) as error:
            raise ConfigError(f"cannot read config file {args.config}: {error}") from None
        for key, value in table.items():
            key = key.replace("-", "_")
            if key == "cluster_token":
                raise ConfigError(f"cluster_token in {args.config}: {CONFIG_REFUSAL}")
            if key not in SETTINGS:
                raise ConfigError(f"unknown setting {key!r} in {args.config}")
            merged[key] = value
    for name, (kind, _) in SETTINGS.items():
        raw = environ.get(ENV_PREFIX + name.upper())
        if raw is not None:
            merged[name] = _parse(name, kind, raw)
    try:
        merge_env_token(merged, environ)
    except TokenError as error:
        raise ConfigError(str(error)) from None
    for name in SETTINGS:
        value = getattr(args, name, None)
        if value is not None:
            merged[name] = value
    if getattr(args, "cluster_token_file", None) is not None:
        merged.pop("cluster_token", None)  # the flag wins over the environment
    return merged


def _parse(name: str, kind: type, raw: str) -> Any:
    if kind is list:
        return [item.strip() for item in raw.split(",") if item.strip()]
    if kind is bool:
        if raw.strip().lower() in ("1", "true", "yes", "on"):
            return True
        if raw.strip().lower() in ("", "0", "false", "no", "off"):
            return False
        raise ConfigError(f"{ENV_PREFIX}{name.upper()}: not true or false: {raw!r}")
    try:
        return kind(raw)
    except ValueError:
        raise ConfigError(f"{ENV_PREFIX}{name.upper()}: not a {kind.__name__}: {raw!r}") from None


def node_config(settings: Mapping[str, Any]) -> NodeConfig:
    for required in ("id", "listen", "data_dir"):
        if not settings.get(required):
            flag = "--" + required.replace("_", "-")
            raise ConfigError(f"missing {flag} (or {ENV_PREFIX}{required.upper()})")
    node_id, listen = str(settings["id"]), str(settings["listen"])
    if ":" not in listen or not listen.rpartition(":")[2].isdigit():
        raise ConfigError(f"--listen must be HOST:PORT, not {listen!r}")
    # Every member may be given the same --peer list, this node included (a StatefulSet
    # does that): its own entry is its advertised URL, unless --advertise says otherwise.
    advertise = settings.get("advertise")
    peers: dict[str, str] = {}
    for item in settings.get("peer") or []:
        peer_id, sep, url = str(item).partition("=")
        if not sep or not peer_id or not url:
            raise ConfigError(f"--peer must be ID=URL, not {item!r}")
        if peer_id in peers:
            raise ConfigError(f"peer {peer_id!r} given twice")
        peers[peer_id] = url
    own = peers.pop(node_id, None)
    if own is not None and advertise and own.rstrip("/") != str(advertise).rstrip("/"):
        raise ConfigError(f"--peer {node_id}={own} disagrees with --advertise {advertise}")
    scheme = "https" if settings.get("tls_cert") else "http"
    peers[node_id] = str(advertise or own or f"{scheme}://{listen}")
    try:
        token = cluster_token(settings)
        check_peer_credential(settings, listen, peers[node_id], token)
    except TokenError as error:
        raise ConfigError(str(error)) from None
    options: dict[str, Any] = {}
    if settings.get("election_timeout") is not None:
        options["election_timeout_s"] = float(settings["election_timeout"])
    if settings.get("snapshot_every") is not None:
        if int(settings["snapshot_every"]) < 1:
            raise ConfigError("--snapshot-every must be at least 1")
        options["snapshot_every"] = int(settings["snapshot_every"])
    if settings.get("heartbeat") is not None:
        options["heartbeat_s"] = float(settings["heartbeat"])
    elif "election_timeout_s" in options:
        options["heartbeat_s"] = options["election_timeout_s"] / 6
    for setting, field in _LIMITS.items():
        if settings.get(setting) is not None:
            flag = "--" + setting.replace("_", "-")
            try:
                options[field] = int(settings[setting])
            except (TypeError, ValueError):
                raise ConfigError(f"{flag} must be a whole number") from None
            if options[field] < 1:
                raise ConfigError(f"{flag} must be at least 1")
    if settings.get("auth"):
        from paxlock.api.server.auth import AuthFileError, load_auth

        try:
            load_auth(str(settings["auth"]))  # checked now: a mistake is one line, exit 2
        except AuthFileError as error:
            raise ConfigError(str(error)) from None
        options["auth_file"] = str(settings["auth"])
    if settings.get("auth_metrics"):
        if not settings.get("auth"):
            raise ConfigError("--auth-metrics needs --auth")
        options["auth_metrics"] = True
    from paxlock.api.server.limits import Limits

    try:
        limits = Limits(**{field: SETTINGS[name][0](settings[name])
                           for name, field in LIMIT_SETTINGS.items()
                           if settings.get(name) is not None})  # fmt: skip
    except (TypeError, ValueError) as error:
        raise ConfigError(f"--{_limit_flag(str(error))}") from None
    from paxlock.api.server.node import NodeConfig

    try:
        return NodeConfig(
            node_id, peers, settings["data_dir"], listen=listen, limits=limits,
            cluster_id=str(settings["cluster_id"]) if settings.get("cluster_id") else None,
            initial_cluster_state=settings.get("initial_cluster_state") or None,
            join=str(settings["join"]) if settings.get("join") else None,
            cluster_token=token,
            learn_mode=str(settings.get("learn_mode") or "primary"),
            tls_cert=settings.get("tls_cert") or None, tls_key=settings.get("tls_key") or None,
            tls_ca=settings.get("tls_ca") or None, **options,
        )  # fmt: skip
    except ValueError as error:
        raise ConfigError(str(error)) from None


def _limit_flag(message: str) -> str:
    """A ``Limits`` complaint in the words of its flag: ``max-streams must be at least 1``."""
    for name, field in LIMIT_SETTINGS.items():
        if message.startswith(field + " "):
            return name.replace("_", "-") + message[len(field):]
    return message


SWITCH_INTERVAL_S = float(os.environ.get("PAXLOCK_SWITCH_INTERVAL_S", "0.0005"))
"""How long the event loop's thread may keep the GIL while the store's thread waits for it to
report a finished commit (CPython's default is 5 ms, ten fsyncs). Measured with
``tests/bench/hop_breakdown.py`` at C=1 under load, 0.5 ms against 5 ms made no difference
that stood out of the noise; the README's figures were all taken with 0.5 ms."""


def run_fast(main: Coroutine[Any, Any, int]) -> int:
    """Run on uvloop where it is installed (Linux, macOS): the event loop is most of a
    request's CPU time here; plain asyncio otherwise."""
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    try:
        if os.environ.get("PAXLOCK_NO_UVLOOP"):
            raise ImportError("uvloop disabled by PAXLOCK_NO_UVLOOP")
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def serve_command(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """``paxlock serve``: exit status 0 once stopped by SIGINT or SIGTERM, 1 when the store
    failed while running, 2 when the member could not start (a configuration mistake, a
    store it must not use, an address it cannot listen on): one line on stderr, never a
    traceback, and nothing left running."""
    from paxlock.api.cli.logs import configure_logging
    from paxlock.api.server.bootstrap import BootstrapRefused
    from paxlock.persistence import StoreError

    try:
        settings = resolve(args, environ)
        # Before the settings are checked: checking them may log (an even cluster size).
        configure_logging(str(settings.get("log_level") or "info"),
                          node=str(settings.get("id") or "-"))  # fmt: skip
        config = node_config(settings)
    except ConfigError as error:
        print(f"paxlock serve: {error}", file=sys.stderr)
        return 2
    unauthenticated = not has_credential(settings, config.cluster_token)
    try:
        return run_fast(serve(config, unauthenticated=unauthenticated))
    except (StoreError, OSError, BootstrapRefused) as error:  # OSError: ListenError, ...
        print(f"paxlock serve: {error}", file=sys.stderr)
        return 2


async def serve(config: NodeConfig, *, unauthenticated: bool = False) -> int:
    """Run one node until SIGINT/SIGTERM (exit 0) or until its store fails (exit 1);
    SIGHUP reloads its TLS certificates. ``unauthenticated``: it has no peer credential,
    said once it serves."""
    from paxlock.api.server.node import Node
    from paxlock.coordinator.core.replica_io import UnreadableEntry

    node = Node(config)
    stop = asyncio.Event()  # handlers first: a signal during start-up stops it right after
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(signal.SIGHUP, node.reload_tls)
    starting = asyncio.ensure_future(node.start())  # waits for the members to bootstrap
    stopping = asyncio.ensure_future(stop.wait())
    listening = asyncio.ensure_future(node.listening.wait())
    try:
        await asyncio.wait({starting, stopping, listening}, return_when=asyncio.FIRST_COMPLETED)
        if listening.done() and unauthenticated:  # said once it serves: bootstrap may be long
            warn_unauthenticated(str(config.listen))
        if not starting.done() and not stopping.done():
            await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        listening.cancel()
    if not starting.done():  # stopped while bootstrapping: start() unwinds what it opened
        starting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await starting
        return 0
    if starting.exception() is not None:
        stopping.cancel()
        starting.result()  # a refusal propagates: one line, exit 2
    failed = asyncio.ensure_future(node.wait_failed())
    await asyncio.wait({failed, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    failure = failed.result() if failed.done() else None
    failed.cancel()
    await node.stop()
    if failure is not None:
        why = failure if isinstance(failure, UnreadableEntry) else f"store failed: {failure}"
        print(f"paxlock: node {config.node_id} stopped: {why}", file=sys.stderr)
        return 1
    return 0

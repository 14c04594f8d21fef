"""TLS for one node: the listener's context, the outbound one (peer links, forwarding, the
embedded client), their reload on SIGHUP, and the identity a peer's certificate proves.

With ``--tls-cert``/``--tls-key`` the listener speaks only TLS. With ``--tls-ca`` too, the
listener asks every client for a certificate but requires none (``CERT_OPTIONAL``: SDK users
need no certificate of their own); a certificate that is presented must chain to that CA or
the handshake fails, and ``/internal/`` (the peer endpoints) answers 401 to a connection
that presented none. Outbound, a node presents its own certificate and trusts only that CA.

Reload keeps the ``SSLContext`` objects (the listener was created with them and cannot be
given new ones) and loads the files into them again, so every new handshake uses the new
certificate. The files are first loaded into scratch contexts: a missing file or a key that
does not match its certificate fails there, is logged, and leaves the live contexts as they
were. OpenSSL only ever adds to a context's trust store, so a CA given on reload is trusted
*beside* the old one; taking a CA out of service takes a restart.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from paxlock._logs import get_logger
from paxlock.api.server.app import FORWARDER
from paxlock.api.server.errors import error_response

log = get_logger("paxlock.tls")

INTERNAL_PREFIX = "/internal/"


class TlsError(OSError):
    """The certificate, key or CA files cannot be used; the message is one sentence that names
    the flag and the file (``paxlock serve`` prints it and exits 2, like a listen failure)."""

    def __str__(self) -> str:
        return str(self.strerror)


@dataclass(frozen=True, slots=True)
class TlsFiles:
    cert: Path
    key: Path
    ca: Path | None = None


def _readable(flag: str, path: Path) -> None:
    """OpenSSL names no file in its errors: say which one cannot be read, and why."""
    try:
        with open(path, "rb"):
            pass
    except OSError as error:
        why = os.strerror(error.errno) if error.errno else str(error)
        raise TlsError(error.errno, f"cannot read {flag} {path}: {why.lower()}") from None


def _load_chain(context: ssl.SSLContext, files: TlsFiles) -> None:
    _readable("--tls-cert", files.cert)
    _readable("--tls-key", files.key)
    try:
        context.load_cert_chain(files.cert, files.key)
    except (ssl.SSLError, OSError) as error:
        raise TlsError(0, f"cannot use --tls-cert {files.cert} with --tls-key {files.key}: "
                          f"{_reason(error)}") from None  # fmt: skip


def _load_ca(context: ssl.SSLContext, ca: Path) -> None:
    _readable("--tls-ca", ca)
    try:
        context.load_verify_locations(cafile=ca)
    except (ssl.SSLError, OSError) as error:
        raise TlsError(0, f"cannot use --tls-ca {ca}: {_reason(error)}") from None


def _reason(error: BaseException) -> str:
    """OpenSSL's reason (``KEY_VALUES_MISMATCH``) in plain words, without ``_ssl.c:NNN``."""
    reason = getattr(error, "reason", None)
    if isinstance(reason, str):
        return reason.lower().replace("_", " ")
    return getattr(error, "strerror", None) or str(error)


def _server_context(files: TlsFiles) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    _load_chain(context, files)
    if files.ca is not None:
        _load_ca(context, files.ca)
        context.verify_mode = ssl.CERT_OPTIONAL
    return context


def _client_context(files: TlsFiles) -> ssl.SSLContext:
    """Peers are verified against the CA when one is given (the system's otherwise) and by
    host name: a peer's certificate must name the host of its URL."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    _load_chain(context, files)
    if files.ca is not None:
        _load_ca(context, files.ca)
    else:
        context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    return context


class NodeTls:
    """The two contexts of one node, loaded from ``files``; ``reload()`` on SIGHUP."""

    def __init__(self, files: TlsFiles) -> None:
        self.files = files
        self.server = _server_context(files)
        self.client = _client_context(files)

    @classmethod
    def from_paths(cls, cert: str | Path | None, key: str | Path | None,
                   ca: str | Path | None) -> NodeTls | None:  # fmt: skip
        """None without a certificate (plain HTTP); the contexts otherwise (``TlsError``)."""
        if cert is None or key is None:
            assert cert is None and key is None and ca is None, "checked by NodeConfig"
            return None
        return cls(TlsFiles(Path(cert), Path(key), Path(ca) if ca is not None else None))

    @property
    def mutual(self) -> bool:
        """Peers must prove themselves with a certificate of the cluster's CA."""
        return self.files.ca is not None

    def reload(self) -> bool:
        """Load the files again into the live contexts; on any failure log it, keep the
        contexts as they were, and return False."""
        files = self.files
        try:
            _server_context(files)  # a dry run: the live contexts are touched only if it works
            _load_chain(self.server, files)
            _load_chain(self.client, files)
            if files.ca is not None:
                _load_ca(self.server, files.ca)
                _load_ca(self.client, files.ca)
        except TlsError as error:
            log.error("tls_reload_failed", error=str(error), kept="the previous certificates")
            return False
        log.info("tls_reloaded", cert=str(files.cert), ca=str(files.ca) if files.ca else None)
        return True


def _peer_certificate(request: web.Request) -> dict[str, Any] | None:
    """The certificate the client presented, as ``SSLSocket.getpeercert()`` shows it: the
    listener's ``CERT_OPTIONAL`` verified it against the CA during the handshake (one that
    does not verify never reaches a handler), so a non-empty dict is a verified one."""
    transport = request.transport
    cert = transport.get_extra_info("peercert") if transport is not None else None
    return cert if isinstance(cert, dict) and cert else None


def peer_names(request: web.Request) -> frozenset[str]:
    """Every name the verified client certificate carries: its subject's common names and
    its DNS subject alternative names (empty without a verified certificate)."""
    cert = _peer_certificate(request)
    if cert is None:
        return frozenset()
    dns = [value for kind, value in cert.get("subjectAltName", ()) if kind == "DNS"]
    return frozenset(_common_names(cert) + dns)


def _common_names(cert: dict[str, Any]) -> list[str]:
    return [value for rdn in cert.get("subject", ()) for key, value in rdn if key == "commonName"]


def peer_identity(request: web.Request) -> str | None:
    """The member id this connection's certificate proves: its subject's common name (CN),
    which a member's certificate sets to its node id (``paxlock up --tls`` does); None when
    the client presented no certificate, or one without a single CN. The peer-auth check
    compares it with the ``X-Paxlock-Node`` a peer claims."""
    cert = _peer_certificate(request)
    common = _common_names(cert) if cert is not None else []
    return common[0] if len(common) == 1 else None


@web.middleware
async def peer_certificate_middleware(request: web.Request,
                                      handler: Handler) -> web.StreamResponse:  # fmt: skip
    """Mutual TLS on ``/internal/``: a peer endpoint needs a certificate of the cluster's CA
    (installed by the node only when ``--tls-ca`` is given)."""
    path = request.app[FORWARDER].local_path(request)
    if path.startswith(INTERNAL_PREFIX) and _peer_certificate(request) is None:
        return error_response(401, "unauthenticated", "a peer must present a certificate "
                              "signed by the cluster's CA (mutual TLS)")  # fmt: skip
    return await handler(request)

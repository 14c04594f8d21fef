"""A peer that hangs up during the WebSocket handshake (it was killed, or failed to start
right after connecting: issue 11, items 1 and 3) is not an error: no handler traceback in
the log of the member it was connecting to."""

from __future__ import annotations

import socket
import struct
from typing import Any

UPGRADE = (b"GET /internal/ws HTTP/1.1\r\nHost: paxlock\r\nUpgrade: websocket\r\n"
           b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
           b"Sec-WebSocket-Version: 13\r\nX-Paxlock-Node: n2\r\n\r\n")  # fmt: skip


def test_a_peer_resetting_its_handshake_logs_no_crash(cluster_factory: Any, http: Any) -> None:
    cluster = cluster_factory(1)
    port = cluster.members["n1"].port
    for _ in range(60):  # one reset in a few lands while the handler writes its 101
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(UPGRADE)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    assert http("GET", cluster.url("n1") + "/healthz")[0] == 200  # it still serves
    assert "http_handler_crashed" not in cluster.logs()

"""Why an HTTP attempt got no answer, as a person reads it in a 503 body or a command's error
line: a sentence from the error's kind and errno, never the exception's repr."""

from __future__ import annotations

import errno
import socket

import aiohttp
import pytest

from paxlock.api.client.transport import did_not_answer


@pytest.mark.parametrize(("error", "sentence"), [
    (TimeoutError(), "n1 did not answer within 5 s"),
    (aiohttp.ServerTimeoutError("Timeout on reading data from socket"),
     "n1 did not answer within 5 s"),
    (aiohttp.ClientOSError(errno.ECONNREFUSED, "Connect call failed ('127.0.0.1', 9)"),
     "n1 did not answer: connection refused"),
    (aiohttp.ClientOSError(errno.ECONNRESET, "Connection reset by peer"),
     "n1 did not answer: connection reset by peer"),
    (aiohttp.ServerDisconnectedError(), "n1 did not answer: it closed the connection"),
    (socket.gaierror(socket.EAI_NONAME, "Name or service not known"),
     "n1 did not answer: Name or service not known"),
    (aiohttp.ClientPayloadError("Response payload is not completed"),
     "n1 did not answer: Response payload is not completed"),
])  # fmt: skip
def test_the_sentence_names_what_went_wrong(error: BaseException, sentence: str) -> None:
    assert did_not_answer("n1", error, 5.0) == sentence

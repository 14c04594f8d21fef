"""msgpack encoding of ballots and slot values for the BLOB columns.

Decoding is typed (msgspec validates while it decodes), so a row that is not a well-formed
ballot or value is caught when the store is opened, not when the core trips over it later.
Commands inside a ``Batch`` are opaque bytes, so a value round-trips exactly (``==`` holds
between what was appended and what is loaded, which ``DurableState.apply`` relies on).
"""

from __future__ import annotations

import msgspec

from paxlock.coordinator.core.ballot import Ballot
from paxlock.coordinator.core.messages import Value


class Codec:
    __slots__ = ("_encoder", "_ballot_decoder", "_value_decoder")

    def __init__(self) -> None:
        self._encoder = msgspec.msgpack.Encoder()
        self._ballot_decoder = msgspec.msgpack.Decoder(Ballot)
        self._value_decoder = msgspec.msgpack.Decoder(Value)

    def encode(self, obj: Ballot | Value) -> bytes:
        return self._encoder.encode(obj)

    def decode_ballot(self, data: bytes) -> Ballot:
        return self._ballot_decoder.decode(data)

    def decode_value(self, data: bytes) -> Value:
        value: Value = self._value_decoder.decode(data)
        return value

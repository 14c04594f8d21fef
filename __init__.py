"""paxlock: an embeddable lock and leader-election service on Multi-Paxos.

The public face. Only the names in ``__all__`` are public.
"""

from __future__ import annotations

__all__: list[str] = []
__version__ = "0.1.0"

"""The simulation tests share their deliberately broken parts (``lease_plants.py``); under
``--import-mode=importlib`` test folders are not on ``sys.path``, so this one puts itself
there."""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

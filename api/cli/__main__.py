"""``python -m paxlock.api.cli`` is the ``paxlock`` command."""

import sys

from paxlock.api.cli.main import main

sys.exit(main())

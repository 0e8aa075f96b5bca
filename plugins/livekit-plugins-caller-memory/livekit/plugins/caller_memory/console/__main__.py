"""``python -m livekit.plugins.caller_memory.console``: the same as ``caller-memory serve``."""

import sys

from . import main

sys.exit(main())

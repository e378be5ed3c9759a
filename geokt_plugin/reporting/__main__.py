"""``python -m geokt_plugin.reporting``: ``geokt-compare``."""

import sys

from .cli import main

sys.exit(main())

"""``python -m geokt_plugin.experiments``: see :mod:`geokt_plugin.experiments.cli`."""

import sys

from .cli import main

sys.exit(main())

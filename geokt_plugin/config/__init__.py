"""The config of a geokt-train run: the one loader, and the checks that catch a broken config before anything is
built, trained or written.

- :func:`load_config`: read a torchdistill YAML with its tags and import its ``dependencies``; failures name the
  file, the line and the dataset id. World-writable configs are refused unless ``trust_config``.
- :func:`check_config`: every check of a loaded config; returns notes or raises one :class:`ConfigError` listing
  every problem, each with its YAML path, what was found and the fix.
- :func:`check_run_dir`: a run directory can take the run without losing a previous one.
- :func:`check_config_trust`: the world-writable rule on its own.
"""

from .check import check_config
from .errors import ConfigError
from .loading import load_config
from .rundir_check import check_run_dir
from .stages import stage_keys
from .trust import check_config_trust

__all__ = ["ConfigError", "check_config", "check_config_trust", "check_run_dir", "load_config", "stage_keys"]

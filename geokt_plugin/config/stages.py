"""Stage keys of a multi-stage torchdistill ``train`` section: ``stage1``, ``stage2``, ... (one rule for all)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["is_stage_key", "stage_keys"]

_STAGE = re.compile(r"stage(\d+)")


def is_stage_key(key: Any) -> bool:
    """``True`` for ``'stage1'``, ``'stage2'``, ...; ``False`` for every other key."""
    return isinstance(key, str) and _STAGE.fullmatch(key) is not None


def stage_keys(train: Mapping) -> list[str]:
    """The stage keys of ``train`` in numeric order (``stage10`` after ``stage9``); empty for a single stage."""
    return sorted((k for k in train if is_stage_key(k)), key=lambda k: int(_STAGE.fullmatch(k).group(1)))

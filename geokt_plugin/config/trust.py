"""The trust rule: a config other users could edit is refused, because its YAML tags import and call code."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .errors import ConfigError

__all__ = ["check_config_trust"]


def check_config_trust(path: str | os.PathLike, *, trust_config: bool) -> None:
    """Refuse a config that other users could have edited: YAML tags import and call arbitrary code.

    A config is refused when the file is world-writable, or when its folder is world-writable unless the folder has
    the sticky bit and the file is ours. ``trust_config=True`` (``--trust-config``) skips the rule.

    Raises:
        ConfigError: naming the file or folder, its mode, and the fix.
    """
    if trust_config:
        return
    file = Path(path)
    problems = []
    mode = file.stat().st_mode
    if mode & stat.S_IWOTH:
        problems.append(
            f"the config file is world-writable (mode {stat.filemode(mode)}), so any user could make it run code "
            "(torchdistill's !import_call and similar tags import and call Python). Run `chmod o-w` on it, or pass "
            "--trust-config if you accept that."
        )
    folder_mode = file.resolve().parent.stat().st_mode
    ours = file.stat().st_uid == os.getuid()
    if folder_mode & stat.S_IWOTH and not (folder_mode & stat.S_ISVTX and ours):
        why = "without the sticky bit" if not folder_mode & stat.S_ISVTX else "and the config belongs to another user"
        problems.append(
            f"the config's folder {str(file.resolve().parent)!r} is world-writable {why} (mode "
            f"{stat.filemode(folder_mode)}), so another user could replace the config and make it run code. Move "
            "the config to a private folder, or pass --trust-config if you accept that."
        )
    if problems:
        raise ConfigError.from_problems(str(path), problems)

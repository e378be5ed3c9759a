"""The run directory's outputs at the start of a run: the previous run moved aside (``--overwrite``), the log file,
the manifest (a new one, or a resume entry), the config copy, TensorBoard."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any

from .. import rundir
from .atomic import OutputWriteError
from .continuity import Previous
from .previous import PreviousOutputs
from .records import new_manifest, open_tensorboard, write_config_copy, write_manifest

__all__ = ["write_outputs"]

logger = logging.getLogger("geokt_plugin.runner")


def write_outputs(state: Any, stack: contextlib.ExitStack) -> None:
    """Only now is the run directory written: previous outputs aside (``--overwrite``), log, manifest, config copy,
    TensorBoard."""
    if not state.is_main:
        return
    options, run_dir, previous = state.options, state.run_dir, state.previous
    try:
        if options.overwrite and not options.resume:
            state.aside = PreviousOutputs.move_aside(run_dir.path)
        run_dir.path.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            run_dir.done.unlink()
        handler = logging.FileHandler(run_dir.log)
    except OutputWriteError:
        raise
    except OSError as exc:
        raise OutputWriteError(Path(getattr(exc, "filename", None) or run_dir.log), exc) from exc
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    logger.addHandler(handler)
    stack.callback(_detach, handler)
    _write_manifest_and_config(state, previous)
    state.writer = open_tensorboard(run_dir.path, state.start_epoch if state.start_epoch else None)


def _write_manifest_and_config(state: Any, previous: Previous | None) -> None:
    """A new run: manifest and ``config.yaml``. A resume: the manifest's new ``resumes`` entry; a changed config
    goes to ``config.resume-<k>.yaml`` beside the original ``config.yaml``."""
    options, run_dir, argv = state.options, state.run_dir, list(state.options.argv)
    fresh = new_manifest(argv, state.accelerator, state.seed, options.config, state.data)
    if previous is None:
        write_manifest(run_dir.path, fresh)
        write_config_copy(run_dir.config, options.config, state.config_text, options.overrides)
        return
    entry: dict[str, Any] = {"from_epoch": state.start_epoch, "argv": argv,
                             "world_size": state.accelerator.num_processes}
    if state.start_epoch >= state.session.box.num_epochs:
        entry["phase"] = "finish"
    if previous.changes:
        entry.update(changes=previous.changes, seed=state.seed, data=state.data,
                     mixed_precision=str(state.accelerator.mixed_precision))
    manifest = previous.manifest if previous.manifest is not None else fresh
    if previous.config_changed or not run_dir.config.exists():
        name = rundir.CONFIG if not run_dir.config.exists() else \
            rundir.resumed_config_name(len(manifest.get("resumes", [])) + 1)
        write_config_copy(run_dir / name, options.config, state.config_text, options.overrides)
        entry["config"] = name
    write_manifest(run_dir.path, manifest, entry)


def _detach(handler: logging.Handler) -> None:
    logger.removeHandler(handler)  # run() may be called again in this process
    handler.close()

"""The end of a run: fingerprints, the test of the best student, summary.json and the ``done`` marker; and
``--test-only``, which only evaluates."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .. import rundir
from ..config import ConfigError
from .checkpoint import FIX_BEST, load_model_checkpoint
from .distributed import gather_per_rank, unwrap
from .loaders import build_test_loader
from .loop import evaluate
from .options import RunOptions
from .records import fingerprint, write_done, write_json
from .session import Session

__all__ = ["evaluation_checkpoint", "finish", "test_only"]

logger = logging.getLogger("geokt_plugin.runner")


def finish(state: Any) -> dict:
    """Fingerprints of every rank's weights, the test of the best student, summary.json and the ``done`` marker.

    ``state`` is the run's shared state (``geokt_plugin.runner.run._Run``).
    """
    session, accelerator, run_dir = state.session, state.accelerator, state.run_dir
    box = session.box
    fingerprints = gather_per_rank(fingerprint(unwrap(box.student)), accelerator)
    if state.is_main:  # equal under correct DDP
        write_json(run_dir.params, {"world_size": accelerator.num_processes, "ranks": fingerprints,
                                    "identical": all(f == fingerprints[0] for f in fingerprints)})
    summary: dict[str, Any] = {"best_val_acc": state.best_acc if state.best_epoch > 0 else None,
                               "best_epoch": state.best_epoch, "last_val_acc": state.metrics.last("val_acc"),
                               "epochs": box.num_epochs, "teacher_val_acc": state.teacher_acc,
                               "skipped_steps": state.skipped_total}
    loader = build_test_loader(state.config, accelerator)
    if loader is not None:
        if run_dir.best.exists():
            accelerator.wait_for_everyone()
            load_model_checkpoint(box.plain_student, run_dir.best, where="best.pt", fix=FIX_BEST)
        elif state.best_epoch > 0:
            logger.warning("%s is missing: the test uses the last epoch's weights", run_dir.best)
            summary["tested"] = "last"
        summary["test_acc"] = evaluate(box.plain_student, loader, accelerator)
        if box.teacher is not None and not state.options.student_only:
            summary["teacher_test_acc"] = evaluate(box.teacher_for_eval, loader, accelerator)
    if state.is_main:
        write_json(run_dir.summary, summary)
        write_done(run_dir.path)
        state.writer.close()
        val = f"best val {state.best_acc:.2f} at epoch {state.best_epoch}" if state.best_epoch >= 0 \
            else "no validation data"
        test = f", test {summary['test_acc']:.2f}" if summary.get("test_acc") is not None else ""
        logger.info("done: %s%s -> %s", val, test, run_dir.path)
    box.clean_modules()
    accelerator.wait_for_everyone()
    return summary


def evaluation_checkpoint(options: RunOptions, config: Mapping) -> Path | None:
    """What ``--test-only`` evaluates: ``--checkpoint``, else ``<run_dir>/best.pt``, else ``None`` (the config's
    ``src_ckpt``); refuses when there is nothing but random weights."""
    path = options.checkpoint
    if path is not None:
        if not path.is_file():
            raise ConfigError(f"--checkpoint: no file at {path}." if not path.exists() else
                              f"--checkpoint: {path} is not a file.")
        return path
    best = rundir.RunDir(options.resolved_run_dir).best
    if best.exists():
        return best
    student = config.get("models", {}).get("student_model") or {}
    if not (isinstance(student, Mapping) and student.get("src_ckpt")):
        last = rundir.RunDir(options.resolved_run_dir).last
        hint = f" (there is {last}: pass --checkpoint {last})" if last.is_file() else ""
        raise ConfigError(f"--test-only: nothing to evaluate: no --checkpoint, no {best}{hint} and no "
                          "models.student_model.src_ckpt; the result would be the accuracy of random weights. Pass "
                          "--checkpoint, or --run-dir of a trained run.")
    return None


def test_only(options: RunOptions, config: dict, session: Session, checkpoint: Path | None) -> dict:
    """Evaluate the student (``checkpoint``, else the config's weights) and the instructor; print and keep it."""
    box, accelerator = session.box, session.accelerator
    run_dir = rundir.RunDir(options.resolved_run_dir)
    if checkpoint is not None:
        fix = FIX_BEST if checkpoint == run_dir.best else "Use another checkpoint."
        load_model_checkpoint(box.plain_student, checkpoint, where="--test-only", fix=fix)
    result: dict[str, Any] = {"checkpoint": str(checkpoint) if checkpoint else None}
    if box.val_data_loader is not None:
        result["val_acc"] = evaluate(box.plain_student, box.val_data_loader, accelerator)
    loader = build_test_loader(config, accelerator)
    if loader is not None:
        result["test_acc"] = evaluate(box.plain_student, loader, accelerator)
    if box.teacher is not None and not options.student_only:
        loader = loader or box.val_data_loader
        if loader is not None:
            result["teacher_acc"] = evaluate(box.teacher_for_eval, loader, accelerator)
    if accelerator.is_main_process:
        print(json.dumps(result, indent=2))
        if run_dir.path.is_dir():
            write_json(run_dir.test, result)
    return result

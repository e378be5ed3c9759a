"""One run, as a fixed sequence of named steps: config -> run dir -> accelerator -> models -> box and session ->
resume -> outputs -> instructor -> epochs -> finish (or, with ``test_only``, evaluate and stop).

Callable from Python: ``geokt_plugin.runner.run(RunOptions(config="configs/smoke/kd.yaml"))``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .. import rundir
from ..config import ConfigError, check_config, check_run_dir, load_config
from ..config.stages import stage_keys
from .boxes import build_box
from .build import build_model
from .checkpoint import Checkpoint, load_model_checkpoint
from .distributed import ddp_kwargs_from_config, gather_per_rank, make_accelerator, sync_buffers, unwrap
from .loaders import build_test_loader
from .loop import EpochPlan, EpochTotals, evaluate, train_epoch
from .options import RunOptions
from .records import (
    MetricsLog,
    clear_run_dir,
    fingerprint,
    open_tensorboard,
    write_config_copy,
    write_done,
    write_json,
    write_manifest,
)
from .rng import rng_state, set_rng_state
from .session import Session

__all__ = ["run"]

RUNNER_LOGGER = "geokt_plugin.runner"
logger = logging.getLogger(RUNNER_LOGGER)


@dataclass
class _Run:
    """What the steps of one training run share."""

    options: RunOptions
    config: dict
    run_dir: rundir.RunDir
    session: Session
    seed: int
    checkpoint: Checkpoint | None
    metrics: MetricsLog = field(init=False)
    writer: Any = None
    start_epoch: int = 0
    best_acc: float = -1.0
    best_epoch: int = -1
    grad_steps: int = 0
    teacher_acc: float | None = None
    skipped_total: int = 0

    def __post_init__(self) -> None:
        ckpt = self.checkpoint
        self.metrics = MetricsLog(self.run_dir.metrics, ckpt.rows if ckpt is not None else None)
        if ckpt is not None:
            self.start_epoch = int(ckpt.epoch) + 1
            self.best_acc, self.best_epoch = float(ckpt.best_val_acc), int(ckpt.best_epoch)
            self.grad_steps = int(ckpt.grad_steps)
            self.teacher_acc = ckpt.teacher_val_acc

    @property
    def accelerator(self) -> Any:
        return self.session.accelerator

    @property
    def is_main(self) -> bool:
        return bool(self.session.accelerator.is_main_process)


def run(options: RunOptions) -> dict:
    """Check, then train (or evaluate) one config; returns the summary written to summary.json.

    Raises:
        ConfigError: a bad config, flag, run directory or checkpoint, before anything is written.
        TrainingStopped: a non-finite loss under ``nan_policy='stop'``.
    """
    if logger.level == logging.NOTSET:  # a Python caller without the CLI's logging: keep train.log informative
        logger.setLevel(logging.DEBUG if options.debug else logging.INFO)
    config = load_and_check_config(options)
    if options.check:
        print(f"geokt-train: {options.config}: OK")
        return {"check": "ok"}
    resume_path = check_run_dir_and_checkpoint(options)
    accelerator = make_accelerator(options.device, options.mixed_precision, ddp_kwargs_from_config(config["train"]))
    seed = seed_everything(options, config)
    session = build_session(config, accelerator, seed)
    ckpt = resume(session, resume_path, test_only=options.test_only)
    if options.test_only:
        return test_only(options, config, session, resume_path)
    state = _Run(options, config, rundir.RunDir(options.resolved_run_dir), session, seed, ckpt)
    if state.start_epoch >= session.box.num_epochs:
        return already_done(state)
    with contextlib.ExitStack() as stack:
        write_outputs(state, stack)
        evaluate_instructor(state)
        stopped = train_epochs(state)
        return stopped if stopped is not None else finish(state)


def load_and_check_config(options: RunOptions) -> dict:
    """Load the config, apply ``--epochs``, and run the full validation before anything is built or written."""
    config = load_config(options.config, trust_config=options.trust_config)
    if options.epochs is not None:
        if stage_keys(config["train"]):
            raise ConfigError(f"{options.config}: --epochs does not apply to a multi-stage config; edit "
                              "train.stageN.num_epochs.")
        config["train"]["num_epochs"] = options.epochs
    device = options.device or ("cuda" if torch.cuda.is_available() else "cpu")
    for note in check_config(config, config_path=str(options.config), device=device, load_checkpoints=True) or []:
        (logger.warning if note.startswith("warning") else logger.debug)("config: %s", note)
    return config


def check_run_dir_and_checkpoint(options: RunOptions) -> Path | None:
    """The checkpoint to start from (``--resume``'s ``last.pt``, ``--checkpoint``), after checking the run dir."""
    if options.test_only:
        path = options.checkpoint
        if path is not None and not path.is_file():
            raise ConfigError(f"--checkpoint: no file at {path}.")
        return path
    run_dir = options.resolved_run_dir
    for note in check_run_dir(run_dir, resume=options.resume, overwrite=options.overwrite):
        logger.debug("run dir: %s", note)
    return rundir.RunDir(run_dir).last if options.resume else None


def seed_everything(options: RunOptions, config: dict) -> int:
    """Seed every RNG with ``--seed``, else the config's ``seed``, else 0: identical initial weights on all ranks."""
    from accelerate.utils import set_seed

    seed = options.seed if options.seed is not None else int(config.get("seed", 0) or 0)
    set_seed(seed)
    torch.backends.cudnn.benchmark = False
    return seed


def build_session(config: dict, accelerator: Any, seed: int) -> Session:
    """Student and (frozen, fp32) instructor from ``models``, then torchdistill's box around them."""
    models = config["models"]
    teacher_cfg = models.get("teacher_model")
    student = build_model(models["student_model"], "student_model")
    teacher = build_model(teacher_cfg, "teacher_model") if isinstance(teacher_cfg, Mapping) and teacher_cfg else None
    return Session(build_box(config, teacher, student, accelerator.device), accelerator, seed)


def resume(session: Session, path: Path | None, *, test_only: bool) -> Checkpoint | None:
    """Replay finished stages, prepare, then load every saved state (weights, adapters, optimizer, RNG)."""
    ckpt = Checkpoint.load(path, allow_plain=test_only) if path is not None else None
    box, accelerator = session.box, session.accelerator
    if ckpt is not None:
        box.fast_forward(int(ckpt.epoch) + 1)
    session.prepare()
    if path is None:
        return None
    load_model_checkpoint(box.plain_student, path, where="--resume")
    if ckpt is None:  # --test-only with a plain checkpoint
        return None
    session.load_extra_state(ckpt.extra, path)
    box.optimizer.load_state_dict(ckpt.optimizer)
    if box.lr_scheduler is not None and ckpt.scheduler is not None:
        box.lr_scheduler.load_state_dict(ckpt.scheduler)
    box.backward_count = ckpt.stage_grad_count
    if len(ckpt.rng) != accelerator.num_processes:
        raise ConfigError(f"--resume: {path} was written by {len(ckpt.rng)} process(es), this run has "
                          f"{accelerator.num_processes}; resume with the same world size.")
    set_rng_state(ckpt.rng[accelerator.process_index])
    return ckpt


def already_done(state: _Run) -> dict:
    """Every epoch is already trained: say so and return the previous summary."""
    if state.is_main:
        logger.info("%s: all %d epochs are done; nothing to train (raise --epochs to continue).", state.run_dir.path,
                    state.session.box.num_epochs)
    return rundir.read_json(state.run_dir.summary)


def write_outputs(state: _Run, stack: contextlib.ExitStack) -> None:
    """Only now is the run directory touched: clear (``--overwrite``), log file, manifest, config copy, TensorBoard."""
    if not state.is_main:
        return
    options, run_dir = state.options, state.run_dir
    if options.overwrite and not options.resume:
        clear_run_dir(run_dir.path)
    run_dir.path.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        run_dir.done.unlink()
    handler = logging.FileHandler(run_dir.log)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    logger.addHandler(handler)
    stack.callback(_detach, handler)
    write_manifest(run_dir.path, resumed_from=state.start_epoch if options.resume else None, argv=list(options.argv),
                   accelerator=state.accelerator, seed=state.seed, config_path=options.config)
    write_config_copy(run_dir.path, options.config, options.overrides)
    state.writer = open_tensorboard(run_dir.path, state.start_epoch if state.start_epoch else None)


def _detach(handler: logging.Handler) -> None:
    logger.removeHandler(handler)  # run() may be called again in this process
    handler.close()


def evaluate_instructor(state: _Run) -> None:
    """The instructor's validation accuracy, once at the start (it is frozen; a resumed run keeps the saved one)."""
    box = state.session.box
    if box.teacher is None or state.options.student_only or box.val_data_loader is None or state.start_epoch != 0:
        return
    state.teacher_acc = evaluate(box.teacher_for_eval, box.val_data_loader, state.accelerator)
    if state.is_main:
        logger.info("instructor val top-1 %.2f", state.teacher_acc)


def train_epochs(state: _Run) -> dict | None:
    """Train the remaining epochs; ``{'stopped_after_epoch': N}`` when ``stop_after_epochs`` ends the run early."""
    options, session = state.options, state.session
    num_epochs = int(session.box.num_epochs)
    log_every = options.log_every or int(state.config["train"].get("log_freq", 0) or 0) or 50
    for epoch in range(state.start_epoch, num_epochs):
        # seeded data order, train mode (the instructor stays in eval)
        session.set_epoch(epoch)
        session.box.begin_epoch(epoch)
        plan = EpochPlan(epoch, num_epochs, state.grad_steps, options.nan_policy, log_every, state.is_main,
                         state.run_dir.path)
        end_epoch(state, epoch, train_epoch(session, plan))
        stop_after = options.stop_after_epochs
        if stop_after is not None and epoch + 1 - state.start_epoch >= stop_after and epoch + 1 < num_epochs:
            if state.is_main:
                logger.info("stopping after epoch %d as asked (--stop-after-epochs); resume with --resume", epoch + 1)
                state.writer.close()
            return {"stopped_after_epoch": epoch + 1}
    return None


def end_epoch(state: _Run, epoch: int, local: EpochTotals) -> None:
    """Totals over all ranks, validation, the metrics row, torchdistill's post-epoch step, then the checkpoint."""
    session, accelerator = state.session, state.accelerator
    box = session.box
    totals = local.reduced(accelerator)
    state.skipped_total += int(totals.skipped)
    state.grad_steps += int(local.steps)
    sync_buffers(unwrap(box.student), accelerator)
    val_acc = evaluate(box.plain_student, box.val_data_loader, accelerator) \
        if box.val_data_loader is not None else float("nan")
    row = _epoch_row(epoch, box.stage, totals, val_acc)
    improved = not math.isnan(val_acc) and val_acc > state.best_acc
    if improved:
        state.best_acc, state.best_epoch = val_acc, epoch + 1
    state.metrics.append(row)
    # post-epoch (epoch-wise scheduler, stage advance), then the checkpoint: the last RNG user
    if box.end_epoch(val_acc):
        session.prepare()
    ckpt = _checkpoint(state, epoch, gather_per_rank(rng_state(), accelerator))
    if state.is_main:
        ckpt.save(state.run_dir.last)
        if improved:
            ckpt.save(state.run_dir.best)
        state.metrics.write()
        _log_epoch(state, row, epoch)
    accelerator.wait_for_everyone()


def _epoch_row(epoch: int, stage: int, totals: EpochTotals, val_acc: float) -> dict:
    return {
        "epoch": epoch + 1, "stage": stage, "lr": totals.lr,
        **{k: v / max(totals.seen, 1) for k, v in totals.sums.items()},
        "train_acc": 100.0 * totals.correct / totals.acc_seen if totals.acc_seen else float("nan"),
        "val_acc": val_acc, "epoch_time_s": totals.seconds, "images_per_s": totals.seen / max(totals.seconds, 1e-9),
        "steps": int(totals.steps), "skipped_steps": int(totals.skipped),
    }


def _checkpoint(state: _Run, epoch: int, rng_states: list[dict]) -> Checkpoint:
    session = state.session
    box = session.box
    return Checkpoint(
        model={k: v.detach().clone() for k, v in box.plain_student.state_dict().items()},
        extra=session.extra_state(), optimizer=box.optimizer.state_dict(),
        scheduler=box.lr_scheduler.state_dict() if box.lr_scheduler is not None else None,
        epoch=epoch, stage=box.stage, stage_grad_count=box.backward_count, grad_steps=state.grad_steps,
        best_val_acc=state.best_acc, best_epoch=state.best_epoch, teacher_val_acc=state.teacher_acc,
        rows=state.metrics.rows, rng=rng_states, seed=state.seed, world_size=state.accelerator.num_processes)


def _log_epoch(state: _Run, row: dict, epoch: int) -> None:
    """The epoch's scalars to TensorBoard and its log line."""
    for key, value in row.items():
        if isinstance(value, (int, float)) and key not in ("epoch",) and not math.isnan(float(value)):
            state.writer.add_scalar(key if "/" in key else f"epoch/{key}", value, epoch + 1)
    state.writer.flush()
    terms = " ".join(f"{k[len(rundir.TERM_PREFIX):]} {row[k]:.4f}" for k in row if k.startswith(rundir.TERM_PREFIX))
    skipped = row["skipped_steps"]
    logger.info("epoch %d/%d loss %.4f %s| train %.2f val %.2f | %.1fs %.0f img/s%s", epoch + 1,
                state.session.box.num_epochs, row.get("train_loss", float("nan")), terms + " " if terms else "",
                row["train_acc"], row["val_acc"], row["epoch_time_s"], row["images_per_s"],
                f" | skipped {skipped}" if skipped else "")


def finish(state: _Run) -> dict:
    """Fingerprints of every rank's weights, the test of the best student, summary.json and the ``done`` marker."""
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
            load_model_checkpoint(box.plain_student, run_dir.best, where="best.pt")
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


def test_only(options: RunOptions, config: dict, session: Session, checkpoint: Path | None) -> dict:
    """Evaluate the student (``--checkpoint``, else ``best.pt``, else the config's weights) and the instructor."""
    box, accelerator = session.box, session.accelerator
    run_dir = rundir.RunDir(options.resolved_run_dir)
    if checkpoint is None and run_dir.best.exists():
        load_model_checkpoint(box.plain_student, run_dir.best, where="best.pt")
        checkpoint = run_dir.best
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

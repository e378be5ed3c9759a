"""One run, as a fixed sequence of named steps: config -> settings -> lock -> run dir -> accelerator -> models ->
box and session -> resume -> probe -> outputs -> instructor -> epochs -> finish (or, with ``test_only``, evaluate
and stop).

Callable from Python: ``geokt_plugin.runner.run(RunOptions(config="configs/smoke/kd.yaml"))``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .. import rundir
from ..config import ConfigError, check_config, check_run_dir, load_config
from ..config.stages import stage_keys
from ..probes import AGREEMENT_PREFIX
from .boxes import build_box
from .build import build_model
from .checkpoint import FIX_LAST, Checkpoint, load_state_into, save_torchdistill_ckpt
from .continuity import Previous, check_previous, check_same_run, data_fingerprint
from .distributed import ddp_kwargs_from_config, gather_per_rank, make_accelerator, sync_buffers, unwrap
from .finish import evaluation_checkpoint, finish, test_only
from .lock import RunLock
from .loop import EpochPlan, EpochTotals, evaluate, train_epoch
from .options import RunOptions
from .outputs import write_outputs
from .previous import PreviousOutputs
from .probe import AgreementProbe, build_probe
from .records import MetricsLog
from .rng import rng_state, set_rng_state
from .session import Session
from .settings import DEFAULT_SEED, RunSettings, check_device_and_precision, check_effective_precision, publish_run_seed

__all__ = ["run"]

RUNNER_LOGGER = "geokt_plugin.runner"
logger = logging.getLogger(RUNNER_LOGGER)


@dataclass
class _Run:
    """What the steps of one training run share."""

    options: RunOptions
    config: dict
    config_text: str
    settings: RunSettings
    run_dir: rundir.RunDir
    session: Session
    previous: Previous | None
    metrics: MetricsLog = field(init=False)
    writer: Any = None
    aside: PreviousOutputs | None = None
    data: dict | None = None
    start_epoch: int = 0
    best_acc: float = -1.0
    best_epoch: int = -1
    grad_steps: int = 0
    teacher_acc: float | None = None
    skipped_total: int = 0
    probe: AgreementProbe | None = None  # the geokt_agreement probe, on the main process only

    def __post_init__(self) -> None:
        ckpt = self.previous.checkpoint if self.previous is not None else None
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

    @property
    def seed(self) -> int:
        return self.settings.seed


def run(options: RunOptions) -> dict:
    """Check, then train (or evaluate) one config; returns the summary written to summary.json.

    Raises:
        ConfigError: a bad config, flag, run directory or checkpoint, before anything is written.
        OutputWriteError: an output could not be written (disk full, read-only, permissions).
        TrainingStopped: a non-finite loss under ``nan_policy='stop'``.
    """
    if logger.level == logging.NOTSET:  # a Python caller without the CLI's logging: keep train.log informative
        logger.setLevel(logging.DEBUG if options.debug else logging.INFO)
    config, text = load_and_check_config(options)
    settings = RunSettings.resolve(options, config)
    if publish_run_seed(settings.seed):  # the config's own seed: its `seed: run` datasets are drawn again with it
        config, text = load_and_check_config(options)
    check_device_and_precision(options)
    if options.check:
        if options.test_only:
            evaluation_checkpoint(options, config)
        elif options.run_dir is not None or options.resume or options.overwrite:
            check_outputs(options, text, settings)
        print(f"geokt-train: {options.config}: OK")
        return {"check": "ok"}
    if options.test_only:
        return evaluate_only(options, config, settings)
    with contextlib.ExitStack() as stack:
        if int(os.environ.get("RANK", "0")) == 0:  # the accelerator does not exist yet
            stack.enter_context(RunLock(options.resolved_run_dir))
        previous = check_outputs(options, text, settings)
        accelerator = start_accelerator(options, config)
        session = build_session(config, accelerator, seed_everything(settings.seed))
        state = _Run(options, config, text, settings, rundir.RunDir(options.resolved_run_dir), session, previous)
        state.data = data_fingerprint(session.box.dataset_dict)
        if previous is not None:
            check_same_run(previous, state.data, str(accelerator.mixed_precision),
                           allow_change=options.allow_config_change)
        resume(session, previous)
        if state.start_epoch >= session.box.num_epochs and state.run_dir.finished():
            return already_done(state)
        return train_and_finish(state, stack)


def load_and_check_config(options: RunOptions) -> tuple[dict, str]:
    """The config (``--epochs`` applied) and its text, validated before anything is built or written."""
    publish_run_seed(options.seed if options.seed is not None else DEFAULT_SEED)
    config = load_config(options.config, trust_config=options.trust_config)
    try:
        text = options.config.read_text()  # kept: --overwrite may move the file away when it is the run's copy
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{options.config}: cannot be read as text ({exc}).") from exc
    if options.epochs is not None and isinstance(config.get("train"), dict):  # no train section: the check says so
        if stage_keys(config["train"]):
            raise ConfigError(f"{options.config}: --epochs does not apply to a multi-stage config; edit "
                              "train.stageN.num_epochs.")
        config["train"]["num_epochs"] = options.epochs
    device = options.device or ("cuda" if torch.cuda.is_available() else "cpu")
    for note in check_config(config, config_path=str(options.config), device=device, load_checkpoints=True) or []:
        (logger.warning if note.startswith("warning") else logger.debug)("config: %s", note)
    return config, text


def check_outputs(options: RunOptions, text: str, settings: RunSettings) -> Previous | None:
    """The run-dir check; with ``--resume``, the run to continue (its ``last.pt``, manifest, config, seed)."""
    run_dir = options.resolved_run_dir
    last = rundir.RunDir(run_dir).last
    if options.resume and last.exists() and not last.is_file():
        raise ConfigError(f"--resume: {last} is a directory, not a checkpoint file. {FIX_LAST}")
    for note in check_run_dir(run_dir, resume=options.resume, overwrite=options.overwrite):
        logger.debug("run dir: %s", note)
    if not options.resume:
        return None
    return check_previous(run_dir, text, settings.seed, allow_change=options.allow_config_change)


def start_accelerator(options: RunOptions, config: dict) -> Any:
    """The Accelerator, refused when it would not run the precision it reports."""
    accelerator = make_accelerator(options.device, options.mixed_precision, ddp_kwargs_from_config(config["train"]))
    check_effective_precision(accelerator)
    return accelerator


def seed_everything(seed: int) -> int:
    """Seed every RNG: identical initial weights on all ranks."""
    from accelerate.utils import set_seed

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


def evaluate_only(options: RunOptions, config: dict, settings: RunSettings) -> dict:
    """``--test-only``: what to evaluate (refused when nothing but random weights), then the evaluation."""
    checkpoint = evaluation_checkpoint(options, config)
    accelerator = start_accelerator(options, config)
    session = build_session(config, accelerator, seed_everything(settings.seed))
    session.prepare()
    return test_only(options, config, session, checkpoint)


def resume(session: Session, previous: Previous | None) -> None:
    """Replay finished stages, prepare, then load every saved state (weights, adapters, optimizer, RNG)."""
    box, accelerator = session.box, session.accelerator
    ckpt = previous.checkpoint if previous is not None else None
    if ckpt is not None:
        box.fast_forward(int(ckpt.epoch) + 1)
    session.prepare()
    if previous is None or ckpt is None:
        return
    path = previous.path
    load_state_into(box.plain_student, ckpt.model, where="--resume", file=path)
    session.load_extra_state(ckpt.extra, path)
    _load_state("optimizer", box.optimizer, ckpt.optimizer, path)
    if box.lr_scheduler is not None and ckpt.scheduler is not None:
        _load_state("scheduler", box.lr_scheduler, ckpt.scheduler, path)
    box.backward_count = ckpt.stage_grad_count
    if len(ckpt.rng) != accelerator.num_processes:
        raise ConfigError(f"--resume: {path} was written by {len(ckpt.rng)} process(es), this run has "
                          f"{accelerator.num_processes}; resume with the same world size.")
    set_rng_state(ckpt.rng[accelerator.process_index])


def _load_state(what: str, target: Any, state: Any, path: Path) -> None:
    """``target.load_state_dict(state)``; a state of another class or shape is a one-line :class:`ConfigError`.

    An optimizer's ``load_state_dict`` accepts the state of another class and fails at the first step instead
    (``KeyError: 'betas'``); the settings of its parameter groups tell the classes apart first.
    """
    kind = type(getattr(target, "optimizer", target)).__name__
    fix = (f"The {what} class or its parameter groups changed since the run started; resume with the original "
           "train.optimizer/scheduler, or start again with --overwrite.")
    groups = getattr(target, "param_groups", None)
    saved = state.get("param_groups") if isinstance(state, dict) else None
    if groups and saved:
        needed = sorted(set(groups[0]) - set(saved[0]))
        if needed:
            raise ConfigError(f"--resume: the {what} state in {path} lacks the settings {needed} that this config's "
                              f"{what} ({kind}) needs. {fix}")
    try:
        target.load_state_dict(state)
    except (KeyError, ValueError, TypeError, RuntimeError, IndexError, AttributeError) as exc:
        raise ConfigError(f"--resume: the {what} state in {path} does not fit this config's {what} ({kind}): "
                          f"{type(exc).__name__}: {exc}. {fix}") from exc


def already_done(state: _Run) -> dict:
    """The run finished: every epoch trained, the test done. Say so and return its summary."""
    if state.is_main:
        logger.info("%s: the run is finished (all %d epochs and the test); nothing to do (raise --epochs to "
                    "continue training).", state.run_dir.path, state.session.box.num_epochs)
    return rundir.read_json(state.run_dir.summary)


def train_and_finish(state: _Run, stack: contextlib.ExitStack) -> dict:
    """Agreement probe, outputs, instructor, the remaining epochs, the finish; ``--overwrite``'s previous outputs come
    back on a failure before the first checkpoint."""
    try:
        if state.is_main:  # built before anything is written: a bad reference fails first
            state.probe = build_probe(state.config, state.session.box, state.accelerator.device)
        write_outputs(state, stack)
        if state.start_epoch >= state.session.box.num_epochs:
            if state.is_main:
                logger.info("all %d epochs are trained but the run did not finish: finishing it (test, summary, "
                            "done marker)", state.session.box.num_epochs)
            return finish(state)
        evaluate_instructor(state)
        stopped = train_epochs(state)
        return stopped if stopped is not None else finish(state)
    except BaseException:
        if state.writer is not None:
            state.writer.close()
        if state.aside is not None:
            state.aside.restore()
            state.aside = None
        raise


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
    for epoch in range(state.start_epoch, num_epochs):
        # seeded data order, train mode (the instructor stays in eval)
        session.set_epoch(epoch)
        session.box.begin_epoch(epoch)
        plan = EpochPlan(epoch, num_epochs, state.grad_steps, options.nan_policy, state.settings.log_every,
                         state.is_main, state.run_dir.path)
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
    if state.probe is not None:  # main only: the other ranks' rows are never written
        row.update(state.probe.measure(box.plain_student))
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
            _save_dst_ckpt(state)
        if state.aside is not None:  # the new run has its first checkpoint: the previous outputs can go
            state.aside.drop()
            state.aside = None
        state.metrics.write()
        _log_epoch(state, row, epoch)
    accelerator.wait_for_everyone()


def _save_dst_ckpt(state: _Run) -> None:
    """``models.student_model.dst_ckpt``: the best student also in torchdistill's ``save_ckpt`` layout."""
    dst = (state.config["models"].get("student_model") or {}).get("dst_ckpt")
    if not dst:
        return
    path = Path(os.path.expanduser(str(dst)))
    if path.resolve() in (state.run_dir.best.resolve(), state.run_dir.last.resolve()):
        return  # the run's own best.pt: it already loads with torchdistill's load_ckpt ('model', 'optimizer')
    box = state.session.box
    args = {"config": str(state.options.config), "run_dir": str(state.run_dir.path), "seed": state.seed,
            "best_epoch": state.best_epoch}
    save_torchdistill_ckpt(path, box.plain_student, box.optimizer, box.lr_scheduler,
                           state.best_acc, args)


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
    agree = " ".join(f"{k[len(AGREEMENT_PREFIX):]} {row[k]:.3f}" for k in row if k.startswith(AGREEMENT_PREFIX))
    skipped = row["skipped_steps"]
    logger.info("epoch %d/%d loss %.4f %s| train %.2f val %.2f%s | %.1fs %.0f img/s%s", epoch + 1,
                state.session.box.num_epochs, row.get("train_loss", float("nan")), terms + " " if terms else "",
                row["train_acc"], row["val_acc"], f" | agree {agree}" if agree else "", row["epoch_time_s"],
                row["images_per_s"], f" | skipped {skipped}" if skipped else "")

"""The Accelerate runner: config -> dependencies -> models -> box -> loop -> checkpoints and logs.

``geokt-train --config X.yaml`` on one machine, ``accelerate launch --multi_gpu --num_processes N -m
geokt_plugin.train --config X.yaml`` on several GPUs, ``torchrun --nproc_per_node 2 -m geokt_plugin.train --config
X.yaml --device cpu`` for two CPU processes (gloo).

torchdistill's ``DistillationBox`` / ``TrainingBox`` still parse the config, set the hooks and build the criterion,
optimizer and scheduler; they are built with ``accelerator=None`` (their accelerator path reads the
``use_fp16`` attribute that accelerate removed). This runner then owns everything Accelerate does:

1. ``accelerator.prepare`` on the student (the auxiliary wrapper if any: student and adapters are one DDP
   module), optimizer, loaders and scheduler, assigned back into the box; the frozen instructor is moved to the
   device, put in eval mode, kept fp32 and never DDP-wrapped;
2. ``box.forward_process`` under ``accelerator.autocast()``, with ``secondary_forward`` called on the *unwrapped*
   student (torchdistill's own ``isinstance`` test skips it under DDP);
3. ``accelerator.backward``, ``accelerator.clip_grad_norm_`` with the config's ``max_grad_norm``, optimizer step;
4. evaluation (top-1) with ``gather_for_metrics``;
5. atomic checkpoints of the unwrapped inner student (plus adapters, optimizer, scheduler, per-rank RNG states)
   that make ``--resume`` reproduce an uninterrupted run.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import copy
import csv
import datetime as _dt
import difflib
import io
import json
import logging
import math
import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, RandomSampler, Sampler, SequentialSampler

from .model_state import read_model_state, state_mismatch
from .validate import ConfigError, check_config, check_run_dir
from .validate import load_config as _load_yaml

__all__ = ["ConfigError", "EpochSeededSampler", "TrainingStopped", "build_parser", "main", "run"]

logger = logging.getLogger("geokt_plugin.train")

CHECKPOINT_FORMAT = "geokt_plugin.checkpoint/1"
DONE_MARKER = "done"
# Files this runner writes into a run directory (what --overwrite removes; nothing else is touched).
RUN_FILES = ("metrics.csv", "config.yaml", "manifest.json", "last.pt", "best.pt", "summary.json", "test.json",
             "train.log", "params.json", DONE_MARKER)
RUN_DIRS = ("tb",)


class TrainingStopped(RuntimeError):
    """Training stopped on purpose (a non-finite loss under ``--nan-policy stop``); printed as one line, exit 3."""


# ----------------------------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------------------------


def build_parser(prog: str = "geokt-train") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Train a torchdistill YAML config with Accelerate (distillation, or plain training without a "
                    "teacher). Configs can import and call code: run only configs you trust.",
    )
    parser.add_argument("--config", required=True, help="torchdistill YAML config")
    parser.add_argument("--run-dir", default=None,
                        help="output folder (default: runs/<config name>); refused if it holds a finished run")
    parser.add_argument("--seed", type=int, default=None, help="seed (default: the config's `seed`, else 0)")
    parser.add_argument("--mixed-precision", choices=("no", "bf16", "fp16"), default=None,
                        help="default: Accelerate's config (`accelerate config`), else 'no'")
    parser.add_argument("--epochs", type=int, default=None, help="override train.num_epochs (single-stage configs)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --run-dir from its last.pt")
    parser.add_argument("--test-only", action="store_true",
                        help="only evaluate: --checkpoint, else <run-dir>/best.pt, else the config's src_ckpt")
    parser.add_argument("--checkpoint", default=None, help="with --test-only: the checkpoint to evaluate")
    parser.add_argument("--student-only", action="store_true", help="do not evaluate the instructor")
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None,
                        help="force the device ('cpu' also gives gloo under torchrun); default: Accelerate's choice")
    parser.add_argument("--log-every", type=int, default=None,
                        help="log a line every N steps when not on a TTY (default: train.log_freq, else 50)")
    parser.add_argument("--overwrite", action="store_true", help="replace the outputs of a previous run in --run-dir")
    parser.add_argument("--nan-policy", choices=("stop", "skip"), default="stop",
                        help="non-finite loss term: stop the run (default) or skip the step and count it")
    parser.add_argument("--trust-config", action="store_true",
                        help="accept a config in a world-writable file or folder")
    parser.add_argument("--check", action="store_true", help="validate the config and exit; writes nothing")
    parser.add_argument("--debug", action="store_true", help="full tracebacks and torchdistill's INFO logs")
    parser.add_argument("--stop-after-epochs", type=int, default=None, help=argparse.SUPPRESS)  # tests: simulate a stop
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``geokt-train`` and ``python -m geokt_plugin.train``; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.debug)
    try:
        run(args, argv=sys.argv[1:] if argv is None else list(argv))
    except ConfigError as exc:
        if args.debug:
            logger.exception("config error")
        _print_error(f"error: {exc}")
        return 2
    except TrainingStopped as exc:
        if args.debug:
            logger.exception("training stopped")
        _print_error(f"stopped: {exc}")
        return 3
    except KeyboardInterrupt:
        _print_error("interrupted; resume with --resume")
        return 130
    finally:
        for handler in [h for h in logger.handlers if isinstance(h, logging.FileHandler)]:
            logger.removeHandler(handler)  # the run's train.log; main() may be called again in this process
            handler.close()
    return 0


def _print_error(message: str) -> None:
    rank = int(os.environ.get("RANK", "0"))
    if rank == 0:
        print(f"geokt-train: {message}", file=sys.stderr, flush=True)


def _setup_logging(debug: bool) -> None:
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if debug else logging.INFO)
    logger.propagate = False
    # torchdistill logs to children of the root logger; keep only its warnings unless debugging.
    logging.getLogger("torchdistill").setLevel(logging.INFO if debug else logging.WARNING)
    if debug and not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO)


# ----------------------------------------------------------------------------------------------------------------
# Config loading and trust
# ----------------------------------------------------------------------------------------------------------------


def load_config(path: Path, *, trust_config: bool = False) -> dict:
    """Parse a torchdistill YAML (its tags run code: datasets are built here) and import its dependencies.

    The world-writable rule, the tags and the error messages are :func:`geokt_plugin.validate.load_config`'s.
    """
    from torchdistill.common.main_util import import_dependencies

    config = _load_yaml(path, trust_config=trust_config)
    try:
        import_dependencies(config.get("dependencies"))
    except Exception as exc:
        raise ConfigError(f"{path}: dependencies: could not import {config.get('dependencies')!r}: {exc}") from exc
    import geokt_plugin  # noqa: F401  (registers the GeoKT keys even when `dependencies` does not name it)

    return config


def _stage_keys(train_config: Mapping) -> list[str]:
    stages = sorted((k for k in train_config if isinstance(k, str) and k.startswith("stage") and k[5:].isdigit()),
                    key=lambda k: int(k[5:]))
    return stages


def _apply_overrides(config: dict, args: argparse.Namespace, path: Path) -> None:
    train = config["train"]
    if args.epochs is not None:
        if args.epochs < 1:
            raise ConfigError(f"--epochs must be >= 1, got {args.epochs}.")
        if _stage_keys(train):
            raise ConfigError(f"{path}: --epochs does not apply to a multi-stage config; edit train.stageN.num_epochs.")
        train["num_epochs"] = args.epochs


def _ddp_kwargs_from_config(train: dict) -> dict:
    """Take the student's `wrapper:` out of every stage (DDP belongs to accelerate) and keep its DDP kwargs."""
    ddp: dict = {}
    sections = [train[k] for k in _stage_keys(train)] or [train]
    for section in sections:
        for role in ("student", "model", "teacher"):
            block = section.get(role)
            if isinstance(block, dict) and block.get("wrapper"):
                wrapper = block.pop("wrapper")
                if isinstance(wrapper, Mapping) and role != "teacher":
                    kwargs = dict(wrapper.get("kwargs") or {})
                    if "find_unused_parameters" in kwargs:
                        ddp["find_unused_parameters"] = bool(kwargs["find_unused_parameters"])
                logger.debug("train.%s.wrapper %r ignored: accelerate.prepare owns DDP", role, wrapper)
    return ddp


# ----------------------------------------------------------------------------------------------------------------
# Models and checkpoints
# ----------------------------------------------------------------------------------------------------------------


def build_model(model_config: Mapping, role: str) -> nn.Module:
    """A model from ``models.<role>``: torchdistill registry key (``repo_or_dir`` for torch.hub) or torchvision name."""
    import torchvision
    from torchdistill.models.registry import MODEL_DICT, get_model

    where = f"models.{role}"
    key = model_config.get("key")
    if not isinstance(key, str) or not key:
        raise ConfigError(f"{where}.key is required: a torchdistill model key (e.g. 'resnet20') or a torchvision "
                          "model name (e.g. 'resnet18').")
    kwargs = dict(model_config.get("kwargs") or {})
    repo_or_dir = model_config.get("repo_or_dir")
    try:
        if key in MODEL_DICT or repo_or_dir is not None:
            model = get_model(key, repo_or_dir, **kwargs)
        elif key in torchvision.models.list_models():
            model = torchvision.models.get_model(key, **kwargs)
        else:
            known = sorted(MODEL_DICT) + torchvision.models.list_models()
            close = difflib.get_close_matches(key, known, n=3)
            raise ConfigError(f"{where}.key {key!r} is neither a torchdistill model nor a torchvision model"
                              + (f"; did you mean {close}?" if close else "."))
    except ConfigError:
        raise
    except TypeError as exc:
        raise ConfigError(f"{where}: {key}(**{kwargs}) failed: {exc}. Fix {where}.kwargs.") from exc
    src = model_config.get("src_ckpt")
    if src:
        load_model_checkpoint(model, src, where=f"{where}.src_ckpt")
    return model


def _torch_load(path: str | Path) -> Any:
    # weights_only keeps arbitrary pickles out; MultiStepLR stores its milestones in a Counter.
    with torch.serialization.safe_globals([collections.Counter]):
        return torch.load(str(path), map_location="cpu", weights_only=True)


def load_model_checkpoint(model: nn.Module, path: str | os.PathLike, *, where: str = "checkpoint") -> None:
    """Load ``{'model': state_dict}`` or a raw state dict strictly; a mismatch names the path and the keys."""
    file = Path(os.path.expanduser(str(path)))
    if not file.is_file():
        raise ConfigError(f"{where}: no checkpoint at {str(path)!r} (resolved to {file.resolve()}). Train the model "
                          "first, or fix the path (relative paths start at the working directory).")
    try:
        state = read_model_state(file)
    except ValueError as exc:
        raise ConfigError(f"{where}: {file} {exc}.") from exc
    problem = state_mismatch(model, state)
    if problem is not None:
        raise ConfigError(f"{where}: {file} does not fit {type(model).__name__}: {problem}")
    model.load_state_dict(state, strict=True)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file in the same folder, flush + fsync, then ``os.replace``."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    with contextlib.suppress(OSError):  # make the rename durable
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_torch_save(obj: Any, path: Path) -> None:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def _rng_state() -> dict:
    """This process's RNG states as plain Python values (bytes, ints): picklable across ranks and weights_only-safe."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": (name, keys.astype(np.uint32).tobytes(), int(pos), int(has_gauss), float(cached)),
        "torch": torch.get_rng_state().numpy().tobytes(),
        "cuda": [s.cpu().numpy().tobytes() for s in torch.cuda.get_rng_state_all()] if torch.cuda.is_available()
        else [],
    }


def _bytes_tensor(data: bytes) -> Tensor:
    return torch.frombuffer(bytearray(data), dtype=torch.uint8).clone()


def _set_rng_state(state: Mapping) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.frombuffer(keys, dtype=np.uint32).copy(), pos, has_gauss, cached))
    torch.set_rng_state(_bytes_tensor(state["torch"]))
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([_bytes_tensor(s) for s in state["cuda"]])


# ----------------------------------------------------------------------------------------------------------------
# Data order
# ----------------------------------------------------------------------------------------------------------------


class EpochSeededSampler(Sampler[int]):
    """Shuffled (or sequential) order of ``n`` items that depends only on ``(seed, epoch)``.

    Every rank builds the same order (accelerate then gives each rank its share of the batches), and a resumed run
    sees the same order for an epoch as an uninterrupted one.
    """

    def __init__(self, n: int, seed: int, shuffle: bool = True) -> None:
        self.n = int(n)
        self.seed = int(seed)
        self.shuffle = bool(shuffle)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        if not self.shuffle:
            return iter(range(self.n))
        generator = torch.Generator()
        generator.manual_seed((self.seed * 1_000_003 + self.epoch) % (2**63 - 1))
        return iter(torch.randperm(self.n, generator=generator).tolist())


def _reseeded_loader(loader: DataLoader | None, seed: int) -> DataLoader | None:
    """The same loader with its sampler replaced by an :class:`EpochSeededSampler` (custom batch samplers are kept)."""
    if loader is None:
        return None
    sampler = loader.sampler
    if loader.batch_size is None or not isinstance(sampler, (RandomSampler, SequentialSampler)):
        logger.warning("train_data_loader uses %s; --resume reproduces the data order only with RandomSampler or "
                       "SequentialSampler", type(sampler).__name__)
        return loader
    if isinstance(sampler, RandomSampler) and sampler.replacement:
        logger.warning("RandomSampler(replacement=True) is replaced by a seeded permutation")
    kwargs = dict(batch_size=loader.batch_size, num_workers=loader.num_workers, collate_fn=loader.collate_fn,
                  pin_memory=loader.pin_memory, drop_last=loader.drop_last, timeout=loader.timeout,
                  worker_init_fn=loader.worker_init_fn, persistent_workers=loader.persistent_workers)
    if loader.num_workers > 0:
        kwargs["prefetch_factor"] = loader.prefetch_factor
    return DataLoader(loader.dataset, sampler=EpochSeededSampler(len(loader.dataset), seed,
                                                                  shuffle=isinstance(sampler, RandomSampler)),
                      **kwargs)


def _unpack(batch: Any) -> tuple[Any, Tensor, dict | None]:
    if isinstance(batch, (list, tuple)):
        if len(batch) == 3:
            return batch[0], batch[1], batch[2]
        if len(batch) == 2:
            return batch[0], batch[1], None
    raise ConfigError(f"a data loader yielded {type(batch).__name__} of length {len(batch)}; expected (sample, "
                      "target) or (sample, target, supp_dict).")


def _batch_size(sample: Any) -> int:
    if isinstance(sample, Tensor):
        return int(sample.shape[0])
    if isinstance(sample, (list, tuple)) and sample:
        return _batch_size(sample[0])
    if isinstance(sample, Mapping) and sample:
        return _batch_size(next(iter(sample.values())))
    return 0


# ----------------------------------------------------------------------------------------------------------------
# Boxes: torchdistill's, with a forward that survives DDP and records every loss term
# ----------------------------------------------------------------------------------------------------------------


def _unwrap(model: nn.Module) -> nn.Module:
    """Strip DDP/DataParallel and accelerate's compile wrappers, keep auxiliary wrappers."""
    while True:
        inner = getattr(model, "module", None)
        if isinstance(inner, nn.Module) and type(model).__name__ in ("DistributedDataParallel", "DataParallel"):
            model = inner
            continue
        inner = getattr(model, "_orig_mod", None)
        if isinstance(inner, nn.Module):
            model = inner
            continue
        return model


class _TermProbe(nn.Module):
    """Calls one ``WeightedSumLoss`` sub-term and keeps its value so the runner can log and check it."""

    def __init__(self, name: str, inner: nn.Module, sink: dict[str, Tensor]) -> None:
        super().__init__()
        self.name = name
        self.inner = inner
        self.sink = sink

    def forward(self, *args: Any, **kwargs: Any) -> Tensor:
        value = self.inner(*args, **kwargs)
        self.sink[self.name] = value
        return value

    def __str__(self) -> str:  # WeightedSumLoss.__str__ formats its terms with str()
        return str(self.inner)


class _GeoKTForward:
    """``forward_process`` for the boxes: the io_dict plumbing of torchdistill's, but ``secondary_forward`` runs on
    the unwrapped model (an ``isinstance`` test on a DDP-wrapped wrapper fails), the student's outputs are kept for
    the training accuracy and each loss term's value is recorded."""

    term_values: dict[str, Tensor]
    term_weights: dict[str, float]
    last_outputs: Any
    fast_forwarding: bool = False

    def install_term_probes(self) -> None:
        self.term_values = {}
        self.term_weights = {}
        term_dict = getattr(self.criterion, "term_dict", None)
        if isinstance(term_dict, dict):
            for name, (criterion, weight) in list(term_dict.items()):
                inner = criterion.inner if isinstance(criterion, _TermProbe) else criterion
                term_dict[name] = (_TermProbe(str(name), inner, self.term_values), weight)
                self.term_weights[str(name)] = float(weight)

    @staticmethod
    def _secondary(model: nn.Module, io_dict: dict) -> None:
        from torchdistill.models.wrapper import AuxiliaryModelWrapper

        inner = _unwrap(model)
        if isinstance(inner, AuxiliaryModelWrapper):
            inner.secondary_forward(io_dict)

    def _collect(self, model: nn.Module, hooked: dict, outputs: Any) -> dict:
        from torchdistill.common.constant import SELF_MODULE_PATH
        from torchdistill.core.util import extract_io_dict, update_io_dict

        io_dict = extract_io_dict(hooked, self.device)
        io_dict[SELF_MODULE_PATH]["output"] = outputs
        self._secondary(model, io_dict)
        update_io_dict(io_dict, extract_io_dict(hooked, self.device))  # what hooks on the adapters captured
        return io_dict

    def save_stage_ckpt(self, model: nn.Module, local_model_config: dict) -> None:
        # While --resume replays finished stages, do not overwrite their dst_ckpt files with untrained weights.
        if not self.fast_forwarding:
            super().save_stage_ckpt(model, local_model_config)  # type: ignore[misc]


def _make_box_classes() -> dict[str, type]:
    from torchdistill.core.distillation import DistillationBox, MultiStagesDistillationBox
    from torchdistill.core.training import MultiStagesTrainingBox, TrainingBox

    class _DistillationForward(_GeoKTForward):
        def forward_process(self, sample_batch, targets=None, supp_dict=None, **kwargs):
            supp = {} if supp_dict is None else supp_dict
            self.term_values.clear()
            if self.teacher_updatable:
                t_out = self.teacher_forward_proc(self.teacher_model, sample_batch, targets, supp, **kwargs)
            else:
                with torch.no_grad():
                    t_out = self.teacher_forward_proc(self.teacher_model, sample_batch, targets, supp, **kwargs)
            t_io = self._collect(self.teacher_model, self.teacher_io_dict, t_out)
            s_out = self.student_forward_proc(self.student_model, sample_batch, targets, supp_dict, **kwargs)
            s_io = self._collect(self.student_model, self.student_io_dict, s_out)
            self.last_outputs = s_out
            model_loss_dict = self.extract_model_loss(s_out, targets, supp_dict=supp_dict)
            return self.criterion({"teacher": t_io, "student": s_io}, model_loss_dict, targets)

    class _TrainingForward(_GeoKTForward):
        def forward_process(self, sample_batch, targets=None, supp_dict=None, **kwargs):
            self.term_values.clear()
            out = self.model_forward_proc(self.model, sample_batch, targets, supp_dict, **kwargs)
            io_dict = self._collect(self.model, self.model_io_dict, out)
            self.last_outputs = out
            model_loss_dict = self.extract_model_loss(out, targets, supp_dict=supp_dict)
            return self.criterion({"student": io_dict, "teacher": {}}, model_loss_dict, targets)

    return {
        "distill": type("GeoKTDistillationBox", (_DistillationForward, DistillationBox), {}),
        "distill_multi": type("GeoKTMultiStagesDistillationBox", (_DistillationForward, MultiStagesDistillationBox),
                              {}),
        "train": type("GeoKTTrainingBox", (_TrainingForward, TrainingBox), {}),
        "train_multi": type("GeoKTMultiStagesTrainingBox", (_TrainingForward, MultiStagesTrainingBox), {}),
    }


class _Session:
    """What the loop needs from a box, the same for distillation and teacher-free training."""

    def __init__(self, box: Any, accelerator: Any, seed: int) -> None:
        self.box = box
        self.accelerator = accelerator
        self.seed = seed
        self.distill = hasattr(box, "teacher_model")
        self.stage = getattr(box, "stage_number", 1)
        self.sampler: EpochSeededSampler | None = None

    # The student as the box uses it (aux wrapper, possibly DDP-wrapped) and as a plain model.
    @property
    def model(self) -> nn.Module:
        return self.box.student_model if self.distill else self.box.model

    @model.setter
    def model(self, value: nn.Module) -> None:
        if self.distill:
            self.box.student_model = value
        else:
            self.box.model = value

    @property
    def plain_student(self) -> nn.Module:
        return self.box.org_student_model if self.distill else self.box.org_model

    @property
    def teacher(self) -> nn.Module | None:
        return self.box.teacher_model if self.distill else None

    @property
    def teacher_for_eval(self) -> nn.Module | None:
        """The instructor as a classifier: the box's (an input-adapting wrapper included), unless a stage cut it
        into a ``sequential`` feature extractor; then the original model."""
        teacher = self.teacher
        if teacher is None:
            return None
        if isinstance(_unwrap(teacher), nn.Sequential) and _unwrap(teacher) is not self.box.org_teacher_model:
            return self.box.org_teacher_model
        return teacher

    def prepare(self) -> None:
        """accelerator.prepare the current stage's student, optimizer, loaders and scheduler; assign them back."""
        box, acc = self.box, self.accelerator
        if box.optimizer is None:
            raise ConfigError("train.optimizer is required for the first stage (key and kwargs, e.g. SGD lr 0.1).")
        box.install_term_probes()
        train_loader = _reseeded_loader(box.train_data_loader, self.seed)
        if train_loader is None:
            raise ConfigError("train.train_data_loader did not build a loader: its dataset_id must name an entry of "
                              f"datasets (have: {sorted(box.dataset_dict)}).")
        sampler = getattr(train_loader, "sampler", None)
        self.sampler = sampler if isinstance(sampler, EpochSeededSampler) else None
        objects: list[Any] = [self.model, box.optimizer, train_loader]
        if box.val_data_loader is not None:
            objects.append(box.val_data_loader)
        if box.lr_scheduler is not None:
            objects.append(box.lr_scheduler)
        prepared = list(acc.prepare(*objects))
        self.model, box.optimizer, box.train_data_loader = prepared[0], prepared[1], prepared[2]
        rest = prepared[3:]
        if box.val_data_loader is not None:
            box.val_data_loader = rest.pop(0)
        if box.lr_scheduler is not None:
            box.lr_scheduler = rest.pop(0)
        teacher = self.teacher
        if teacher is not None:
            if box.teacher_updatable:
                box.teacher_model = acc.prepare(teacher)
            else:
                # The frozen instructor: on the device, fp32, eval mode, never DDP-wrapped.
                box.teacher_model = teacher.to(acc.device).float().eval()
        self.stage = getattr(box, "stage_number", 1)
        logger.debug("stage %d prepared: student %s, %d process(es), mixed precision %s", self.stage,
                     type(self.model).__name__, acc.num_processes, acc.mixed_precision)

    def set_epoch(self, epoch: int) -> None:
        if self.sampler is not None:
            self.sampler.set_epoch(epoch)
        loader = self.box.train_data_loader
        if hasattr(loader, "set_epoch"):
            loader.set_epoch(epoch)

    def train_mode(self, epoch: int) -> None:
        self.box.pre_epoch_process(epoch=epoch)
        if self.teacher is not None and not self.box.teacher_updatable:
            self.teacher.eval()

    def post_epoch(self, metrics: float | None) -> bool:
        """torchdistill's post-epoch process (epoch-wise scheduler, stage advance); True when a new stage began."""
        from torchdistill.models.wrapper import AuxiliaryModelWrapper

        before = getattr(self.box, "stage_number", 1)
        self.box.post_epoch_process(metrics=metrics)
        inner = _unwrap(self.model)
        if inner is not self.model and isinstance(inner, AuxiliaryModelWrapper):
            inner.post_epoch_process()  # skipped by torchdistill's isinstance test under DDP
        return getattr(self.box, "stage_number", 1) != before

    def extra_state(self) -> dict[str, Tensor]:
        """State of the trained wrapper that is not the plain student's (adapter heads), keyed as in the wrapper."""
        shared = {id(t) for t in self.plain_student.state_dict(keep_vars=True).values()}
        return {k: v.detach().clone() for k, v in _unwrap(self.model).state_dict(keep_vars=True).items()
                if id(v) not in shared}

    def load_extra_state(self, extra: Mapping[str, Tensor], path: Path) -> None:
        wrapper = _unwrap(self.model)
        own = wrapper.state_dict()
        unknown = sorted(set(extra) - set(own))
        if unknown:
            raise ConfigError(f"--resume: {path} holds adapter state {unknown[:5]} that the config's wrapper lacks; "
                              "was it written by another config?")
        wrapper.load_state_dict({**own, **dict(extra)}, strict=True)


def build_box(config: dict, teacher: nn.Module | None, student: nn.Module, accelerator: Any) -> Any:
    """torchdistill's box, built with accelerator=None (the runner prepares its parts afterwards)."""
    classes = _make_box_classes()
    train = config["train"]
    multi = bool(_stage_keys(train))
    device = accelerator.device
    datasets = config["datasets"]
    try:
        if teacher is not None:
            cls = classes["distill_multi" if multi else "distill"]
            return cls(teacher, student, datasets, train, device, None, False, 1, accelerator=None)
        train = copy.copy(train)
        if multi:
            for key in _stage_keys(train):
                train[key] = _student_as_model(train[key], f"train.{key}")
        else:
            train = _student_as_model(train, "train")
        cls = classes["train_multi" if multi else "train"]
        return cls(student, datasets, train, device, None, False, 1, accelerator=None)
    except ConfigError:
        raise
    except (KeyError, ValueError, TypeError, AttributeError) as exc:
        raise ConfigError(f"building torchdistill's box from train: failed with {type(exc).__name__}: {exc}. "
                          "Run `geokt-train --check --config ...` for a precise diagnosis.") from exc


def _student_as_model(section: Mapping, where: str) -> dict:
    """TrainingBox reads `model:`; a teacher-free config may call the same block `student:`."""
    section = dict(section)
    if "model" not in section and "student" in section:
        section["model"] = section.pop("student")
    section.pop("teacher", None)
    return section


# ----------------------------------------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------------------------------------


@torch.no_grad()
def evaluate(model: nn.Module, loader: Any, accelerator: Any) -> float:
    """Top-1 accuracy in percent over the whole (gathered, de-duplicated) loader."""
    was_training = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.float64, device=accelerator.device)
    total = torch.zeros((), dtype=torch.float64, device=accelerator.device)
    for batch in loader:
        sample, targets, _ = _unpack(batch)
        with accelerator.autocast():
            logits = model(sample)
        if not isinstance(logits, Tensor) or logits.dim() != 2:
            logger.warning("evaluation skipped: %s returns %s, not (batch, classes) logits", type(model).__name__,
                           tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__)
            model.train(was_training)
            return float("nan")
        logits, targets = accelerator.gather_for_metrics((logits.float(), targets))
        correct += (logits.argmax(dim=1) == targets).sum()
        total += targets.numel()
    model.train(was_training)
    return float(100.0 * correct / total.clamp_min(1))


def _sync_buffers(model: nn.Module, accelerator: Any) -> None:
    """Give every rank rank 0's buffers (BatchNorm statistics), so evaluation and checkpoints agree across ranks."""
    if accelerator.num_processes <= 1:
        return
    import torch.distributed as dist

    for buffer in model.buffers():
        if buffer.dtype.is_floating_point or buffer.dtype in (torch.int64, torch.int32):
            dist.broadcast(buffer.data, src=0)


# ----------------------------------------------------------------------------------------------------------------
# Run directory
# ----------------------------------------------------------------------------------------------------------------


def _clear_run_dir(run_dir: Path) -> None:
    import shutil

    for name in RUN_FILES:
        with contextlib.suppress(FileNotFoundError):
            (run_dir / name).unlink()
    for name in RUN_DIRS:
        shutil.rmtree(run_dir / name, ignore_errors=True)


def _git_sha() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        if out.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5)
        return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def _manifest(args: argparse.Namespace, argv: list[str], accelerator: Any, seed: int, config_path: Path) -> dict:
    import accelerate
    import torchdistill
    import torchvision

    import geokt_plugin

    return {
        "geokt_plugin": geokt_plugin.__version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "torchdistill": getattr(torchdistill, "__version__", None),
        "accelerate": accelerate.__version__,
        "python": sys.version.split()[0],
        "git_sha": _git_sha(),
        "seed": seed,
        "world_size": accelerator.num_processes,
        "mixed_precision": str(accelerator.mixed_precision),
        "device": str(accelerator.device),
        "distributed_type": str(accelerator.distributed_type),
        "config": str(config_path),
        "argv": argv,
        "host": socket.gethostname(),
        "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "resumes": [],
    }


class _MetricsLog:
    """metrics.csv rewritten atomically from all rows each epoch (the rows also live in the checkpoint)."""

    FIRST = ["epoch", "stage", "lr", "train_loss"]
    LAST = ["train_acc", "val_acc", "epoch_time_s", "images_per_s", "steps", "skipped_steps"]

    def __init__(self, path: Path, rows: list[dict] | None = None) -> None:
        self.path = path
        self.rows = list(rows or [])

    def append(self, row: dict) -> None:
        self.rows.append(row)

    def write(self) -> None:
        terms = sorted({k for row in self.rows for k in row if k.startswith("loss/")})
        columns = self.FIRST + terms + self.LAST
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for row in self.rows:
            writer.writerow({k: _fmt(row.get(k)) for k in columns})
        atomic_write_text(self.path, out.getvalue())


def _fmt(value: Any) -> Any:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    return "" if value is None else value


# ----------------------------------------------------------------------------------------------------------------
# The run
# ----------------------------------------------------------------------------------------------------------------


def _make_accelerator(args: argparse.Namespace, ddp_kwargs: dict) -> Any:
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    handlers = [DistributedDataParallelKwargs(**ddp_kwargs)] if ddp_kwargs else []
    try:
        # step_scheduler_with_optimizer=False: torchdistill steps schedulers per epoch (or every N steps) itself;
        # accelerate would otherwise step them num_processes times per call.
        return Accelerator(cpu=args.device == "cpu", mixed_precision=args.mixed_precision,
                           step_scheduler_with_optimizer=False, kwargs_handlers=handlers)
    except (ValueError, RuntimeError) as exc:
        raise ConfigError(f"accelerate could not start with --mixed-precision {args.mixed_precision} --device "
                          f"{args.device}: {exc}") from exc


def run(args: argparse.Namespace, argv: list[str] | None = None) -> dict:
    """Check, then train (or evaluate) one config; returns the summary written to summary.json."""
    from accelerate.utils import gather_object, set_seed

    config_path = Path(args.config)
    config = load_config(config_path, trust_config=args.trust_config)
    _apply_overrides(config, args, config_path)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    # The full validation (keys, hook paths, shapes, checkpoints), before anything is built or written.
    for note in check_config(config, config_path=str(config_path), device=device, load_checkpoints=True) or []:
        (logger.warning if note.startswith("warning") else logger.debug)("config: %s", note)
    if args.check:
        print(f"geokt-train: {config_path}: OK")
        return {"check": "ok"}

    run_dir = Path(args.run_dir) if args.run_dir else Path("runs") / config_path.stem
    if args.log_every is not None and args.log_every < 1:
        raise ConfigError(f"--log-every must be >= 1, got {args.log_every}.")
    if args.checkpoint is not None and not args.test_only:
        raise ConfigError("--checkpoint only goes with --test-only; to continue a run use --resume.")
    resume_path: Path | None = None
    if args.test_only:
        resume_path = Path(args.checkpoint) if args.checkpoint else None
        if resume_path is not None and not resume_path.is_file():
            raise ConfigError(f"--checkpoint: no file at {resume_path}.")
    else:
        for note in check_run_dir(run_dir, resume=args.resume, overwrite=args.overwrite):
            logger.debug("run dir: %s", note)
        resume_path = run_dir / "last.pt" if args.resume else None

    ddp_kwargs = _ddp_kwargs_from_config(config["train"])
    accelerator = _make_accelerator(args, ddp_kwargs)
    seed = args.seed if args.seed is not None else int(config.get("seed", 0) or 0)
    set_seed(seed)  # the same on every rank: identical initial weights everywhere
    torch.backends.cudnn.benchmark = False
    is_main = accelerator.is_main_process

    # ---- models: the instructor is frozen and stays fp32; the student may be wrapped by the box ----
    models = config["models"]
    teacher_cfg = models.get("teacher_model")
    student = build_model(models["student_model"], "student_model")
    teacher = build_model(teacher_cfg, "teacher_model") if isinstance(teacher_cfg, Mapping) and teacher_cfg else None
    box = build_box(config, teacher, student, accelerator)
    session = _Session(box, accelerator, seed)

    # ---- resume: replay finished stages, then prepare and load every state ----
    ckpt: dict | None = None
    if resume_path is not None:
        try:
            ckpt = _torch_load(resume_path)
        except Exception as exc:
            raise ConfigError(f"{resume_path} is not loadable: {type(exc).__name__}: {exc}") from exc
        if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
            if args.test_only and isinstance(ckpt, dict):
                ckpt = {"model": ckpt.get("model", ckpt)}
            else:
                raise ConfigError(f"--resume: {resume_path} is not a geokt-train checkpoint (no format "
                                  f"{CHECKPOINT_FORMAT!r}).")
        if "epoch" in ckpt:
            _fast_forward(box, int(ckpt["epoch"]) + 1)
    session.prepare()

    num_epochs = int(box.num_epochs)
    start_epoch = 0
    best_acc, best_epoch = -1.0, -1
    rows: list[dict] = []
    grad_steps = 0
    if ckpt is not None and "epoch" in ckpt:
        load_model_checkpoint(session.plain_student, resume_path, where="--resume")
        session.load_extra_state(ckpt.get("extra", {}), resume_path)
        box.optimizer.load_state_dict(ckpt["optimizer"])
        if box.lr_scheduler is not None and ckpt.get("scheduler") is not None:
            box.lr_scheduler.load_state_dict(ckpt["scheduler"])
        box.stage_grad_count = int(ckpt.get("stage_grad_count", 0))
        start_epoch = int(ckpt["epoch"]) + 1
        best_acc, best_epoch = float(ckpt.get("best_val_acc", -1.0)), int(ckpt.get("best_epoch", -1))
        rows = list(ckpt.get("rows", []))
        grad_steps = int(ckpt.get("grad_steps", 0))
        states = ckpt.get("rng") or []
        if len(states) != accelerator.num_processes:
            raise ConfigError(f"--resume: {resume_path} was written by {len(states)} process(es), this run has "
                              f"{accelerator.num_processes}; resume with the same world size.")
        _set_rng_state(states[accelerator.process_index])
    elif ckpt is not None:  # --test-only with a plain checkpoint
        load_model_checkpoint(session.plain_student, resume_path, where="--resume")

    if args.test_only:
        return _test_only(args, config, session, accelerator, run_dir, resume_path)

    if start_epoch >= num_epochs:
        if is_main:
            logger.info("%s: all %d epochs are done; nothing to train (raise --epochs to continue).", run_dir,
                        num_epochs)
        return json.loads((run_dir / "summary.json").read_text()) if (run_dir / "summary.json").exists() else {}

    # ---- outputs: only now is the run directory touched ----
    writer = None
    if is_main:
        if args.overwrite and not args.resume:
            _clear_run_dir(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            (run_dir / DONE_MARKER).unlink()
        file_handler = logging.FileHandler(run_dir / "train.log")
        file_handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        logger.addHandler(file_handler)
        manifest_path = run_dir / "manifest.json"
        if args.resume and manifest_path.exists():
            manifest = json.loads(manifest_path.read_text())
            manifest.setdefault("resumes", []).append(
                {"from_epoch": start_epoch, "argv": argv or [], "world_size": accelerator.num_processes,
                 "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")})
        else:
            manifest = _manifest(args, argv or [], accelerator, seed, config_path)
        atomic_write_text(manifest_path, json.dumps(manifest, indent=2) + "\n")
        overrides = [f"--{k.replace('_', '-')} {v}" for k, v in (("seed", args.seed), ("epochs", args.epochs),
                                                                  ("mixed_precision", args.mixed_precision))
                     if v is not None]
        header = f"# as run by geokt-train from {config_path}" + (f" with {' '.join(overrides)}" if overrides else "")
        atomic_write_text(run_dir / "config.yaml", header + "\n" + config_path.read_text())
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(log_dir=str(run_dir / "tb"), purge_step=start_epoch if start_epoch else None)
    metrics_log = _MetricsLog(run_dir / "metrics.csv", rows)

    # ---- the instructor's accuracy, once (it is frozen) ----
    teacher_acc = None
    if session.teacher is not None and not args.student_only and box.val_data_loader is not None and start_epoch == 0:
        teacher_acc = evaluate(session.teacher_for_eval, box.val_data_loader, accelerator)
        if is_main:
            logger.info("instructor val top-1 %.2f", teacher_acc)
    elif ckpt is not None:
        teacher_acc = ckpt.get("teacher_val_acc")

    log_every = args.log_every or int(config["train"].get("log_freq", 0) or 0) or 50
    use_bar = is_main and sys.stderr.isatty()
    stop_after = args.stop_after_epochs
    skipped_total = 0

    for epoch in range(start_epoch, num_epochs):
        # ---- one epoch: seeded data order, train mode (instructor stays in eval) ----
        session.set_epoch(epoch)
        session.train_mode(epoch)
        model, optimizer, loader = session.model, box.optimizer, box.train_data_loader
        grad_accum = int(box.grad_accum_step or 1)
        lr = float(optimizer.param_groups[0]["lr"])
        sums: dict[str, float] = collections.defaultdict(float)
        seen = correct = acc_seen = steps = skipped = 0
        t0 = time.perf_counter()
        bar = None
        if use_bar:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(loader), desc=f"epoch {epoch + 1}/{num_epochs}", leave=False, dynamic_ncols=True)
        for step, batch in enumerate(loader):
            sample, targets, supp = _unpack(batch)
            n = _batch_size(sample)
            sync_now = (step + 1) % grad_accum == 0 or step + 1 == len(loader)
            ctx = contextlib.nullcontext() if sync_now else accelerator.no_sync(model)
            with ctx:
                # a skipped step must leave no trace: the forward pass itself updates BatchNorm running stats
                saved_buffers = _snapshot_buffers(model) if args.nan_policy == "skip" else None
                # forward: teacher, student, adapters (secondary_forward) and every loss term under autocast
                with accelerator.autocast():
                    loss = box.forward_process(sample, targets, supp)
                bad = _non_finite(loss, box.term_values)
                if accelerator.num_processes > 1:  # decide together, or DDP's all-reduce would hang
                    flag = torch.tensor([1.0 if bad else 0.0], device=accelerator.device)
                    if float(accelerator.reduce(flag, reduction="sum")) > 0 and not bad:
                        bad = "another rank"
                if bad:
                    skipped += 1
                    optimizer.zero_grad(set_to_none=True)
                    if args.nan_policy == "stop":
                        last = run_dir / "last.pt"
                        where = f"the last good checkpoint is {last}" if last.exists() else "no checkpoint yet"
                        raise TrainingStopped(
                            f"non-finite loss term {bad!r} at epoch {epoch + 1}, step {step + 1} (global step "
                            f"{grad_steps + steps + 1}); {where}. Lower the lr or the term's weight, or use "
                            "--nan-policy skip.")
                    _restore_buffers(model, saved_buffers)
                    if bar is not None:
                        bar.update(1)
                    continue
                # backward (scaled under fp16), then clip on unscaled gradients and step
                accelerator.backward(loss / grad_accum)
            box.stage_grad_count += 1
            if sync_now:
                if box.max_grad_norm is not None:
                    params = [p for group in optimizer.param_groups for p in group["params"]]
                    accelerator.clip_grad_norm_(params, box.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                _stepwise_scheduler(box)
            steps += 1
            # running sums for the epoch's metrics (local to this rank; reduced at the end of the epoch)
            sums["train_loss"] += float(loss.detach()) * n
            for name, value in box.term_values.items():
                sums[f"loss/{name}"] += box.term_weights.get(name, 1.0) * float(value.detach()) * n
            hits = _count_correct(box.last_outputs, targets)
            if hits is not None:
                correct, acc_seen = correct + hits, acc_seen + n
            seen += n
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{float(loss.detach()):.4f}")
            elif is_main and (step + 1) % log_every == 0:
                logger.info("epoch %d/%d step %d/%d loss %.4f lr %.4g", epoch + 1, num_epochs, step + 1, len(loader),
                            float(loss.detach()), lr)
        if bar is not None:
            bar.close()
        train_time = time.perf_counter() - t0

        # ---- epoch metrics over all ranks ----
        keys = sorted(sums)
        totals = torch.tensor([sums[k] for k in keys] + [seen, correct, acc_seen, steps, skipped],
                              dtype=torch.float64, device=accelerator.device)
        totals = accelerator.reduce(totals, reduction="sum") if accelerator.num_processes > 1 else totals
        values = dict(zip(keys, totals[:len(keys)].tolist(), strict=True))
        seen_all, correct_all, acc_seen_all, steps_all, skipped_all = totals[len(keys):].tolist()
        skipped_total += int(skipped_all)
        grad_steps += steps
        _sync_buffers(_unwrap(model), accelerator)
        val_acc = evaluate(session.plain_student, box.val_data_loader, accelerator) \
            if box.val_data_loader is not None else float("nan")
        row = {
            "epoch": epoch + 1, "stage": session.stage, "lr": lr,
            **{k: v / max(seen_all, 1) for k, v in values.items()},
            "train_acc": 100.0 * correct_all / acc_seen_all if acc_seen_all else float("nan"),
            "val_acc": val_acc, "epoch_time_s": train_time, "images_per_s": seen_all / max(train_time, 1e-9),
            "steps": int(steps_all), "skipped_steps": int(skipped_all),
        }
        improved = not math.isnan(val_acc) and val_acc > best_acc
        if improved:
            best_acc, best_epoch = val_acc, epoch + 1
        metrics_log.append(row)

        # ---- post-epoch (epoch-wise scheduler, stage advance), then the checkpoint: the last RNG user ----
        advanced = session.post_epoch(val_acc)
        if advanced:
            session.prepare()
        rng_states = gather_object([_rng_state()]) if accelerator.num_processes > 1 else [_rng_state()]
        if is_main:
            state = {
                "format": CHECKPOINT_FORMAT,
                "model": {k: v.detach().clone() for k, v in session.plain_student.state_dict().items()},
                "extra": session.extra_state(),
                "optimizer": box.optimizer.state_dict(),
                "scheduler": box.lr_scheduler.state_dict() if box.lr_scheduler is not None else None,
                "epoch": epoch, "stage": session.stage, "stage_grad_count": box.stage_grad_count,
                "grad_steps": grad_steps, "best_val_acc": best_acc, "best_epoch": best_epoch,
                "teacher_val_acc": teacher_acc, "rows": metrics_log.rows, "rng": rng_states, "seed": seed,
                "world_size": accelerator.num_processes,
            }
            atomic_torch_save(state, run_dir / "last.pt")
            if improved:
                atomic_torch_save(state, run_dir / "best.pt")
            metrics_log.write()
            for key, value in row.items():
                if isinstance(value, (int, float)) and key not in ("epoch",) and not math.isnan(float(value)):
                    writer.add_scalar(key if "/" in key else f"epoch/{key}", value, epoch + 1)
            writer.flush()
            terms = " ".join(f"{k[5:]} {row[k]:.4f}" for k in row if k.startswith("loss/"))
            logger.info("epoch %d/%d loss %.4f %s| train %.2f val %.2f | %.1fs %.0f img/s%s", epoch + 1, num_epochs,
                        row.get("train_loss", float("nan")), terms + " " if terms else "", row["train_acc"], val_acc,
                        train_time, row["images_per_s"],
                        f" | skipped {int(skipped_all)}" if skipped_all else "")
        accelerator.wait_for_everyone()
        if stop_after is not None and epoch + 1 - start_epoch >= stop_after and epoch + 1 < num_epochs:
            if is_main:
                logger.info("stopping after epoch %d as asked (--stop-after-epochs); resume with --resume", epoch + 1)
                writer.close()
            return {"stopped_after_epoch": epoch + 1}

    # ---- the end: fingerprints of every rank's weights (equal under correct DDP), then test the best student ----
    fingerprints = [_fingerprint(_unwrap(session.model))]
    if accelerator.num_processes > 1:
        fingerprints = gather_object(fingerprints)
    if is_main:
        atomic_write_text(run_dir / "params.json", json.dumps(
            {"world_size": accelerator.num_processes, "ranks": fingerprints,
             "identical": all(f == fingerprints[0] for f in fingerprints)}, indent=2) + "\n")
    # ---- the end: test the best student, write the summary and the `done` marker ----
    summary: dict[str, Any] = {"best_val_acc": best_acc if best_epoch > 0 else None, "best_epoch": best_epoch,
                               "last_val_acc": rows_last(metrics_log.rows, "val_acc"), "epochs": num_epochs,
                               "teacher_val_acc": teacher_acc, "skipped_steps": skipped_total}
    test_loader = _test_loader(config, box, accelerator)
    if test_loader is not None:
        if (run_dir / "best.pt").exists():
            accelerator.wait_for_everyone()
            load_model_checkpoint(session.plain_student, run_dir / "best.pt", where="best.pt")
        summary["test_acc"] = evaluate(session.plain_student, test_loader, accelerator)
        if session.teacher is not None and not args.student_only:
            summary["teacher_test_acc"] = evaluate(session.teacher_for_eval, test_loader, accelerator)
    if is_main:
        atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
        atomic_write_text(run_dir / DONE_MARKER, _dt.datetime.now(_dt.timezone.utc).isoformat() + "\n")
        writer.close()
        val = f"best val {best_acc:.2f} at epoch {best_epoch}" if best_epoch >= 0 else "no validation data"
        test = f", test {summary['test_acc']:.2f}" if summary.get("test_acc") is not None else ""
        logger.info("done: %s%s -> %s", val, test, run_dir)
    box.clean_modules()
    accelerator.wait_for_everyone()
    return summary


def _fingerprint(model: nn.Module) -> dict[str, str]:
    """SHA-256 of the trained model's parameters and of its buffers (student and adapters), in state-dict order."""
    import hashlib

    digests = {"parameters": hashlib.sha256(), "buffers": hashlib.sha256()}
    names = {name for name, _ in model.named_parameters()}
    for name, tensor in model.state_dict().items():
        digest = digests["parameters" if name in names else "buffers"]
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return {kind: digest.hexdigest() for kind, digest in digests.items()}


def rows_last(rows: list[dict], key: str) -> Any:
    return rows[-1].get(key) if rows else None


def _snapshot_buffers(model: nn.Module) -> dict[str, Tensor]:
    """Copies of every buffer (BatchNorm running statistics, counters) of ``model``."""
    return {name: buf.detach().clone() for name, buf in model.named_buffers()}


def _restore_buffers(model: nn.Module, saved: Mapping[str, Tensor] | None) -> None:
    """Put back the buffers saved by :func:`_snapshot_buffers` (no-op for ``None``)."""
    if saved is None:
        return
    with torch.no_grad():
        for name, buf in model.named_buffers():
            buf.copy_(saved[name])


def _non_finite(loss: Tensor, terms: Mapping[str, Tensor]) -> str | None:
    for name, value in terms.items():
        if isinstance(value, Tensor) and not bool(torch.isfinite(value.detach()).all()):
            return name
    if not bool(torch.isfinite(loss.detach()).all()):
        return "total"
    return None


def _count_correct(outputs: Any, targets: Tensor) -> int | None:
    """Correct top-1 predictions, or None when the stage's output is not logits (e.g. a FitNets hint stage)."""
    if isinstance(outputs, Tensor) and outputs.dim() == 2 and isinstance(targets, Tensor) and targets.dim() == 1 \
            and outputs.shape[0] == targets.shape[0]:
        return int((outputs.detach().argmax(dim=1) == targets).sum())
    return None


def _stepwise_scheduler(box: Any) -> None:
    from torch.optim.lr_scheduler import CosineAnnealingWarmRestarts, ReduceLROnPlateau

    scheduler, every = box.lr_scheduler, box.scheduling_step
    if scheduler is None or not every or every <= 0 or box.stage_grad_count % every:
        return
    if isinstance(scheduler, ReduceLROnPlateau):
        return
    inner = getattr(scheduler, "scheduler", scheduler)
    if isinstance(inner, CosineAnnealingWarmRestarts):
        scheduler.step(box.stage_grad_count // every)
    else:
        scheduler.step()


def _fast_forward(box: Any, completed_epochs: int) -> None:
    """Advance a multi-stage box to the stage that holds epoch ``completed_epochs`` (no training)."""
    if not hasattr(box, "stage_end_epoch"):
        return
    box.fast_forwarding = True
    try:
        while box.stage_end_epoch <= completed_epochs and box.stage_end_epoch < box.num_epochs:
            box.current_epoch = box.stage_end_epoch
            box.advance_to_next_stage()
        box.current_epoch = completed_epochs
    finally:
        box.fast_forwarding = False


def _test_loader(config: dict, box: Any, accelerator: Any) -> Any:
    test_cfg = config.get("test")
    loader_cfg = test_cfg.get("test_data_loader") if isinstance(test_cfg, Mapping) else None
    if not isinstance(loader_cfg, Mapping):
        return None
    from torchdistill.datasets.util import build_data_loader

    dataset_id = loader_cfg.get("dataset_id")
    if dataset_id not in config["datasets"]:
        raise ConfigError(f"test.test_data_loader.dataset_id {dataset_id!r} is not in datasets "
                          f"(have: {sorted(config['datasets'])}).")
    loader = build_data_loader(config["datasets"][dataset_id], dict(loader_cfg), False, None)
    return accelerator.prepare(loader)


def _test_only(args: argparse.Namespace, config: dict, session: _Session, accelerator: Any, run_dir: Path,
               resume_path: Path | None) -> dict:
    if resume_path is None and (run_dir / "best.pt").exists():
        load_model_checkpoint(session.plain_student, run_dir / "best.pt", where="best.pt")
        resume_path = run_dir / "best.pt"
    result: dict[str, Any] = {"checkpoint": str(resume_path) if resume_path else None}
    if session.box.val_data_loader is not None:
        result["val_acc"] = evaluate(session.plain_student, session.box.val_data_loader, accelerator)
    test_loader = _test_loader(config, session.box, accelerator)
    if test_loader is not None:
        result["test_acc"] = evaluate(session.plain_student, test_loader, accelerator)
    if session.teacher is not None and not args.student_only:
        loader = test_loader or session.box.val_data_loader
        if loader is not None:
            result["teacher_acc"] = evaluate(session.teacher_for_eval, loader, accelerator)
    if accelerator.is_main_process:
        print(json.dumps(result, indent=2))
        if run_dir.is_dir():
            atomic_write_text(run_dir / "test.json", json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    sys.exit(main())

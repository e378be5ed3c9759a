"""Every setting of one run, typed and checked together: what the command line or a Python caller asks for."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field, fields
from pathlib import Path

from ..config import ConfigError

__all__ = ["MAX_SEED", "MIXED_PRECISION", "NAN_POLICIES", "RunOptions"]

MAX_SEED = 2**32 - 1  # numpy's seeds are 32-bit
MIXED_PRECISION = ("no", "bf16", "fp16")
NAN_POLICIES = ("stop", "skip")
DEVICES = ("cpu", "cuda")


@dataclass(frozen=True)
class RunOptions:
    """One run of :func:`geokt_plugin.runner.run`; the fields are the ``geokt-train`` flags (see ``--help``).

    Args:
        config: torchdistill YAML config.
        run_dir: output folder; ``None``: ``runs/<config name>``.
        seed: ``None``: the config's ``seed``, else 0.
        mixed_precision: ``'no'``, ``'bf16'``, ``'fp16'``; ``None``: Accelerate's config.
        epochs: overrides ``train.num_epochs`` (single-stage configs).
        resume: continue the run in ``run_dir`` from its ``last.pt`` (or finish its last phase).
        allow_config_change: with ``resume``: accept a config, seed, precision or data that differ from the run's.
        test_only: only evaluate (``checkpoint``, else ``<run_dir>/best.pt``, else the config's ``src_ckpt``).
        checkpoint: with ``test_only``: the checkpoint to evaluate.
        student_only: do not evaluate the instructor.
        device: ``'cpu'`` or ``'cuda'``; ``None``: Accelerate's choice.
        log_every: a log line every N steps off a TTY; ``None``: ``train.log_freq``, else 50.
        overwrite: replace the outputs of a previous run in ``run_dir``.
        nan_policy: on a non-finite loss term, ``'stop'`` the run or ``'skip'`` the step.
        trust_config: accept a config in a world-writable file or folder.
        check: validate the config and return; writes nothing.
        debug: full tracebacks and torchdistill's INFO logs (the CLI's logging).
        stop_after_epochs: stop after this many epochs of this invocation (tests simulate an interruption).
        argv: the command line, recorded in the manifest.

    Raises:
        ConfigError: a bad value or combination (``--log-every 0``, ``--checkpoint`` without ``--test-only``, ...).
    """

    config: Path
    run_dir: Path | None = None
    seed: int | None = None
    mixed_precision: str | None = None
    epochs: int | None = None
    resume: bool = False
    allow_config_change: bool = False
    test_only: bool = False
    checkpoint: Path | None = None
    student_only: bool = False
    device: str | None = None
    log_every: int | None = None
    overwrite: bool = False
    nan_policy: str = "stop"
    trust_config: bool = False
    check: bool = False
    debug: bool = False
    stop_after_epochs: int | None = None
    argv: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        for name in ("config", "run_dir", "checkpoint"):
            value = getattr(self, name)
            if name != "config" and value == "":
                object.__setattr__(self, name, None)  # `--run-dir ""` means the default, as it always did
            elif value is not None and not isinstance(value, Path):
                object.__setattr__(self, name, Path(value))
        object.__setattr__(self, "argv", tuple(self.argv))
        self._check_choices()
        self._check_integers()
        if self.seed is not None and not 0 <= self.seed <= MAX_SEED:
            raise ConfigError(f"--seed must be in [0, {MAX_SEED}] (numpy's seed range), got {self.seed}.")
        if self.epochs is not None and self.epochs < 1:
            raise ConfigError(f"--epochs must be >= 1, got {self.epochs}.")
        if self.log_every is not None and self.log_every < 1:
            raise ConfigError(f"--log-every must be >= 1, got {self.log_every}.")
        if self.checkpoint is not None and not self.test_only:
            raise ConfigError("--checkpoint only goes with --test-only; to continue a run use --resume.")
        if self.allow_config_change and not self.resume:
            raise ConfigError("--allow-config-change only goes with --resume.")

    def _check_integers(self) -> None:
        for name in ("seed", "epochs", "log_every", "stop_after_epochs"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                flag = "--" + name.replace("_", "-")
                raise TypeError(f"RunOptions.{name} ({flag}) must be an int or None, got {type(value).__name__} "
                                f"{value!r}.")

    def _check_choices(self) -> None:
        for name, allowed in (("mixed_precision", MIXED_PRECISION), ("device", DEVICES), ("nan_policy", NAN_POLICIES)):
            value = getattr(self, name)
            if value is not None and value not in allowed:
                flag = "--" + name.replace("_", "-")
                raise ConfigError(f"{flag} {value!r} is not one of {list(allowed)}.")

    @classmethod
    def from_args(cls, args: argparse.Namespace, argv: list[str] | tuple[str, ...] = ()) -> RunOptions:
        """The options of a parsed ``geokt-train`` command line (:func:`geokt_plugin.runner.build_parser`)."""
        names = {f.name for f in fields(cls)} - {"argv"}
        return cls(**{name: getattr(args, name) for name in names if hasattr(args, name)}, argv=tuple(argv))

    @property
    def resolved_run_dir(self) -> Path:
        """``run_dir``, or ``runs/<config name>``."""
        return self.run_dir if self.run_dir is not None else Path("runs") / self.config.stem

    @property
    def overrides(self) -> list[str]:
        """The flags that change the config, as recorded in the run's ``config.yaml`` header."""
        pairs = (("seed", self.seed), ("epochs", self.epochs), ("mixed_precision", self.mixed_precision))
        return [f"--{k.replace('_', '-')} {v}" for k, v in pairs if v is not None]

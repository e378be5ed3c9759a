"""``geokt-train`` and ``python -m geokt_plugin.train``: flags, logging, and one-line errors with exit codes.

Exit codes: 0 done, 2 a bad config / flag / run directory / checkpoint, or a run directory in use
(``geokt-train: error: ...``; nothing was written), 3 stopped by the non-finite-loss guard (``geokt-train: stopped:
...``), 4 an output could not be written (disk full, read-only file system, permissions: ``geokt-train: error:
could not write <file>: ...``; the previous version of that file is intact), 130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from ..config import ConfigError
from .atomic import OutputWriteError
from .loop import TrainingStopped
from .options import DEVICES, MIXED_PRECISION, NAN_POLICIES, RunOptions
from .run import RUNNER_LOGGER, run

__all__ = ["build_parser", "main"]

logger = logging.getLogger(RUNNER_LOGGER)


def build_parser(prog: str = "geokt-train") -> argparse.ArgumentParser:
    """The ``geokt-train`` argument parser; its destinations are the fields of :class:`RunOptions`."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Train a torchdistill YAML config with Accelerate (distillation, or plain training without a "
                    "teacher). Configs can import and call code: run only configs you trust.",
    )
    parser.add_argument("--config", required=True, help="torchdistill YAML config")
    parser.add_argument("--run-dir", default=None,
                        help="output folder (default: runs/<config name>); refused if it holds a finished run")
    parser.add_argument("--seed", type=int, default=None, help="seed (default: the config's `seed`, else 0)")
    parser.add_argument("--mixed-precision", choices=MIXED_PRECISION, default=None,
                        help="default: Accelerate's config (`accelerate config`), else 'no'")
    parser.add_argument("--epochs", type=int, default=None, help="override train.num_epochs (single-stage configs)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --run-dir from its last.pt, or finish its test phase")
    parser.add_argument("--allow-config-change", action="store_true",
                        help="with --resume: accept a config, seed, precision or data that differ from the run's "
                             "(recorded in manifest.json; config.yaml keeps the original)")
    parser.add_argument("--test-only", action="store_true",
                        help="only evaluate: --checkpoint, else <run-dir>/best.pt, else the config's src_ckpt")
    parser.add_argument("--checkpoint", default=None, help="with --test-only: the checkpoint to evaluate")
    parser.add_argument("--student-only", action="store_true", help="do not evaluate the instructor")
    parser.add_argument("--device", choices=DEVICES, default=None,
                        help="force the device ('cpu' also gives gloo under torchrun); default: Accelerate's choice")
    parser.add_argument("--log-every", type=int, default=None,
                        help="log a line every N steps when not on a TTY (default: train.log_freq, else 50)")
    parser.add_argument("--overwrite", action="store_true", help="replace the outputs of a previous run in --run-dir")
    parser.add_argument("--nan-policy", choices=NAN_POLICIES, default="stop",
                        help="non-finite loss term: stop the run (default) or skip the step and count it")
    parser.add_argument("--trust-config", action="store_true",
                        help="accept a config in a world-writable file or folder")
    parser.add_argument("--check", action="store_true",
                        help="validate the config (with --run-dir, --resume or --overwrite also the run dir; with "
                             "--test-only the checkpoint to evaluate) and exit; writes nothing")
    parser.add_argument("--debug", action="store_true", help="full tracebacks and torchdistill's INFO logs")
    parser.add_argument("--stop-after-epochs", type=int, default=None, help=argparse.SUPPRESS)  # tests: simulate a stop
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``geokt-train`` and ``python -m geokt_plugin.train``; returns the exit code."""
    args = build_parser().parse_args(argv)
    setup_logging(args.debug)
    try:
        run(RunOptions.from_args(args, sys.argv[1:] if argv is None else list(argv)))
    except ConfigError as exc:
        if args.debug:
            logger.exception("config error")
        _print_error(f"error: {exc}")
        return 2
    except OutputWriteError as exc:
        if args.debug:
            logger.exception("write error")
        _print_error(f"error: {exc}")
        return 4
    except TrainingStopped as exc:
        if args.debug:
            logger.exception("training stopped")
        _print_error(f"stopped: {exc}")
        return 3
    except KeyboardInterrupt:
        _print_error("interrupted; resume with --resume")
        return 130
    return 0


def _print_error(message: str) -> None:
    rank = int(os.environ.get("RANK", "0"))
    if rank == 0:
        print(f"geokt-train: {message}", file=sys.stderr, flush=True)


def setup_logging(debug: bool) -> None:
    """The runner's log lines on stderr (``HH:MM:SS message``); torchdistill's only from warnings unless ``debug``."""
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

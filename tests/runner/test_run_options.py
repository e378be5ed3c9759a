"""The command line and RunOptions: flags, defaults, and the checks of option combinations."""

from __future__ import annotations

from pathlib import Path

import pytest

from geokt_plugin.config import ConfigError
from geokt_plugin.runner import RunOptions, build_parser


def test_train_parser_flags_and_defaults():
    args = build_parser().parse_args(["--config", "x.yaml"])
    assert (args.mixed_precision, args.nan_policy, args.resume, args.device, args.seed) == (None, "stop", False,
                                                                                              None, None)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--config", "x.yaml", "--mixed-precision", "fp8"])


def test_run_options_from_args_covers_every_flag():
    argv = ["--config", "x.yaml", "--run-dir", "r", "--seed", "3", "--epochs", "2", "--log-every", "5",
            "--device", "cpu", "--nan-policy", "skip", "--overwrite", "--student-only", "--trust-config"]
    options = RunOptions.from_args(build_parser().parse_args(argv), argv)
    assert (options.config, options.run_dir, options.seed, options.epochs, options.log_every) == (
        Path("x.yaml"), Path("r"), 3, 2, 5)
    assert (options.device, options.nan_policy, options.overwrite, options.student_only, options.trust_config) == (
        "cpu", "skip", True, True, True)
    assert options.argv == tuple(argv) and options.overrides == ["--seed 3", "--epochs 2"]
    dests = {action.dest for action in build_parser()._actions} - {"help"}
    assert dests <= set(RunOptions.__dataclass_fields__), dests - set(RunOptions.__dataclass_fields__)


def test_run_options_defaults_and_run_dir():
    options = RunOptions(config="configs/smoke/kd.yaml")
    assert options.resolved_run_dir == Path("runs") / "kd" and options.overrides == []
    assert RunOptions(config="a.yaml", run_dir="out").resolved_run_dir == Path("out")


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"log_every": 0}, r"--log-every must be >= 1, got 0\."),
    ({"epochs": 0}, r"--epochs must be >= 1, got 0\."),
    ({"checkpoint": "x.pt"}, r"--checkpoint only goes with --test-only; to continue a run use --resume\."),
    ({"nan_policy": "ignore"}, r"--nan-policy 'ignore' is not one of \['stop', 'skip'\]"),
    ({"mixed_precision": "fp8"}, r"--mixed-precision 'fp8' is not one of"),
    ({"seed": -1}, r"--seed must be in \[0, 4294967295\] \(numpy's seed range\), got -1\."),
    ({"seed": 2**32}, r"--seed must be in \[0, 4294967295\]"),
    ({"allow_config_change": True}, r"--allow-config-change only goes with --resume\."),
])
def test_run_options_refuse_bad_values_and_combinations(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        RunOptions(config="x.yaml", **kwargs)
    RunOptions(config="x.yaml", test_only=True, checkpoint="x.pt")  # the allowed combination


def test_run_options_refuse_non_integer_counts():
    with pytest.raises(TypeError, match=r"RunOptions.epochs \(--epochs\) must be an int or None, got str '2'"):
        RunOptions(config="x.yaml", epochs="2")

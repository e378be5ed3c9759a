"""The run's effective seed and log frequency, and the device/precision checks, made before anything is built."""

from __future__ import annotations

import pytest

from geokt_plugin.config import ConfigError
from geokt_plugin.runner import RunOptions
from geokt_plugin.runner.settings import RunSettings, check_device_and_precision


def test_run_settings_from_flags_then_config_then_defaults():
    options = RunOptions(config="x.yaml")
    assert RunSettings.resolve(options, {}) == RunSettings(seed=0, log_every=50)
    assert RunSettings.resolve(options, {"seed": 7, "train": {"log_freq": 3}}) == RunSettings(7, 3)
    assert RunSettings.resolve(RunOptions(config="x.yaml", seed=1, log_every=9), {"seed": 7}) == RunSettings(1, 9)


@pytest.mark.parametrize(("config", "message"), [
    ({"seed": "abc"}, r"config seed: 'abc' is not an integer in \[0, 4294967295\]. Fix `seed:` in the YAML or pass "
                      r"--seed\."),
    ({"seed": -3}, r"config seed: -3 is not an integer"),
    ({"seed": True}, r"config seed: True is not an integer"),
    ({"train": {"log_freq": "x"}}, r"config train.log_freq: 'x' is not an integer >= 0\. Fix `log_freq:`"),
])
def test_run_settings_refuse_bad_config_values(config, message):
    with pytest.raises(ConfigError, match=message):
        RunSettings.resolve(RunOptions(config="x.yaml"), config)


def test_run_settings_fp16_on_cpu_is_refused(monkeypatch):
    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION", raising=False)
    with pytest.raises(ConfigError, match=r"--mixed-precision fp16 needs a GPU"):
        check_device_and_precision(RunOptions(config="x.yaml", device="cpu", mixed_precision="fp16"))
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "fp16")
    with pytest.raises(ConfigError, match=r"ACCELERATE_MIXED_PRECISION \(accelerate config\) fp16 needs a GPU"):
        check_device_and_precision(RunOptions(config="x.yaml", device="cpu"))
    check_device_and_precision(RunOptions(config="x.yaml", device="cpu", mixed_precision="bf16"))

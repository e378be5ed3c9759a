"""The geokt_agreement probe: agree/<layer> columns in metrics.csv for a distillation and a teacher-free config,
modes restored and hooks removed by each measurement."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from torch import nn
from torch.utils.data import TensorDataset

from geokt_plugin import rundir
from geokt_plugin.config import ConfigError
from geokt_plugin.runner import RunOptions, run
from geokt_plugin.runner.probe import AgreementProbe, build_probe

SMOKE = Path(__file__).resolve().parents[2] / "configs" / "smoke"
LAYERS = ["layer1", "layer2", "layer3"]


def with_section(name: str, section: dict, tmp_path: Path) -> Path:
    """configs/smoke/<name> with a geokt_agreement section appended (the text is kept: its tags stay)."""
    path = tmp_path / name
    path.write_text((SMOKE / name).read_text() + "\n" + yaml.safe_dump({"geokt_agreement": section}))
    return path


def agreement_rows(run_dir: Path) -> tuple[list[str], list[dict]]:
    rows = rundir.read_metrics(run_dir / rundir.METRICS)
    return list(rows[0]), rows


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the smoke configs' dst_ckpt is relative
    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION", raising=False)
    return tmp_path


def test_agreement_columns_of_a_geokt_run_against_its_teacher(in_tmp):
    config = with_section("geokt-rank.yaml", {"reference": "teacher_model", "layers": LAYERS, "k": 4, "images": 12},
                          in_tmp)
    run(RunOptions(config=config, run_dir=in_tmp / "run", epochs=2, device="cpu", seed=0))
    columns, rows = agreement_rows(in_tmp / "run")
    agree = [f"agree/{layer}" for layer in LAYERS]
    assert columns[-3:] == agree and columns[:-3] == rundir.metrics_columns(
        [c for c in columns if c.startswith(rundir.TERM_PREFIX)])
    assert len(rows) == 2 and all(0.0 <= float(row[c]) <= 1.0 for row in rows for c in agree)
    log = (in_tmp / "run" / rundir.LOG).read_text()
    assert "| agree layer1 " in log and " layer3 " in log.split("| agree ")[1]


def test_agreement_columns_of_a_ce_run_against_a_checkpointed_reference(in_tmp):
    from torchdistill.models.registry import get_model

    torch.manual_seed(1)
    torch.save({"model": get_model("resnet20", None, num_classes=10).state_dict()}, in_tmp / "ref.pt")
    reference = {"key": "resnet20", "kwargs": {"num_classes": 10}, "src_ckpt": str(in_tmp / "ref.pt")}
    config = with_section("ce.yaml", {"reference": reference, "layers": ["layer2", "layer3"], "k": 3,
                                      "images": 9, "max_points": 16}, in_tmp)
    run(RunOptions(config=config, run_dir=in_tmp / "run", epochs=1, device="cpu", seed=0))
    columns, rows = agreement_rows(in_tmp / "run")
    assert columns[-2:] == ["agree/layer2", "agree/layer3"]
    assert all(0.0 <= float(rows[0][c]) <= 1.0 for c in columns[-2:])


def test_the_extra_section_reaches_torchdistill_as_plain_data(tmp_path):
    # torchdistill's example script reads only dependencies, datasets, models, train and test; the loader must not
    # choke on the section (no tags in it)
    from torchdistill.common import yaml_util

    section = {"reference": {"key": "resnet20", "kwargs": {"num_classes": 10}}, "layers": LAYERS}
    config = yaml_util.load_yaml_file(str(with_section("ce.yaml", section, tmp_path)))
    assert config["geokt_agreement"] == section and {"datasets", "models", "train", "test"} <= set(config)


def tiny_net(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Dropout(0.5), nn.Conv2d(4, 5, 3))


def test_measure_restores_each_module_mode_and_removes_its_hooks():
    student, reference = tiny_net(0), tiny_net(0)
    images = torch.randn(70, 3, 6, 6, generator=torch.Generator().manual_seed(0))  # two chunks of 64 and 6
    probe = AgreementProbe(reference, ["0", "3"], images, k=3, max_points=None)
    student.train()
    student[1].eval()  # a frozen BatchNorm stays frozen
    before = {k: v.clone() for k, v in student.state_dict().items()}
    values = probe.measure(student)
    assert values == {"agree/0": 1.0, "agree/3": 1.0}  # the same weights: the same neighbours everywhere
    assert [m.training for m in student] == [True, False, True, True] and student.training
    assert all(not m._forward_hooks for m in [*student.modules(), *reference.modules()])
    assert all(torch.equal(before[k], v) for k, v in student.state_dict().items())  # eval mode: no BN update
    other = probe.measure(tiny_net(1))
    assert set(other) == {"agree/0", "agree/3"} and all(0.0 <= v < 1.0 for v in other.values())
    assert probe.measure(tiny_net(1)) == other  # the same images and sampled positions every time


def probe_config(**section) -> dict:
    return {"models": {"teacher_model": {"key": "resnet20", "kwargs": {"num_classes": 10}}},
            "train": {"val_data_loader": {"dataset_id": "val"}},
            "geokt_agreement": {"reference": "teacher_model", "layers": ["layer1"], **section}}


def test_build_probe_takes_the_first_validation_images_and_leaves_the_rngs_alone():
    images = torch.randn(12, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    box = SimpleNamespace(dataset_dict={"val": TensorDataset(images, torch.zeros(12))})
    assert build_probe({"models": {}}, box, torch.device("cpu")) is None
    torch.manual_seed(3)
    expected = torch.rand(3)
    torch.manual_seed(3)
    probe = build_probe(probe_config(k=2, images=5), box, torch.device("cpu"))
    assert torch.equal(torch.rand(3), expected)  # initialising the reference drew from a saved-and-restored state
    assert torch.equal(probe.images, images[:5]) and (probe.k, probe.max_points) == (2, 128)
    assert not probe.reference.training and not any(p.requires_grad for p in probe.reference.parameters())
    with pytest.raises(ConfigError, match=r"geokt_agreement.images: 13 images asked for, the validation dataset "
                                          r"holds 12\. Lower images to at most 12\."):
        build_probe(probe_config(images=13), box, torch.device("cpu"))
    with pytest.raises(ConfigError, match=r"geokt_agreement: the probe measures on the first validation images, but "
                                          r"train.val_data_loader names no dataset of the config"):
        build_probe(probe_config(), SimpleNamespace(dataset_dict={}), torch.device("cpu"))

"""torchdistill's internals that geokt_plugin/runner/boxes.py relies on (``RELIED_ON``) still exist.

The runner subclasses torchdistill's boxes and calls into their internals (written against
``boxes.TORCHDISTILL_VERSION``); after a torchdistill upgrade these tests fail first, naming what changed.
"""

from __future__ import annotations

import importlib
import inspect

import pytest
import torch
import torchdistill
from torch import nn
from torch.utils.data import RandomSampler, TensorDataset
from torchdistill.core.distillation import DistillationBox, MultiStagesDistillationBox
from torchdistill.core.training import MultiStagesTrainingBox, TrainingBox
from torchdistill.losses.high_level import WeightedSumLoss
from torchdistill.models.wrapper import AuxiliaryModelWrapper

from geokt_plugin.runner import boxes
from geokt_plugin.runner.loaders import unpack

CLASSES = {cls.__name__: cls for cls in (DistillationBox, MultiStagesDistillationBox, TrainingBox,
                                         MultiStagesTrainingBox, WeightedSumLoss, AuxiliaryModelWrapper)}
BOX_NAMES = ("DistillationBox", "MultiStagesDistillationBox", "TrainingBox", "MultiStagesTrainingBox")


def _leading_parameters(func) -> tuple[str, ...]:
    params = [p for p in inspect.signature(func).parameters.values()
              if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return tuple(p.name for p in params if p.name != "self")


def _method_problems(owner: str, holder, methods: dict) -> list[str]:
    problems = []
    for name, expected in methods.items():
        func = getattr(holder, name, None)
        if not callable(func):
            problems.append(f"{owner}.{name} is gone")
        elif expected and _leading_parameters(func)[:len(expected)] != tuple(expected):
            problems.append(f"{owner}.{name}{inspect.signature(func)} no longer starts with {expected}")
    return problems


def test_torchdistill_internals_version_is_the_one_written_against():
    if torchdistill.__version__ != boxes.TORCHDISTILL_VERSION:
        pytest.fail(f"torchdistill {torchdistill.__version__} installed; geokt_plugin/runner/boxes.py was written "
                    f"against {boxes.TORCHDISTILL_VERSION}. Run tests/runner/test_torchdistill_internals.py, fix "
                    "boxes.py, then update TORCHDISTILL_VERSION.")


@pytest.mark.parametrize("owner", sorted(boxes.RELIED_ON))
def test_torchdistill_internals_methods_and_signatures_exist(owner):
    spec = boxes.RELIED_ON[owner]
    if owner in CLASSES:
        problems = _method_problems(owner, CLASSES[owner], spec.get("methods", {}))
    else:
        module = importlib.import_module(owner)
        problems = _method_problems(owner, module, spec.get("functions", {}))
        for name, value in spec.get("values", {}).items():
            if getattr(module, name, None) != value:
                problems.append(f"{owner}.{name} is {getattr(module, name, '<missing>')!r}, expected {value!r}")
    assert not problems, "torchdistill changed what geokt_plugin/runner/boxes.py relies on: " + "; ".join(problems)


def _tiny_train_config(distill: bool) -> dict:
    role = {"forward_proc": "forward_batch_only", "sequential": [], "forward_hook": {"input": [], "output": []}}
    section = {
        "num_epochs": 1,
        "train_data_loader": {"dataset_id": "train", "sampler": {"class_or_func": RandomSampler, "kwargs": {}},
                              "kwargs": {"batch_size": 4}},
        "optimizer": {"key": "SGD", "kwargs": {"lr": 0.1}},
        "criterion": {"key": "WeightedSumLoss", "kwargs": {"sub_terms": {"ce": {
            "criterion": {"key": "CrossEntropyLoss", "kwargs": {}},
            "criterion_wrapper": {"key": "SimpleLossWrapper", "kwargs": {
                "input": {"is_from_teacher": False, "module_path": ".", "io": "output"},
                "target": {"uses_label": True}}},
            "weight": 1.0}}}},
    }
    if distill:
        section["teacher"] = {**role, "requires_grad": False}
        section["student"] = {**role, "requires_grad": True}
    else:
        section["model"] = {**role, "requires_grad": True}
    return section


def _tiny_model() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 3))


def _built(name: str):
    datasets = {"train": TensorDataset(torch.randn(8, 3, 2, 2), torch.randint(0, 3, (8,)))}
    distill = "Distillation" in name
    section = _tiny_train_config(distill)
    config = {"stage1": section, "stage2": dict(section)} if name.startswith("MultiStages") else section
    models = (_tiny_model(), _tiny_model()) if distill else (_tiny_model(),)
    return CLASSES[name](*models, datasets, config, torch.device("cpu"), None, False, 1, accelerator=None)


@pytest.mark.parametrize("name", BOX_NAMES)
def test_torchdistill_internals_built_boxes_have_the_attributes(name):
    box = _built(name)
    missing = [attr for attr in boxes.RELIED_ON[name]["attributes"] if not hasattr(box, attr)]
    assert not missing, f"torchdistill's {name} no longer sets {missing} (used by geokt_plugin/runner/boxes.py)"
    criterion = box.criterion
    missing = [attr for attr in boxes.RELIED_ON["WeightedSumLoss"]["attributes"] if not hasattr(criterion, attr)]
    assert not missing, f"torchdistill's WeightedSumLoss no longer has {missing} (boxes.py's term probes)"
    term, weight = criterion.term_dict["ce"]
    assert isinstance(term, nn.Module) and weight == 1.0, "WeightedSumLoss.term_dict is no longer {name: (module, w)}"
    box.clean_modules()


def test_torchdistill_internals_runner_box_trains_one_step_and_records_terms():
    """The runner's subclass on the tiny config: forward_process runs and the probe sees the term."""
    datasets = {"train": TensorDataset(torch.randn(8, 3, 2, 2), torch.randint(0, 3, (8,)))}
    box = boxes.GeoKTDistillationBox(_tiny_model(), _tiny_model(), datasets, _tiny_train_config(True),
                                     torch.device("cpu"), None, False, 1, accelerator=None)
    box.install_term_probes()
    sample, targets, supp = unpack(next(iter(box.train_data_loader)))
    loss = box.forward_process(sample, targets, supp)
    assert set(box.term_values) == {"ce"} and torch.allclose(loss, box.term_values["ce"])
    assert box.last_outputs.shape == (4, 3) and box.stage == 1 and box.teacher is box.teacher_model
    box.clean_modules()

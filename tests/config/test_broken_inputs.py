"""The broken-input table: every bad config, file, flag or tensor gets one clear error, and nothing is lost.

Each row breaks one thing in an otherwise valid setup and asserts the error's type and text (where: the YAML path;
what: the value received; the fix). Every row runs next to a pre-seeded run directory (a checkpoint and a log with
known bytes) and asserts that nothing in it changed. Most rows call :mod:`geokt_plugin.config` directly (fast);
``test_broken_inputs_cli_*`` run a handful through ``python -m geokt_plugin.train`` in a subprocess.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import RandomSampler, TensorDataset

import geokt_plugin.functional as GF
from geokt_plugin.config import ConfigError, check_config, check_run_dir, load_config
from geokt_plugin.losses import GeoKTDistanceLoss

SEEDED = {"last.pt": b"\x80\x02checkpoint bytes that must survive\x00\xff", "train.log": b"epoch 1 loss 2.30\n"}
SOURCE = "broken.yaml"


# ----------------------------------------------------------------------------------------------------------------
# A valid setup to break
# ----------------------------------------------------------------------------------------------------------------


def base_config() -> dict:
    """CE + GeoKTDistanceLoss on layer2, resnet20 -> resnet20, 4 random 3x32x32 images (checked on the meta device)."""

    def hooks() -> dict:
        return {"input": [], "output": ["layer2", "layer3"]}

    return {
        "dependencies": [{"name": "geokt_plugin"}],
        "datasets": {"train": TensorDataset(torch.zeros(4, 3, 32, 32), torch.zeros(4, dtype=torch.long))},
        "models": {
            "teacher_model": {"key": "resnet20", "kwargs": {"num_classes": 10, "pretrained": False}},
            "student_model": {"key": "resnet20", "kwargs": {"num_classes": 10, "pretrained": False}},
        },
        "train": {
            "num_epochs": 2,
            "train_data_loader": {"dataset_id": "train", "sampler": {"class_or_func": RandomSampler, "kwargs": {}},
                                  "kwargs": {"batch_size": 2}},
            "teacher": {"forward_proc": "forward_batch_only", "forward_hook": hooks(), "requires_grad": False},
            "student": {"forward_proc": "forward_batch_only", "forward_hook": hooks(), "requires_grad": True},
            "optimizer": {"key": "SGD", "kwargs": {"lr": 0.1, "momentum": 0.9}},
            "scheduler": {"key": "MultiStepLR", "kwargs": {"milestones": [1], "gamma": 0.1}},
            "criterion": {"key": "WeightedSumLoss", "kwargs": {"sub_terms": {
                "ce": {
                    "criterion": {"key": "CrossEntropyLoss", "kwargs": {"reduction": "mean"}},
                    "criterion_wrapper": {"key": "SimpleLossWrapper", "kwargs": {
                        "input": {"is_from_teacher": False, "module_path": ".", "io": "output"},
                        "target": {"uses_label": True}}},
                    "weight": 1.0,
                },
                "geo": {
                    "criterion": {"key": "GeoKTDistanceLoss",
                                  "kwargs": {"student_module_path": "layer2", "teacher_module_path": "layer2"}},
                    "weight": 1.0,
                },
            }}},
        },
    }


def term(c: dict, name: str = "geo") -> dict:
    return c["train"]["criterion"]["kwargs"]["sub_terms"][name]


def geo(c: dict) -> dict:
    return term(c)["criterion"]["kwargs"]


def hooks(c: dict, role: str = "student") -> list[str]:
    return c["train"][role]["forward_hook"]["output"]


class Ctx:
    """What a row may use: a scratch folder, the seeded run directory, and pytest's monkeypatch (to simulate an
    environment, e.g. no network)."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch | None = None) -> None:
        self.tmp = tmp_path
        self.monkeypatch = monkeypatch
        self.run_dir = tmp_path / "run"
        self.run_dir.mkdir()
        for name, data in SEEDED.items():
            (self.run_dir / name).write_bytes(data)

    def snapshot(self) -> dict[str, tuple[bytes, int]]:
        return {str(p.relative_to(self.run_dir)): (p.read_bytes(), p.stat().st_mode)
                for p in sorted(self.run_dir.rglob("*")) if p.is_file()}


# A row's action gets the context, may prepare files, and returns the call that must fail.
Action = Callable[[Ctx], Callable[[], Any]]


def config_row(mutate: Callable[[dict, Ctx], Any], **check_kwargs: Any) -> Action:
    """Break a copy of the base config with ``mutate`` (which may return a replacement), then check it."""

    def action(ctx: Ctx) -> Callable[[], Any]:
        config = base_config()
        replaced = mutate(config, ctx)
        config = config if replaced is None else replaced
        return lambda: check_config(config, config_path=SOURCE, **check_kwargs)

    return action


def yaml_row(text: str, mode: int | None = None) -> Action:
    """Write ``text`` as broken.yaml (optionally chmod it), then load and check it as the runner does."""

    def action(ctx: Ctx) -> Callable[[], Any]:
        path = ctx.tmp / SOURCE
        path.write_text(text)
        if mode is not None:
            path.chmod(mode)

        def call() -> Any:
            return check_config(load_config(path), config_path=str(path))

        return call

    return action


def run_dir_row(prepare: Callable[[Ctx], Path], **flags: bool) -> Action:
    def action(ctx: Ctx) -> Callable[[], Any]:
        folder = prepare(ctx)
        return lambda: check_run_dir(folder, resume=flags.get("resume", False), overwrite=flags.get("overwrite", False))

    return action


def call_row(fn: Callable[[], Any]) -> Action:
    return lambda ctx: fn


# ----------------------------------------------------------------------------------------------------------------
# Row helpers
# ----------------------------------------------------------------------------------------------------------------


def _set(path: list[Any], value: Any) -> Callable[[dict, Ctx], None]:
    def mutate(c: dict, ctx: Ctx) -> None:
        node = c
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return mutate


def _geo(**kwargs: Any) -> Callable[[dict, Ctx], None]:
    return lambda c, ctx: geo(c).update(kwargs)


def _as_loss(key: str, **kwargs: Any) -> Callable[[dict, Ctx], None]:
    def mutate(c: dict, ctx: Ctx) -> None:
        term(c)["criterion"] = {"key": key, "kwargs": {"student_module_path": "layer2",
                                                       "teacher_module_path": "layer2", **kwargs}}

    return mutate


def _hook_and_read(path: str) -> Callable[[dict, Ctx], None]:
    def mutate(c: dict, ctx: Ctx) -> None:
        hooks(c).append(path)
        geo(c)["student_module_path"] = path

    return mutate


def _torchvision_layer4(c: dict, ctx: Ctx) -> None:
    for name in ("teacher_model", "student_model"):
        c["models"][name] = {"key": "resnet18", "kwargs": {"num_classes": 10}}
    for role in ("teacher", "student"):
        c["train"][role]["forward_hook"]["output"] = ["layer4"]
    geo(c).update(student_module_path="layer4", teacher_module_path="layer4")


def _no_teacher(c: dict, ctx: Ctx) -> None:
    del c["models"]["teacher_model"]
    del c["train"]["teacher"]


def _ckpt(state: Any, *, at: str = "models.teacher_model") -> Callable[[dict, Ctx], None]:
    def mutate(c: dict, ctx: Ctx) -> None:
        file = ctx.tmp / "instructor.pt"
        if isinstance(state, bytes):
            file.write_bytes(state)
        else:
            torch.save(state() if callable(state) else state, file)
        section, name = at.split(".")
        c[section][name]["src_ckpt"] = str(file)

    return mutate


def _resnet(depth: int, prefix: str = "") -> Callable[[], dict]:
    def make() -> dict:
        from torchdistill.models.registry import get_model

        state = get_model("resnet", depth=depth, num_classes=10, pretrained=False, progress=False).state_dict()
        return {"model": {prefix + k: v for k, v in state.items()}}

    return make


def _missing_teacher_ckpt(c: dict, ctx: Ctx) -> None:
    c["models"]["teacher_model"]["src_ckpt"] = str(ctx.tmp / "runs" / "instructor" / "best.pt")


FMNIST_YAML = """\
dependencies: [{name: geokt_plugin}]
datasets:
  fmnist/train: !import_call
    key: 'geokt_plugin.data.fashion_mnist'
    init:
      kwargs: {root: '/nonexistent/fmnist', split: 'train', subset_size: 8}
models:
  student_model: {key: 'resnet20', kwargs: {num_classes: 10}}
train: {}
"""


def _in_open_folder(ctx: Ctx) -> Callable[[], Any]:
    folder = ctx.tmp / "open"
    folder.mkdir()
    folder.chmod(0o777)
    (folder / SOURCE).write_text("models: {}\n")
    return lambda: load_config(folder / SOURCE)


def _run_dir_under_a_file(ctx: Ctx) -> Path:
    blocker = ctx.tmp / "not-a-folder"
    blocker.write_text("a file where the run dir's parent should be\n")
    return blocker / "run"


def _finished(ctx: Ctx) -> Path:
    (ctx.run_dir / "done").write_text("2026-01-01T00:00:00+00:00\n")
    (ctx.run_dir / "metrics.csv").write_text("epoch,train_loss\n1,2.3\n")
    return ctx.run_dir


def _started(ctx: Ctx) -> Path:
    folder = ctx.tmp / "started"
    folder.mkdir()
    (folder / "manifest.json").write_text('{"seed": 0}\n')
    (folder / "train.log").write_text("12:00:00 instructor val top-1 10.00\n")
    return folder


def _empty_run_dir(ctx: Ctx) -> Path:
    folder = ctx.tmp / "fresh"
    folder.mkdir()
    return folder


def _randn(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(0))


def _loss_on_missing_hook() -> Any:
    loss = GeoKTDistanceLoss("layer3", "layer3")
    student_io = {".": {"output": _randn(2, 10)}, "layer2": {"output": _randn(2, 4, 3, 3)}}
    teacher_io = {"layer3": {"output": _randn(2, 4, 3, 3)}}
    return loss(student_io, teacher_io)


def _sched(key: str, **kwargs: Any) -> Callable[[dict, Ctx], None]:
    return _set(["train", "scheduler"], {"key": key, "kwargs": kwargs})


def _loader_kwargs(**kwargs: Any) -> Callable[[dict, Ctx], None]:
    return lambda c, ctx: c["train"]["train_data_loader"]["kwargs"].update(kwargs)


def _test_section(loader: Any = None, **changes: Any) -> Callable[[dict, Ctx], None]:
    """A ``test`` section whose loader reads ``datasets.train`` (``loader``: the whole section instead)."""

    def mutate(c: dict, ctx: Ctx) -> None:
        if loader is not None:
            c["test"] = loader
            return
        c["test"] = {"test_data_loader": {"dataset_id": "train", "kwargs": {"batch_size": 2},
                                          "sampler": {"class_or_func": RandomSampler, "kwargs": {}}, **changes}}

    return mutate


def _offline(c: dict, ctx: Ctx) -> None:
    """The teacher asks for torchdistill's released weights, and the network is down."""
    from urllib.error import URLError

    def no_network(*args: Any, **kwargs: Any) -> Any:
        raise URLError("[Errno -3] Temporary failure in name resolution")

    ctx.monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    c["models"]["teacher_model"]["kwargs"]["pretrained"] = True


def _freeze_student(c: dict, ctx: Ctx) -> None:
    c["train"]["student"]["frozen_modules"] = ["conv1", "bn1", "layer1", "layer2", "layer3", "fc"]


def _labels(value: int) -> Callable[[dict, Ctx], None]:
    return _set(["datasets", "train"], TensorDataset(torch.zeros(4, 3, 32, 32), torch.full((4,), value)))


YAML_HEAD = """\
models:
  student_model: {key: 'resnet20', kwargs: {num_classes: 10}}
train:
"""


# ----------------------------------------------------------------------------------------------------------------
# The table: (action, exception type, regexes on the message, number of problems or None for non-ConfigError)
# ----------------------------------------------------------------------------------------------------------------

GEO = r"train\.criterion\.kwargs\.sub_terms\.geo"

ROWS = [
    # --- shape of the config ---
    pytest.param(config_row(lambda c, ctx: [c]), ConfigError,
                 [r"^broken\.yaml: the config must be a YAML mapping with the sections 'models', 'train' and "
                  r"'datasets', got list", r"Start from a config under configs/"], 1, id="non-mapping-config"),
    pytest.param(config_row(lambda c, ctx: c.pop("models") and None), ConfigError,
                 [r"^broken\.yaml: models: missing top-level section 'models'", r"Add it"], 1,
                 id="missing-models-section"),
    pytest.param(config_row(lambda c, ctx: c["models"].pop("student_model") and None), ConfigError,
                 [r"models\.student_model: missing; every run trains a student", r"Add e\.g\. `student_model:"], 1,
                 id="missing-student-model"),
    pytest.param(config_row(_set(["train", "num_epochs"], 0)), ConfigError,
                 [r"train\.num_epochs: must be a positive integer, got 0 \(int\)"], 1, id="num-epochs-zero"),
    pytest.param(config_row(_set(["train", "num_epochs"], "10")), ConfigError,
                 [r"train\.num_epochs: must be a positive integer, got '10' \(str\)"], 1, id="num-epochs-string"),
    # --- registry keys ---
    pytest.param(config_row(_set(["models", "student_model", "key"], "resnet_20")), ConfigError,
                 [r"models\.student_model\.key: unknown model key 'resnet_20'\. Did you mean 'resnet20'",
                  r"torchvision model name"], 1, id="unknown-model-key"),
    pytest.param(config_row(_set(["models", "student_model", "kwargs"], {"num_clases": 10})), ConfigError,
                 [r"models\.student_model\.kwargs: building model 'resnet20' failed: TypeError: .*num_clases",
                  r"Fix the constructor arguments"], 1, id="bad-model-kwargs"),
    pytest.param(config_row(lambda c, ctx: term(c)["criterion"].update(key="GeoKTDistanseLoss")), ConfigError,
                 [GEO + r"\.criterion\.key: unknown criterion key 'GeoKTDistanseLoss'\. "
                        r"Did you mean 'GeoKTDistanceLoss'"], 1, id="unknown-criterion-key"),
    pytest.param(config_row(lambda c, ctx: term(c, "ce")["criterion"].update(key="CrossEntropyLos")), ConfigError,
                 [r"sub_terms\.ce\.criterion\.key: unknown criterion key 'CrossEntropyLos'\. "
                  r"Did you mean 'CrossEntropyLoss'"], 1, id="unknown-torch-loss-key"),
    pytest.param(config_row(lambda c, ctx: c.pop("dependencies") and None), ConfigError,
                 [GEO + r"\.criterion\.key: 'GeoKTDistanceLoss' is provided by geokt_plugin, which the config does "
                        r"not import", r"Add `dependencies: \[\{name: geokt_plugin\}\]`"], 1,
                 id="geokt-key-without-dependencies"),
    pytest.param(config_row(lambda c, ctx: c.update(dependencies=[{"name": "geokt_plugn"}])), ConfigError,
                 [r"dependencies\[0\]: cannot import 'geokt_plugn' \(ModuleNotFoundError", r"fix the name",
                  GEO + r"\.criterion\.key: .*provided by geokt_plugin"], 2, id="dependency-typo"),
    pytest.param(config_row(_set(["train", "criterion", "key"], "KDLoss")), ConfigError,
                 [r"train\.criterion\.key: 'KDLoss' is a mid-level loss; the top-level criterion must be one of "
                  r"\['WeightedSumLoss'\]", r"Put 'KDLoss' under kwargs\.sub_terms"], 1,
                 id="mid-level-key-as-criterion"),
    pytest.param(config_row(lambda c, ctx: term(c, "ce")["criterion_wrapper"].update(key="SimpleLossWraper")),
                 ConfigError, [r"sub_terms\.ce\.criterion_wrapper\.key: unknown criterion_wrapper key "
                               r"'SimpleLossWraper'\. Did you mean 'SimpleLossWrapper'"], 1,
                 id="unknown-criterion-wrapper"),
    pytest.param(config_row(_set(["train", "optimizer", "key"], "SDG")), ConfigError,
                 [r"train\.optimizer\.key: unknown optimizer key 'SDG'\. Did you mean 'SGD'"], 1,
                 id="unknown-optimizer"),
    pytest.param(config_row(_set(["train", "optimizer", "kwargs"], {"lrr": 0.1})), ConfigError,
                 [r"train\.optimizer\.kwargs: SGD\(\*\*kwargs\) failed: TypeError: .*'lrr'", r"Fix the arguments"],
                 1, id="optimizer-kwarg-typo"),
    pytest.param(config_row(_set(["train", "scheduler", "key"], "MultiStepLr")), ConfigError,
                 [r"train\.scheduler\.key: unknown scheduler key 'MultiStepLr'\. Did you mean 'MultiStepLR'"], 1,
                 id="unknown-scheduler"),
    pytest.param(config_row(_set(["train", "student", "forward_proc"], "forward_batch")), ConfigError,
                 [r"train\.student\.forward_proc: unknown forward_proc key 'forward_batch'\. "
                  r"Did you mean 'forward_batch_only'"], 1, id="unknown-forward-proc"),
    pytest.param(config_row(_set(["train", "student", "auxiliary_model_wrapper"],
                                 {"key": "GeoKTStudentWraper", "kwargs": {}})), ConfigError,
                 [r"train\.student\.auxiliary_model_wrapper\.key: unknown auxiliary_model_wrapper key "
                  r"'GeoKTStudentWraper'\. Did you mean 'GeoKTStudentWrapper'"], 1, id="unknown-aux-wrapper"),
    # --- loss kwargs ---
    pytest.param(config_row(lambda c, ctx: term(c)["criterion"].pop("kwargs") and None), ConfigError,
                 [GEO + r"\.criterion\.kwargs: missing; torchdistill requires `kwargs:` on every criterion",
                  r"KeyError\('kwargs'\)", r"Add `kwargs: \{\}`"], 1, id="missing-kwargs"),
    pytest.param(config_row(lambda c, ctx: term(c)["criterion"].update(kwargs=["layer2"])), ConfigError,
                 [GEO + r"\.criterion\.kwargs: must be a mapping of the loss's arguments, got list \['layer2'\]"], 1,
                 id="kwargs-not-a-mapping"),
    pytest.param(config_row(_geo(scope="img")), ConfigError,
                 [GEO + r"\.criterion\.kwargs: Unknown scope 'img' for GeoKTDistanceLoss; choose one of "
                        r"\['image', 'batch'\]"], 1, id="bad-scope"),
    pytest.param(config_row(_geo(reduction="avg")), ConfigError,
                 [GEO + r"\.criterion\.kwargs: Unknown reduction 'avg' for GeoKTDistanceLoss; choose one of "
                        r"\['mean', 'sum', 'none'\]"], 1, id="bad-reduction"),
    pytest.param(config_row(_geo(neighbors=0)), ConfigError,
                 [GEO + r"\.criterion\.kwargs: GeoKTDistanceLoss: neighbors must be >= 1, got 0",
                  r"positive neighbourhood size"], 1, id="neighbors-zero"),
    pytest.param(config_row(_geo(neighbors=2.5)), ConfigError,
                 [GEO + r"\.criterion\.kwargs: GeoKTDistanceLoss: neighbors must be an integer >= 1 or None, "
                        r"got 2\.5 \(float\)"], 1, id="neighbors-float"),
    pytest.param(config_row(_geo(max_points=1)), ConfigError,
                 [GEO + r"\.criterion\.kwargs: GeoKTDistanceLoss: max_points must be None or an integer >= 2, got 1",
                  r"at least 2 local features"], 1, id="max-points-one"),
    pytest.param(config_row(_as_loss("GeoKTNeighborRankLoss", temperature=0)), ConfigError,
                 [GEO + r"\.criterion\.kwargs: GeoKTNeighborRankLoss: temperature must be a finite number > 0, "
                        r"got 0"], 1, id="temperature-zero"),
    pytest.param(config_row(_as_loss("GeoKTNeighborKLLoss", bandwidth=-0.5)), ConfigError,
                 [GEO + r"\.criterion\.kwargs: GeoKTNeighborKLLoss: bandwidth must be a finite number > 0, "
                        r"got -0\.5"], 1, id="bandwidth-negative"),
    pytest.param(config_row(_geo(neighbours=8)), ConfigError,
                 [GEO + r"\.criterion\.kwargs: GeoKTDistanceLoss: unknown argument\(s\) \['neighbours'\]",
                  r"Did you mean 'neighbors' for 'neighbours'\?"], 1, id="unknown-kwarg-typo"),
    pytest.param(config_row(lambda c, ctx: geo(c).pop("student_module_path") and None), ConfigError,
                 [GEO + r"\.criterion\.kwargs: GeoKTDistanceLoss: student_module_path is required "
                        r"\(e\.g\. student_module_path: 'layer2'\)"], 1, id="missing-module-path"),
    pytest.param(config_row(_geo(student_module_io="outputs")), ConfigError,
                 [GEO + r"\.criterion\.kwargs\.student_module_io: 'outputs' is not an io name; torchdistill hooks "
                        r"record only \['input', 'output'\]\. Use 'output'"], 1, id="wrong-io-name"),
    # --- weights ---
    pytest.param(config_row(lambda c, ctx: term(c).update(weight=-1.0)), ConfigError,
                 [GEO + r"\.weight: must be a finite number >= 0, got -1\.0", r"use a weight >= 0"], 1,
                 id="negative-weight"),
    pytest.param(config_row(lambda c, ctx: term(c).update(weight=math.nan)), ConfigError,
                 [GEO + r"\.weight: must be a finite number >= 0, got nan"], 1, id="nan-weight"),
    pytest.param(config_row(lambda c, ctx: term(c).pop("weight") and None), ConfigError,
                 [GEO + r"\.weight: missing \(torchdistill requires it\)\. Add e\.g\. `weight: 1\.0`"], 1,
                 id="missing-weight"),
    # --- data loaders and datasets ---
    pytest.param(config_row(_set(["train", "train_data_loader", "dataset_id"], "trian")), ConfigError,
                 [r"train\.train_data_loader\.dataset_id: 'trian' is not an entry of 'datasets' "
                  r"\(entries: \['train'\]\)\. Did you mean 'train'\?"], 1, id="unknown-dataset-id"),
    pytest.param(config_row(_set(["datasets", "train"], {"key": "CIFAR10", "splits": {"train": {}}})), ConfigError,
                 [r"datasets\.train: uses torchdistill's pre-1\.0 schema", r"Build the dataset with `!import_call`"],
                 1, id="pre-1.0-dataset-schema"),
    pytest.param(config_row(lambda c, ctx: c["train"]["train_data_loader"].pop("sampler") and None), ConfigError,
                 [r"train\.train_data_loader\.sampler\.class_or_func: must be a sampler class, got None",
                  r"RandomSampler"], 1, id="missing-sampler"),
    pytest.param(config_row(_set(["datasets", "train"], TensorDataset(torch.zeros(0, 3, 8, 8)))), ConfigError,
                 [r"datasets\.train: is empty \(0 samples\)"], 1, id="empty-dataset"),
    pytest.param(yaml_row(FMNIST_YAML), ConfigError,
                 [r"broken\.yaml: datasets\.fmnist/train \(line 3\) could not be built: FileNotFoundError: "
                  r"fashion_mnist: root='/nonexistent/fmnist'", r"apt-get install dataset-fashion-mnist"], None,
                 id="missing-dataset-root"),
    # --- hooks and feature maps ---
    pytest.param(config_row(lambda c, ctx: hooks(c).append("layer_3")), ConfigError,
                 [r"train\.student\.forward_hook\.output: no module 'layer_3' in ResNet4Cifar\. Nearest valid module "
                  r"paths: \['layer3', ", r"AttributeError on None"], 1, id="hook-path-typo"),
    pytest.param(config_row(lambda c, ctx: hooks(c, "teacher").append(".")), ConfigError,
                 [r"train\.teacher\.forward_hook\.output: '\.' \(the model's own output\) cannot be hooked",
                  r"Remove '\.'"], 1, id="hook-self-path"),
    pytest.param(config_row(_geo(student_module_path="layer1")), ConfigError,
                 [GEO + r"\.criterion\.kwargs\.student_module_path: GeoKTDistanceLoss reads student 'layer1' "
                        r"\(output\), which is not hooked \(train\.student\.forward_hook\.output: "
                        r"\['layer2', 'layer3'\]\)\. Add 'layer1' to train\.student\.forward_hook\.output"], 1,
                 id="loss-path-not-hooked"),
    pytest.param(config_row(_hook_and_read("fc")), ConfigError,
                 [GEO + r"\.criterion\.kwargs\.student_module_path: GeoKTDistanceLoss reads student 'fc' \(output\) "
                        r"of shape \(2, 10\), but needs a 4-D feature map \(B, C, H, W\)",
                  r"nearest 4-D paths: \['"], 1, id="hooked-2d-tensor"),
    pytest.param(config_row(_hook_and_read("avgpool")), ConfigError,
                 [GEO + r"\.criterion\.kwargs: GeoKTDistanceLoss: student 'avgpool' \(2, 64, 1, 1\) and teacher "
                        r"'layer2' \(2, 32, 16, 16\) align to 1x1 = 1 local feature\(s\) per image",
                  r"at least 2", r"scope: 'batch'"], 1, id="pooled-1x1-map"),
    pytest.param(config_row(_torchvision_layer4, input_shape=(3, 32, 32)), ConfigError,
                 [GEO + r"\.criterion\.kwargs: GeoKTDistanceLoss: student 'layer4' \(2, 512, 1, 1\) and teacher "
                        r"'layer4' \(2, 512, 1, 1\) align to 1x1", r"use a larger input"], 1,
                 id="1x1-map-on-small-input"),
    pytest.param(config_row(_set(["datasets", "train"], TensorDataset(torch.zeros(4, 1, 28, 28),
                                                                      torch.zeros(4, dtype=torch.long)))),
                 ConfigError, [r"train\.teacher: a dummy forward of the teacher on a batch of shape \(2, 1, 28, 28\) "
                               r"\(from the training dataset's first sample\) failed", r"channels"], 1,
                 id="input-channels-mismatch"),
    pytest.param(config_row(_no_teacher), ConfigError,
                 [GEO + r"\.criterion\.kwargs\.teacher_module_path: GeoKTDistanceLoss reads the teacher's 'layer2', "
                        r"but the config has no models\.teacher_model"], 1, id="teacher-loss-without-teacher"),
    # --- checkpoints ---
    pytest.param(config_row(_missing_teacher_ckpt), ConfigError,
                 [r"models\.teacher_model\.src_ckpt: checkpoint file not found: '.*runs/instructor/best\.pt'",
                  r"Train that model first, fix the path", r"remove src_ckpt"], 1, id="missing-checkpoint"),
    pytest.param(config_row(lambda c, ctx: c["train"]["student"].update(src_ckpt=str(ctx.tmp / "nope.pt"))),
                 ConfigError, [r"train\.student\.src_ckpt: checkpoint file not found: '.*nope\.pt'",
                               r"torchdistill would only log this and start from random weights"], 1,
                 id="missing-train-checkpoint"),
    pytest.param(config_row(_ckpt(_resnet(8))), ConfigError,
                 [r"models\.teacher_model\.src_ckpt: '.*instructor\.pt' does not load strictly into "
                  r"models\.teacher_model \(resnet20\): 72 missing key\(s\) \['layer1\.1\.conv1\.weight'",
                  r"same architecture"], 1, id="wrong-checkpoint-for-model"),
    pytest.param(config_row(_ckpt(_resnet(20, prefix="student_model."))), ConfigError,
                 [r"unexpected key\(s\) \['student_model\.conv1\.weight'", r"auxiliary wrapper's 'student_model\.' "
                                                                           r"prefix"], 1,
                 id="wrapped-checkpoint"),
    pytest.param(config_row(_ckpt(b"not a checkpoint\n")), ConfigError,
                 [r"models\.teacher_model\.src_ckpt: '.*instructor\.pt' is not a readable torch checkpoint"], 1,
                 id="not-a-checkpoint"),
    # --- duplicate keys (PyYAML keeps the last one silently) ---
    pytest.param(yaml_row(YAML_HEAD + "  num_epochs: 200\n  log_freq: 10\n  num_epochs: 2\n"), ConfigError,
                 [r"broken\.yaml: train\.num_epochs: duplicate key 'num_epochs' at lines 4 and 6; YAML keeps only "
                  r"the last one, so the value at line 4 would be silently ignored", r"Keep one of them"], None,
                 id="duplicate-num-epochs"),
    pytest.param(yaml_row(YAML_HEAD + "  criterion:\n    kwargs:\n      sub_terms:\n        geo: {weight: 1.0}\n"
                                      "        ce: {weight: 1.0}\n        geo: {weight: 0.5}\n"), ConfigError,
                 [r"train\.criterion\.kwargs\.sub_terms\.geo: duplicate key 'geo' at lines 7 and 9"], None,
                 id="duplicate-sub-term-name"),
    pytest.param(yaml_row(YAML_HEAD + "  optimizer: {key: 'SGD', kwargs: {lr: 0.1, momentum: 0.9, lr: 0.01}}\n"),
                 ConfigError, [r"train\.optimizer\.kwargs\.lr: duplicate key 'lr' at lines 4 and 4"], None,
                 id="duplicate-key-in-flow-mapping"),
    pytest.param(yaml_row("base: &sgd {key: 'SGD', kwargs: {lr: 0.1}}\n" + YAML_HEAD
                          + "  optimizer:\n    <<: *sgd\n    key: 'Adam'\n    key: 'AdamW'\n"), ConfigError,
                 [r"train\.optimizer\.key: duplicate key 'key' at lines 7 and 8"], None,
                 id="duplicate-key-next-to-a-merge"),
    pytest.param(yaml_row(YAML_HEAD + "  num_epochs: 2\ndatasets: {}\ntrain: {}\n"), ConfigError,
                 [r"train: duplicate key 'train' at lines 3 and 6"], None, id="duplicate-top-level-section"),
    # --- numbers YAML read as strings, and values that must be numbers ---
    pytest.param(config_row(_set(["train", "optimizer", "kwargs", "lr"], "1e-3")), ConfigError,
                 [r"^broken\.yaml: train\.optimizer\.kwargs\.lr: '1e-3' is a string, not a number\. Write 1\.0e-3: "
                  r"YAML 1\.1 reads 1e-3 without a dot as a string\.$"], 1, id="lr-exponent-without-dot"),
    pytest.param(config_row(_set(["train", "optimizer", "kwargs", "weight_decay"], "5e-4")), ConfigError,
                 [r"train\.optimizer\.kwargs\.weight_decay: '5e-4' is a string, not a number\. Write 5\.0e-4"], 1,
                 id="weight-decay-exponent-without-dot"),
    pytest.param(config_row(_set(["train", "optimizer", "kwargs", "lr"], "fast")), ConfigError,
                 [r"train\.optimizer\.kwargs\.lr: must be a number \(SGD's default is 0\.001\), got 'fast' \(str\)"],
                 1, id="lr-not-a-number"),
    pytest.param(config_row(_set(["train", "scheduler", "kwargs", "gamma"], "1e-1")), ConfigError,
                 [r"train\.scheduler\.kwargs\.gamma: '1e-1' is a string, not a number\. Write 1\.0e-1: YAML 1\.1 "
                  r"reads 1e-1 without a dot as a string"], 1, id="scheduler-gamma-exponent-without-dot"),
    pytest.param(config_row(_set(["train", "scheduler", "kwargs", "milestones"], "abc")), ConfigError,
                 [r"train\.scheduler\.kwargs\.milestones: must be a list of integers >= 0 .*got 'abc' \(str\); with "
                  r"it the lr would never decay", r"milestones: \[30, 60\]"], 1, id="milestones-a-string"),
    pytest.param(config_row(_set(["train", "scheduler", "kwargs", "milestones"], [1, "3"])), ConfigError,
                 [r"train\.scheduler\.kwargs\.milestones\[1\]: '3' is a string, not a number\. Write 3 without "
                  r"quotes"], 1, id="milestone-quoted"),
    pytest.param(config_row(lambda c, ctx: term(c).update(weight="1e-3")), ConfigError,
                 [GEO + r"\.weight: must be a finite number >= 0, got '1e-3'\. Write 1\.0e-3: YAML 1\.1 reads 1e-3 "
                        r"without a dot as a string"], 1, id="weight-exponent-without-dot"),
    pytest.param(config_row(_as_loss("GeoKTNeighborRankLoss", temperature="1e-1")), ConfigError,
                 [GEO + r"\.criterion\.kwargs\.temperature: '1e-1' is a string, not a number\. Write 1\.0e-1"], 1,
                 id="loss-kwarg-exponent-without-dot"),
    pytest.param(config_row(lambda c, ctx: term(c, "ce")["criterion"]["kwargs"].update(label_smoothing="0.1")),
                 ConfigError, [r"sub_terms\.ce\.criterion\.kwargs\.label_smoothing: '0\.1' is a string, not a number\. "
                               r"Write 0\.1 without quotes"], 1, id="torch-loss-kwarg-quoted"),
    pytest.param(config_row(_loader_kwargs(batch_size="64")), ConfigError,
                 [r"train\.train_data_loader\.kwargs\.batch_size: must be a positive integer, got '64' \(str\)\. "
                  r"Write 64 without quotes"], 1, id="batch-size-quoted"),
    pytest.param(config_row(_set(["train", "num_epochs"], "2e2")), ConfigError,
                 [r"train\.num_epochs: must be a positive integer, got '2e2' \(str\)\. YAML 1\.1 reads 2e2 as a "
                  r"string; write the integer itself"], 1, id="num-epochs-exponent"),
    pytest.param(config_row(_set(["train", "log_freq"], "x")), ConfigError,
                 [r"^broken\.yaml: train\.log_freq: must be an integer >= 0, got 'x' \(str\)\. Use e\.g\. 100\.$"],
                 1, id="log-freq-not-a-number"),
    pytest.param(config_row(lambda c, ctx: c.update(seed="abc")), ConfigError,
                 [r"^broken\.yaml: seed: must be an integer in \[0, 4294967295\], got 'abc' \(str\)\. Use e\.g\. 0\."],
                 1, id="seed-not-a-number"),
    pytest.param(config_row(lambda c, ctx: c.update(seed=-1)), ConfigError,
                 [r"seed: must be an integer in \[0, 4294967295\], got -1 \(int\)"], 1, id="seed-negative"),
    pytest.param(config_row(_loader_kwargs(num_workers=-1)), ConfigError,
                 [r"train\.train_data_loader\.kwargs\.num_workers: must be an integer >= 0, got -1 \(int\)"], 1,
                 id="num-workers-negative"),
    pytest.param(config_row(_set(["train", "optimizer", "max_grad_norm"], "5.0")), ConfigError,
                 [r"train\.optimizer\.max_grad_norm: must be a number > 0, got '5\.0'\. Write 5\.0 without quotes"],
                 1, id="max-grad-norm-quoted"),
    pytest.param(config_row(_set(["train", "optimizer", "grad_accum_step"], "2")), ConfigError,
                 [r"train\.optimizer\.grad_accum_step: must be a positive integer, got '2' \(str\)"], 1,
                 id="grad-accum-step-quoted"),
    pytest.param(config_row(_loader_kwargs(drop_last="yes please")), ConfigError,
                 [r"train\.train_data_loader\.kwargs\.drop_last: must be true or false, got 'yes please'"], 1,
                 id="drop-last-not-a-bool"),
    # --- optimizer and scheduler, stepped as the run steps them ---
    pytest.param(config_row(_sched("OneCycleLR", max_lr=0.1, total_steps=1)), ConfigError,
                 [r"train\.scheduler\.kwargs: OneCycleLR: the run would fail at epoch 2 of 2: ValueError: Tried to "
                  r"step 2 times\. The specified number of total steps is 1", r"Fix the scheduler's arguments"], 1,
                 id="scheduler-fails-mid-run"),
    pytest.param(config_row(lambda c, ctx: c["train"].update(scheduler={
        "key": "OneCycleLR", "kwargs": {"max_lr": 0.1, "total_steps": 3}, "scheduling_step": 1})), ConfigError,
                 [r"train\.scheduler\.kwargs: OneCycleLR: the run would fail at scheduler step 4 of 4: ValueError: "
                  r"Tried to step 4 times\. The specified number of total steps is 3"], 1,
                 id="step-wise-scheduler-too-short"),
    pytest.param(config_row(_sched("ExponentialLR", gamma=-1.0)), ConfigError,
                 [r"train\.scheduler\.kwargs: ExponentialLR: the lr becomes -0\.1 at epoch 1 of 2; it must stay a "
                  r"finite number >= 0"], 1, id="scheduler-negative-lr"),
    pytest.param(config_row(_set(["train", "optimizer", "kwargs"], {"lr": 0.1, "momentum": -0.5})), ConfigError,
                 [r"train\.optimizer\.kwargs: SGD\(\*\*kwargs\) failed: ValueError: Invalid momentum value: -0\.5"], 1,
                 id="optimizer-bad-value"),
    # --- each loss term on one real batch ---
    pytest.param(config_row(_geo(reduction="none")), ConfigError,
                 [GEO + r": gives a tensor of shape \(2,\) on one training batch, not a scalar; WeightedSumLoss adds "
                        r"the weighted terms and backward needs a scalar\. Set reduction: 'mean'"], 1,
                 id="reduction-none-in-weighted-sum"),
    pytest.param(config_row(lambda c, ctx: term(c, "ce")["criterion"]["kwargs"].update(reduction="none")),
                 ConfigError, [r"sub_terms\.ce: gives a tensor of shape \(2,\) on one training batch, not a scalar"],
                 1, id="torch-loss-reduction-none"),
    pytest.param(config_row(lambda c, ctx: term(c, "ce")["criterion"]["kwargs"].update(weight=torch.zeros(10))),
                 ConfigError, [r"sub_terms\.ce: gives nan on one training batch \(random weights\); the run would stop "
                               r"at its first step"], 1, id="term-non-finite-on-finite-data"),
    pytest.param(config_row(_labels(10)), ConfigError,
                 [r"sub_terms\.ce: evaluating the term on one training batch failed: IndexError: Target 10 is out of "
                  r"bounds"], 1, id="labels-outside-the-classes"),
    # --- loaders: built and asked for one batch ---
    pytest.param(config_row(_loader_kwargs(batch_size=8, drop_last=True)), ConfigError,
                 [r"train\.train_data_loader\.kwargs\.batch_size: 8 is larger than datasets\.train \(4 samples\) and "
                  r"drop_last is true, so every epoch would have zero steps", r"drop_last: false"], 1,
                 id="zero-steps-per-epoch"),
    pytest.param(config_row(_loader_kwargs(batch_size=10**30)), ConfigError,
                 [r"train\.train_data_loader\.kwargs\.batch_size: 1000000000000000000000000000000 is absurd: larger "
                  r"than datasets\.train \(4 samples\)", r"Use a batch size <= 4"], 1, id="absurd-batch-size"),
    pytest.param(config_row(_loader_kwargs(shufle=True)), ConfigError,
                 [r"train\.train_data_loader: building it and reading one batch failed: TypeError: .*'shufle'"], 1,
                 id="loader-kwarg-typo"),
    pytest.param(config_row(_set(["datasets", "train"], TensorDataset(torch.zeros(4, 3, 32, 32)))), ConfigError,
                 [r"train\.train_data_loader: yields list of length 1 batches; the runner unpacks \(sample, target\)"],
                 1, id="batches-without-labels"),
    pytest.param(config_row(lambda c, ctx: c["train"].update(val_data_loader={
        "dataset_id": "train", "sampler": {"class_or_func": RandomSampler, "kwargs": {}},
        "kwargs": {"batch_size": 8, "drop_last": True}})), ConfigError,
                 [r"train\.val_data_loader\.kwargs\.batch_size: 8 is larger than datasets\.train \(4 samples\) and "
                  r"drop_last is true"], 1, id="val-loader-zero-batches"),
    pytest.param(config_row(_test_section(dataset_id="trian")), ConfigError,
                 [r"test\.test_data_loader\.dataset_id: 'trian' is not an entry of 'datasets' "
                  r"\(entries: \['train'\]\)\. Did you mean 'train'\?"], 1, id="test-loader-unknown-dataset-id"),
    pytest.param(config_row(_test_section(sampler=None)), ConfigError,
                 [r"test\.test_data_loader\.sampler\.class_or_func: must be a sampler class, got None"], 1,
                 id="test-loader-missing-sampler"),
    pytest.param(config_row(_test_section(kwargs={"batch_size": 0})), ConfigError,
                 [r"test\.test_data_loader\.kwargs\.batch_size: must be a positive integer, got 0"], 1,
                 id="test-loader-batch-size-zero"),
    pytest.param(config_row(_test_section(["test_data_loader"])), ConfigError,
                 [r"test: must be a mapping, got list"], 1, id="test-section-not-a-mapping"),
    # --- models: trainable parameters, pretrained weights, sections ---
    pytest.param(config_row(_freeze_student), ConfigError,
                 [r"train\.student\.frozen_modules: \['conv1', 'bn1', 'layer1', 'layer2', 'layer3', 'fc'\] freeze "
                  r"every parameter of the student \(272,474 parameters\); the optimizer would get no parameter",
                  r"Remove at least one module from frozen_modules"], 1, id="student-all-frozen"),
    pytest.param(config_row(lambda c, ctx: c["train"]["student"].update(frozen_modules=["instance(Conv2d)",
                                                                                        "instance(BatchNorm2d)",
                                                                                        "fc"])),
                 ConfigError, [r"train\.student\.frozen_modules: .*freeze every parameter of the student"], 1,
                 id="student-all-frozen-by-class"),
    pytest.param(config_row(_set(["train", "student", "requires_grad"], False)), ConfigError,
                 [r"train\.student\.requires_grad: False freezes the whole student \(272,474 parameters\)",
                  r"Set requires_grad: True"], 1, id="student-requires-grad-false"),
    pytest.param(config_row(_offline), ConfigError,
                 [r"models\.teacher_model\.kwargs\.pretrained: True needs the pretrained weights of 'resnet20', which "
                  r"could not be downloaded \(URLError: <urlopen error \[Errno -3\] Temporary failure",
                  r"Offline\? Fetch the file on a machine with network access, then set models\.teacher_model\."
                  r"src_ckpt: '/path/to/weights\.pt' \(a local copy of the weights\) and pretrained: False"], 1,
                 id="pretrained-weights-offline"),
    pytest.param(config_row(lambda c, ctx: c.pop("train") and None), ConfigError,
                 [r"^broken\.yaml: train: missing top-level section 'train'", r"Add it"], 1,
                 id="missing-train-section"),
    # --- files, flags and run directories ---
    pytest.param(yaml_row("models: [resnet20\ntrain: {}\n"), ConfigError,
                 [r"broken\.yaml: line \d+, column \d+: invalid YAML", r"Fix the syntax there"], None,
                 id="yaml-syntax-error"),
    pytest.param(yaml_row("models: {}\n", mode=0o666), ConfigError,
                 [r"the config file is world-writable \(mode -rw-rw-rw-\)", r"chmod o-w", r"--trust-config"], None,
                 id="world-writable-config"),
    pytest.param(_in_open_folder, ConfigError,
                 [r"the config's folder '.*open' is world-writable without the sticky bit \(mode drwxrwxrwx\)",
                  r"Move the config to a private folder", r"--trust-config"], None,
                 id="config-in-world-writable-folder"),
    pytest.param(call_row(lambda: load_config("/nonexistent/broken.yaml")), ConfigError,
                 [r"^/nonexistent/broken\.yaml: config file not found\. Check the --config path"], None,
                 id="config-file-missing"),
    pytest.param(config_row(lambda c, ctx: None, device="cuda:99"), ConfigError,
                 [r"--device: 'cuda:99' requested but"], 1, id="missing-cuda-device"),
    pytest.param(run_dir_row(_run_dir_under_a_file), ConfigError,
                 [r"run dir '.*not-a-folder/run': cannot be created because '.*not-a-folder' is a file",
                  r"Choose another --run-dir"], None, id="run-dir-under-a-file"),
    pytest.param(run_dir_row(lambda ctx: Path("/sys/geokt-reliability-test/run")), ConfigError,
                 [r"run dir '/sys/geokt-reliability-test/run': cannot be created: '/sys' is not writable",
                  r"Choose a writable --run-dir"], None, id="unwritable-run-dir"),
    pytest.param(run_dir_row(_finished), ConfigError,
                 [r"already holds a finished run \(last\.pt, metrics\.csv, done\); refusing to overwrite it\. "
                  r"Pass --overwrite to replace it"], None, id="finished-run-without-overwrite"),
    pytest.param(run_dir_row(lambda ctx: ctx.run_dir), ConfigError,
                 [r"already holds an unfinished run \(last\.pt\)", r"Pass --resume to continue it, or --overwrite"],
                 None, id="unfinished-run-without-resume"),
    pytest.param(run_dir_row(_started), ConfigError,
                 [r"already holds a run that never finished an epoch \(manifest\.json\)", r"Pass --overwrite to start "
                  r"it again"], None, id="run-killed-before-first-epoch"),
    pytest.param(run_dir_row(_empty_run_dir, resume=True), ConfigError,
                 [r"--resume given but there is no last\.pt to resume from", r"Drop --resume"], None,
                 id="resume-without-checkpoint"),
    pytest.param(run_dir_row(lambda ctx: ctx.run_dir, resume=True, overwrite=True), ConfigError,
                 [r"--resume and --overwrite exclude each other"], None, id="resume-and-overwrite"),
    # --- tensors reaching the losses ---
    pytest.param(call_row(lambda: GF.local_distance_loss(_randn(2, 4, 3, 3), _randn(3, 4, 3, 3))), ValueError,
                 [r"local_distance_loss: batch sizes differ, student \(2, 4, 3, 3\) vs teacher \(3, 4, 3, 3\)",
                  r"same batch"], None, id="batch-mismatch"),
    pytest.param(call_row(lambda: GF.neighbor_kl_loss(_randn(2, 10), _randn(2, 4, 3, 3))), ValueError,
                 [r"neighbor_kl_loss: expected 4-D feature maps \(B, C, H, W\), got student \(2, 10\) and teacher "
                  r"\(2, 4, 3, 3\)", r"Hook a convolutional layer's output"], None, id="2d-tensor-functional"),
    pytest.param(call_row(lambda: GF.neighbor_rank_loss(_randn(2, 4, 1, 1), _randn(2, 8, 4, 4))), ValueError,
                 [r"at least 2 local features, but student \(2, 4, 1, 1\) and teacher \(2, 8, 4, 4\) align to 1x1",
                  r"scope 'batch'"], None, id="1x1-map-functional"),
    pytest.param(call_row(_loss_on_missing_hook), ValueError,
                 [r"GeoKTDistanceLoss: student io_dict has no entry 'layer3' \(hooked: \['\.', 'layer2'\]\)",
                  r"Add 'layer3' to train\.student\.forward_hook\.output"], None, id="io-dict-missing-path"),
]


@pytest.mark.parametrize(("action", "error", "patterns", "n_problems"), ROWS)
def test_broken_input_gives_one_clear_error_and_loses_nothing(tmp_path, monkeypatch, action, error, patterns,
                                                              n_problems):
    ctx = Ctx(tmp_path, monkeypatch)
    call = action(ctx)
    before = ctx.snapshot()
    with pytest.raises(error) as info:
        call()
    message = str(info.value)
    for pattern in patterns:
        assert re.search(pattern, message), f"{pattern!r} not in:\n{message}"
    assert "Traceback" not in message and "KeyError" not in type(info.value).__name__
    if n_problems is not None:
        assert isinstance(info.value, ConfigError)
        assert len(info.value.problems) == n_problems, message
        assert message.startswith(f"{SOURCE}: "), message
        if n_problems == 1:
            assert "\n" not in message, "a single problem is reported on one line"
    assert ctx.snapshot() == before, "the run directory changed"


def test_broken_inputs_table_is_large_enough():
    assert len(ROWS) >= 25
    assert len({row.id for row in ROWS}) == len(ROWS)


def test_broken_inputs_trust_config_accepts_a_world_writable_config(tmp_path):
    path = tmp_path / SOURCE
    path.write_text("models: {student_model: {key: resnet20}}\n")
    path.chmod(0o666)
    assert load_config(path, trust_config=True) == {"models": {"student_model": {"key": "resnet20"}}}


def test_broken_inputs_base_config_is_valid():
    """The rows break a setup that passes every check, so each row's error comes from its own change."""
    notes = check_config(base_config(), config_path=SOURCE)
    assert any(re.match(r"ok: train\.criterion\.kwargs\.sub_terms\.geo: GeoKTDistanceLoss on student "
                        r"\(2, 32, 16, 16\) / teacher \(2, 32, 16, 16\), 256 points per set", n) for n in notes), notes
    assert not [n for n in notes if n.startswith("warning")], notes


def test_broken_inputs_all_problems_are_listed_together():
    config = base_config()
    config["train"]["optimizer"]["key"] = "SDG"
    geo(config)["scope"] = "img"
    term(config)["weight"] = -2
    with pytest.raises(ConfigError) as info:
        check_config(config, config_path=SOURCE)
    assert len(info.value.problems) == 3
    lines = str(info.value).splitlines()
    assert lines[0] == f"{SOURCE}: 3 problems:"
    assert [re.sub(r"^  \d\. ", "", line).split(":")[0] for line in lines[1:]] == [
        "train.criterion.kwargs.sub_terms.geo.weight", "train.criterion.kwargs.sub_terms.geo.criterion.kwargs",
        "train.optimizer.key"]


# ----------------------------------------------------------------------------------------------------------------
# Through the CLI (subprocess): exit code 2, one line on stderr, a traceback only with --debug, nothing touched
# ----------------------------------------------------------------------------------------------------------------

CLI_YAML = """\
dependencies: [{name: geokt_plugin}]
datasets:
  fmnist/train: !import_call
    key: 'geokt_plugin.data.fashion_mnist'
    init: {kwargs: {split: 'train', subset_size: 16, seed: 0}}
models:
  teacher_model: {key: 'resnet', kwargs: {depth: 8, num_classes: 10, pretrained: False, progress: False}}
  student_model: {key: 'resnet', kwargs: {depth: 8, num_classes: 10, pretrained: False, progress: False}}
train:
  num_epochs: 1
  train_data_loader:
    dataset_id: 'fmnist/train'
    sampler: {class_or_func: !import_get {key: 'torch.utils.data.RandomSampler'}, kwargs: {}}
    kwargs: {batch_size: 8}
  teacher: {forward_proc: 'forward_batch_only', forward_hook: {input: [], output: ['layer2']}, requires_grad: False}
  student: {forward_proc: 'forward_batch_only', forward_hook: {input: [], output: ['HOOK']}, requires_grad: True}
  optimizer: {key: 'SGD', kwargs: {lr: 0.1}}
  criterion:
    key: 'WeightedSumLoss'
    kwargs:
      sub_terms:
        geo:
          criterion: {key: 'LOSS', kwargs: {student_module_path: 'HOOK', teacher_module_path: 'layer2'}}
          weight: 1.0
"""


def cli(ctx: Ctx, *, hook: str = "layer2", loss: str = "GeoKTDistanceLoss", extra: tuple[str, ...] = (),
        run_dir: Path | None = None, script: bool = False) -> subprocess.CompletedProcess:
    """Run the CLI in a subprocess: ``python -m geokt_plugin.train``, or the installed ``geokt-train`` script."""
    config = ctx.tmp / SOURCE
    config.write_text(CLI_YAML.replace("HOOK", hook).replace("LOSS", loss))
    entry = [str(Path(sys.executable).with_name("geokt-train"))] if script else [sys.executable, "-m",
                                                                               "geokt_plugin.train"]
    cmd = [*entry, "--config", str(config), "--run-dir", str(run_dir or ctx.run_dir), "--device", "cpu", *extra]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("geokt-train: error:")]


@pytest.mark.slow
def test_broken_inputs_cli_unknown_key_exits_2_with_one_line_and_keeps_the_run_dir(tmp_path):
    ctx = Ctx(tmp_path)
    before = ctx.snapshot()
    # --overwrite on purpose: even a run that may replace the folder must fail before touching it.
    done = cli(ctx, loss="GeoKTDistanseLoss", extra=("--overwrite",), script=True)
    assert done.returncode == 2, done.stderr[-3000:]
    lines = error_lines(done.stderr)
    assert len(lines) == 1, done.stderr[-3000:]
    assert re.search(r"broken\.yaml: train\.criterion\.kwargs\.sub_terms\.geo\.criterion\.key: unknown criterion key "
                     r"'GeoKTDistanseLoss'\. Did you mean 'GeoKTDistanceLoss'", lines[0]), lines[0]
    assert "Traceback" not in done.stderr
    assert ctx.snapshot() == before


@pytest.mark.slow
def test_broken_inputs_cli_debug_shows_the_traceback(tmp_path):
    ctx = Ctx(tmp_path)
    before = ctx.snapshot()
    done = cli(ctx, hook="fc", extra=("--overwrite", "--debug"))
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" in done.stderr
    lines = error_lines(done.stderr)
    assert len(lines) == 1 and "reads student 'fc' (output) of shape (2, 10)" in lines[0], done.stderr[-3000:]
    assert ctx.snapshot() == before


@pytest.mark.slow
def test_broken_inputs_cli_check_on_a_bad_config_exits_2_and_creates_nothing(tmp_path):
    ctx = Ctx(tmp_path)
    fresh = tmp_path / "never-created"
    bad = cli(ctx, hook="avgpool", extra=("--check",), run_dir=fresh)
    assert bad.returncode == 2
    lines = error_lines(bad.stderr)
    assert len(lines) == 1 and "align to 1x1 = 1 local feature(s) per image" in lines[0], bad.stderr[-3000:]
    assert "Traceback" not in bad.stderr and not fresh.exists()


def run_main(ctx: Ctx, capsys, *, run_dir: Path, extra: tuple[str, ...] = (),
             edit: Callable[[str], str] = lambda text: text) -> tuple[int, str]:
    """The same entry point in this process (no interpreter start-up): exit code and stderr. ``edit`` breaks the
    valid YAML text first."""
    from geokt_plugin.runner import main

    config = ctx.tmp / SOURCE
    config.write_text(edit(CLI_YAML.replace("HOOK", "layer2").replace("LOSS", "GeoKTDistanceLoss")))
    code = main(["--config", str(config), "--run-dir", str(run_dir), "--device", "cpu", *extra])
    return code, capsys.readouterr().err


def test_broken_inputs_cli_check_on_a_good_config_writes_nothing(tmp_path, capsys):
    ctx = Ctx(tmp_path)
    fresh = tmp_path / "never-created"
    code, err = run_main(ctx, capsys, run_dir=fresh, extra=("--check",))
    assert code == 0, err
    assert not fresh.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([SOURCE, "run"])


def test_broken_inputs_cli_unfinished_run_dir_needs_a_flag(tmp_path, capsys):
    ctx = Ctx(tmp_path)
    before = ctx.snapshot()
    code, err = run_main(ctx, capsys, run_dir=ctx.run_dir)
    assert code == 2, err
    lines = error_lines(err)
    assert len(lines) == 1 and "--overwrite" in lines[0] and "--resume" in lines[0], err
    assert "Traceback" not in err
    assert ctx.snapshot() == before


@pytest.mark.parametrize(("edit", "expected"), [
    pytest.param(lambda t: t.replace("kwargs: {lr: 0.1}", "kwargs: {lr: 1e-3}"),
                 "train.optimizer.kwargs.lr: '1e-3' is a string, not a number. Write 1.0e-3: YAML 1.1 reads 1e-3 "
                 "without a dot as a string.", id="lr-exponent-without-dot"),
    pytest.param(lambda t: t.replace("  num_epochs: 1\n", "  num_epochs: 1\n  log_freq: 5\n  num_epochs: 3\n"),
                 "train.num_epochs: duplicate key 'num_epochs' at lines 10 and 12", id="duplicate-key"),
    pytest.param(lambda t: t.replace("kwargs: {batch_size: 8}", "kwargs: {batch_size: 32, drop_last: True}"),
                 "train.train_data_loader.kwargs.batch_size: 32 is larger than datasets.fmnist/train (16 samples) "
                 "and drop_last is true, so every epoch would have zero steps", id="zero-steps-per-epoch"),
    pytest.param(lambda t: t.replace("weight: 1.0", "weight: 1.0\n          criterion_wrapper: {}").replace(
        "teacher_module_path: 'layer2'}", "teacher_module_path: 'layer2', reduction: 'none'}"),
                 "train.criterion.kwargs.sub_terms.geo: gives a tensor of shape (2,) on one training batch, not a "
                 "scalar", id="reduction-none"),
    pytest.param(lambda t: t[:t.index("\ntrain:") + 1], "train: missing top-level section 'train'",
                 id="no-train-section"),
])
def test_broken_inputs_cli_check_exits_2_with_the_message_and_keeps_the_run_dir(tmp_path, capsys, edit, expected):
    """Through the CLI's entry point: ``--check`` and a run with ``--overwrite`` both stop with exit code 2."""
    ctx = Ctx(tmp_path)
    before = ctx.snapshot()
    for extra in (("--check",), ("--overwrite",)):
        code, err = run_main(ctx, capsys, run_dir=ctx.run_dir, extra=extra, edit=edit)
        assert code == 2, err
        lines = error_lines(err)
        assert len(lines) == 1 and expected in lines[0], err
        assert "Traceback" not in err and "KeyError" not in err
    assert ctx.snapshot() == before

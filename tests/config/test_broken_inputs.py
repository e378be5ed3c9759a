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
    """What a row may use: a scratch folder and the seeded run directory."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
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
def test_broken_input_gives_one_clear_error_and_loses_nothing(tmp_path, action, error, patterns, n_problems):
    ctx = Ctx(tmp_path)
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


def run_main(ctx: Ctx, capsys, *, run_dir: Path, extra: tuple[str, ...] = ()) -> tuple[int, str]:
    """The same entry point in this process (no interpreter start-up): exit code and stderr."""
    from geokt_plugin.runner import main

    config = ctx.tmp / SOURCE
    config.write_text(CLI_YAML.replace("HOOK", "layer2").replace("LOSS", "GeoKTDistanceLoss"))
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

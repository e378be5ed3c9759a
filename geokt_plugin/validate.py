"""Pre-flight checks for ``geokt-train``: catch a broken config before anything is built, trained or written.

Runner-facing API (keep these signatures stable; changes are announced here first):

- ``load_config(path, *, trust_config=False) -> dict``: read a torchdistill YAML with its tags. Failures while
  the tags run (``!import_call`` datasets build at load time) become :class:`ConfigError` naming the file, the
  line and the dataset id. Refuses world-writable configs unless ``trust_config`` (``--trust-config``), because
  a config can import and call arbitrary code.
- ``check_config(config, *, config_path, device="cpu", load_checkpoints=True, input_shape=None) -> list[str]``:
  every check below; returns notes (``"ok: ..."`` and ``"warning: ..."`` lines) or raises one
  :class:`ConfigError` listing every problem found. ``input_shape`` (keyword, optional) overrides the
  ``(C, H, W)`` of the dummy forward; otherwise the top-level config key ``check_input_shape``, then the first
  sample of the training dataset, then ``(3, 32, 32)``.
- ``check_run_dir(run_dir, *, resume, overwrite) -> list[str]``: writable; a previous run (finished or not) is
  never replaced without ``overwrite``; ``resume`` needs a ``last.pt``. Writes nothing but a probe file that it
  removes at once (in the nearest existing ancestor when ``run_dir`` does not exist yet).
- ``check_config_trust(path, *, trust_config) -> None``: the world-writable rule on its own.

``check_config`` checks, in order: the config is a mapping with ``models``, ``train`` and ``datasets`` and a
``models.student_model``; ``dependencies`` import, and configs that use ``GeoKT*`` keys list ``geokt_plugin``;
every registry key (models, criteria at every level, loss wrappers, optimizer, scheduler, auxiliary wrappers,
forward and pre/post processes) exists, with a did-you-mean suggestion; every loss's ``kwargs`` is present and
constructs; weights are finite numbers >= 0; ``num_epochs`` is a positive integer; data loaders name existing
datasets; every hooked path exists in the model it targets (auxiliary wrapper included), with the three nearest
valid paths; the module paths each loss reads are hooked; one dummy forward on the meta device (CPU fallback)
shows that every GeoKT pair reads 4-D maps with at least 2 local features after alignment; ``src_ckpt`` files
exist and fit their model under a strict load.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import math
import os
import re
import stat
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torchvision  # noqa: F401  (torchdistill.datasets needs sys.modules['torchvision.datasets'])
import yaml
from torch import Tensor, nn

from .model_state import read_model_state, state_mismatch

__all__ = [
    "DEFAULT_INPUT_SHAPE",
    "FINISHED_MARKER",
    "ConfigError",
    "check_config",
    "check_config_trust",
    "check_run_dir",
    "load_config",
]

DEFAULT_INPUT_SHAPE = (3, 32, 32)
FINISHED_MARKER = "done"  # written by the runner into the run dir when a run completes
# What marks a folder as holding an earlier run (manifest.json is written before the first epoch starts).
_RUN_FILES = ("last.pt", "best.pt", "metrics.csv", "manifest.json", FINISHED_MARKER)
_IO_NAMES = ("input", "output")
_SELF_PATH = "."  # torchdistill's path of the model's own output, always present in the io_dict
_DEPENDENCY_HINT = "add `dependencies: [{name: geokt_plugin}]` at the top level of the config"


class ConfigError(ValueError):
    """A config, run directory or input that cannot work; the message says where, what, what is allowed, the fix.

    Attributes:
        problems: one line per problem (``"<yaml path>: <what>. <fix>"``), in the order found.
    """

    def __init__(self, message: str, problems: Sequence[str] | None = None) -> None:
        super().__init__(message)
        self.problems = list(problems) if problems is not None else [message]

    @classmethod
    def from_problems(cls, source: str, problems: Sequence[str]) -> ConfigError:
        """One error for all ``problems`` of ``source`` (a config file or a run directory)."""
        if len(problems) == 1:
            return cls(f"{source}: {problems[0]}", problems)
        lines = "\n".join(f"  {i}. {p}" for i, p in enumerate(problems, 1))
        return cls(f"{source}: {len(problems)} problems:\n{lines}", problems)


# ----------------------------------------------------------------------------------------------------------------
# Small helpers
# ----------------------------------------------------------------------------------------------------------------


def _suggest(word: str, candidates: Sequence[str], n: int = 3, cutoff: float = 0.6) -> list[str]:
    """Closest spellings of ``word`` (case-insensitive match first)."""
    exact = [c for c in candidates if c.lower() == str(word).lower()]
    close = difflib.get_close_matches(str(word), list(candidates), n=n, cutoff=cutoff)
    return list(dict.fromkeys(exact + close))[:n]


def _did_you_mean(word: str, candidates: Sequence[str]) -> str:
    close = _suggest(word, candidates)
    if not close:
        return ""
    return " Did you mean " + " or ".join(repr(c) for c in close) + "?"


def _nearest(word: str, candidates: Sequence[str], n: int = 3) -> list[str]:
    """The ``n`` nearest candidates, however far (used for module paths, where any hint helps)."""
    return _suggest(word, candidates, n=n, cutoff=0.0)


def _shape(x: Any) -> str:
    return str(tuple(x.shape)) if isinstance(x, Tensor) else type(x).__name__


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class _Report:
    """Collects problems (raised together at the end) and notes (returned to the caller)."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        self.notes: list[str] = []

    def error(self, where: str, message: str) -> None:
        self.problems.append(f"{where}: {message}" if where else message)

    def ok(self, message: str) -> None:
        self.notes.append(f"ok: {message}")

    def warn(self, message: str) -> None:
        self.notes.append(f"warning: {message}")

    def mapping(self, parent: Mapping, key: str, where: str, *, required: bool, example: str) -> Mapping | None:
        """``parent[key]`` if it is a mapping; record a problem when it is missing (and required) or not a mapping."""
        if key not in parent or parent[key] is None:
            if required:
                self.error(where, f"missing. Add it, e.g. {example}")
            return None
        value = parent[key]
        if not isinstance(value, Mapping):
            self.error(where, f"must be a mapping, got {type(value).__name__} {_short(value)}. Write it as {example}")
            return None
        return value


# ----------------------------------------------------------------------------------------------------------------
# Registries
# ----------------------------------------------------------------------------------------------------------------


class _Registries:
    """torchdistill's registry dicts, read after the config's dependencies are imported."""

    def __init__(self) -> None:
        import torchdistill.core  # noqa: F401  (fills the forward/pre/post process registries)
        import torchdistill.losses  # noqa: F401
        import torchdistill.models  # noqa: F401
        from torchdistill.core.interfaces import registry as proc
        from torchdistill.losses import registry as loss
        from torchdistill.models import registry as model
        from torchdistill.optim import registry as optim

        self.high_level = loss.HIGH_LEVEL_LOSS_DICT
        self.mid_level = loss.MIDDLE_LEVEL_LOSS_DICT
        self.low_level = {**loss.LOSS_DICT, **loss.LOW_LEVEL_LOSS_DICT}
        self.loss_wrapper = loss.LOSS_WRAPPER_DICT
        self.func2extract = loss.FUNC2EXTRACT_MODEL_OUTPUT_DICT
        self.model = model.MODEL_DICT
        self.aux_wrapper = model.AUXILIARY_MODEL_WRAPPER_DICT
        self.adaptation = {**model.MODULE_DICT, **model.ADAPTATION_MODULE_DICT}
        self.optimizer = optim.OPTIM_DICT
        self.scheduler = optim.SCHEDULER_DICT
        self.procs = {
            "forward_proc": proc.FORWARD_PROC_FUNC_DICT,
            "pre_epoch_process": proc.PRE_EPOCH_PROC_FUNC_DICT,
            "pre_forward_process": proc.PRE_FORWARD_PROC_FUNC_DICT,
            "post_forward_process": proc.POST_FORWARD_PROC_FUNC_DICT,
            "post_epoch_process": proc.POST_EPOCH_PROC_FUNC_DICT,
        }
        self.torchvision_models = set(torchvision.models.list_models())

    def mid_level_keys(self) -> list[str]:
        # torch.nn.modules.loss also exports helpers (Module, Tensor, ...); only suggest real losses.
        low = [k for k in self.low_level if k.endswith("Loss") and not k.startswith("_")]
        return sorted(set(self.mid_level) | set(low))

    def model_keys(self) -> list[str]:
        return sorted(set(self.model) | self.torchvision_models)

    @staticmethod
    def public(d: Mapping[str, Any], base: type | None = None) -> list[str]:
        keys = []
        for k, v in d.items():
            if k.startswith("_"):
                continue
            if base is not None and inspect.isclass(v) and not issubclass(v, base):
                continue
            keys.append(k)
        return sorted(keys)


def _kwarg_hints(cls: Callable, kwargs: Mapping) -> str:
    """`` Did you mean 'neighbors' for 'neighbours'?`` for keyword arguments the constructor does not name."""
    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return ""
    names = [n for n, p in params.items() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
    hints = []
    for key in kwargs:
        if key not in params:
            close = _suggest(str(key), names, n=1)
            if close:
                hints.append(f"{close[0]!r} for {key!r}")
    return f" Did you mean {', '.join(hints)}?" if hints else ""


def _unknown_key(kind: str, key: Any, known: Sequence[str], *, uses_geokt: bool, fix: str = "Fix the spelling.") -> str:
    """Message for a key that no registry holds."""
    if not isinstance(key, str):
        return f"{kind} key must be a string, got {type(key).__name__} {_short(key)}. Use a registered name."
    msg = f"unknown {kind} key {key!r}.{_did_you_mean(key, known)}"
    if key.startswith("GeoKT") and not uses_geokt:
        msg += f" GeoKT* keys are registered when geokt_plugin is imported: {_DEPENDENCY_HINT}."
    elif not _suggest(key, known):
        msg += f" Registered keys include {sorted(known)[:8]} ({len(known)} in all)."
    else:
        msg += f" {fix}"
    return msg


# ----------------------------------------------------------------------------------------------------------------
# load_config and the trust rule
# ----------------------------------------------------------------------------------------------------------------


def check_config_trust(path: str | os.PathLike, *, trust_config: bool) -> None:
    """Refuse a config that other users could have edited: YAML tags import and call arbitrary code.

    A config is refused when the file is world-writable, or when its folder is world-writable unless the folder has
    the sticky bit and the file is ours (the runner's rule). ``trust_config=True`` (``--trust-config``) skips it.
    """
    if trust_config:
        return
    file = Path(path)
    problems = []
    mode = file.stat().st_mode
    if mode & stat.S_IWOTH:
        problems.append(
            f"the config file is world-writable (mode {stat.filemode(mode)}), so any user could make it run code "
            "(torchdistill's !import_call and similar tags import and call Python). Run `chmod o-w` on it, or pass "
            "--trust-config if you accept that."
        )
    folder_mode = file.resolve().parent.stat().st_mode
    ours = file.stat().st_uid == os.getuid()
    if folder_mode & stat.S_IWOTH and not (folder_mode & stat.S_ISVTX and ours):
        why = "without the sticky bit" if not folder_mode & stat.S_ISVTX else "and the config belongs to another user"
        problems.append(
            f"the config's folder {str(file.resolve().parent)!r} is world-writable {why} (mode "
            f"{stat.filemode(folder_mode)}), so another user could replace the config and make it run code. Move "
            "the config to a private folder, or pass --trust-config if you accept that."
        )
    if problems:
        raise ConfigError.from_problems(str(path), problems)


class _ConstructionFailed(Exception):
    """Carries the innermost YAML node whose construction raised."""

    def __init__(self, node: yaml.Node, exc: BaseException) -> None:
        super().__init__(str(exc))
        self.node = node
        self.exc = exc


def _register_torchdistill_tags() -> None:
    """The constructors torchdistill's ``load_yaml_file`` installs (it adds them to the global ``FullLoader``)."""
    from torchdistill.common import yaml_util

    tags = {
        "!join": "yaml_join", "!pathjoin": "yaml_pathjoin", "!expanduser": "yaml_expanduser",
        "!abspath": "yaml_abspath", "!import_get": "yaml_import_get", "!import_call": "yaml_import_call",
        "!import_call_method": "yaml_import_call_method", "!call_method": "yaml_call_method",
        "!getattr": "yaml_getattr", "!setattr": "yaml_setattr",
        "!access_by_index_or_key": "yaml_access_by_index_or_key",
    }
    for tag, name in tags.items():
        yaml.add_constructor(tag, getattr(yaml_util, name), Loader=yaml.FullLoader)


class _TracingLoader(yaml.FullLoader):
    """``FullLoader`` (with torchdistill's tags) that remembers which node failed to construct."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except _ConstructionFailed:
            raise
        except Exception as exc:  # noqa: BLE001  (re-raised with the node attached)
            raise _ConstructionFailed(node, exc) from exc


def _dataset_id_at(text: str, line: int) -> str | None:
    """The top-level ``datasets`` entry whose YAML block contains 0-based ``line``, if any."""
    try:
        root = yaml.compose(text, Loader=yaml.BaseLoader)
    except yaml.YAMLError:
        return None
    if not isinstance(root, yaml.MappingNode):
        return None
    for key_node, value_node in root.value:
        if key_node.value == "datasets" and isinstance(value_node, yaml.MappingNode):
            for ds_key, ds_value in value_node.value:
                if ds_key.start_mark.line <= line <= ds_value.end_mark.line:
                    return str(ds_key.value)
    return None


def load_config(path: str | os.PathLike, *, trust_config: bool = False) -> dict:
    """Load a torchdistill YAML config, turning every failure into a :class:`ConfigError`.

    Args:
        path: the YAML file.
        trust_config: skip the world-writable rule of :func:`check_config_trust`.

    Returns:
        The loaded mapping (datasets written with ``!import_call`` are already built objects).

    Raises:
        ConfigError: missing or unreadable file, YAML syntax error, a tag that failed (with the file, the line and,
            under ``datasets``, the dataset id), or a document that is not a mapping.
    """
    source = str(path)
    file = Path(path)
    if not file.is_file():
        hint = " (it is a directory)" if file.is_dir() else ""
        raise ConfigError(f"{source}: config file not found{hint}. Check the --config path.")
    check_config_trust(file, trust_config=trust_config)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{source}: cannot read the config ({type(exc).__name__}: {exc}).") from exc
    _register_torchdistill_tags()
    loader = _TracingLoader(text)
    try:
        config = loader.get_single_data()
    except _ConstructionFailed as failed:
        line = failed.node.start_mark.line
        dataset_id = _dataset_id_at(text, line)
        exc = failed.exc
        cause = f"{type(exc).__name__}: {exc}"
        if dataset_id is not None:
            raise ConfigError(
                f"{source}: datasets.{dataset_id} (line {line + 1}) could not be built: {cause}. Fix the dataset's "
                "root/kwargs, or install the data it needs."
            ) from exc
        raise ConfigError(
            f"{source}: line {line + 1}: the YAML tag {failed.node.tag} failed: {cause}. Fix that entry."
        ) from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{source}: {where}invalid YAML ({problem}). Fix the syntax there.") from exc
    finally:
        loader.dispose()
    if not isinstance(config, Mapping):
        raise ConfigError(f"{source}: {_not_a_mapping(config)}")
    return dict(config)


def _not_a_mapping(config: Any) -> str:
    return (
        f"the config must be a YAML mapping with the sections 'models', 'train' and 'datasets', got "
        f"{type(config).__name__} {_short(config)}. Start from a config under configs/."
    )


# ----------------------------------------------------------------------------------------------------------------
# Model building (meta device first, CPU if an op has no meta kernel)
# ----------------------------------------------------------------------------------------------------------------


class _BuiltModel:
    """A model built for checking, with where it came from."""

    def __init__(self, model: nn.Module, key: str, device: torch.device) -> None:
        self.model = model
        self.key = key
        self.device = device


def _model_factory(reg: _Registries, key: str, repo_or_dir: Any) -> Callable[..., nn.Module] | None:
    if repo_or_dir is not None:
        return None
    if key in reg.model:  # the runner's order: torchdistill's registry first, then torchvision
        return reg.model[key]
    if key in reg.torchvision_models:
        return lambda **kw: torchvision.models.get_model(key, **kw)
    return None


def _build_model(factory: Callable[..., nn.Module], kwargs: Mapping, device: torch.device) -> nn.Module:
    # Never download while checking: pretrained weights are not part of the structure.
    kwargs = dict(kwargs)
    if kwargs.get("pretrained"):
        kwargs["pretrained"] = False
    if kwargs.get("weights") is not None:
        kwargs["weights"] = None
    with torch.device(device):
        return factory(**kwargs)


def _resolve(root: nn.Module, path: str) -> nn.Module | None:
    """torchdistill's ``get_module`` without its warning: attribute names, Sequential/ModuleList indices."""
    module: Any = root
    for name in path.split("."):
        if name and hasattr(module, name):
            module = getattr(module, name)
        elif isinstance(module, (nn.Sequential, nn.ModuleList)) and name.lstrip("-").isdigit():
            try:
                module = module[int(name)]
            except IndexError:
                return None
        else:
            return None
    return module if isinstance(module, nn.Module) else None


def _module_paths(root: nn.Module) -> list[str]:
    return [name for name, _ in root.named_modules() if name]


# ----------------------------------------------------------------------------------------------------------------
# check_config
# ----------------------------------------------------------------------------------------------------------------


class _Term:
    """One mid-level loss term of a criterion, with its YAML path and (when it constructed) the module."""

    def __init__(self, where: str, key: str, kwargs: Mapping, module: nn.Module | None) -> None:
        self.where = where
        self.key = key
        self.kwargs = kwargs
        self.module = module


class _Role:
    """The teacher or the student of one stage: its YAML section and the model the box would hook."""

    def __init__(self, name: str, where: str, cfg: Mapping) -> None:
        self.name = name  # "teacher" or "student"
        self.where = where  # e.g. "train.student"
        self.cfg = cfg
        self.ref: nn.Module | None = None  # what non-'+' hook paths resolve against (aux wrapper or model)
        self.target: nn.Module | None = None  # what runs forward (after `sequential` redesign)
        self.hooks: dict[str, set[str]] = {"input": set(), "output": set()}
        self.hooks_ok = True
        self.io_dict: dict[str, dict[str, Any]] = {}
        self.all_outputs: dict[str, Any] = {}


class _Checker:
    def __init__(self, config: Mapping, config_path: str, device: str, load_checkpoints: bool,
                 input_shape: Sequence[int] | None) -> None:
        self.config = config
        self.config_path = config_path
        self.device = device
        self.load_checkpoints = load_checkpoints
        self.input_shape = input_shape
        self.r = _Report()
        self.reg: _Registries | None = None
        self.uses_geokt_dependency = False
        self.models: dict[str, tuple[Callable[..., nn.Module], Mapping, str] | None] = {}
        self.datasets: Mapping = {}
        self.sample_shape: tuple[int, ...] | None = None
        self.unusable_datasets: set = set()

    # -- top level ---------------------------------------------------------------------------------------------

    def run(self) -> list[str]:
        r = self.r
        config = self.config
        if not isinstance(config, Mapping):
            raise ConfigError.from_problems(self.config_path, [_not_a_mapping(config)])
        for section in ("models", "train", "datasets"):
            if section not in config:
                r.error(section, f"missing top-level section {section!r}; a geokt-train config needs 'models', "
                                 "'train' and 'datasets'. Add it (see configs/ for complete examples).")
            elif not isinstance(config[section], Mapping):
                r.error(section, f"must be a mapping, got {type(config[section]).__name__} "
                                 f"{_short(config[section])}.")
        self._check_device()
        self._check_dependencies()
        self.reg = _Registries()
        if isinstance(config.get("models"), Mapping):
            self._check_models(config["models"])
        if isinstance(config.get("datasets"), Mapping):
            self._check_datasets(config["datasets"])
        if isinstance(config.get("train"), Mapping):
            for where, stage in self._stages(config["train"]):
                self._check_stage(where, stage)
        if r.problems:
            raise ConfigError.from_problems(self.config_path, r.problems)
        return r.notes

    def _check_device(self) -> None:
        try:
            dev = torch.device(self.device)
        except (RuntimeError, TypeError) as exc:
            self.r.error("--device", f"invalid device {self.device!r} ({exc}). Use 'cpu', 'cuda' or 'cuda:N'.")
            return
        if dev.type == "cuda" and not torch.cuda.is_available():
            self.r.error("--device", f"{self.device!r} requested but torch.cuda.is_available() is False. Use "
                                     "--device cpu, or run on a machine with a CUDA GPU.")
        elif dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
            self.r.error("--device", f"{self.device!r} requested but only {torch.cuda.device_count()} CUDA "
                                     f"device(s) are visible. Use cuda:0..cuda:{torch.cuda.device_count() - 1}.")

    def _check_dependencies(self) -> None:
        deps = self.config.get("dependencies")
        if deps is None:
            return
        items = [deps] if isinstance(deps, str) else deps
        if not isinstance(items, list):
            self.r.error("dependencies", f"must be a list, got {type(deps).__name__}. Write "
                                         "`dependencies: [{name: geokt_plugin}]`.")
            return
        for i, item in enumerate(items):
            where = f"dependencies[{i}]"
            if isinstance(item, Mapping):
                name, package = item.get("name"), item.get("package")
            elif isinstance(item, (list, tuple)) and item:
                name, package = item[0], (item[1] if len(item) > 1 else None)
            elif isinstance(item, str):
                name, package = item, None
            else:
                self.r.error(where, f"cannot read {_short(item)}; use a module name, [name, package] or "
                                    "{name: ..., package: ...}.")
                continue
            if not isinstance(name, str) or not name:
                self.r.error(where, f"needs a module name, got {_short(item)}. Write {{name: geokt_plugin}}.")
                continue
            try:
                importlib.import_module(name, package)
            except Exception as exc:  # noqa: BLE001  (any import failure is a config problem)
                self.r.error(where, f"cannot import {name!r} ({type(exc).__name__}: {exc}). Install it in this "
                                    "environment, or fix the name.")
                continue
            if name == "geokt_plugin" or name.startswith("geokt_plugin."):
                self.uses_geokt_dependency = True

    # -- models ------------------------------------------------------------------------------------------------

    def _check_models(self, models: Mapping) -> None:
        r = self.r
        assert self.reg is not None
        if "student_model" not in models:
            r.error("models.student_model", "missing; every run trains a student. Add e.g. "
                                            "`student_model: {key: 'resnet20', kwargs: {num_classes: 10}}`.")
        for name in ("teacher_model", "student_model"):
            where = f"models.{name}"
            cfg = r.mapping(models, name, where, required=False, example="{key: 'resnet20', kwargs: {}}")
            if cfg is None:
                continue
            key = cfg.get("key")
            kwargs = cfg.get("kwargs") or {}
            if not isinstance(kwargs, Mapping):
                r.error(f"{where}.kwargs", f"must be a mapping of constructor arguments, got "
                                           f"{type(kwargs).__name__}.")
                continue
            if cfg.get("repo_or_dir") is not None:
                r.warn(f"{where}: built through torch.hub ({cfg['repo_or_dir']!r}); its hooks are not checked.")
                self.models[name] = None
                continue
            factory = _model_factory(self.reg, key, None) if isinstance(key, str) else None
            if factory is None:
                r.error(f"{where}.key", _unknown_key("model", key, self.reg.model_keys(), uses_geokt=True,
                                                     fix="Use a torchdistill model key or a torchvision model name."))
                continue
            built = self._build(factory, kwargs, f"{where}.kwargs", f"model {key!r}")
            if built is None:
                continue
            self.models[name] = (factory, kwargs, key)
            r.ok(f"{where}: {key} ({sum(p.numel() for p in built.model.parameters()):,} parameters)")
            if cfg.get("src_ckpt") is not None:
                self._check_ckpt(cfg["src_ckpt"], f"{where}.src_ckpt", built.model, f"{where} ({key})",
                                 weights_only=True)

    def _build(self, factory: Callable[..., nn.Module], kwargs: Mapping, where: str, what: str) -> _BuiltModel | None:
        for device in (torch.device("meta"), torch.device("cpu")):
            try:
                return _BuiltModel(_build_model(factory, kwargs, device), what, device)
            except NotImplementedError:
                continue  # an op without a meta kernel: build on CPU
            except Exception as exc:  # noqa: BLE001
                self.r.error(where, f"building {what} failed: {type(exc).__name__}: {exc}. Fix the constructor "
                                    "arguments.")
                return None
        return None

    def _fresh_model(self, name: str, device: torch.device) -> nn.Module | None:
        entry = self.models.get(name)
        if entry is None:
            return None
        factory, kwargs, _ = entry
        return _build_model(factory, kwargs, device)

    # -- checkpoints -------------------------------------------------------------------------------------------

    def _check_ckpt(self, ckpt: Any, where: str, model: nn.Module, what: str, *, weights_only: bool) -> None:
        """``weights_only``: how the file will be read (the runner reads models.*.src_ckpt with weights_only=True;
        torchdistill reads train.*.src_ckpt with weights_only=False)."""
        r = self.r
        if not isinstance(ckpt, (str, os.PathLike)):
            r.error(where, f"must be a file path, got {type(ckpt).__name__} {_short(ckpt)}.")
            return
        ckpt = str(ckpt)
        if ckpt.startswith(("http://", "https://")):
            r.warn(f"{where}: {ckpt!r} is a URL; it is not downloaded by the checks.")
            return
        file = Path(os.path.expanduser(ckpt))
        if not file.is_file():
            consequence = "the run would stop when it builds the model"
            if where.startswith("train."):
                consequence = "torchdistill would only log this and start from random weights"
            r.error(where, f"checkpoint file not found: {ckpt!r} (resolved to {str(file.resolve())!r}); "
                           f"{consequence}. Train that model first, fix the path (relative paths start at the working "
                           "directory), or remove src_ckpt.")
            return
        if not self.load_checkpoints:
            r.ok(f"{where}: {ckpt} exists (not loaded)")
            return
        try:
            state = read_model_state(file, weights_only=weights_only)
        except ValueError as exc:
            r.error(where, f"{ckpt!r} {exc}. Point src_ckpt at a file written by torch.save holding a state_dict or "
                           "{'model': state_dict}.")
            return
        problem = state_mismatch(model, state)
        if problem is None:
            r.ok(f"{where}: {ckpt} fits {what} ({len(state)} tensors)")
            return
        r.error(where, f"{ckpt!r} does not load strictly into {what}: {problem}")

    # -- datasets ----------------------------------------------------------------------------------------------

    def _check_datasets(self, datasets: Mapping) -> None:
        r = self.r
        self.datasets = datasets
        if not datasets:
            r.error("datasets", "is empty. Add at least the training dataset (e.g. with `!import_call` on "
                                "geokt_plugin.data.fashion_mnist).")
        for ds_id, ds in datasets.items():
            where = f"datasets.{ds_id}"
            if isinstance(ds, Mapping) or not (hasattr(ds, "__getitem__") and hasattr(ds, "__len__")):
                self.unusable_datasets.add(ds_id)
            if isinstance(ds, Mapping):
                if "splits" in ds or "key" in ds:
                    r.error(where, "uses torchdistill's pre-1.0 schema ({key, splits}); torchdistill 1.x silently "
                                   "builds no loader from it. Build the dataset with `!import_call` instead.")
                else:
                    r.error(where, f"is a mapping {_short(dict(ds))}, not a dataset. Build it with `!import_call` "
                                   "(e.g. key: 'geokt_plugin.data.fashion_mnist').")
                continue
            if not (hasattr(ds, "__getitem__") and hasattr(ds, "__len__")):
                r.error(where, f"is a {type(ds).__name__}, not a dataset (needs __getitem__ and __len__).")
                continue
            try:
                n = len(ds)
            except Exception as exc:  # noqa: BLE001
                r.error(where, f"len() failed ({type(exc).__name__}: {exc}).")
                continue
            if n == 0:
                r.error(where, "is empty (0 samples). Check its root, split and subset arguments.")
                self.unusable_datasets.add(ds_id)
                continue
            r.ok(f"{where}: {n} samples")

    def _first_sample_shape(self, ds_id: str, where: str, collate_fn: Any) -> None:
        """Record the training input shape from the dataset's first sample."""
        ds = self.datasets.get(ds_id)
        if ds is None or ds_id in self.unusable_datasets:
            return
        try:
            sample = ds[0]
        except Exception as exc:  # noqa: BLE001
            self.r.error(f"datasets.{ds_id}", f"reading sample 0 failed ({type(exc).__name__}: {exc}). Check the "
                                             "dataset's files and transform.")
            return
        x = sample[0] if isinstance(sample, (tuple, list)) and sample else sample
        if isinstance(x, Tensor):
            if x.dim() == 3:
                self.sample_shape = tuple(int(s) for s in x.shape)
            return
        if collate_fn is None and type(x).__module__.startswith("PIL"):
            self.r.error(f"datasets.{ds_id}", f"yields {type(x).__name__} images, which the default collate "
                                             f"cannot batch ({where} has no collate_fn). Add a ToTensor transform.")

    # -- stages ------------------------------------------------------------------------------------------------

    def _stages(self, train: Mapping) -> list[tuple[str, Mapping]]:
        stage_keys = sorted((k for k in train if re.fullmatch(r"stage\d+", str(k))), key=lambda k: int(k[5:]))
        if not stage_keys:
            return [("train", train)]
        if stage_keys[0] != "stage1":
            self.r.error("train", f"multi-stage configs start at 'stage1', found {stage_keys}. Rename the stages.")
        stages = []
        for k in stage_keys:
            if isinstance(train[k], Mapping):
                stages.append((f"train.{k}", train[k]))
            else:
                self.r.error(f"train.{k}", f"must be a mapping, got {type(train[k]).__name__}.")
        return stages

    def _check_stage(self, sp: str, stage: Mapping) -> None:
        first = sp in ("train", "train.stage1")
        self._check_num_epochs(sp, stage)
        for loader in ("train_data_loader", "val_data_loader"):
            self._check_loader(sp, stage, loader, required=(loader == "train_data_loader" and first))
        self._check_procs(sp, stage)
        models = self.config.get("models")
        has_teacher = isinstance(models, Mapping) and models.get("teacher_model") is not None
        roles = self._roles(sp, stage, has_teacher, required=first)
        terms = self._check_criterion(sp, stage)
        self._check_optimizer(sp, stage, required=first, student=next((x for x in roles if x.name == "student"), None))
        for role in roles:
            self._check_role(role)
        self._check_term_paths(terms, roles, has_teacher)
        self._dummy_forward(sp, roles, terms)

    def _check_num_epochs(self, sp: str, stage: Mapping) -> None:
        where = f"{sp}.num_epochs"
        if "num_epochs" not in stage:
            self.r.error(where, "missing. Add e.g. `num_epochs: 10` (geokt-train --epochs overrides it).")
            return
        n = stage["num_epochs"]
        if not _is_int(n) or n < 1:
            self.r.error(where, f"must be a positive integer, got {_short(n)} ({type(n).__name__}). Use e.g. 10.")

    def _check_loader(self, sp: str, stage: Mapping, name: str, *, required: bool) -> None:
        r = self.r
        where = f"{sp}.{name}"
        cfg = r.mapping(stage, name, where, required=required,
                        example="{dataset_id: 'fmnist_train', sampler: {class_or_func: ..., kwargs: }, "
                                "kwargs: {batch_size: 64}}")
        if cfg is None:
            return
        ds_id = cfg.get("dataset_id")
        ids = [str(k) for k in self.datasets]
        if ds_id is None:
            r.error(f"{where}.dataset_id", f"missing; torchdistill would silently build no loader. Set it to one "
                                           f"of {ids}.")
        elif ds_id not in self.datasets:
            r.error(f"{where}.dataset_id", f"{ds_id!r} is not an entry of 'datasets' (entries: {ids})."
                                           f"{_did_you_mean(str(ds_id), ids)} Fix the id or add the dataset.")
        elif name == "train_data_loader" and sp in ("train", "train.stage1"):
            self._first_sample_shape(ds_id, where, cfg.get("collate_fn"))
        kwargs = cfg.get("kwargs")
        if not isinstance(kwargs, Mapping):
            r.error(f"{where}.kwargs", f"must be a mapping of DataLoader arguments (torchdistill requires it), got "
                                       f"{_short(kwargs)}. Add e.g. `kwargs: {{batch_size: 64, num_workers: 0}}`.")
        else:
            bs = kwargs.get("batch_size", 1)
            if not _is_int(bs) or bs < 1:
                r.error(f"{where}.kwargs.batch_size", f"must be a positive integer, got {_short(bs)}.")
        sampler = cfg.get("sampler")
        if not isinstance(sampler, Mapping) or not callable(sampler.get("class_or_func")):
            got = _short(sampler.get("class_or_func") if isinstance(sampler, Mapping) else sampler)
            r.error(f"{where}.sampler.class_or_func", f"must be a sampler class, got {got}. Add `sampler: "
                                                      "{class_or_func: !import_get {key: "
                                                      "'torch.utils.data.RandomSampler'}, kwargs: }`.")

    def _check_procs(self, sp: str, stage: Mapping) -> None:
        assert self.reg is not None
        for name in ("pre_epoch_process", "pre_forward_process", "post_forward_process", "post_epoch_process"):
            if name in stage and stage[name] not in self.reg.procs[name]:
                self.r.error(f"{sp}.{name}", _unknown_key(name, stage[name], sorted(self.reg.procs[name]),
                                                          uses_geokt=self.uses_geokt_dependency))
        f2e = (stage.get("criterion") or {}).get("func2extract_model_loss") if isinstance(
            stage.get("criterion"), Mapping) else None
        if f2e is not None and f2e not in self.reg.func2extract:
            self.r.error(f"{sp}.criterion.func2extract_model_loss",
                         _unknown_key("func2extract_model_loss", f2e, sorted(self.reg.func2extract),
                                      uses_geokt=self.uses_geokt_dependency))

    def _roles(self, sp: str, stage: Mapping, has_teacher: bool, *, required: bool) -> list[_Role]:
        """The stage's teacher/student sections (a later stage may omit one: torchdistill keeps the previous)."""
        roles = []
        names = ("teacher", "student") if has_teacher else ("student",)
        for name in names:
            section = name
            if name == "student" and not has_teacher and "model" in stage:
                section = "model"  # torchdistill's TrainingBox reads train.model (the runner maps student to it)
            where = f"{sp}.{section}"
            cfg = self.r.mapping(stage, section, where, required=required,
                                 example="{forward_proc: 'forward_batch_only', forward_hook: {input: [], output: []}}")
            if cfg is not None:
                roles.append(_Role(name, where, cfg))
        return roles

    # -- criterion ---------------------------------------------------------------------------------------------

    def _check_criterion(self, sp: str, stage: Mapping) -> list[_Term]:
        r = self.r
        assert self.reg is not None
        where = f"{sp}.criterion"
        crit = r.mapping(stage, "criterion", where, required=True,
                         example="{key: 'WeightedSumLoss', kwargs: {sub_terms: {...}}}")
        if crit is None:
            return []
        key = crit.get("key")
        if key not in self.reg.high_level:
            msg = _unknown_key("high-level criterion", key, sorted(self.reg.high_level), uses_geokt=True)
            if isinstance(key, str) and key in self.reg.mid_level_keys():
                msg = (f"{key!r} is a mid-level loss; the top-level criterion must be one of "
                       f"{sorted(self.reg.high_level)}. Put {key!r} under kwargs.sub_terms.<name>.criterion.")
            r.error(f"{where}.key", msg)
            return []
        kwargs = crit.get("kwargs")
        if not isinstance(kwargs, Mapping):
            r.error(f"{where}.kwargs", f"must be a mapping with sub_terms, got {_short(kwargs)}.")
            return []
        model_term = kwargs.get("model_term")
        if isinstance(model_term, Mapping) and "weight" in model_term:
            self._check_weight(model_term["weight"], f"{where}.kwargs.model_term.weight")
        sub_terms = kwargs.get("sub_terms")
        if not isinstance(sub_terms, Mapping) or not sub_terms:
            if not (isinstance(model_term, Mapping) and model_term):
                r.error(f"{where}.kwargs.sub_terms", f"must be a non-empty mapping of loss terms, got "
                                                     f"{_short(sub_terms)}; with no terms nothing is trained.")
            return []
        terms = []
        for name, term in sub_terms.items():
            term_where = f"{where}.kwargs.sub_terms.{name}"
            terms.extend(self._check_term(term, term_where))
        return terms

    def _check_term(self, term: Any, where: str) -> list[_Term]:
        r = self.r
        assert self.reg is not None
        if not isinstance(term, Mapping):
            r.error(where, f"must be a mapping {{criterion: {{key, kwargs}}, weight}}, got {_short(term)}.")
            return []
        if "weight" not in term:
            r.error(f"{where}.weight", "missing (torchdistill requires it). Add e.g. `weight: 1.0`.")
        else:
            self._check_weight(term["weight"], f"{where}.weight")
        if isinstance(term.get("criterion"), nn.Module):
            return []  # a pre-built loss (torchdistill PR #399): nothing to check here
        crit = r.mapping(term, "criterion", f"{where}.criterion", required=True,
                         example="{key: 'GeoKTDistanceLoss', kwargs: {student_module_path: 'layer2', ...}}")
        if crit is None:
            return []
        key = crit.get("key")
        known = self.reg.mid_level_keys()
        if not isinstance(key, str) or (key not in self.reg.mid_level and key not in self.reg.low_level):
            r.error(f"{where}.criterion.key",
                    _unknown_key("criterion", key, known, uses_geokt=self.uses_geokt_dependency))
            return []
        if key.startswith("GeoKT") and not self.uses_geokt_dependency:
            r.error(f"{where}.criterion.key", f"{key!r} is provided by geokt_plugin, which the config does not "
                                              f"import; torchdistill's own scripts would not find it. "
                                              f"{_DEPENDENCY_HINT[0].upper()}{_DEPENDENCY_HINT[1:]}.")
        kw_where = f"{where}.criterion.kwargs"
        if "kwargs" not in crit:
            r.error(kw_where, "missing; torchdistill requires `kwargs:` on every criterion (it fails with "
                              "KeyError('kwargs') otherwise). Add `kwargs: {}` or the loss's arguments.")
            return []
        kwargs = crit["kwargs"] if crit["kwargs"] is not None else {}
        if not isinstance(kwargs, Mapping):
            r.error(kw_where, f"must be a mapping of the loss's arguments, got {type(kwargs).__name__} "
                              f"{_short(kwargs)}.")
            return []
        cls = self.reg.mid_level.get(key) or self.reg.low_level.get(key)
        module = None
        try:
            module = cls(**kwargs)
        except (ValueError, TypeError) as exc:
            text = str(exc).rstrip()
            r.error(kw_where, f"{text}{'' if text.endswith(('.', '?', '!')) else '.'}{_kwarg_hints(cls, kwargs)}")
        except Exception as exc:  # noqa: BLE001
            r.error(kw_where, f"{key}(**kwargs) failed: {type(exc).__name__}: {exc}. Fix the arguments.")
        wrapper = term.get("criterion_wrapper")
        if wrapper is not None and module is not None:
            self._check_wrapper(wrapper, f"{where}.criterion_wrapper", module)
        if key.startswith("GeoKT"):
            for role in ("student", "teacher"):
                io = kwargs.get(f"{role}_module_io", "output")
                if io not in _IO_NAMES:
                    r.error(f"{kw_where}.{role}_module_io", f"{io!r} is not an io name; torchdistill hooks record "
                                                            f"only {list(_IO_NAMES)}. Use 'output' (or 'input').")
        return [_Term(where, key, kwargs, module)]

    def _check_wrapper(self, wrapper: Any, where: str, module: nn.Module) -> None:
        r = self.r
        assert self.reg is not None
        if not isinstance(wrapper, Mapping):
            r.error(where, f"must be a mapping {{key, kwargs}}, got {_short(wrapper)}.")
            return
        if not wrapper:
            return
        key = wrapper.get("key")
        if key not in self.reg.loss_wrapper:
            r.error(f"{where}.key", _unknown_key("criterion_wrapper", key, sorted(self.reg.loss_wrapper),
                                                 uses_geokt=self.uses_geokt_dependency))
            return
        kwargs = wrapper.get("kwargs") or {}
        try:
            self.reg.loss_wrapper[key](module, **kwargs)
        except Exception as exc:  # noqa: BLE001
            r.error(f"{where}.kwargs", f"{key}(**kwargs) failed: {type(exc).__name__}: {exc}. Fix the arguments.")

    def _check_weight(self, weight: Any, where: str) -> None:
        if not _is_number(weight) or not math.isfinite(weight) or weight < 0:
            self.r.error(where, f"must be a finite number >= 0, got {_short(weight)}. A negative weight would "
                                "push the geometry apart; use a weight >= 0 (0 disables the term).")

    # -- optimizer and scheduler -------------------------------------------------------------------------------

    def _check_optimizer(self, sp: str, stage: Mapping, *, required: bool, student: _Role | None) -> None:
        r = self.r
        assert self.reg is not None
        where = f"{sp}.optimizer"
        cfg = r.mapping(stage, "optimizer", where, required=required,
                        example="{key: 'SGD', kwargs: {lr: 0.1, momentum: 0.9}}")
        if not cfg:
            return
        key = cfg.get("key")
        known = self.reg.public(self.reg.optimizer, torch.optim.Optimizer)
        if key not in self.reg.optimizer or key == "Optimizer":
            r.error(f"{where}.key", _unknown_key("optimizer", key, known, uses_geokt=True))
            return
        kwargs = cfg.get("kwargs")
        if not isinstance(kwargs, Mapping):
            r.error(f"{where}.kwargs", f"must be a mapping (torchdistill requires it), got {_short(kwargs)}. Add "
                                       "e.g. `kwargs: {lr: 0.1}`.")
            return
        param = nn.Parameter(torch.zeros(1))
        try:
            optimizer = self.reg.optimizer[key]([param], **kwargs)
        except Exception as exc:  # noqa: BLE001
            r.error(f"{where}.kwargs", f"{key}(**kwargs) failed: {type(exc).__name__}: {exc}. Fix the arguments.")
            return
        for name in ("max_grad_norm",):
            if cfg.get(name) is not None and (not _is_number(cfg[name]) or not cfg[name] > 0):
                r.error(f"{where}.{name}", f"must be a number > 0, got {_short(cfg[name])}.")
        sched = r.mapping(stage, "scheduler", f"{sp}.scheduler", required=False,
                          example="{key: 'MultiStepLR', kwargs: {milestones: [5], gamma: 0.1}}")
        if not sched:
            return
        skey = sched.get("key")
        if skey not in self.reg.scheduler:
            r.error(f"{sp}.scheduler.key", _unknown_key("scheduler", skey, self.reg.public(self.reg.scheduler),
                                                        uses_geokt=True))
            return
        skwargs = sched.get("kwargs")
        if not isinstance(skwargs, Mapping):
            r.error(f"{sp}.scheduler.kwargs", f"must be a mapping (torchdistill requires it), got {_short(skwargs)}.")
            return
        try:
            self.reg.scheduler[skey](optimizer, **skwargs)
        except Exception as exc:  # noqa: BLE001
            r.error(f"{sp}.scheduler.kwargs", f"{skey}(**kwargs) failed: {type(exc).__name__}: {exc}.")
        step = sched.get("scheduling_step", 0)
        if not _is_int(step) or step < 0:
            r.error(f"{sp}.scheduler.scheduling_step", f"must be an integer >= 0 (0: per epoch), got {_short(step)}.")

    # -- roles: models, wrappers, hooks ------------------------------------------------------------------------

    def _check_role(self, role: _Role) -> None:
        r = self.r
        assert self.reg is not None
        cfg = role.cfg
        proc = cfg.get("forward_proc")
        procs = self.reg.procs["forward_proc"]
        if proc is None:
            r.error(f"{role.where}.forward_proc", f"missing; torchdistill requires it. Add `forward_proc: "
                                                  f"'forward_batch_only'` (registered: {sorted(procs)}).")
        elif proc not in procs:
            r.error(f"{role.where}.forward_proc", _unknown_key("forward_proc", proc, sorted(procs),
                                                               uses_geokt=self.uses_geokt_dependency))
        hook_cfg = cfg.get("forward_hook") or {}
        if not isinstance(hook_cfg, Mapping):
            r.error(f"{role.where}.forward_hook", f"must be a mapping {{input: [...], output: [...]}}, got "
                                                  f"{_short(hook_cfg)}.")
            hook_cfg = {}
        for io in hook_cfg:
            if io not in _IO_NAMES:
                r.error(f"{role.where}.forward_hook.{io}", f"unknown io name {io!r}; use {list(_IO_NAMES)}.")
        for io in _IO_NAMES:
            paths = hook_cfg.get(io) or []
            if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
                r.error(f"{role.where}.forward_hook.{io}", f"must be a list of module paths, got {_short(paths)}.")
                role.hooks_ok = False
                continue
            role.hooks[io] = set(paths)
        model_name = f"{role.name}_model"
        if self.models.get(model_name) is None:
            role.hooks_ok = False
            return
        built = self._build_role(role, torch.device("meta")) or self._build_role(role, torch.device("cpu"))
        if not built or role.ref is None or role.target is None:
            role.hooks_ok = False  # the model or its wrapper did not build (reported above)
            return
        self._check_hook_paths(role)
        if cfg.get("src_ckpt") is not None and role.target is not None:
            self._check_ckpt(cfg["src_ckpt"], f"{role.where}.src_ckpt", role.target,
                             f"the {role.name} as hooked in {role.where}", weights_only=False)

    def _build_role(self, role: _Role, device: torch.device) -> bool:
        """Build the model the box hooks: the auxiliary wrapper (if any) around the model, then `sequential`."""
        r = self.r
        assert self.reg is not None
        from torchdistill.models.util import redesign_model

        cfg = role.cfg
        try:
            model = self._fresh_model(f"{role.name}_model", device)
        except NotImplementedError:
            return False
        if model is None:
            return False
        ref: nn.Module = model
        aux = cfg.get("auxiliary_model_wrapper")
        if isinstance(aux, Mapping) and aux.get("key") is not None:
            key = aux["key"]
            where = f"{role.where}.auxiliary_model_wrapper"
            if key not in self.reg.aux_wrapper:
                r.error(f"{where}.key", _unknown_key("auxiliary_model_wrapper", key, sorted(self.reg.aux_wrapper),
                                                     uses_geokt=self.uses_geokt_dependency))
                return True
            kwargs = aux.get("kwargs") or {}
            try:
                with torch.device(device):
                    ref = self.reg.aux_wrapper[key](**{f"{role.name}_model": model}, device=device, device_ids=None,
                                                    distributed=False, **kwargs)
            except NotImplementedError:
                return False
            except Exception as exc:  # noqa: BLE001
                if device.type == "meta":
                    return False  # retry on CPU: some wrappers move tensors or probe shapes
                r.error(f"{where}.kwargs", f"{key}(**kwargs) failed: {type(exc).__name__}: {exc}. Fix the "
                                           "wrapper's arguments.")
                return True
        elif aux is not None and not isinstance(aux, Mapping):
            r.error(f"{role.where}.auxiliary_model_wrapper", f"must be a mapping {{key, kwargs}}, got {_short(aux)}.")
        seq = cfg.get("sequential") or []
        if seq:
            adaptations = cfg.get("adaptations") or {}
            bad = False
            for i, path in enumerate(seq):
                if isinstance(path, str) and path.startswith("+"):
                    if path[1:] not in adaptations:
                        r.error(f"{role.where}.sequential[{i}]", f"{path!r} names no entry of adaptations "
                                                                 f"({sorted(adaptations)}). Add it under adaptations.")
                        bad = True
                elif not isinstance(path, str) or _resolve(ref, path) is None:
                    r.error(f"{role.where}.sequential[{i}]", self._path_message(path, ref))
                    bad = True
            if bad:
                role.hooks_ok = False
                return True
            try:
                with torch.device(device):
                    target = redesign_model(ref, cfg, role.name, "checked")
            except NotImplementedError:
                return False
            except Exception as exc:  # noqa: BLE001
                r.error(f"{role.where}.sequential", f"redesigning the {role.name} failed: {type(exc).__name__}: "
                                                    f"{exc}.")
                role.hooks_ok = False
                return True
        else:
            target = ref
            for i, path in enumerate(cfg.get("frozen_modules") or []):
                if isinstance(path, str) and not path.startswith("instance(") and _resolve(ref, path) is None:
                    r.error(f"{role.where}.frozen_modules[{i}]", self._path_message(path, ref))
        role.ref, role.target = ref, target
        return True

    def _path_message(self, path: Any, root: nn.Module) -> str:
        valid = _module_paths(root)
        near = _nearest(str(path), valid)
        return (f"no module {path!r} in {type(root).__name__}. Nearest valid module paths: {near}. Fix the path "
                "(torchdistill would only log a warning and then fail with AttributeError on None).")

    def _check_hook_paths(self, role: _Role) -> None:
        r = self.r
        if role.ref is None or role.target is None:
            return
        for io in _IO_NAMES:
            for path in sorted(role.hooks[io]):
                where = f"{role.where}.forward_hook.{io}"
                if path == _SELF_PATH:
                    r.error(where, "'.' (the model's own output) cannot be hooked; torchdistill always stores it as "
                                   "io_dict['.']['output']. Remove '.' from the hook list.")
                    role.hooks_ok = False
                elif path.startswith("+"):
                    if _resolve(role.target, path[1:]) is None:
                        r.error(where, self._path_message(path[1:], role.target).replace(
                            f"no module {path[1:]!r}", f"no adaptation module {path!r}"))
                        role.hooks_ok = False
                elif _resolve(role.ref, path) is None:
                    r.error(where, self._path_message(path, role.ref))
                    role.hooks_ok = False

    # -- the module paths each loss reads ----------------------------------------------------------------------

    def _reads(self, term: _Term) -> list[tuple[str, str, str, str]]:
        """``(role, path, io, yaml key)`` of every tensor a term reads, where its kwargs say so."""
        reads = []
        kw = term.kwargs
        for role in ("student", "teacher"):
            if isinstance(kw.get(f"{role}_module_path"), str):
                reads.append((role, kw[f"{role}_module_path"], kw.get(f"{role}_module_io", "output"),
                              f"{role}_module_path"))
        return reads

    def _check_term_paths(self, terms: list[_Term], roles: list[_Role], has_teacher: bool) -> None:
        r = self.r
        by_name = {role.name: role for role in roles}
        for term in terms:
            for role_name, path, io, kw_name in self._reads(term):
                where = f"{term.where}.criterion.kwargs.{kw_name}"
                role = by_name.get(role_name)
                if role is None:
                    if role_name == "teacher" and not has_teacher and isinstance(self.config.get("models"), Mapping):
                        r.error(where, f"{term.key} reads the teacher's {path!r}, but the config has no "
                                       "models.teacher_model. Add a teacher (and train.teacher), or drop this term.")
                    continue
                if path == _SELF_PATH or io not in _IO_NAMES:
                    continue
                if path not in role.hooks[io]:
                    hooked = sorted(role.hooks[io])
                    r.error(where, f"{term.key} reads {role_name} {path!r} ({io}), which is not hooked "
                                   f"({role.where}.forward_hook.{io}: {hooked}). Add {path!r} to "
                                   f"{role.where}.forward_hook.{io}.{_did_you_mean(path, hooked)}")

    # -- one dummy forward -------------------------------------------------------------------------------------

    def _input_shape(self) -> tuple[tuple[int, ...], str]:
        if self.input_shape is not None:
            return tuple(int(s) for s in self.input_shape), "input_shape argument"
        top = self.config.get("check_input_shape")
        if top is not None:
            if isinstance(top, list) and len(top) == 3 and all(_is_int(s) and s > 0 for s in top):
                return tuple(top), "check_input_shape"
            self.r.error("check_input_shape", f"must be [C, H, W] of positive integers, got {_short(top)}.")
        if self.sample_shape is not None:
            return self.sample_shape, "the training dataset's first sample"
        return DEFAULT_INPUT_SHAPE, "the default; set check_input_shape: [C, H, W] to change it"

    def _dummy_forward(self, sp: str, roles: list[_Role], terms: list[_Term]) -> None:
        geokt = [t for t in terms if t.key.startswith("GeoKT") and t.module is not None]
        if not roles or not all(role.hooks_ok and role.target is not None for role in roles):
            if geokt:
                self.r.warn(f"{sp}: the GeoKT feature-map shapes were not checked (models or hooks failed above).")
            return
        shape, source = self._input_shape()
        for role in roles:
            if not self._forward(role, shape, source):
                return
        by_name = {role.name: role for role in roles}
        for term in geokt:
            self._check_pair(term, by_name)

    def _forward(self, role: _Role, shape: tuple[int, ...], source: str) -> bool:
        from torchdistill.models.wrapper import AuxiliaryModelWrapper

        assert role.ref is not None and role.target is not None
        failures: list[str] = []
        for attempt in ("as built", "cpu"):
            if attempt == "cpu":
                if next(iter(role.target.parameters()), torch.empty(0)).device.type == "cpu":
                    break
                if not self._build_role(role, torch.device("cpu")) or role.target is None:
                    break
            target = role.target
            device = next(iter(target.parameters()), torch.empty(0, device="meta")).device
            x = torch.zeros((2, *shape), device=device)
            io_dict: dict[str, dict[str, Any]] = {}
            outputs: dict[str, Any] = {}
            handles = []
            hooked = role.hooks["input"] | role.hooks["output"]
            for name, module in target.named_modules():
                handles.append(module.register_forward_hook(_capture(outputs, name)))
            for path in hooked:
                module = _resolve(target, path[1:]) if path.startswith("+") else _resolve(role.ref, path)
                if module is not None:
                    handles.append(module.register_forward_hook(_capture_io(io_dict, path)))
            try:
                with torch.no_grad():
                    target.eval()
                    out = target(x)
                    if isinstance(target, AuxiliaryModelWrapper):
                        target.secondary_forward(io_dict)
            except NotImplementedError as exc:
                failures.append(f"{type(exc).__name__}: {exc}")
                continue
            except Exception as exc:  # noqa: BLE001
                failures.append(f"{type(exc).__name__}: {exc}")
                continue
            finally:
                for h in handles:
                    h.remove()
            io_dict.setdefault(_SELF_PATH, {})["output"] = out
            role.io_dict, role.all_outputs = io_dict, outputs
            self.r.ok(f"{role.where}: dummy forward on {(2, *shape)} ({source}) gives {_shape(out)}")
            return True
        self.r.error(role.where, f"a dummy forward of the {role.name} on a batch of shape {(2, *shape)} (from "
                                 f"{source}) failed: {failures[-1] if failures else 'no usable device'}. Check that "
                                 "the model fits the data (channels, image size), or set check_input_shape.")
        return False

    def _check_pair(self, term: _Term, roles: Mapping[str, _Role]) -> None:
        r = self.r
        module = term.module
        where = f"{term.where}.criterion.kwargs"
        tensors = {}
        for role_name in ("student", "teacher"):
            role = roles.get(role_name)
            path = getattr(module, f"{role_name}_module_path")
            io = getattr(module, f"{role_name}_module_io")
            if role is None or path not in role.io_dict or io not in role.io_dict[path]:
                return  # reported by _check_term_paths
            value = role.io_dict[path][io]
            if not isinstance(value, Tensor) or value.dim() != 4:
                good = self._good_paths(role)
                r.error(f"{where}.{role_name}_module_path",
                        f"{term.key} reads {role_name} {path!r} ({io}) of shape {_shape(value)}, but needs a 4-D "
                        f"feature map (B, C, H, W). Hook a convolutional stage instead; nearest 4-D paths: "
                        f"{_nearest(path, good)}.")
                return
            tensors[role_name] = value
        s, t = tensors["student"], tensors["teacher"]
        if s.shape[0] != t.shape[0]:
            r.error(where, f"{term.key}: student {_shape(s)} and teacher {_shape(t)} have different batch sizes. "
                           "Both networks must see the same batch (check the teacher's input adapter).")
            return
        H, W = min(s.shape[2], t.shape[2]), min(s.shape[3], t.shape[3])
        scope = getattr(module, "scope", "image")
        n = H * W if scope == "image" else 2 * H * W
        max_points = getattr(module, "max_points", None)
        if max_points is not None:
            n = min(n, max_points) if scope == "image" else min(H * W, max_points) * 2
        if n < 2:
            good = self._good_paths(roles["student"])
            r.error(where, f"{term.key}: student {module.student_module_path!r} {_shape(s)} and teacher "
                           f"{module.teacher_module_path!r} {_shape(t)} align to {H}x{W} = {H * W} local feature(s) "
                           f"per image (scope {scope!r}); a point set needs at least 2. Hook a larger feature map "
                           f"(e.g. {_nearest(module.student_module_path, good)}), use a larger input, or set "
                           "scope: 'batch'.")
            return
        r.ok(f"{term.where}: {term.key} on student {_shape(s)} / teacher {_shape(t)}, {n} points per set")

    @staticmethod
    def _good_paths(role: _Role) -> list[str]:
        return [name for name, shape in role.all_outputs.items()
                if isinstance(shape, tuple) and len(shape) == 4 and shape[2] * shape[3] >= 2]


def _capture(outputs: dict[str, Any], name: str) -> Callable:
    def hook(module: nn.Module, args: Any, output: Any) -> None:
        if isinstance(output, Tensor):
            outputs[name] = tuple(output.shape)

    return hook


def _capture_io(io_dict: dict[str, dict[str, Any]], path: str) -> Callable:
    """What torchdistill's hooks store: a tuple of length 1 is unwrapped."""

    def hook(module: nn.Module, args: Any, output: Any) -> None:
        entry = io_dict.setdefault(path, {})
        entry["input"] = args[0] if isinstance(args, tuple) and len(args) == 1 else args
        entry["output"] = output[0] if isinstance(output, tuple) and len(output) == 1 else output

    return hook


def check_config(
    config: dict,
    *,
    config_path: str,
    device: str = "cpu",
    load_checkpoints: bool = True,
    input_shape: Sequence[int] | None = None,
) -> list[str]:
    """Check a loaded config before anything is built or written (see the module docstring for the list).

    Args:
        config: the mapping :func:`load_config` returned.
        config_path: the file it came from, for messages.
        device: the device the run will use; ``cuda`` without a GPU is an error.
        load_checkpoints: load every ``src_ckpt`` and compare it with its model (``False``: existence only).
        input_shape: ``(C, H, W)`` of the dummy forward; default from ``check_input_shape``, the training
            dataset's first sample, else ``(3, 32, 32)``.

    Returns:
        Human-readable notes, ``"ok: ..."`` or ``"warning: ..."``.

    Raises:
        ConfigError: listing every problem found, each with its YAML path, what was found and the fix.
    """
    return _Checker(config, config_path, device, load_checkpoints, input_shape).run()


# ----------------------------------------------------------------------------------------------------------------
# check_run_dir
# ----------------------------------------------------------------------------------------------------------------


@contextmanager
def _probe(folder: Path) -> Iterator[None]:
    fd, name = tempfile.mkstemp(prefix=".geokt-write-probe-", dir=folder)
    try:
        os.close(fd)
        yield
    finally:
        os.unlink(name)


def check_run_dir(run_dir: str | os.PathLike, *, resume: bool, overwrite: bool) -> list[str]:
    """Check that ``run_dir`` can take this run without losing a previous one.

    Rules: the folder (or its nearest existing ancestor) must be a writable directory; a folder holding a previous
    run (``done``, ``last.pt``, ``best.pt``, ``metrics.csv`` or ``manifest.json``) needs ``resume`` (runs with a
    ``last.pt``) or ``overwrite``; ``resume`` needs a ``last.pt``; ``resume`` and ``overwrite`` exclude each other.

    Returns:
        Notes, as :func:`check_config`.

    Raises:
        ConfigError: naming the folder, what is there, and the flag that fixes it.
    """
    source = f"run dir {str(run_dir)!r}"
    folder = Path(os.path.expanduser(str(run_dir)))
    notes: list[str] = []
    if resume and overwrite:
        raise ConfigError(f"{source}: --resume and --overwrite exclude each other (continue the run, or replace it). "
                          "Pass only one.")
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{source}: exists but is not a directory. Choose another --run-dir or move the file.")
    existing = folder
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"{source}: cannot be created because {str(existing)!r} is a file, not a directory. Choose "
                          "another --run-dir.")
    try:
        with _probe(existing):
            pass
    except OSError as exc:
        what = "is not writable" if existing == folder else f"cannot be created: {str(existing)!r} is not writable"
        raise ConfigError(f"{source}: {what} ({type(exc).__name__}: {exc.strerror or exc}). Choose a writable "
                          "--run-dir or fix the permissions.") from exc
    present = [name for name in _RUN_FILES if (folder / name).exists()] if folder.is_dir() else []
    finished = FINISHED_MARKER in present
    if resume:
        if not (folder / "last.pt").is_file():
            raise ConfigError(f"{source}: --resume given but there is no last.pt to resume from (found: "
                              f"{present or 'nothing'}). Drop --resume to start a new run.")
        notes.append(f"ok: resuming from {folder / 'last.pt'}" + (" (the run had finished)" if finished else ""))
        return notes
    if present and not overwrite:
        if finished:
            state, fix = "a finished run", "pass --overwrite to replace it"
        elif (folder / "last.pt").is_file():
            state, fix = "an unfinished run", "pass --resume to continue it, or --overwrite to replace it"
        else:
            state, fix = "a run that never finished an epoch", "pass --overwrite to start it again"
        raise ConfigError(f"{source}: already holds {state} ({', '.join(present)}); refusing to overwrite it. "
                          f"{fix[0].upper()}{fix[1:]}, or choose another --run-dir.")
    if present:
        notes.append(f"warning: {folder} holds a previous run ({', '.join(present)}); --overwrite replaces it")
    else:
        notes.append(f"ok: run dir {folder} is writable")
    return notes

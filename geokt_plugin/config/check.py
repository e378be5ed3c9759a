"""``check_config``: every check of a loaded config, in a fixed order, before anything is built or written.

Order: the config's shape; the device; the dependencies (imported, so their registry keys exist); ``seed`` and
``log_freq``; the models; the datasets; then per stage: ``num_epochs``, the loaders (one batch each), the
processes, the teacher/student sections, the criterion, the optimizer and a dry run of its scheduler, what each role
hooks, what each loss reads, one dummy forward, and (when nothing else is wrong) each loss term on one batch; then
the ``test`` section; last the optional ``geokt_agreement`` section.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .agreement_check import check_agreement
from .context import CheckContext
from .criterion_check import check_criterion
from .datasets_check import check_datasets
from .environment_check import check_dependencies, check_device
from .errors import ConfigError, Report, short
from .exercise_check import exercise_criterion
from .forward_check import check_term_paths, dummy_forward
from .loaders_check import check_test
from .loading import not_a_mapping
from .models_check import check_models
from .optim_check import Schedule, check_optimizer
from .registries import Registries
from .roles_check import check_role, stage_roles
from .stages_check import check_loaders, check_num_epochs, check_procs, check_run_numbers, is_first_stage, stages

__all__ = ["check_config"]

_SECTIONS = ("models", "train", "datasets")


def check_config(
    config: dict,
    *,
    config_path: str,
    device: str = "cpu",
    load_checkpoints: bool = True,
    input_shape: Sequence[int] | None = None,
) -> list[str]:
    """Check a loaded config before anything is built or written.

    Args:
        config: the mapping :func:`~geokt_plugin.config.load_config` returned (never modified).
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
    if not isinstance(config, Mapping):
        raise ConfigError.from_problems(config_path, [not_a_mapping(config)])
    report = Report()
    _check_sections(report, config)
    check_device(report, device)
    uses_geokt = check_dependencies(report, config.get("dependencies"))
    ctx = CheckContext(config=config, config_path=config_path, device=device, report=report,
                       registries=Registries.load(), load_checkpoints=load_checkpoints, input_shape=input_shape,
                       uses_geokt_dependency=uses_geokt)
    check_run_numbers(ctx, config)
    if isinstance(config.get("models"), Mapping):
        ctx.models = check_models(ctx, config["models"])
    if isinstance(config.get("datasets"), Mapping):
        ctx.datasets = check_datasets(ctx, config["datasets"])
    if isinstance(config.get("train"), Mapping):
        for sp, stage in stages(ctx, config["train"]):
            _check_stage(ctx, sp, stage)
    check_test(ctx, config)
    check_agreement(ctx, config)
    report.raise_if_problems(config_path)
    return report.notes


def _check_sections(report: Report, config: Mapping) -> None:
    for section in _SECTIONS:
        if section not in config:
            report.error(section, f"missing top-level section {section!r}; a geokt-train config needs 'models', "
                                  "'train' and 'datasets'. Add it (see configs/ for complete examples).")
        elif not isinstance(config[section], Mapping):
            report.error(section, f"must be a mapping, got {type(config[section]).__name__} "
                                  f"{short(config[section])}.")


def _check_stage(ctx: CheckContext, sp: str, stage: Mapping) -> None:
    """Every check of one stage (``sp``: its YAML path, ``train`` or ``train.stageN``)."""
    first = is_first_stage(sp)
    epochs = check_num_epochs(ctx, sp, stage)
    train, _ = check_loaders(ctx, sp, stage)
    if train is not None and train.sample_shape is not None:
        ctx.sample_shape = train.sample_shape
    if train is not None and train.batch is not None:  # a later stage without its own loader keeps the previous
        ctx.train_batch, ctx.train_batches = train.batch, train.batches
    check_procs(ctx, sp, stage)
    sections = stage_roles(ctx, sp, stage, required=first)
    terms = check_criterion(ctx, sp, stage)
    check_optimizer(ctx, sp, stage, required=first, schedule=Schedule(epochs, ctx.train_batches))
    roles = [check_role(ctx, section) for section in sections]
    check_term_paths(ctx, terms, roles)
    dummy_forward(ctx, sp, roles, terms)
    exercise_criterion(ctx, sp, stage, roles, terms)

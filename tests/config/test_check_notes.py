"""What :func:`geokt_plugin.config.check_config` notes but does not refuse (warnings), and what it lets through on
purpose: merge keys that override, pretrained weights that load, loss terms evaluated on one batch."""

from __future__ import annotations

import math
import re

import torch
from test_broken_inputs import SOURCE, base_config, geo
from torch.utils.data import RandomSampler, TensorDataset

from geokt_plugin.config import check_config, load_config


def notes_of(config: dict) -> list[str]:
    return check_config(config, config_path=SOURCE)


def warnings_of(config: dict) -> list[str]:
    return [n for n in notes_of(config) if n.startswith("warning: ")]


def test_check_notes_every_loss_term_is_evaluated_on_one_batch():
    notes = notes_of(base_config())
    for name in ("ce", "geo"):
        assert any(re.match(rf"ok: train\.criterion\.kwargs\.sub_terms\.{name}: [-\d.e]+ on one training batch$", n)
                   for n in notes), notes


def test_check_notes_non_finite_data_is_left_to_the_nan_guard():
    """A NaN in the data is a value, not a config problem: the run's --nan-policy acts on it, so only a warning."""
    config = base_config()
    config["datasets"]["train"] = TensorDataset(torch.full((4, 3, 32, 32), math.nan), torch.zeros(4, dtype=torch.long))
    warnings = warnings_of(config)
    assert warnings and all(re.match(r"warning: train\.criterion\.kwargs\.sub_terms\.(ce|geo): gives nan on the first "
                                     r"training batch, whose samples hold non-finite values", w) for w in warnings)


def test_check_notes_milestones_beyond_the_last_epoch_warn():
    config = base_config()
    config["train"]["scheduler"]["kwargs"]["milestones"] = [1, 2, 5, 9]
    assert warnings_of(config) == [
        "warning: train.scheduler.kwargs.milestones: [5, 9] lie beyond the last epoch (2); the lr never decays there. "
        "Lower them or raise num_epochs."]


def test_check_notes_step_wise_milestones_count_optimizer_steps():
    """With ``scheduling_step: 1`` the milestones are steps: 2 epochs of 2 batches are 4 of them."""
    config = base_config()
    config["train"]["scheduler"] = {"key": "MultiStepLR", "kwargs": {"milestones": [3, 4], "gamma": 0.1},
                                    "scheduling_step": 1}
    assert warnings_of(config) == []
    config["train"]["scheduler"]["kwargs"]["milestones"] = [3, 5]
    assert warnings_of(config) == [
        "warning: train.scheduler.kwargs.milestones: [5] lie beyond the last scheduler step (4); the lr never decays "
        "there. Lower them or raise num_epochs."]


def test_check_notes_neighbors_larger_than_the_point_set_warn():
    config = base_config()
    geo(config).update(student_module_path="layer3", teacher_module_path="layer3", neighbors=100)
    assert warnings_of(config) == [
        "warning: train.criterion.kwargs.sub_terms.geo.criterion.kwargs.neighbors: 100 is more than the 63 other "
        "points of each set of student 'layer3' (N = 64 points per set, 8x8, scope 'image'); the loss clips it to 63, "
        "so every pair is a neighbour. Use neighbors < 64, or hook a larger map."]
    geo(config)["neighbors"] = 63
    assert warnings_of(config) == []


def test_check_notes_batch_larger_than_the_training_set_warns():
    config = base_config()
    config["train"]["train_data_loader"]["kwargs"]["batch_size"] = 8
    assert warnings_of(config) == [
        "warning: train.train_data_loader.kwargs.batch_size: 8 is larger than datasets.train (4 samples); every "
        "epoch is one batch of 4"]


def test_check_notes_test_section_is_checked_and_may_be_absent():
    config = base_config()
    config["test"] = {"test_data_loader": {"dataset_id": "train", "kwargs": {"batch_size": 4},
                                           "sampler": {"class_or_func": RandomSampler, "kwargs": {}}}}
    assert warnings_of(config) == []
    config["test"] = {}
    assert warnings_of(config) == ["warning: test: has no test_data_loader; the run evaluates no test set"]


def test_check_notes_pretrained_weights_that_load_are_ok(monkeypatch):
    """Released weights in torch's hub cache (simulated: nothing is downloaded) pass, and are loaded as the run
    loads them."""
    from torchdistill.models.registry import get_model

    state = get_model("resnet20", num_classes=10, pretrained=False).state_dict()
    calls = []

    def cached(url: str, *args, **kwargs) -> dict:
        calls.append(url)
        return state

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", cached)
    config = base_config()
    config["models"]["teacher_model"]["kwargs"]["pretrained"] = True
    notes = notes_of(config)
    assert "ok: models.teacher_model.kwargs.pretrained: the pretrained weights of resnet20 load" in notes
    assert len(calls) == 1 and calls[0].endswith("cifar10-resnet20.pt"), calls


def test_check_notes_merge_key_override_is_not_a_duplicate(tmp_path):
    """``<<: *base`` then the same key again overrides the merged value (YAML's rule); only two explicit keys clash."""
    path = tmp_path / SOURCE
    path.write_text("base: &sgd {key: 'SGD', kwargs: {lr: 0.1}}\n"
                    "optimizer:\n  <<: *sgd\n  key: 'Adam'\n"
                    "plain: &p {a: 1}\n"
                    "lists: [*p, *p]\n")
    config = load_config(path)
    assert config["optimizer"] == {"key": "Adam", "kwargs": {"lr": 0.1}}
    assert config["lists"] == [{"a": 1}, {"a": 1}]


def test_check_notes_check_leaves_the_compile_switch_as_it_was():
    """The loss terms are evaluated eagerly (compiling would take longer than the check), then the switch is back."""
    from geokt_plugin.losses import compiled

    compiled.set_compile(True)
    try:
        before = getattr(compiled, "_switch", None)
        notes_of(base_config())
        assert getattr(compiled, "_switch", None) == before
    finally:
        compiled.set_compile(None)

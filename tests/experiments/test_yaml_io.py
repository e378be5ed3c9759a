"""The config dumper: tags, named anchors only where asked, torchdistill's quoting, and a faithful round trip."""

from __future__ import annotations

from pathlib import Path

from geokt_plugin.experiments import Tagged, dump_config, load_config_document


def test_dump_round_trips_tags_and_named_anchors(tmp_path: Path):
    loader = {"batch_size": 2, "num_workers": 0}
    classes = [5, 6]
    doc = {
        "datasets": {"train": Tagged("!import_call", {"key": "m.f", "init": {"kwargs": {"classes": classes}}}),
                     "val": Tagged("!import_call", {"key": "m.f", "init": {"kwargs": {"classes": classes}}})},
        "train": {"val": {"kwargs": loader, "sampler": Tagged("!import_get", {"key": "torch.utils.data.X"})},
                  "wrapper": None, "flag": True},
        "test": {"kwargs": loader},
    }
    text = dump_config(doc, anchors={"eval_loader": loader}, header=["first line.", "second line."])
    assert text.startswith("# first line.\n# second line.\n")
    assert "&eval_loader {batch_size: 2, num_workers: 0}" in text and "kwargs: *eval_loader" in text
    assert "&id" not in text and "*id" not in text  # the shared `classes` list is written twice, not aliased
    assert "key: 'm.f'" in text and "!import_get {key: 'torch.utils.data.X'}" in text
    assert "\n\ntrain:\n" in text and "\n\ntest:\n" in text  # a blank line between top-level sections
    path = tmp_path / "c.yaml"
    path.write_text(text)
    back = load_config_document(path)
    assert back == doc
    assert back["train"]["val"]["kwargs"] is back["test"]["kwargs"]


def test_tuples_are_written_as_flow_lists():
    assert dump_config({"milestones": (1, 2)}) == "milestones: [1, 2]\n"

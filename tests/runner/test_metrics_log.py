"""metrics.csv: the shared column order, empty cells for NaN and None, and optional TensorBoard."""

from __future__ import annotations

import logging
import sys

from geokt_plugin import rundir
from geokt_plugin.runner import records


def test_metrics_log_columns_follow_rundir_and_blank_missing_values(tmp_path):
    log = records.MetricsLog(tmp_path / rundir.METRICS)
    log.append({"epoch": 1, "stage": 1, "lr": 0.1, "train_loss": 2.0, "loss/kd": 1.5, "val_acc": float("nan"),
                "steps": 4})
    log.append({"epoch": 2, "stage": 1, "lr": 0.1, "train_loss": 1.0, "loss/ce": 0.25, "val_acc": 12.5, "steps": 4})
    log.write()
    rows = rundir.read_metrics(tmp_path / rundir.METRICS)
    assert list(rows[0]) == rundir.metrics_columns(["loss/kd", "loss/ce"])
    assert (rows[0]["val_acc"], rows[0]["loss/ce"], rows[1]["val_acc"], rows[1]["loss/kd"]) == ("", "", "12.5", "")
    assert log.last("val_acc") == 12.5 and records.MetricsLog(tmp_path / "x.csv").last("val_acc") is None


def test_tensorboard_missing_gives_a_no_op_writer_and_one_log_line(tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # `import` now raises ImportError
    runner_logger = logging.getLogger("geokt_plugin.runner")
    monkeypatch.setattr(runner_logger, "propagate", True)
    with caplog.at_level(logging.INFO, logger="geokt_plugin.runner"):
        writer = records.open_tensorboard(tmp_path, None)
        writer.add_scalar("epoch/lr", 0.1, 1)
        writer.flush()
        writer.close()
    # one record, counted once even if an earlier test left caplog's handler on this logger as well as on the root
    lines = list({id(r): r.getMessage() for r in caplog.records if "tensorboard" in r.getMessage()}.values())
    assert len(lines) == 1 and "pip install tensorboard" in lines[0], lines
    assert not (tmp_path / rundir.TENSORBOARD).exists()

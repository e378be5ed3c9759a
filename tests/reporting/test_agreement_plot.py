"""agreement_plot: one panel per agree/<layer> column, a PNG from metrics rows as read_metrics returns them."""

from __future__ import annotations

import pytest

from geokt_plugin import rundir
from geokt_plugin.reporting.plots import agreement_plot
from geokt_plugin.runner.records import MetricsLog


def rows(values: list[tuple[float, float | None]]) -> list[dict]:
    return [{"epoch": e + 1, "agree/layer1": a, "agree/layer2": b} for e, (a, b) in enumerate(values)]


def test_agreement_plot_writes_a_png_from_csv_rows(tmp_path):
    log = MetricsLog(tmp_path / rundir.METRICS, rows([(0.3, 0.4), (0.35, float("nan"))]))
    log.write()  # NaN becomes an empty cell: that epoch has no point in the panel
    from_csv = rundir.read_metrics(tmp_path / rundir.METRICS)
    runs = {"ce": [from_csv], "geokt_rank": [rows([(0.4, 0.5), (0.6, 0.7)]), rows([(0.5, 0.45), (0.7, 0.72)])]}
    png = agreement_plot(runs, tmp_path)
    assert png == tmp_path / "agreement.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 1000


def test_agreement_plot_without_agreement_columns_says_how_to_get_them(tmp_path):
    with pytest.raises(ValueError, match=r"agreement_plot: no agree/<layer> column in any metrics row; train with a "
                                         r"geokt_agreement section"):
        agreement_plot({"ce": [[{"epoch": "1", "val_acc": "10"}]]}, tmp_path)
    assert not (tmp_path / "agreement.png").exists()

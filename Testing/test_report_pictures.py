"""Evaluation pictures people read (issue 13, deliverable 6): montage tiles of at least 256 px with titles
that fit, and chart titles that fit their figure. On real Harvard pairs, through ``evaluate``."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from MedFusionLib.evaluation import evaluate
from MedFusionLib.evaluation.report import (MONTAGE_TILE_PX, SECONDS, chart_figure, montage_size,
                                            montage_tile_origin, tile_title)
from MedFusionLib.metrics import METRICS

METHODS = ["average", "mfenet[rule=softmax,edge_weight=0]"]


@pytest.fixture(scope="module")
def small_run(harvard_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("pictures")
    evaluation, paths = evaluate(out, pairs_dir=harvard_dir, methods=METHODS, folders=["CT-MRI", "PET-MRI"],
                                 limit=1, device="cpu")
    return evaluation, paths


def test_montage_tiles_are_256_px_and_show_the_images(small_run):
    evaluation, paths = small_run
    montage = cv2.imread(str(paths["montage"]), cv2.IMREAD_COLOR)[..., ::-1]  # RGB
    n_rows, n_cols = len(evaluation.montage), 2 + len(METHODS)
    assert MONTAGE_TILE_PX >= 256
    assert (montage.shape[1], montage.shape[0]) == montage_size(n_rows, n_cols)
    # Tile (0, 0) holds the first source of the first row, pixel for pixel (256 x 256 Harvard image).
    source = evaluation.montage[0].sources[0][1]
    assert source.shape == (256, 256)
    x, y = montage_tile_origin(0, 0)
    tile = montage[y:y + MONTAGE_TILE_PX, x:x + MONTAGE_TILE_PX, 0].astype(np.float32) / 255.0
    assert np.corrcoef(tile.ravel(), source.ravel())[0, 1] > 0.98
    # A colour row (PET-MRI) is shown in colour in its fused tiles.
    x, y = montage_tile_origin(1, 2)
    fused_tile = montage[y:y + MONTAGE_TILE_PX, x:x + MONTAGE_TILE_PX].astype(int)
    assert np.count_nonzero(np.ptp(fused_tile, axis=2) > 60) > 500


def test_tile_titles_break_long_labels_into_lines_that_fit():
    assert tile_title("average") == "average"
    assert tile_title("mfenet[rule=softmax,edge_weight=0]") == "mfenet[rule=softmax,\nedge_weight=0]"
    assert all(len(line) <= 30 for line in tile_title("fusioncinn[alpha=0.25,beta=long_value,gamma=3]").split("\n"))


def test_every_chart_title_fits_its_figure(small_run):
    import matplotlib.pyplot as plt

    evaluation, _ = small_run
    assert list(evaluation.metrics) == list(METRICS)
    for column in [SECONDS, *METRICS]:
        fig = chart_figure(evaluation, column)
        try:
            fig.canvas.draw()
            box = fig.axes[0].title.get_window_extent()
            width, height = fig.canvas.get_width_height()
            assert box.x0 >= 0 and box.x1 <= width and box.y1 <= height, column
        finally:
            plt.close(fig)

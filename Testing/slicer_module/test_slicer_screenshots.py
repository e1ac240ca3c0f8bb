"""Offscreen rendering of slice views (trame-slicer + Mesa, no display): the mask is drawn over the image."""
from __future__ import annotations

import numpy as np
import pytest

from slicer_testkit import REPO, SPLEEN

pytest.importorskip("trame_slicer", reason="trame-slicer is not installed (pip install 'trame-slicer[standalone]')")


def coloured_fraction(rgb: np.ndarray) -> float:
    """Share of pixels that are clearly not grey (the segmentation overlay; the CT itself is greyscale)."""
    spread = rgb.max(axis=2).astype(int) - rgb.min(axis=2).astype(int)
    return float((spread > 40).mean())


@pytest.mark.slow
def test_views_show_the_imported_mask_over_the_image(tmp_path):
    from slicer_screenshots import OffscreenViewer, mask_centre_ras, save_png

    with OffscreenViewer(size=256) as viewer:
        volume, segmentation = viewer.logic.importer.load_case(SPLEEN, "spleen_2")
        centre = mask_centre_ras(viewer.logic, segmentation, volume)

        with_mask = viewer.render(volume, segmentation, "Axial", through_ras=centre)
        segmentation.GetDisplayNode().SetVisibility(False)
        without_mask = viewer.render(volume, None, "Axial", through_ras=centre)
        segmentation.GetDisplayNode().SetVisibility(True)
        sagittal = viewer.render(volume, segmentation, "Sagittal", through_ras=centre)

    assert with_mask.shape == (256, 256, 3)
    assert without_mask.std() > 10, "the CT slice itself must be visible (not a blank view)"
    assert coloured_fraction(without_mask) < 0.01
    assert coloured_fraction(with_mask) > 0.05, "the spleen overlay must cover part of the view"
    assert sagittal.std() > 10 and coloured_fraction(sagittal) > 0.01, "every orientation goes through the mask"
    # under the semi-transparent fill the image still shows (not a flat colour over black)
    inside = np.any(with_mask != without_mask, axis=2)
    assert with_mask[inside].std() > 5
    save_png(with_mask, tmp_path / "axial.png")
    assert (tmp_path / "axial.png").stat().st_size > 1000


def test_readme_screenshots_exist_and_are_renders():
    """The screenshots the README and EXTENSION_SCREENSHOTURLS show were rendered (not empty or grey)."""
    import matplotlib.pyplot as plt

    for name in ("prediction-axial.png", "prediction-three-views.png"):
        path = REPO / "Resources" / "Screenshots" / name
        assert path.is_file(), f"run Testing/slicer_module/slicer_screenshots.py to make {name}"
        rgb = (plt.imread(path)[:, :, :3] * 255).astype(np.uint8)
        assert rgb.std() > 10 and coloured_fraction(rgb) > 0.002

"""Offscreen screenshots of Slicer slice views (image + segmentation overlay) without a display or Qt.

Uses trame-slicer's SlicerApp (scene, application logic, displayable managers) and DirectViewFactory with
offscreen rendering (Mesa OSMesa/EGL), and the module's own Logic to load the image and import the mask, so the
pictures show exactly what the module puts in the scene.

Make the README/extension screenshots from a trained model (e.g. `autoseg train ... --out MODEL`):
    python Testing/slicer_module/slicer_screenshots.py MODEL IMAGE.nii.gz DATASET_DIR
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkOSOpenGLRenderWindow")

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "AutoSegSearch"))


class OffscreenViewer:
    """A headless Slicer scene with offscreen slice views, as a context manager. Keep the object alive while
    rendering and close it before it is freed: a SlicerApp freed with live views renders them once more without
    colour tables (VTK then logs "Component 3 is not in input" errors)."""

    def __init__(self, size: int = 480):
        from trame_slicer.core import SlicerApp
        from trame_slicer.views import DirectViewFactory

        from AutoSegSearchLib.logic import PanelLogic

        self.app = SlicerApp()
        self.app.view_manager.register_factory(DirectViewFactory(do_render_offscreen=True))
        self.logic = PanelLogic(self.app.scene, app_logic=self.app.app_logic)
        self.size = size
        self._views = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stop the views rendering on scene changes, then drop them: freed with the app, they would render once
        more after the colour tables their layers use are gone."""
        from trame_slicer.views.render_scheduler import NoScheduleRendering

        for view in self._views.values():
            view.set_scheduled_render(NoScheduleRendering())
            view.finalize()
            self.app.view_manager.remove_view(view.get_view_node().GetSingletonTag())
        self._views.clear()

    def view(self, orientation: str):
        from trame_slicer.views import ViewLayoutDefinition

        if orientation not in self._views:
            make = {"Axial": ViewLayoutDefinition.axial_view, "Coronal": ViewLayoutDefinition.coronal_view,
                    "Sagittal": ViewLayoutDefinition.sagittal_view}[orientation]
            view = self.app.view_manager.create_view(make())
            view.render_window().SetSize(self.size, self.size)
            self._views[orientation] = view
        return self._views[orientation]

    def _grab(self, view) -> np.ndarray:
        import vtk
        from vtk.util import numpy_support

        view.render()
        grab = vtk.vtkWindowToImageFilter()
        grab.SetInput(view.render_window())
        grab.ReadFrontBufferOff()
        grab.Update()
        image = grab.GetOutput()
        w, h, _ = image.GetDimensions()
        rgb = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(h, w, -1)[:, :, :3]
        return np.ascontiguousarray(rgb[::-1])

    def render(self, volume, segmentation=None, orientation: str = "Axial", through_ras=None,
               opacity: float = 0.45) -> np.ndarray:
        """One slice view (image + segment fill and outline) as an RGB uint8 array, rows top to bottom.

        VTK renders the image and the segment layers. Offscreen, the segment *fill* is blended against black
        instead of the image (seen with OSMesa and EGL alike), so the fill is rendered opaque in a separate pass
        and blended over the image pass here; the outlines come straight from VTK.
        """
        view = self.view(orientation)
        view.set_background_volume_id(volume.GetID())
        view.fit_view_to_content()
        if through_ras is not None:
            view.get_view_node().JumpSliceByOffsetting(*[float(x) for x in through_ras])
        display = segmentation.GetDisplayNode() if segmentation is not None else None
        if display is None:
            return self._grab(view)
        display.SetVisibility(False)
        image = self._grab(view)
        display.SetVisibility(True)
        display.SetVisibility2DOutline(False)
        display.SetOpacity2DFill(1.0)
        fill = self._grab(view)
        display.SetVisibility2DFill(False)
        display.SetVisibility2DOutline(True)
        outline = self._grab(view)
        display.SetVisibility2DFill(True)                  # leave the display as Slicer's default
        in_fill = np.any(fill != image, axis=2)
        on_outline = np.any(outline != image, axis=2)
        out = image.astype(float)
        out[in_fill] = (1 - opacity) * out[in_fill] + opacity * fill[in_fill]
        out[on_outline] = outline[on_outline]
        return out.round().astype(np.uint8)


def mask_centre_ras(logic, segmentation, volume) -> np.ndarray:
    """RAS centre of the mask (to put every view through the structure)."""
    seg = segmentation.GetSegmentation()
    value_of = {seg.GetNthSegment(i).GetName(): seg.GetNthSegment(i).GetLabelValue()
                for i in range(seg.GetNumberOfSegments())}
    labels, _ = logic.nodes.segmentation_to_array(segmentation, volume, value_of)
    k, j, i = np.argwhere(labels > 0).mean(axis=0)
    import vtk

    m = vtk.vtkMatrix4x4()
    volume.GetIJKToRASMatrix(m)
    return np.array(m.MultiplyPoint((i, j, k, 1.0))[:3])


def save_png(rgb: np.ndarray, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    plt.imsave(path, rgb)
    return path


def make_readme_screenshots(model_dir: Path, image: Path, dataset_dir: Path, out_dir: Path) -> list[Path]:
    """Predict ``image`` with the engine through the Logic and shoot the views with the mask over the image."""
    import tempfile

    with OffscreenViewer(size=420) as viewer:
        logic = viewer.logic
        volume = logic.nodes.add_volume(logic.nodes.read_volume(image), image, image.name.split(".")[0])
        work = Path(tempfile.mkdtemp(prefix="autoseg-shots-"))
        segmentation = logic.importer.apply_model(model_dir, volume, work, device="cpu",
                                         label_names=logic.outputs.dataset_label_names(dataset_dir))
        centre = mask_centre_ras(logic, segmentation, volume)
        views = [viewer.render(volume, segmentation, orientation, through_ras=centre)
                 for orientation in ("Axial", "Coronal", "Sagittal")]
    gap = np.full((views[0].shape[0], 6, 3), 255, np.uint8)
    paths = [save_png(views[0], out_dir / "prediction-axial.png"),
             save_png(np.hstack([views[0], gap, views[1], gap, views[2]]), out_dir / "prediction-three-views.png")]
    return paths


if __name__ == "__main__":
    if len(sys.argv) != 4:
        print(__doc__)
        sys.exit(1)
    for p in make_readme_screenshots(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]),
                                     REPO / "Resources" / "Screenshots"):
        print(p)

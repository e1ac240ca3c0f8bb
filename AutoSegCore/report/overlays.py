"""Prediction overlays for the report: for a few cases in ``DIR/predictions``, the slice through the most
foreground — image, image + ground truth, image + prediction — drawn with the label colours Slicer gets."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from AutoSegCore.report.plots import new_figure, to_data_uri
from AutoSegCore.search.search_dir import SearchDir


def _slice_index(label: np.ndarray, axis: int = 2) -> int:
    """The slice along ``axis`` with the most foreground voxels (the middle one when there is none)."""
    other = tuple(a for a in range(3) if a != axis)
    counts = (label > 0).sum(axis=other)
    return int(np.argmax(counts)) if counts.max() > 0 else label.shape[axis] // 2


def _rgba(label2d: np.ndarray, colors: dict) -> np.ndarray:
    out = np.zeros(label2d.shape + (4,), dtype=np.float32)
    for value, rgb in colors.items():
        mask = label2d == value
        out[mask, :3] = rgb
        out[mask, 3] = 0.55
    return out


def overlay_figure(image: np.ndarray, prediction: np.ndarray, truth: np.ndarray | None, labels: dict,
                   title: str, spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> str:
    """One case: three panels (image, + ground truth, + prediction) of its most-foreground axial slice."""
    from AutoSegCore.data.writers import label_colors

    colors = label_colors(labels or {int(v): str(v) for v in np.unique(prediction)})
    k = _slice_index(truth if truth is not None else prediction)
    img = image[0] if image.ndim == 4 else image
    # nibabel voxel order (i, j, k): transpose so i runs left-right and j bottom-up (origin="lower")
    sl = img[:, :, k].T
    lo, hi = np.percentile(sl, [1, 99.5]) if sl.size else (0, 1)
    panels = [("image", None), ("ground truth", truth), ("prediction", prediction)]
    panels = [(n, v) for n, v in panels if n != "ground truth" or truth is not None]
    aspect = float(spacing[1]) / float(spacing[0])      # rows are j, columns i: keep millimetres square
    fig = new_figure(2.7 * len(panels), 2.9)
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    for ax, (name, vol) in zip(axes, panels):
        ax.imshow(sl, cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1, origin="lower", interpolation="nearest",
                  aspect=aspect)
        if vol is not None:
            ax.imshow(_rgba(vol[:, :, k].T, colors), origin="lower", interpolation="nearest", aspect=aspect)
        ax.set_title(name, fontsize=9)
        ax.set_axis_off()
    fig.suptitle(f"{title} — slice k={k}", fontsize=9)
    return to_data_uri(fig)


def prediction_overlays(work_dir: Path, data: str | None, max_cases: int = 3) -> tuple[list[tuple[str, str]], str | None]:
    """``([(case, data_uri)…], note)`` for up to ``max_cases`` predictions; ``note`` says what was missing."""
    import nibabel as nib

    pred_dir = SearchDir(work_dir).predictions
    files = sorted(pred_dir.glob("*.nii.gz")) if pred_dir.is_dir() else []
    if not files:
        return [], "no predictions/ folder with validation predictions (search run without final training?)"
    ds = None
    note = None
    if data:
        try:
            from AutoSegCore.data.dataset import load_dataset

            ds = load_dataset(data, validate=False)
        except Exception as exc:  # the dataset moved or is unreadable: show what we can, say why
            note = f"dataset {data} could not be read ({exc}); overlays show predictions only"
    else:
        note = "search.json names no dataset; overlays show predictions only"
    out = []
    for path in files[:max_cases]:
        name = path.name[: -len(".nii.gz")]
        try:
            pred = np.asarray(nib.load(str(path)).dataobj)
            image, truth, labels, spacing = None, None, {}, (1.0, 1.0, 1.0)
            if ds is not None and name in set(ds.case_names):
                from AutoSegCore.data.dataset import read_case

                arr = read_case(ds.case(name))
                image, truth, labels, spacing = arr.image, arr.label, ds.labels, arr.spacing
            if image is None:
                image = pred.astype(np.float32)
            if pred.ndim != 3 or image.shape[-3:] != pred.shape:
                note = f"{path.name}: shape {pred.shape} does not match its image {image.shape[-3:]}; skipped"
                continue
            out.append((name, overlay_figure(image, pred, truth, labels, name, spacing)))
        except Exception as exc:  # one unreadable file must not sink the report
            note = f"{path.name} could not be drawn ({exc.__class__.__name__}: {exc})"
    return out, note

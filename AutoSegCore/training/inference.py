"""Sliding-window inference (Gaussian weighting, MONAI), flip TTA, ensembles, outputs in the original geometry."""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from monai.inferers import sliding_window_inference

from AutoSegCore.data.validation import check_finite
from AutoSegCore.errors import ConfigError, DatasetError
from AutoSegCore.events import NULL_EVENTS, EventWriter
from AutoSegCore.training.model_io import (INFO_FILE, MODEL_HINT, is_label_map, load_model, read_json_object,
                                           read_model_info)
from AutoSegCore.training.postprocess import keep_largest_component
from AutoSegCore.utils.device import pick_device


@torch.no_grad()
def predict_probs(net: torch.nn.Module, image: torch.Tensor, patch: tuple[int, int, int], *,
                  device: torch.device, amp: torch.dtype | None = None, overlap: float = 0.5,
                  tta_axes: tuple[int, ...] = (), sw_batch_size: int = 2,
                  channels_last: bool = False) -> torch.Tensor:
    """Softmax probabilities (K, X, Y, Z) on CPU for ``image`` (C, X, Y, Z); volumes smaller than the patch are
    padded symmetrically to it, exactly as the trainer pads its canvas.  ``channels_last`` feeds each window
    in the NDHWC layout of a net converted with ``to(memory_format=torch.channels_last_3d)``."""
    x = image.unsqueeze(0).to(device)

    def predictor(window: torch.Tensor) -> torch.Tensor:
        if channels_last:
            window = window.contiguous(memory_format=torch.channels_last_3d)
        return net(window)

    def run(inp: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            out = sliding_window_inference(inp, roi_size=patch, sw_batch_size=sw_batch_size, predictor=predictor,
                                           overlap=overlap, mode="gaussian")
        return torch.softmax(out.float(), dim=1)

    probs = run(x)
    flips = [()] + [(ax,) for ax in tta_axes]
    for dims in flips[1:]:
        d = [2 + a for a in dims]
        probs += run(x.flip(d)).flip(d)
    probs /= len(flips)
    return probs[0].cpu()


predict_logits = predict_probs  # validation only needs the argmax, which softmax preserves


def _model_members(model_dir: Path) -> tuple[list[Path], dict | None]:
    """A model folder, or an ensemble folder whose ``ensemble.json`` lists member model folders; returns the
    member folders and the parsed ``ensemble.json`` (``None`` for a single model)."""
    ens = model_dir / "ensemble.json"
    if ens.is_file():
        top = read_json_object(ens, "an ensemble description")
        members, labels = top.get("members"), top.get("labels")
        if not (isinstance(members, list) and members and all(isinstance(m, str) and m for m in members)):
            raise ConfigError(f"{ens} is not an ensemble description ('members' is not a list of member folders)",
                              MODEL_HINT)
        if not is_label_map(labels):
            raise ConfigError(f"{ens} is not an ensemble description ('labels' is not a mapping of label values "
                              "to names)", MODEL_HINT)
        paths = [model_dir / m for m in members]
        for m in paths:
            read_model_info(m)
        return paths, top
    read_model_info(model_dir)
    return [model_dir], None


class Predictor:
    """Load a trained model (or ensemble) once; predict label volumes in the input image's own geometry."""

    def __init__(self, model_dir: str | Path, device: str = "auto", tta: bool | None = None) -> None:
        from AutoSegCore.data.preprocess import Preprocessor
        from AutoSegCore.data.volumes import short_error

        self.model_dir = Path(model_dir)
        self.device = pick_device(device)
        self.members = []
        paths, ensemble = _model_members(self.model_dir)
        for member in paths:
            net, info = load_model(member, self.device)
            where = member / INFO_FILE
            try:
                pre = Preprocessor.from_state(info["preprocessor"])
            except ConfigError as exc:
                raise ConfigError(f"{where}: {exc.message}", exc.hint) from None
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                raise ConfigError(f"{where} is not a model description (its 'preprocessor' section is damaged: "
                                  f"{short_error(exc)})", "re-train the model, or copy its folder again") from None
            self.members.append((net, info, pre))
        first = self.members[0][1]
        top = ensemble if ensemble is not None else first
        self.labels = {int(k): v for k, v in top["labels"].items()}
        self.in_channels = first["in_channels"]
        inf = top.get("inference", first["config"].get("inference", {}))
        inf = inf if isinstance(inf, dict) else {}
        self.tta = bool(inf.get("tta", False)) if tta is None else tta
        lcc = top.get("largest_component", inf.get("largest_component", []))
        self.largest_component = [int(c) for c in lcc] if isinstance(lcc, list) else []

    def predict_array(self, image: np.ndarray, affine: np.ndarray, name: str = "case") -> np.ndarray:
        """``image`` (C, X, Y, Z) float32 in its original geometry → integer labels (X, Y, Z), same geometry."""
        from AutoSegCore.data.dataset import CaseArrays

        if image.shape[0] != self.in_channels:
            raise ConfigError(f"{name}: image has {image.shape[0]} channel(s), the model expects {self.in_channels}",
                              "give one file per channel (or a 4D file) in the order used for training")
        check_finite(name, np.asarray(image), before="predicting")
        spacing = tuple(float(s) for s in np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(0)))
        arrays = CaseArrays(name=name, image=image.astype(np.float32), label=None, affine=np.asarray(affine),
                            spacing=spacing)
        total = None
        for net, info, pre in self.members:
            prep = pre(arrays)
            tta_axes = tuple(info.get("flip_axes", [])) if self.tta else ()
            overlap = float((info["config"].get("inference") or {}).get("overlap", 0.5))
            probs = predict_probs(net, torch.from_numpy(np.ascontiguousarray(prep.image)), tuple(info["patch_size"]),
                                  device=self.device, overlap=overlap, tta_axes=tta_axes)
            back = pre.invert(probs.numpy(), prep.meta)
            total = back if total is None else total + back
        label = np.asarray(total).argmax(0).astype(np.uint8 if max(self.labels) < 256 else np.uint16)
        return keep_largest_component(label, self.largest_component)

    def read_input(self, item) -> tuple[str, list[Path], np.ndarray, np.ndarray]:
        """Read one input (a path, or a list of per-channel paths) and check it can be predicted: a readable,
        intact NIfTI, 3D (or 4D with channels last), the model's number of channels, channels on one grid, no
        NaN/Inf voxel.  Returns ``(case name, paths, image (C, X, Y, Z), affine)``; a ``DatasetError`` naming
        the file otherwise (the messages ``autoseg validate`` gives for the same problems)."""
        from AutoSegCore.data.volumes import read_header, read_image

        paths = [Path(p) for p in (item if isinstance(item, (list, tuple)) else [item])]
        if not paths:
            raise DatasetError("an input has no image file", "pass at least one image path per case")
        if len(paths) > 1:      # channel files: on one grid, or np.stack in read_image fails without naming them
            headers = [read_header(p) for p in paths]
            for p, h in zip(paths[1:], headers[1:]):
                if tuple(h.shape[:3]) != tuple(headers[0].shape[:3]):
                    raise DatasetError(f"{p}: channel shape {tuple(h.shape[:3])} differs from {paths[0].name} "
                                       f"{tuple(headers[0].shape[:3])}", "resample all channels of a case onto one grid")
        image, affine = read_image(paths)
        if image.shape[0] != self.in_channels:
            where = paths[0] if len(paths) == 1 else f"{paths[0]} (+{len(paths) - 1} channel file(s))"
            raise DatasetError(f"{where}: image has {image.shape[0]} channel(s), the model expects "
                               f"{self.in_channels}",
                               "give one 4D file (x, y, z, channel) or the channel files of one case, in the order "
                               "used for training")
        per_file = [image] if len(paths) == 1 else [image[c:c + 1] for c in range(len(paths))]
        for p, voxels in zip(paths, per_file):
            check_finite(p, voxels, before="predicting")
        return case_name(paths[0]), paths, image, affine

    def check_inputs(self, inputs: list, out_dir: str | Path | None = None,
                     events: EventWriter = NULL_EVENTS) -> list[tuple[str, list[Path], tuple | None]]:
        """Read and check every input before any is predicted (see :meth:`read_input`); also that no two inputs
        share a case name and that ``out_dir`` can take the outputs.  Returns ``(case, paths, (image, affine) or
        None)`` per input — the arrays kept in memory up to a budget, so a few inputs are not read twice."""
        out = Path(out_dir) if out_dir is not None else None
        if out is not None and out.exists() and not out.is_dir():
            raise DatasetError(f"{out}: exists and is a file, not a folder", "choose a folder for --out (it is created "
                               "if missing)")
        checked: list[tuple[str, list[Path], tuple | None]] = []
        first_of: dict[str, Path] = {}
        budget = KEEP_CHECKED_BYTES
        for i, item in enumerate(inputs):
            name, paths, image, affine = self.read_input(item)
            if name in first_of:
                raise DatasetError(f"{paths[0]}: same case name '{name}' as {first_of[name]}",
                                   "predict them into different --out folders, or rename one (each case writes "
                                   "<case>.nii.gz and <case>.seg.nrrd)")
            first_of[name] = paths[0]
            if out is not None:
                for target in (out / f"{name}.nii.gz", out / f"{name}.seg.nrrd"):
                    if target.is_dir():
                        raise DatasetError(f"{target}: is a folder, a prediction would replace it",
                                           "move it away or choose another --out folder")
            keep = image.nbytes <= budget
            budget -= image.nbytes if keep else 0
            checked.append((name, paths, (image, affine) if keep else None))
            events.emit("progress", fraction=0.0, message=f"checked {i + 1}/{len(inputs)} inputs")
        return checked

    def predict_files(self, inputs: list, out_dir: str | Path, events: EventWriter = NULL_EVENTS,
                      progress=None) -> list[dict]:
        """Predict each input (a path or a list of per-channel paths); write NIfTI + .seg.nrrd per case.

        All or nothing: if anything fails, ``out_dir`` is left exactly as it was (not created, no file added,
        no existing prediction overwritten).  Two steps make that cheap for someone with 200 images:

        * every input is read and checked first (:meth:`check_inputs`: readable, intact, 3D, channels, finite),
          so a bad file is reported after one quick read of each image — not after hours of predicting the
          others, whose results would then be thrown away;
        * the outputs go to a hidden staging folder inside ``out_dir`` and are moved into place (one rename
          each, same file system) only when every case succeeded, so what no check can foresee (out of memory,
          a full disk, Ctrl-C) leaves nothing half-written either.  Re-running after a fix redoes everything.
        """
        from AutoSegCore.data.volumes import read_image
        from AutoSegCore.data.writers import save_prediction

        out_dir = Path(out_dir)
        if isinstance(inputs, (str, Path)):           # one image, not a list of its path's characters
            inputs = [inputs]
        checked = self.check_inputs(inputs, out_dir, events)
        with _staging(out_dir) as stage:
            staged = []
            for i, (name, paths, arrays) in enumerate(checked):
                image, affine = arrays or read_image(paths)
                checked[i] = (name, paths, None)                  # free the kept array once it is predicted
                label = self.predict_array(image, affine, name)
                written = save_prediction(label, affine, self.labels, stage, name)
                staged.append((name, written))
                events.emit("progress", fraction=(i + 1) / len(inputs), message=f"predicted {name}")
                if progress:
                    progress(i + 1, len(inputs), name)
        results = []
        for name, written in staged:
            final = {kind: out_dir / path.name for kind, path in written.items()}
            for kind, path in final.items():
                events.emit("artifact", kind=f"prediction_{kind}", path=str(path), case=name)
            results.append({"case": name, **{k: str(v) for k, v in final.items()}})
        return results


# checked input arrays kept in memory for the prediction step (beyond it an input is read again)
KEEP_CHECKED_BYTES = 512 * 2 ** 20


@contextmanager
def _staging(out_dir: Path) -> Iterator[Path]:
    """A hidden folder inside ``out_dir`` (created, with missing parents, if needed) whose files are moved into
    ``out_dir`` when the block succeeds; on any failure it is deleted, and so are the folders this created."""
    created = []
    for d in reversed([out_dir, *out_dir.parents]):
        if not d.exists():
            created.append(d)
    out_dir.mkdir(parents=True, exist_ok=True)
    stage = None
    try:
        stage = Path(tempfile.mkdtemp(prefix=".predicting-", dir=out_dir))
        yield stage
        for f in sorted(stage.iterdir()):
            os.replace(f, out_dir / f.name)
        stage.rmdir()
    except BaseException:
        if stage is not None:
            shutil.rmtree(stage, ignore_errors=True)
        for d in reversed(created):
            try:
                d.rmdir()
            except OSError:
                break
        raise


def expand_inputs(inputs: list) -> tuple[list, list[str]]:
    """Image files as given; a dataset folder (with dataset.json) becomes its test images — ``imagesTs/`` if it
    holds NIfTI images, else the cases of ``imagesTr/`` — one item per case (a path, or its channel files).
    Returns ``(items, notes)``: the notes say which folder each dataset gave (for the user)."""
    from AutoSegCore.data.dataset import load_dataset

    items: list = []
    notes: list[str] = []
    for raw in inputs:
        p = Path(raw)
        if p.is_dir():
            if not (p / "dataset.json").is_file():
                raise DatasetError(f"{p}: a folder without dataset.json",
                                   f"pass its image files (e.g. {p}/*.nii.gz) or a dataset folder (MSD or nnU-Net "
                                   "layout, with dataset.json)")
            ds = load_dataset(p, validate=False)
            test = _test_images(p, ds)
            if test:
                items += test
                notes.append(f"{p}: predicting the {len(test)} image(s) of imagesTs/")
            else:
                items += [c.images for c in ds.cases]
                why = "no imagesTs/" if not (p / "imagesTs").is_dir() else "imagesTs/ holds no NIfTI images"
                notes.append(f"{p}: {why}: predicting the {len(ds.cases)} training image(s) of imagesTr/")
        elif p.is_file():
            items.append(p)
        else:
            raise DatasetError(f"{p}: input not found", "pass existing image files or a dataset folder")
    return items, notes


_CHANNEL_FILE = re.compile(r"^(.+)_(\d{4})(\.nii(?:\.gz)?)$")


def _test_images(root: Path, ds) -> list:
    """``imagesTs/`` as prediction items: one file per case (MSD), or the ``<case>_000N`` channel files of each
    case when the dataset stores channels that way (nnU-Net); empty when it holds no NIfTI images."""
    from AutoSegCore.data.volumes import NIFTI_ENDINGS, strip_ending

    folder = root / "imagesTs"
    if not folder.is_dir():
        return []
    files = sorted(f for f in folder.iterdir()
                   if f.is_file() and not f.name.startswith(".") and f.name.endswith(NIFTI_ENDINGS))
    first = ds.cases[0] if ds.cases else None
    split = ds.source == "nnunet" or (first is not None and strip_ending(first.images[0].name) != first.name)
    if not split:
        return files
    by_case: dict[str, dict[int, Path]] = {}
    for f in files:
        m = _CHANNEL_FILE.match(f.name)
        if not m:
            raise DatasetError(f"{f}: not named <case>_0000.nii.gz like the dataset's channel files",
                               "name test images <case>_000N.nii.gz (one file per channel), as in imagesTr/")
        by_case.setdefault(m.group(1), {})[int(m.group(2))] = f
    items = []
    for case, channels in sorted(by_case.items()):
        for c in range(ds.num_channels):
            if c not in channels:
                ending = next(iter(channels.values())).name[len(case) + 5:]
                raise DatasetError(f"{folder / f'{case}_{c:04d}{ending}'}: channel file missing (dataset.json names "
                                   f"{ds.num_channels} channel(s): {', '.join(ds.channel_names)})",
                                   "add the file, or remove the case's other channel files from imagesTs/")
        extra = sorted(set(channels) - set(range(ds.num_channels)))
        if extra:
            raise DatasetError(f"{channels[extra[0]]}: channel {extra[0]} but dataset.json names "
                               f"{ds.num_channels} channel(s)", "remove the file or fix dataset.json")
        items.append([channels[c] for c in range(ds.num_channels)])
    return items


def case_name(path: Path) -> str:
    """Case name from a file name: strip .nii.gz/.nii/.nrrd/.mha and nnU-Net's _0000 channel suffix."""
    name = path.name
    for ext in (".nii.gz", ".nii", ".seg.nrrd", ".nrrd", ".mha", ".mhd"):
        if name.endswith(ext):
            name = name[: -len(ext)]
            break
    if len(name) > 5 and name[-5] == "_" and name[-4:].isdigit():
        name = name[:-5]
    return name

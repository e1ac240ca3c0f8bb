"""Sliding-window inference (Gaussian weighting, MONAI), flip TTA, ensembles, outputs in the original geometry."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from monai.inferers import sliding_window_inference

from AutoSegCore.errors import ConfigError
from AutoSegCore.events import NULL_EVENTS, EventWriter
from AutoSegCore.training.model_io import load_model, read_model_info
from AutoSegCore.training.postprocess import keep_largest_component
from AutoSegCore.utils.device import pick_device
from AutoSegCore.utils.io import read_json


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


def _model_members(model_dir: Path) -> list[Path]:
    """A model folder, or an ensemble folder whose ``ensemble.json`` lists member model folders."""
    ens = model_dir / "ensemble.json"
    if ens.is_file():
        members = [model_dir / m for m in read_json(ens)["members"]]
        for m in members:
            read_model_info(m)
        return members
    read_model_info(model_dir)
    return [model_dir]


class Predictor:
    """Load a trained model (or ensemble) once; predict label volumes in the input image's own geometry."""

    def __init__(self, model_dir: str | Path, device: str = "auto", tta: bool | None = None) -> None:
        from AutoSegCore.data.preprocess import Preprocessor

        self.model_dir = Path(model_dir)
        self.device = pick_device(device)
        self.members = []
        for member in _model_members(self.model_dir):
            net, info = load_model(member, self.device)
            pre = Preprocessor.from_state(info["preprocessor"])
            self.members.append((net, info, pre))
        first = self.members[0][1]
        top = read_json(self.model_dir / "ensemble.json") if (self.model_dir / "ensemble.json").is_file() else first
        self.labels = {int(k): v for k, v in top["labels"].items()}
        self.in_channels = first["in_channels"]
        inf = top.get("inference", first["config"].get("inference", {}))
        self.tta = bool(inf.get("tta", False)) if tta is None else tta
        lcc = top.get("largest_component", inf.get("largest_component", []))
        self.largest_component = [int(c) for c in lcc] if isinstance(lcc, list) else []

    def predict_array(self, image: np.ndarray, affine: np.ndarray, name: str = "case") -> np.ndarray:
        """``image`` (C, X, Y, Z) float32 in its original geometry → integer labels (X, Y, Z), same geometry."""
        from AutoSegCore.data.dataset import CaseArrays

        if image.shape[0] != self.in_channels:
            raise ConfigError(f"{name}: image has {image.shape[0]} channel(s), the model expects {self.in_channels}",
                              "give one file per channel (or a 4D file) in the order used for training")
        spacing = tuple(float(s) for s in np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(0)))
        arrays = CaseArrays(name=name, image=image.astype(np.float32), label=None, affine=np.asarray(affine),
                            spacing=spacing)
        total = None
        for net, info, pre in self.members:
            prep = pre(arrays)
            tta_axes = tuple(info.get("flip_axes", [])) if self.tta else ()
            probs = predict_probs(net, torch.from_numpy(np.ascontiguousarray(prep.image)), tuple(info["patch_size"]),
                                  device=self.device, overlap=float(info["config"]["inference"].get("overlap", 0.5)),
                                  tta_axes=tta_axes)
            back = pre.invert(probs.numpy(), prep.meta)
            total = back if total is None else total + back
        label = np.asarray(total).argmax(0).astype(np.uint8 if max(self.labels) < 256 else np.uint16)
        return keep_largest_component(label, self.largest_component)

    def predict_files(self, inputs: list, out_dir: str | Path, events: EventWriter = NULL_EVENTS,
                      progress=None) -> list[dict]:
        """Predict each input (a path or a list of per-channel paths); write NIfTI + .seg.nrrd per case."""
        from AutoSegCore.data.dataset import read_image
        from AutoSegCore.data.writers import save_prediction

        results = []
        for i, item in enumerate(inputs):
            paths = [Path(p) for p in (item if isinstance(item, (list, tuple)) else [item])]
            name = case_name(paths[0])
            image, affine = read_image(paths)
            label = self.predict_array(image, affine, name)
            written = save_prediction(label, affine, self.labels, Path(out_dir), name)
            for kind, path in written.items():
                events.emit("artifact", kind=f"prediction_{kind}", path=str(path), case=name)
            events.emit("progress", fraction=(i + 1) / len(inputs), message=f"predicted {name}")
            if progress:
                progress(i + 1, len(inputs), name)
            results.append({"case": name, **{k: str(v) for k, v in written.items()}})
        return results


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

"""A trained model (or an ensemble of them) loaded once, predicting label volumes in the input's own geometry:
preprocessing, sliding windows, the inverse resampling, the ensemble's mean, post-processing."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from AutoSegCore.data.validation import check_finite
from AutoSegCore.errors import ConfigError
from AutoSegCore.inference.postprocess import keep_largest_component
from AutoSegCore.inference.sliding_window import predict_probs
from AutoSegCore.training.model_io import (INFO_FILE, MODEL_HINT, is_label_map, load_model, read_json_object,
                                           read_model_info)
from AutoSegCore.utils.confine import confined
from AutoSegCore.utils.device import pick_device


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
        paths = [confined(model_dir, m, f"{ens}: member", ConfigError, "list member folders inside the ensemble "
                          "folder, e.g. members/0") for m in members]
        for m in paths:
            read_model_info(m)
        return paths, top
    read_model_info(model_dir)
    return [model_dir], None


class Predictor:
    """Load a trained model (or ensemble) once; predict label volumes in the input image's own geometry.

    Arrays here (:meth:`predict_array`); files and folders with :func:`AutoSegCore.prediction.predict_files`,
    which takes this object (or a model folder): one way to predict files, above this module, not two."""

    def __init__(self, model_dir: str | Path | list[Path], device: str = "auto", tta: bool | None = None) -> None:
        """``model_dir``: a model or ensemble folder, or a list of model folders averaged as an ensemble (the
        final training's members, before ``best/`` is installed; labels and inference settings of the first)."""
        from AutoSegCore.data.preprocess import Preprocessor
        from AutoSegCore.data.volumes import short_error

        if isinstance(model_dir, (list, tuple)):
            paths, ensemble = [Path(m) for m in model_dir], None
            for m in paths:
                read_model_info(m)
            self.model_dir = paths[0]
        else:
            self.model_dir = Path(model_dir)
            paths, ensemble = _model_members(self.model_dir)
        self.device = pick_device(device)
        self.members = []
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
                                  device=self.device, overlap=overlap, tta_axes=tta_axes,
                                  classes=max(self.labels) + 1)
            back = pre.invert(probs.numpy(), prep.meta)
            total = back if total is None else total + back
        label = np.asarray(total).argmax(0).astype(np.uint8 if max(self.labels) < 256 else np.uint16)
        return keep_largest_component(label, self.largest_component)

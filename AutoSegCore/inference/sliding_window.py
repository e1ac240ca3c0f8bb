"""Sliding-window inference over one volume: MONAI's Gaussian-weighted windows, batched on the model's device,
flip test-time augmentation, the probabilities accumulated on the GPU when they fit."""
from __future__ import annotations

import numpy as np
import torch
from monai.inferers import sliding_window_inference


ACCUMULATE_SHARE = 0.5     # of the GPU's free memory the probability maps of one volume may take there
_WINDOW_WEIGHTS: dict[tuple, torch.Tensor] = {}


def window_weights(patch, device: torch.device) -> torch.Tensor:
    """MONAI's Gaussian window weights for ``patch`` on ``device``, made once per (patch, device): MONAI would
    make them for every volume, reading their minimum back to the host each time (a GPU sync per case)."""
    from monai.data.utils import compute_importance_map

    key = (tuple(int(p) for p in patch), str(device))
    if key not in _WINDOW_WEIGHTS:
        _WINDOW_WEIGHTS[key] = compute_importance_map(key[0], mode="gaussian", sigma_scale=0.125, device=device)
    return _WINDOW_WEIGHTS[key]


def accumulation_device(device: torch.device, shape: tuple[int, ...], classes: int | None,
                        free_bytes: int | None = None) -> torch.device:
    """Where the sliding windows' probabilities of a volume of ``shape`` (X, Y, Z) with ``classes`` classes are
    accumulated: on the GPU when its maps (output + weights, the softmax, the TTA sum: ≈ 3 × (K + 1) float32
    volumes) take at most ``ACCUMULATE_SHARE`` of its free memory (``free_bytes``, default asked of CUDA), else
    on the CPU (each window's output copied there; the windows still run batched on the GPU).  On the CPU:
    the CPU.  ``classes`` None: the GPU (the trainer's validation volumes are canvas-sized)."""
    if device.type != "cuda" or classes is None:
        return device
    need = 3 * (int(classes) + 1) * 4 * int(np.prod(shape))
    if free_bytes is None:
        free_bytes = torch.cuda.mem_get_info(device)[0]
    return device if need <= ACCUMULATE_SHARE * free_bytes else torch.device("cpu")


@torch.no_grad()
def predict_probs(net: torch.nn.Module, image: torch.Tensor, patch: tuple[int, int, int], *,
                  device: torch.device, amp: torch.dtype | None = None, overlap: float = 0.5,
                  tta_axes: tuple[int, ...] = (), sw_batch_size: int = 2,
                  channels_last: bool = False, classes: int | None = None, keep_on_device: bool = False
                  ) -> torch.Tensor:
    """Softmax probabilities (K, X, Y, Z) on CPU (``keep_on_device``: where they were accumulated, the device for
    the trainer's canvas-sized validation volumes) for ``image`` (C, X, Y, Z); volumes smaller than the patch are
    padded symmetrically to it, exactly as the trainer pads its canvas.  ``channels_last`` feeds each window
    in the NDHWC layout of a net converted with ``to(memory_format=torch.channels_last_3d)``.  The windows run
    on ``device``; the probabilities are accumulated where :func:`accumulation_device` says (``classes``: K)."""
    x = image.unsqueeze(0).to(device)
    acc = accumulation_device(device, tuple(image.shape[1:]), classes)

    def predictor(window: torch.Tensor) -> torch.Tensor:
        if channels_last:
            window = window.contiguous(memory_format=torch.channels_last_3d)
        return net(window)

    def run(inp: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            out = sliding_window_inference(inp, roi_size=patch, sw_batch_size=sw_batch_size, predictor=predictor,
                                           overlap=overlap, mode="gaussian", sw_device=device, device=acc,
                                           roi_weight_map=window_weights(patch, device))
        return torch.softmax(out.float(), dim=1)

    probs = run(x)
    flips = [()] + [(ax,) for ax in tta_axes]
    for dims in flips[1:]:
        d = [2 + a for a in dims]
        probs += run(x.flip(d)).flip(d)
    probs /= len(flips)
    return probs[0] if keep_on_device else probs[0].cpu()

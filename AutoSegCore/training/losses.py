"""The six losses of the unet-pipeline space (the BOHB thesis), built from MONAI's where they exist."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.losses import DiceFocalLoss, DiceLoss, GeneralizedDiceLoss, HausdorffDTLoss

from AutoSegCore.errors import ConfigError
from AutoSegCore.training.fused_loss import FusedDiceCELoss


class TopKCrossEntropy(torch.nn.Module):
    """Cross-entropy averaged over the hardest k % voxels (nnU-Net's TopK loss); MONAI has no equivalent."""

    def __init__(self, k: float = 10.0) -> None:
        super().__init__()
        self.k = k

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        ce = F.cross_entropy(logits, target[:, 0].long(), reduction="none").flatten()
        n = max(1, int(ce.numel() * self.k / 100.0))
        return ce.topk(n, sorted=False).values.mean()


class SumLoss(torch.nn.Module):
    """Dice + another term (the combinations MONAI does not pre-package)."""

    def __init__(self, dice: torch.nn.Module, other: torch.nn.Module, other_weight: float = 1.0) -> None:
        super().__init__()
        self.dice, self.other, self.other_weight = dice, other, other_weight

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.dice(logits, target) + self.other_weight * self.other(logits, target)


def make_loss(name: str) -> torch.nn.Module:
    """Loss on raw logits (B, C, ...) and integer targets (B, 1, ...)."""
    common = dict(to_onehot_y=True, softmax=True)
    if name == "dice":
        return DiceLoss(**common, smooth_nr=1e-5, smooth_dr=1e-5)
    if name == "generalized_dice":
        return GeneralizedDiceLoss(**common)
    if name == "dice_ce":
        return FusedDiceCELoss()          # MONAI's DiceCELoss(**common), fused on CPU (fused_loss.py)
    if name == "dice_focal":
        return DiceFocalLoss(**common)
    if name == "dice_topk":
        return SumLoss(DiceLoss(**common), TopKCrossEntropy(10.0))
    if name == "dice_hausdorff":
        # HausdorffDTLoss computes distance transforms on CPU with SciPy each step: slow but MONAI's own.
        return SumLoss(DiceLoss(**common), HausdorffDTLoss(**common), other_weight=0.1)
    raise ConfigError(f"unknown loss '{name}'",
                      "use dice, generalized_dice, dice_ce, dice_focal, dice_topk or dice_hausdorff")


class DeepSupervisionWrapper(torch.nn.Module):
    """Weighted sum over deep-supervision heads (weights halve per level, normalised); targets resized by nearest."""

    def __init__(self, loss: torch.nn.Module) -> None:
        super().__init__()
        self.loss = loss

    def forward(self, outputs, target: torch.Tensor) -> torch.Tensor:
        if isinstance(outputs, torch.Tensor):
            return self.loss(outputs, target)
        weights = torch.tensor([0.5 ** i for i in range(len(outputs))])
        weights = weights / weights.sum()
        total = 0.0
        for w, out in zip(weights.tolist(), outputs):
            t = target if out.shape[2:] == target.shape[2:] else F.interpolate(
                target.float(), size=out.shape[2:], mode="nearest")
            total = total + w * self.loss(out, t)
        return total

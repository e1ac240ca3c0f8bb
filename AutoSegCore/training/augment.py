"""Batches cut and augmented on the training device: crops, flips, rotation, scaling, translation, gamma, intensity.

Written against torch directly rather than MONAI dictionary transforms because it runs on whole batches with one
seeded ``torch.Generator`` on the device (exact resume after interruption) and never reads a value back to the
host: per-sample MONAI transforms were the bottleneck of small proxy nets on CPU, and a per-step copy + host sync
was what made the trainer 0.32× a plain loop on a GPU.

The cases live once in a :class:`CaseBank` (flat buffers on the device, unpadded).  A batch is one gather: the
crop (or centre pad), the flips and the whole-voxel translation are folded into per-axis source-index arrays, so
cutting and those three augmentations cost one index pass and one ``index_select`` whatever the case sizes.
Rotation/scaling (``grid_sample``) and intensity changes then run on the batch.  Every random number is drawn
with a fixed shape whatever the outcome, so the stream — and an interrupted run's resume — does not depend on
where the ops run.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from AutoSegCore.events import NULL_EVENTS, EventWriter

FG_SAMPLES = 5000           # foreground voxels kept per case for oversampled crops (a regular subsample)
FG_PROB = 1 / 3             # share of crops centred on a foreground voxel (volumes larger than the canvas)
BANK_SHARE = 0.5            # the cases live on the GPU when they take at most this share of its free memory
_BIG = 1 << 40              # an out-of-range axis index: the flat index turns negative → the zero voxel 0


def safe_flip_axes(labels: list[np.ndarray], threshold: float = 0.9, separation: float = 1.0) -> list[int]:
    """Spatial axes (0, 1, 2) along which mirroring does not contradict the label geometry.

    With two or more foreground classes, an axis is unsafe when one class lies on the same side of another in
    ≥ ``threshold`` of the cases AND their centroids are far apart along it (mean offset > ``separation`` ×
    the foreground's spread): mirroring would then teach swapped labels (e.g. anterior/posterior hippocampus
    along axes 1 and 2; along axis 0 they overlap, offset ≈ 0.5 spread, so left-right flips stay safe).
    """
    classes = sorted({int(v) for lab in labels for v in np.unique(lab) if v > 0})
    if len(classes) < 2:
        return [0, 1, 2]
    coords = [{c: np.argwhere(lab == c) for c in classes} | {0: np.argwhere(lab > 0)} for lab in labels]
    safe = []
    for axis in range(3):
        unsafe = False
        for i, a in enumerate(classes):
            for b in classes[i + 1:]:
                offsets = []
                for cc in coords:
                    if len(cc[a]) and len(cc[b]):
                        spread = max(float(cc[0][:, axis].std()), 1e-6)
                        offsets.append((cc[a][:, axis].mean() - cc[b][:, axis].mean()) / spread)
                if offsets:
                    o = np.array(offsets)
                    consistent = max(np.mean(o > 0), np.mean(o < 0)) >= threshold
                    unsafe |= bool(consistent and np.abs(o).mean() > separation)
        if not unsafe:
            safe.append(axis)
    return safe


def _rand(gen: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.rand(shape, generator=gen, device=gen.device)


def host_reads_are_free(device: torch.device) -> bool:
    """Whether reading a tensor on ``device`` back to Python costs nothing (the CPU): only then may the batch
    code branch on tensor values.  Elsewhere the same code runs branch-free (a read would wait for the GPU).  One
    function, so the sync audit (Testing/training/test_sync_audit.py) can send the CPU down the GPU's path."""
    return torch.device(device).type == "cpu"


_AXIS_MASKS: dict[tuple, torch.Tensor] = {}


def _axis_mask(axes, device: torch.device) -> torch.Tensor:
    """(3,) bool mask of ``axes`` on ``device``, made once per (axes, device): building it each step would copy
    host data to the device every step."""
    key = (tuple(sorted(int(a) for a in axes)), str(device))
    if key not in _AXIS_MASKS:
        _AXIS_MASKS[key] = torch.tensor([a in key[0] for a in range(3)], dtype=torch.bool, device=device)
    return _AXIS_MASKS[key]


class CaseBank:
    """Images (C, X, Y, Z) and labels (X, Y, Z) of every training case in flat buffers on one device.

    Element 0 of each buffer is a zero voxel: crops reaching outside a volume (padding, translation) read it.
    ``fg`` keeps up to ``FG_SAMPLES`` foreground coordinates per case for foreground-oversampled crops."""

    def __init__(self, images: list[np.ndarray], labels: list[np.ndarray], device: torch.device,
                 pin: bool = False) -> None:
        self.device = torch.device(device)
        self.channels = int(images[0].shape[0])
        shapes = [tuple(int(s) for s in img.shape[1:]) for img in images]
        sizes = [int(np.prod(s)) for s in shapes]
        offsets = np.concatenate([[1], 1 + np.cumsum(sizes)[:-1]]).astype(np.int64)
        flat_img = torch.zeros((self.channels, 1 + sum(sizes)), dtype=torch.float32)
        flat_lab = torch.zeros(1 + sum(sizes), dtype=torch.uint8)
        fg, fg_count = [], []
        for img, lab, off, n in zip(images, labels, offsets, sizes):
            flat_img[:, off:off + n] = torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32)).reshape(
                self.channels, n)
            flat_lab[off:off + n] = torch.from_numpy(np.ascontiguousarray(lab).astype(np.uint8)).reshape(n)
            where = np.argwhere(lab > 0)
            where = where[:: max(1, len(where) // FG_SAMPLES)]
            fg.append(where)
            fg_count.append(len(where))
        fg_all = np.concatenate(fg) if sum(fg_count) else np.zeros((1, 3), np.int64)
        fg_start = np.concatenate([[0], np.cumsum(fg_count)[:-1]]).astype(np.int64)

        def put(t: torch.Tensor) -> torch.Tensor:
            if pin and self.device.type == "cpu" and torch.cuda.is_available():
                return t.pin_memory()
            return t.to(self.device)

        self.images, self.labels = put(flat_img), put(flat_lab)
        self.shapes = torch.tensor(shapes, dtype=torch.int64, device=self.device)            # (N, 3)
        self.offsets = torch.from_numpy(offsets).to(self.device)                               # (N,)
        self.fg = torch.from_numpy(fg_all.astype(np.int64)).to(self.device)                    # (F, 3)
        self.fg_start = torch.from_numpy(fg_start).to(self.device)
        self.fg_count = torch.tensor(fg_count, dtype=torch.int64, device=self.device)
        self.max_shape = tuple(max(s[i] for s in shapes) for i in range(3))
        self._sizes: dict[tuple, torch.Tensor] = {}
        self._staging: dict[tuple, list] = {}
        self._turn = 0

    def __len__(self) -> int:
        return int(self.offsets.shape[0])

    @property
    def nbytes(self) -> int:
        return self.images.numel() * 4 + self.labels.numel() + self.fg.numel() * 8

    @classmethod
    def from_batch(cls, image: torch.Tensor, label: torch.Tensor) -> "CaseBank":
        """A bank holding the samples of one batch (B, C, X, Y, Z) / (B, 1, X, Y, Z), on the batch's device."""
        return cls(list(image.detach().cpu().numpy()), [lab[0] for lab in label.detach().cpu().numpy()],
                   image.device)

    def crop_starts(self, idx: torch.Tensor, patch: tuple[int, int, int], gen: torch.Generator,
                    fg_prob: float = FG_PROB) -> torch.Tensor:
        """(B, 3) corner of each sample's canvas in its volume: centred (negative = padding) along axes the
        volume fits in; else random, and on a random foreground voxel for ``fg_prob`` of the samples
        (``training.augmentation.foreground_oversample``, planned from the label sizes)."""
        b = idx.shape[0]
        u_fg, u_pick, u_start = (_rand(gen, b).to(self.device), _rand(gen, b).to(self.device),
                                 _rand(gen, b, 3).to(self.device))
        size = self._sizes.get(tuple(patch))
        if size is None:                       # once per patch shape, not a host→device copy per step
            size = self._sizes[tuple(patch)] = torch.tensor(patch, dtype=torch.int64, device=self.device)
        shape = self.shapes[idx]
        room = shape - size
        count = self.fg_count[idx]
        pick = self.fg_start[idx] + (u_pick * count.clamp_min(1)).long().clamp(max=count.clamp_min(1) - 1)
        pick = pick.clamp(max=self.fg.shape[0] - 1)          # a case without foreground never uses its pick
        centre = self.fg[pick] - size // 2
        use_fg = ((u_fg < fg_prob) & (count > 0)).unsqueeze(1)
        rand = torch.minimum((u_start * (room.clamp_min(0) + 1)).long(), room.clamp_min(0))
        start = torch.where(use_fg, torch.minimum(centre.clamp_min(0), room.clamp_min(0)), rand)
        return torch.where(room <= 0, -((size - shape) // 2), start)

    def gather(self, idx: torch.Tensor, starts: torch.Tensor, patch: tuple[int, int, int],
               flips: torch.Tensor | None = None, shifts: torch.Tensor | None = None, out=None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Cut (B, C, *patch) images and (B, 1, *patch) uint8 labels: canvas voxel x of sample i reads volume voxel
        ``starts[i] + f(x - shifts[i])`` (``f`` mirrors along the axes where ``flips[i]``), zero outside."""
        b = idx.shape[0]
        shape = self.shapes[idx]
        strides = torch.stack([shape[:, 1] * shape[:, 2], shape[:, 2], torch.ones_like(shape[:, 2])], 1)
        axes = []
        for a, n in enumerate(patch):
            y = torch.arange(n, device=self.device).unsqueeze(0).expand(b, n)
            if shifts is not None:
                y = y - shifts[:, a:a + 1]
            inside = (y >= 0) & (y < n)
            if flips is not None:
                y = torch.where(flips[:, a:a + 1], n - 1 - y, y)
            src = starts[:, a:a + 1] + y
            inside &= (src >= 0) & (src < shape[:, a:a + 1])
            axes.append(torch.where(inside, src * strides[:, a:a + 1], -_BIG))
        rows = (self.offsets[idx].unsqueeze(1) + axes[0]).unsqueeze(2) + axes[1].unsqueeze(1)      # (B, X, Y)
        flat = (rows.unsqueeze(3) + axes[2].view(b, 1, 1, -1)).clamp_min_(0).view(-1)            # (B·X·Y·Z)
        if out is None:
            image, label = self.images.index_select(1, flat), self.labels.index_select(0, flat)
        else:
            image = torch.index_select(self.images, 1, flat, out=out[0])
            label = torch.index_select(self.labels, 0, flat, out=out[1])
        return image.view((self.channels, b) + tuple(patch)).transpose(0, 1), label.view((b, 1) + tuple(patch))

    def sample(self, batch: int, patch: tuple[int, int, int], aug: dict, flip_axes: list[int],
               gen: torch.Generator, two_d: bool = False, to: torch.device | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """A batch of random cases, cut, flipped and translated (one gather), on device ``to`` (default: this
        bank's).  A bank in host memory gathers into one of two pinned buffers and copies it over without
        blocking; a buffer is written again only once its previous copy is done (:meth:`_stage`)."""
        idx = torch.randint(len(self), (batch,), generator=gen, device=gen.device).to(self.device)
        starts = self.crop_starts(idx, patch, gen, float(aug.get("foreground_oversample", FG_PROB)))
        flips, shifts = draw_flips_and_shifts(batch, aug, flip_axes, gen, two_d)
        to = self.device if to is None else torch.device(to)
        staged = self._stage(batch, patch, to)
        image, label = self.gather(idx, starts, patch, _to(flips, self.device), _to(shifts, self.device),
                                   None if staged is None else staged[:2])
        if staged is None:
            return image.to(to, non_blocking=True), label.to(to, non_blocking=True)
        # copy the contiguous (C, B, …) buffer and transpose on the device: a strided source would be made
        # contiguous in pageable memory first, and that copy blocks
        image = staged[0].view((self.channels, batch) + tuple(patch)).to(to, non_blocking=True).transpose(0, 1)
        label = staged[1].view((batch, 1) + tuple(patch)).to(to, non_blocking=True)
        staged[2].record()                     # the copies out of this buffer, on the current stream
        return image, label

    def _stage(self, batch: int, patch, to: torch.device):
        """(image, label, done-event) pinned buffers for a host bank feeding a GPU, alternating between two
        sets (double buffering): the gather fills one while the other's copy may still run.  None when no
        staging is needed (the bank lives on ``to``, or there is no CUDA)."""
        if self.device.type != "cpu" or to.type != "cuda":
            return None
        n = batch * int(np.prod(patch))
        key = (n, str(to))
        if key not in self._staging:
            self._staging[key] = [(torch.empty((self.channels, n), dtype=torch.float32).pin_memory(),
                                   torch.empty(n, dtype=torch.uint8).pin_memory(), torch.cuda.Event())
                                  for _ in range(2)]
        self._turn ^= 1
        buf = self._staging[key][self._turn]
        buf[2].synchronize()                   # that buffer's copy of two steps ago (long done in practice)
        return buf


def _to(t: torch.Tensor | None, device: torch.device) -> torch.Tensor | None:
    return None if t is None else t.to(device, non_blocking=True)


def draw_flips_and_shifts(b: int, aug: dict, flip_axes: list[int], gen: torch.Generator, two_d: bool = False
                          ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(B, 3) bool flips (each allowed axis with probability 0.5) and (B, 3) whole-voxel shifts in
    [-translate, translate] (none along the slice axis of a 2D net); None when the config has none."""
    flips = shifts = None
    if flip_axes:
        flips = (_rand(gen, b, 3) < 0.5) & _axis_mask(flip_axes, gen.device)
    shift = int(aug.get("translate", 0))
    if shift > 0:
        shifts = (_rand(gen, b, 3) * (2 * shift + 1)).long() - shift
        if two_d:
            shifts[:, 2] = 0
    return flips, shifts


def _per_sample(mask: torch.Tensor, x: torch.Tensor, fn) -> torch.Tensor:
    """``x`` with ``fn(x_sub, idx)`` applied to the samples where ``mask``: on CPU only to those (reading the mask
    is free there and rotation is ≈ 5 ms per sample); elsewhere to all, blended with ``torch.where`` — no host
    sync.  ``idx`` is None when ``fn`` gets the whole batch."""
    if host_reads_are_free(x.device):
        sel = mask.nonzero().flatten()
        if sel.numel() == 0:
            return x
        if sel.numel() == x.shape[0]:
            return fn(x, None)
        x[sel] = fn(x[sel], sel)
        return x
    return torch.where(mask.view((-1,) + (1,) * (x.ndim - 1)), fn(x, None), x)


def augment_on_device(image: torch.Tensor, label: torch.Tensor, aug: dict, gen: torch.Generator,
                      two_d: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotation / scaling (one affine grid per sample), intensity scale + shift and gamma on a cut batch."""
    b, dev = image.shape[0], image.device
    rot_p, scale_p = float(aug.get("rotate_prob", 0)), float(aug.get("scale_prob", 0))
    if rot_p > 0 or scale_p > 0:
        do_rot, do_scale = (_rand(gen, b) < rot_p).to(dev), (_rand(gen, b) < scale_p).to(dev)
        angles = ((_rand(gen, b, 3) * 2 - 1) * float(aug.get("rotate_range", 0.26))).to(dev)
        # zoom by up to (1 + scale_range)× either way, log-uniform: shrinking and enlarging alike often and far
        # (a linear ±r draws enlargements up to 1/(1 − r) but shrinks only to 1/(1 + r))
        log_r = math.log1p(float(aug.get("scale_range", 0.1)))
        scales = torch.exp((_rand(gen, b) * 2 - 1) * log_r).to(dev)
        if two_d:
            angles[:, :2] = 0.0
        theta = torch.where(do_rot.view(b, 1, 1), rotation_matrices(angles),
                            torch.eye(3, device=dev).expand(b, 3, 3))
        theta = theta * torch.where(do_scale, scales, torch.ones_like(scales)).view(b, 1, 1)
        mat = torch.cat([theta, torch.zeros(b, 3, 1, device=dev)], 2)
        on = do_rot | do_scale

        def warp(x: torch.Tensor, sel, mode: str) -> torch.Tensor:
            m = mat if sel is None else mat[sel]
            # affine_grid works in (D, H, W) = (X, Y, Z) order of our tensors, reversed coordinates
            grid = F.affine_grid(m, list(x.shape), align_corners=False)
            return F.grid_sample(x.float(), grid, mode=mode, padding_mode="zeros", align_corners=False).to(x.dtype)

        image = _per_sample(on, image, lambda x, sel: warp(x, sel, "bilinear"))
        label = _per_sample(on, label, lambda x, sel: warp(x, sel, "nearest"))
    # intensity: scale and shift (probability = the proxy paper's knob), gamma
    p_shift = float(aug.get("intensity_shift_prob", 0))
    if p_shift > 0:
        on = (_rand(gen, b) < p_shift).float().view(b, 1, 1, 1, 1)
        s, t = float(aug.get("intensity_scale", 0.1)), float(aug.get("intensity_shift", 0.1))
        scale = (1 + (_rand(gen, b).view(b, 1, 1, 1, 1) * 2 - 1) * s * on).to(dev)
        offset = ((_rand(gen, b).view(b, 1, 1, 1, 1) * 2 - 1) * t * on).to(dev)
        image = image.mul_(scale).add_(offset)
    p_gamma = float(aug.get("gamma_prob", 0))
    if p_gamma > 0:
        lo, hi = aug.get("gamma_range", [0.8, 1.25])
        on = (_rand(gen, b) < p_gamma).to(dev)
        gammas = (lo + _rand(gen, b) * (hi - lo)).to(dev)

        def gamma(x: torch.Tensor, sel) -> torch.Tensor:
            g = (gammas if sel is None else gammas[sel]).view(-1, 1, 1, 1, 1)
            mn = x.flatten(1).amin(1).view(-1, 1, 1, 1, 1)
            rng = (x.flatten(1).amax(1).view(-1, 1, 1, 1, 1) - mn).clamp_min(1e-6)
            return ((x - mn) / rng).pow(g) * rng + mn

        image = _per_sample(on, image, gamma)
    return image, label


def augment_batch(image: torch.Tensor, label: torch.Tensor, aug: dict, flip_axes: list[int],
                  gen: torch.Generator, two_d: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Every augmentation on a batch already cut to one shape (B, C, X, Y, Z) / (B, 1, X, Y, Z): the trainer's
    own path (:meth:`CaseBank.sample` then :func:`augment_on_device`) applied to these samples in order."""
    b, patch = image.shape[0], tuple(image.shape[2:])
    bank = CaseBank.from_batch(image, label)
    flips, shifts = draw_flips_and_shifts(b, aug, flip_axes, gen, two_d)
    idx = torch.arange(b, device=bank.device)
    image, label = bank.gather(idx, torch.zeros(b, 3, dtype=torch.int64, device=bank.device), patch,
                               _to(flips, bank.device), _to(shifts, bank.device))
    return augment_on_device(image.contiguous(), label, aug, gen, two_d)


def rotation_matrices(angles: torch.Tensor) -> torch.Tensor:
    """(B, 3, 3) rotations Rz·Ry·Rx for (B, 3) angles (radians) about the three axes."""
    ca, cb, cc = angles.cos().unbind(1)
    sa, sb, sc = angles.sin().unbind(1)
    one, zero = torch.ones_like(ca), torch.zeros_like(ca)
    rx = torch.stack([one, zero, zero, zero, ca, -sa, zero, sa, ca], 1).view(-1, 3, 3)
    ry = torch.stack([cb, zero, sb, zero, one, zero, -sb, zero, cb], 1).view(-1, 3, 3)
    rz = torch.stack([cc, -sc, zero, sc, cc, zero, zero, zero, one], 1).view(-1, 3, 3)
    return rz @ ry @ rx


def bank_fits_device(need: int, device: torch.device) -> bool:
    """Whether ``need`` bytes of cases may live on ``device``: at most ``BANK_SHARE`` of what this process may still
    allocate there (its free memory, under a packed trial's memory share)."""
    if device.type != "cuda":
        return True
    free, total = torch.cuda.mem_get_info(device)
    fraction = torch.cuda.get_per_process_memory_fraction(device)
    return need <= BANK_SHARE * min(free, fraction * total - torch.cuda.memory_reserved(device))


def case_bank(cases: list, device: torch.device, events: EventWriter = NULL_EVENTS) -> CaseBank:
    """The training cases on the training device — or, when they would take more than ``BANK_SHARE`` of the
    GPU's free memory (a large CT dataset), in pinned host memory, each batch then copied over."""
    need = sum(int(np.prod(c.image.shape)) * 4 + int(np.prod(c.label.shape)) for c in cases)
    where = device if bank_fits_device(need, device) else torch.device("cpu")
    if where != device:
        events.emit("log", message=f"training cases ({need / 2**30:.1f} GiB) kept in host memory: "
                                   f"more than {BANK_SHARE:.0%} of the GPU memory free for them")
    return CaseBank([c.image for c in cases], [c.label for c in cases], where, pin=where != device)

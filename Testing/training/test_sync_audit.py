"""Issue 29: no training step waits for the GPU or copies host data to it, and every CUDA call gets an indexed
device — proved on the CPU, where the same code runs.

``SyncAudit`` (a ``TorchFunctionMode``) records, with the engine line that made it, every call that would
synchronise with a GPU (``.item()``, ``.tolist()``, ``.cpu()``, ``.numpy()``, ``bool``/``int``/``float`` of a
tensor, ``nonzero``, ``bincount`` …) or copy host data to the training device (``torch.tensor``/``as_tensor`` of
Python data, ``.to()`` of a tensor made from numpy, indexing with a Python list).  The CPU is sent down the GPU's
branch-free path (``augment.host_reads_are_free`` → False, the compiled CPU loss off), real Hippocampus cases are
trained, and after the first step (which builds per-run constants) a step must record nothing.
"""
from __future__ import annotations

import traceback
import weakref

import numpy as np
import pytest
import torch
from torch.overrides import TorchFunctionMode

from trainkit import preprocessed, tiny_config
from AutoSegCore.config import make_config
from AutoSegCore.training import augment, fused_loss, validation
from AutoSegCore.training import trainer as trainer_module
from AutoSegCore.training.trainer import Trainer

SYNCS = {"item", "tolist", "cpu", "numpy", "__bool__", "__int__", "__float__", "__index__", "nonzero",
         "bincount", "unique", "masked_select", "argwhere", "repeat_interleave", "synchronize"}
HOST_DATA = {"tensor", "as_tensor"}
# factories without a device make host tensors (on a GPU they stay on the host: reading them syncs nothing)
FACTORIES = {"arange", "zeros", "ones", "empty", "full", "rand", "randn", "randint", "eye", "linspace"}


def _engine_line() -> str:
    frames = [f for f in traceback.extract_stack() if "/AutoSegCore/" in f.filename]
    if not frames:
        return "?"
    f = frames[-1]
    where = f"{f.filename.split('/AutoSegCore/')[-1]}:{f.lineno} {f.line}"
    inner = [g for g in traceback.extract_stack() if "/monai/" in g.filename]
    return where + (f" (in monai/{inner[-1].filename.split('/monai/')[-1]}:{inner[-1].lineno} {inner[-1].line})"
                    if inner else "")


def _moves(name: str, args, kwargs) -> bool:
    """Whether a ``to``/``cuda`` call names a device (``.to(dtype)`` alone stays where it is)."""
    return name == "cuda" or kwargs.get("device") is not None or any(
        isinstance(a, (torch.device, str)) for a in args[1:])


def _list_index(index) -> bool:
    parts = index if isinstance(index, tuple) else (index,)
    return any(isinstance(p, (list, np.ndarray)) for p in parts)


class SyncAudit(TorchFunctionMode):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, str]] = []
        self._host: dict[int, weakref.ref] = {}

    def mark_host(self, t) -> None:
        if isinstance(t, torch.Tensor):
            self._host[id(t)] = weakref.ref(t)

    def is_host(self, t) -> bool:
        ref = self._host.get(id(t))
        return ref is not None and ref() is t

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", str(func))
        out = func(*args, **kwargs)
        if name in FACTORIES and kwargs.get("device") is None:
            self.mark_host(out)
        elif name in SYNCS and not (args and self.is_host(args[0])):
            self.calls.append((name, _engine_line()))
        elif name in HOST_DATA:
            self.calls.append((f"{name}(host data)", _engine_line()))
            self.mark_host(out)
        elif name in ("to", "cuda") and args and self.is_host(args[0]) and _moves(name, args, kwargs):
            self.calls.append(("to(host tensor)", _engine_line()))
            self._host.pop(id(out), None)      # on the CPU the same object: on a GPU a device tensor
        elif name in ("__getitem__", "__setitem__") and len(args) > 1 and _list_index(args[1]):
            self.calls.append((f"{name}(list index)", _engine_line()))
        elif args and self.is_host(args[0]):
            self.mark_host(out)                # work on host data stays on the host (views, casts, unsqueeze)
        return out

    def watch_numpy(self, monkeypatch) -> None:
        """``torch.from_numpy`` is no torch function: wrap it so its tensors count as host data."""
        real = torch.from_numpy

        def from_numpy(array):
            t = real(array)
            self.mark_host(t)
            return t

        monkeypatch.setattr(torch, "from_numpy", from_numpy)


@pytest.fixture()
def gpu_path(monkeypatch):
    """The CPU on the GPU's code path: no value-dependent branches, MONAI's loss instead of the compiled one."""
    monkeypatch.setattr(augment, "host_reads_are_free", lambda device: False)
    monkeypatch.setattr(validation, "host_reads_are_free", lambda device: False)
    monkeypatch.setattr(fused_loss, "available", lambda device: False)
    monkeypatch.setattr(trainer_module, "fused_available", lambda device: False)


def _trainer(hippo, tmp_path, **training):
    names = sorted(c.name for c in hippo.cases)[:4]
    cases = preprocessed(hippo, names)
    aug = {"rotate_prob": 0.5, "scale_prob": 0.5, "gamma_prob": 0.5, "intensity_shift_prob": 1.0, "translate": 3,
           "flip_axes": [0]}
    cfg = make_config(tiny_config(patch_size=[32, 32, 32], augmentation=aug, **training))
    return Trainer(cfg, cases[:3], cases[3:], labels=hippo.labels, out_dir=tmp_path / "m",
                   in_channels=hippo.num_channels, device="cpu")


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_a_training_step_neither_syncs_nor_copies_host_data(hippo, tmp_path, gpu_path, monkeypatch, optimizer):
    tr = _trainer(hippo, tmp_path, optimizer=optimizer)
    tr._confusion = torch.zeros(tr.out_classes, tr.out_classes, dtype=torch.long)
    tr._train_step()                                       # builds the per-run constants (patch size, masks)
    audit = SyncAudit()
    audit.watch_numpy(monkeypatch)
    with audit:
        losses = [tr._train_step() for _ in range(4)]
    assert audit.calls == [], "per-step syncs / host copies:\n" + "\n".join(f"{n}: {w}" for n, w in audit.calls)
    assert all(torch.isfinite(x) for x in losses)          # (outside the audit) they trained


def test_augmentation_itself_is_sync_free_on_the_gpu_path(hippo, gpu_path, monkeypatch):
    """Every augmentation on at probability 1 (rotation, scaling, gamma, flips, shifts), twice over."""
    cases = preprocessed(hippo, sorted(c.name for c in hippo.cases)[:2])
    bank = augment.CaseBank([c.image for c in cases], [c.label for c in cases], torch.device("cpu"))
    aug = {"rotate_prob": 1.0, "scale_prob": 1.0, "gamma_prob": 1.0, "intensity_shift_prob": 1.0, "translate": 4,
           "foreground_oversample": 0.5}
    gen = torch.Generator().manual_seed(0)
    bank.sample(2, (24, 24, 24), aug, [0, 1, 2], gen)
    audit = SyncAudit()
    audit.watch_numpy(monkeypatch)
    with audit:
        for _ in range(2):
            img, lab = bank.sample(2, (24, 24, 24), aug, [0, 1, 2], gen)
            img, lab = augment.augment_on_device(img, lab, aug, gen)
    assert audit.calls == [], "\n".join(f"{n}: {w}" for n, w in audit.calls)
    assert img.shape == (2, 1, 24, 24, 24) and lab.shape == (2, 1, 24, 24, 24)


def test_validation_reads_once_and_keeps_the_maps_on_the_device(hippo, tmp_path, gpu_path, monkeypatch):
    """The windows' weights, the argmax and the confusion counts stay on the device; what is left is named: each
    validation image goes to the device (its input) and the counts come back once — nothing per window."""
    tr = _trainer(hippo, tmp_path)
    tr.validate()                                          # the labels and the window weights, once per run
    audit = SyncAudit()
    audit.watch_numpy(monkeypatch)
    with audit:
        record = tr.validate()
    inputs = [w for n, w in audit.calls if n == "to(host tensor)" and w.startswith("inference/sliding_window.py")]
    reads = [(n, w) for n, w in audit.calls if w.startswith("training/validation.py")]
    others = [(n, w) for n, w in audit.calls if (n, w) not in reads and w not in inputs]
    assert others == [], "\n".join(f"{n}: {w}" for n, w in others)
    assert len(inputs) == len(tr.val_data) and [n for n, _ in reads] == ["cpu", "numpy"]
    assert 0.0 <= record["val_dice"] <= 1.0 and len(record["val_dice_per_case"]) == len(tr.val_data)


def test_device_side_dice_equals_monai_on_real_predictions(hippo, tmp_path):
    """The validation Dice counted on the device equals MONAI's compute_dice on the same argmax maps."""
    from AutoSegCore.inference.sliding_window import predict_probs
    from AutoSegCore.training.metrics import dice_per_class

    tr = _trainer(hippo, tmp_path, epochs=1)
    tr.fit(resume=False)
    record = tr.validate()
    for case, got in zip(tr.val_data, record["val_dice_per_case"]):
        probs = predict_probs(tr.net, torch.from_numpy(np.ascontiguousarray(case.image)), tr.patch,
                              device=tr.device, amp=tr.amp, overlap=0.25, channels_last=tr.channels_last)
        want = dice_per_class(probs.argmax(0).numpy(), case.label, [1, 2])
        assert got == pytest.approx(float(np.mean(list(want.values()))), abs=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (make gpu-check)")
def test_a_host_bank_feeds_the_gpu_from_pinned_buffers_with_the_same_batches(hippo):
    """Cases kept in host memory (too large for the GPU): batches gathered into two pinned buffers in turn and
    copied without blocking equal the batches the host itself cuts with the same random stream."""
    cases = preprocessed(hippo, sorted(c.name for c in hippo.cases)[:3])
    images, labels = [c.image for c in cases], [c.label for c in cases]
    staged = augment.CaseBank(images, labels, torch.device("cpu"), pin=True)
    plain = augment.CaseBank(images, labels, torch.device("cpu"))
    aug, dev = {"translate": 2, "foreground_oversample": 0.5}, torch.device("cuda", torch.cuda.current_device())
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    for _ in range(5):                                      # more than the two buffers: each is reused
        img, lab = staged.sample(2, (24, 24, 24), aug, [0], g1, to=dev)
        want_img, want_lab = plain.sample(2, (24, 24, 24), aug, [0], g2)
        assert img.device == dev and torch.equal(img.cpu(), want_img) and torch.equal(lab.cpu(), want_lab)
    assert all(t.is_pinned() for bufs in staged._staging.values() for b in bufs for t in b[:2])

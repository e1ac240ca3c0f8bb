"""The device-resident training path (issue 21), checked on the CPU where it runs the same code: batches cut by
one gather equal a direct crop/pad/flip/shift, foreground-oversampled crops, the sync-free step skip, the
device-side confusion counts, precision by device, trial device assignment, out-of-memory as a trial fault, and
a fork server that never touches CUDA.  The tests marked ``cuda`` run only where a GPU is visible
(``make gpu-check``)."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from trainkit import tiny_config
from AutoSegCore.config import make_config
from AutoSegCore.errors import AutoSegError, ConfigError
from AutoSegCore.training.augment import CaseBank, augment_batch
from AutoSegCore.training.trainer import Trainer, add_confusion, amp_dtype
from AutoSegCore.utils.device import memory_fraction, next_device, parse_devices

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU (make gpu-check)")


def _names(ds):
    return sorted(c.name for c in ds.cases)


def _preprocessed(ds, names):
    from AutoSegCore.data.preprocess import PreprocessCache, Preprocessor

    pre = Preprocessor(make_config()["preprocessing"]).fit(ds.subset(names))
    return PreprocessCache(pre).get_many([ds.case(n) for n in names])


def _direct_crop(image: np.ndarray, start, patch, flip, shift) -> np.ndarray:
    """The crop written the slow, obvious way: canvas voxel x reads image[start + f(x - shift)], zero outside."""
    out = np.zeros((image.shape[0],) + tuple(patch), image.dtype)
    grids = []
    for a, n in enumerate(patch):
        y = np.arange(n) - shift[a]
        ok = (y >= 0) & (y < n)
        y = np.where(flip[a], n - 1 - y, y)
        src = start[a] + y
        ok &= (src >= 0) & (src < image.shape[1 + a])
        grids.append((src, ok))
    for x in range(patch[0]):
        for y in range(patch[1]):
            sx, sy = grids[0][0][x], grids[1][0][y]
            if grids[0][1][x] and grids[1][1][y]:
                sz, okz = grids[2]
                out[:, x, y, okz] = image[:, sx, sy, sz[okz]]
    return out


def test_one_gather_equals_crop_pad_flip_and_shift_of_real_cases(hippo):
    """Real Hippocampus cases of different shapes: crops inside, crops padded on some axes, flips and shifts."""
    cases = _preprocessed(hippo, _names(hippo)[:3])
    bank = CaseBank([c.image for c in cases], [c.label for c in cases], torch.device("cpu"))
    patch = (24, 40, 28)
    idx = torch.tensor([0, 1, 2, 1])
    starts = torch.tensor([[3, -2, 0], [0, 1, -5], [-4, -4, -4], [5, 0, 2]])
    flips = torch.tensor([[True, False, True], [False, False, False], [True, True, True], [False, True, False]])
    shifts = torch.tensor([[0, 0, 0], [2, -3, 1], [-1, 0, 4], [0, 0, -2]])
    image, label = bank.gather(idx, starts, patch, flips, shifts)
    assert image.shape == (4, 1) + patch and label.shape == (4, 1) + patch and label.dtype == torch.uint8
    for k in range(4):
        c = cases[int(idx[k])]
        args = (starts[k].tolist(), patch, flips[k].tolist(), shifts[k].tolist())
        assert np.array_equal(image[k].numpy(), _direct_crop(c.image, *args)), k
        assert np.array_equal(label[k].numpy(), _direct_crop(c.label[None].astype(np.uint8), *args)), k


def test_crops_of_volumes_larger_than_the_canvas_oversample_foreground(hippo):
    """A canvas smaller than the cases: crops start inside the volume, and about a third of them are centred on a
    foreground voxel — far more crops hold foreground than uniform crops would."""
    cases = _preprocessed(hippo, _names(hippo)[:6])
    bank = CaseBank([c.image for c in cases], [c.label for c in cases], torch.device("cpu"))
    patch = (12, 12, 12)
    gen = torch.Generator().manual_seed(0)
    idx = torch.randint(len(bank), (600,), generator=gen)
    starts = bank.crop_starts(idx, patch, gen)
    shapes = bank.shapes[idx]
    assert bool((starts >= 0).all()) and bool((starts + torch.tensor(patch) <= shapes).all())
    centre = (slice(None), 0) + tuple(n // 2 for n in patch)
    _, label = bank.gather(idx, starts, patch)
    uniform = torch.minimum((torch.rand(600, 3, generator=gen) * (shapes - 12 + 1)).long(), shapes - 12)
    _, plain = bank.gather(idx, uniform, patch)
    # a foreground-centred crop has foreground at its centre voxel; a uniform one as often as the volume has
    fg_rate, plain_rate = (label[centre] > 0).float().mean().item(), (plain[centre] > 0).float().mean().item()
    assert fg_rate > plain_rate + 0.15, (fg_rate, plain_rate)


def test_sampling_is_seeded_and_augmentation_keeps_image_and_label_aligned(hippo, tmp_path):
    names = _names(hippo)
    cases = _preprocessed(hippo, names[:4])
    cfg = make_config(tiny_config(augmentation={"rotate_prob": 0.5, "scale_prob": 0.5, "gamma_prob": 0.5}))
    a = Trainer(cfg, cases, [], labels=hippo.labels, out_dir=tmp_path, in_channels=1, device="cpu")
    b = Trainer(cfg, cases, [], labels=hippo.labels, out_dir=tmp_path, in_channels=1, device="cpu")
    assert a.gen.device == a.device
    for _ in range(3):
        (ia, la), (ib, lb) = a._sample_batch(), b._sample_batch()
        assert torch.equal(ia, ib) and torch.equal(la, lb)
    # the label used as image: every spatial augmentation moves both alike
    lab = a.bank.gather(torch.arange(4), torch.zeros(4, 3, dtype=torch.long), a.patch)[1]
    aug = {"rotate_prob": 1.0, "scale_prob": 1.0, "translate": 3}
    img2, lab2 = augment_batch((lab > 0).float(), lab.clone(), aug, [0, 1, 2], torch.Generator().manual_seed(1))
    warped, nearest = img2.round().bool(), lab2 > 0
    assert 2 * (warped & nearest).sum().item() / (warped.sum() + nearest.sum()).item() > 0.95


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd", "rmsprop"])
def test_a_non_finite_step_changes_neither_weights_nor_optimiser_state(hippo, tmp_path, optimizer):
    """The skip without a host sync (fused optimisers' found_inf) is exact: nothing moves; a finite step moves."""
    cases = _preprocessed(hippo, _names(hippo)[:2])
    tr = Trainer(make_config(tiny_config(optimizer=optimizer)), cases, [], labels=hippo.labels, out_dir=tmp_path,
                 in_channels=1, device="cpu")
    params = list(tr.net.parameters())
    for p in params:
        p.grad = torch.ones_like(p)
    tr._step(torch.tensor(True))
    before = [p.detach().clone() for p in params]
    state = [{k: v.clone() for k, v in tr.optimizer.state[p].items() if torch.is_tensor(v)} for p in params]
    for p in params:
        p.grad = torch.full_like(p, float("nan"))
    tr._step(torch.tensor(False))
    assert all(torch.equal(p, q) for p, q in zip(params, before))
    assert all(torch.equal(tr.optimizer.state[p][k], v) for p, s in zip(params, state) for k, v in s.items())
    for p in params:
        p.grad = torch.ones_like(p)
    tr._step(torch.tensor(True))
    assert not torch.equal(params[0], before[0])


def test_device_confusion_counts_equal_bincount():
    torch.manual_seed(0)
    codes = torch.randint(9, (4, 20, 20, 20))
    a, b = torch.zeros(3, 3, dtype=torch.long), torch.zeros(3, 3, dtype=torch.long)
    add_confusion(a, codes, 3)
    b.view(-1).index_add_(0, codes.flatten(), torch.ones(1, dtype=torch.long).expand(codes.numel()))
    assert torch.equal(a, b) and int(a.sum()) == codes.numel()


def test_precision_by_device():
    cpu = torch.device("cpu")
    native = torch.cpu._is_avx512_bf16_supported()
    assert amp_dtype("auto", cpu) == (torch.bfloat16 if native else None)        # as before issue 21
    assert amp_dtype("off", cpu) is None and amp_dtype("bf16", cpu) == amp_dtype("on", cpu) == torch.bfloat16
    with pytest.raises(ConfigError, match="fp16 needs a CUDA GPU"):
        amp_dtype("fp16", cpu)
    for value in ("auto", "off", "bf16", "fp16", "on"):
        assert make_config({"training": {"amp": value}})["training"]["amp"] == value
    with pytest.raises(ConfigError, match="training.amp"):
        make_config({"training": {"amp": "fp8"}})


def test_trial_devices_are_parsed_and_spread():
    assert parse_devices("auto", gpus=0) == ["cpu"]
    assert parse_devices(None, gpus=2) == ["cuda:0", "cuda:1"]
    assert parse_devices("cuda", gpus=3) == ["cuda:0", "cuda:1", "cuda:2"]
    assert parse_devices(" cuda:1 , cuda:0", gpus=2) == ["cuda:1", "cuda:0"]
    for bad, gpus, match in (("cuda:2", 2, "does not exist"), ("cuda:0,cuda:0", 1, "twice"), ("cuda", 0, "not "
                             "available"), ("gpu0", 1, "unknown device"), ("auto,cpu", 1, "unknown device")):
        with pytest.raises(ConfigError, match=match):
            parse_devices(bad, gpus=gpus)
    devices, running = ["cuda:0", "cuda:1"], []
    for _ in range(5):
        running.append(next_device(devices, running))
    assert running == ["cuda:0", "cuda:1", "cuda:0", "cuda:1", "cuda:0"]
    running.remove("cuda:1")                                # a trial on cuda:1 ended: the next one goes there
    assert next_device(devices, running) == "cuda:1"
    assert memory_fraction(["cuda:0"], 1, "cuda:0") is None and memory_fraction(["cpu"], 4, "cpu") is None
    assert memory_fraction(["cuda:0"], 4, "cuda:0") == pytest.approx(0.225)
    assert memory_fraction(devices, 4, "cuda:1") == pytest.approx(0.45)
    assert memory_fraction(devices, 2, "cuda:1") is None


def _runner(tmp_path, **kw):
    from AutoSegCore.search.runner import SearchRunner
    from AutoSegCore.search.settings import SearchSettings

    return SearchRunner(SearchSettings(data=str(tmp_path), out=str(tmp_path / "out"), space="unet-pipeline",
                                       strategy="random", trials=2, **kw))


def test_each_trial_spec_carries_its_device_and_gpu_memory_share(tmp_path):
    """The search chooses each trial's device (``--devices`` / ``device``) and, for trials sharing a GPU, its
    memory share; both travel in the TrialSpec, and the child sets the share before the Trainer starts."""
    from AutoSegCore.search.settings import SearchSettings
    from AutoSegCore.search.trial_spec import TrialSpec

    assert _runner(tmp_path, jobs=2, device="cpu")._trial_device(["cpu"]) == ("cpu", None)
    assert _runner(tmp_path, jobs=2, devices="cpu")._trial_device([]) == ("cpu", None)
    if not CUDA:                                            # no GPU: "auto" stays auto, no cap
        assert _runner(tmp_path, jobs=2)._trial_device([]) == ("auto", None)
    with pytest.raises(ConfigError, match="devices"):
        SearchSettings(data=str(tmp_path), out=str(tmp_path / "o"), devices="gpu0,gpu1")
    base = dict(number=0, trial_id=1, storage="sqlite:///s.db", study_name="s", strategy="random",
                directions=["maximize"], data="/d", config={"training": {"epochs": 1}}, train_cases=["a"],
                val_cases=[], min_epochs=1, threads=1, device="cuda:0")
    spec = TrialSpec(**base, memory_fraction=0.45)
    spec.write(tmp_path)
    assert TrialSpec.read(tmp_path).memory_fraction == 0.45
    for bad in (0, 1.5, True, "0.4"):
        with pytest.raises(ConfigError, match="memory_fraction"):
            TrialSpec(**base, memory_fraction=bad)


def test_inference_accumulates_on_the_gpu_only_when_its_maps_fit():
    """Sliding windows run on the model's device; their probabilities are summed there when 3 × (K + 1) float32
    volumes take at most half the GPU's free memory, else on the CPU (a large CT with many classes)."""
    from AutoSegCore.inference.sliding_window import accumulation_device

    cpu, gpu = torch.device("cpu"), torch.device("cuda:0")
    assert accumulation_device(cpu, (512, 512, 400), 105) == cpu
    gib = 1 << 30
    small = (96, 96, 96)                                        # 3 × 4 × 4 B × 884 736 voxels ≈ 40 MiB
    assert accumulation_device(gpu, small, 3, free_bytes=80 * gib) == gpu
    ct = (512, 512, 400)                                        # 105 classes: ≈ 134 GB of maps
    assert accumulation_device(gpu, ct, 105, free_bytes=140 * gib) == cpu
    assert accumulation_device(gpu, ct, 2, free_bytes=140 * gib) == gpu      # 3 classes: ≈ 3.8 GB
    assert accumulation_device(gpu, ct, 2, free_bytes=6 * gib) == cpu
    assert accumulation_device(gpu, ct, None, free_bytes=0) == gpu           # the trainer's canvas validation


@needs_cuda
def test_gpu_prediction_matches_cpu_accumulation():
    from AutoSegCore.networks import build_network
    from AutoSegCore.inference import sliding_window as inference

    torch.manual_seed(0)
    net = build_network(make_config(tiny_config())["network"], 1, 3).eval()
    image = torch.randn(1, 40, 56, 40)
    ref = inference.predict_probs(net, image, (32, 32, 32), device=torch.device("cpu"))
    gpu = inference.predict_probs(net.cuda(), image, (32, 32, 32), device=torch.device("cuda"), classes=3)
    assert torch.allclose(ref, gpu, atol=1e-3)
    saved = inference.ACCUMULATE_SHARE
    inference.ACCUMULATE_SHARE = 0.0                           # forces the CPU accumulation path
    try:
        host = inference.predict_probs(net, image, (32, 32, 32), device=torch.device("cuda"), classes=3)
    finally:
        inference.ACCUMULATE_SHARE = saved
    assert torch.allclose(gpu, host, atol=1e-5)


@needs_cuda
def test_trials_sharing_one_gpu_each_get_a_memory_cap(tmp_path):
    runner = _runner(tmp_path, jobs=2, devices="cuda:0")
    first = runner._trial_device([])
    assert first == ("cuda:0", pytest.approx(0.45))
    assert runner._trial_device(["cuda:0"]) == first
    gpus = torch.cuda.device_count()
    spread = _runner(tmp_path, jobs=gpus, device="auto")
    assert spread._trial_device([]) == ("cuda:0", None)    # one trial per GPU: no cap needed


def test_gpu_out_of_memory_is_a_one_line_trial_fault(hippo, tmp_path):
    """torch's OutOfMemoryError in a step (raised here by a forward hook: a CPU cannot run out of GPU memory)
    becomes one line naming the run and the fix, which a trial reports as an out-of-memory failure."""
    from AutoSegCore.search.trial_process import failure_of
    from AutoSegCore.training.api import train_model

    names = _names(hippo)

    def hook(module, args, output):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    try:
        with pytest.raises(AutoSegError, match="CUDA out of memory") as err:
            train_model(hippo, tiny_config(epochs=1, steps_per_epoch=2), tmp_path, train_cases=names[:2],
                        val_cases=[], device="cpu")
    finally:
        handle.remove()
    assert "\n" not in err.value.message and "batch_size" in err.value.hint
    failure = failure_of(err.value)
    assert failure["kind"] == "out-of-memory" and failure["hint"] == err.value.hint, failure


PROBE = r"""
import json, sys, torch, torch._C
calls = []
def spy(owner, name):
    original = getattr(owner, name)
    def wrapper(*a, **k):
        calls.append(name)
        return original(*a, **k)
    setattr(owner, name, wrapper)
for name in ("is_available", "device_count", "init", "_lazy_init", "current_device", "get_device_properties",
             "get_device_name", "mem_get_info", "is_bf16_supported", "set_per_process_memory_fraction",
             "synchronize", "get_rng_state", "set_rng_state"):
    spy(torch.cuda, name)
if hasattr(torch._C, "_cuda_getDeviceCount"):
    spy(torch._C, "_cuda_getDeviceCount")
from AutoSegCore.search.fork_server import preload
preload()
print(json.dumps({"calls": calls, "initialized": torch.cuda.is_initialized()}))
"""


def test_the_fork_server_never_touches_cuda_before_it_forks():
    """A CUDA context (or even the driver's initialisation) in the fork server would be inherited broken by every
    forked trial.  After its imports: CUDA not initialised, and no torch.cuda query was made."""
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=300, check=True)
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen == {"calls": [], "initialized": False}


# ------------------------------------------------------------------------------------------------ GPU only
@needs_cuda
def test_cuda_training_steps_never_wait_for_the_device(hippo, tmp_path):
    """torch's sync debug mode turns any host sync inside the steps into an error."""
    cases = _preprocessed(hippo, _names(hippo)[:4])
    tr = Trainer(make_config(tiny_config(augmentation={"rotate_prob": 0.5, "gamma_prob": 0.5})), cases, [],
                 labels=hippo.labels, out_dir=tmp_path, in_channels=1, device="cuda")
    tr._confusion = torch.zeros(3, 3, dtype=torch.long, device=tr.device)
    tr._train_step()                                       # first step: allocations, cudnn autotuning
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        losses = [tr._train_step() for _ in range(3)]
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert all(torch.isfinite(torch.stack(losses)).tolist())


@needs_cuda
def test_a_memory_cap_makes_cuda_out_of_memory_a_trial_fault(hippo, tmp_path, monkeypatch):
    from AutoSegCore.training.api import train_model
    from AutoSegCore.utils.device import GpuMemoryCap

    names = _names(hippo)
    cfg = tiny_config(epochs=1, steps_per_epoch=2, batch_size=64)
    try:
        with pytest.raises(AutoSegError, match="CUDA out of memory"):         # ≈ 70 MB of an H200: the first big batch
            train_model(hippo, cfg, tmp_path, train_cases=names[:8], val_cases=[], device="cuda",
                        gpu_memory=GpuMemoryCap(share=0.0005))
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)


@needs_cuda
def test_exact_resume_on_cuda_with_deterministic_kernels(hippo, tmp_path, monkeypatch):
    """AUTOSEG_DETERMINISTIC=1: an interrupted and resumed CUDA run equals the uninterrupted one bit for bit."""
    from AutoSegCore.training.api import train_model
    from AutoSegCore.training.trainer import StopTraining

    monkeypatch.setenv("AUTOSEG_DETERMINISTIC", "1")
    names = _names(hippo)
    cfg = tiny_config(epochs=2, steps_per_epoch=3, augmentation={"rotate_prob": 0.5})
    kwargs = dict(train_cases=names[:6], val_cases=names[6:7], device="cuda")
    full = train_model(hippo, cfg, tmp_path / "full", **kwargs)

    def interrupt(epoch, record):
        raise StopTraining

    train_model(hippo, cfg, tmp_path / "part", callback=interrupt, **kwargs)
    resumed = train_model(hippo, cfg, tmp_path / "part", **kwargs)
    a = torch.load(tmp_path / "full" / "model.pt", weights_only=True)
    b = torch.load(tmp_path / "part" / "model.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [h["loss"] for h in full.history] == [h["loss"] for h in resumed.history]

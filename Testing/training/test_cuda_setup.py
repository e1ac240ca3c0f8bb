"""Issue 29: the CUDA set-up calls, run on the CPU through torch's own argument checks.

``fake_cuda`` replaces only torch's lowest layer (the C entry points and the "is there a GPU" facts); the public
``torch.cuda`` functions the engine calls run as shipped, with their checks — e.g. ``get_per_process_memory_fraction``
rejecting a ``torch.device("cuda")`` without an index, which crashed every training but a search trial.  Also: TF32
set so that reading the legacy flag still works, precision measured and cached per GPU model and net, and
checkpoints by elapsed time.
"""
from __future__ import annotations

import types

import pytest
import torch

from trainkit import preprocessed, tiny_config
from AutoSegCore.config import deep_merge, make_config
from AutoSegCore.planning.cost import probe_step_seconds
from AutoSegCore.training import precision
from AutoSegCore.training.augment import bank_fits_device
from AutoSegCore.training.kernels import configure_backends
from AutoSegCore.inference.sliding_window import accumulation_device
from AutoSegCore.training.process import prepare_process
from AutoSegCore.utils.device import GpuMemoryCap, apply_memory_cap, pick_device

GiB = 2 ** 30


@pytest.fixture()
def fake_cuda(monkeypatch):
    """One 'GPU' of 16 GiB (8 free) behind torch's real torch.cuda wrappers; returns the calls the C layer got."""
    got: dict[str, list] = {"set_fraction": []}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "_lazy_init", lambda: None)
    monkeypatch.setattr(torch.cuda.memory, "_lazy_init", lambda: None)
    monkeypatch.setattr(torch._C, "_cuda_getMemoryFraction", lambda index: 1.0, raising=False)
    monkeypatch.setattr(torch._C, "_cuda_setMemoryFraction",
                        lambda fraction, index: got["set_fraction"].append((fraction, index)), raising=False)
    monkeypatch.setattr(torch._C, "_cuda_memoryStats", lambda index: {"reserved_bytes": {"all": {"current": 0}}},
                        raising=False)
    props = types.SimpleNamespace(name="Fake GPU", total_memory=16 * GiB, major=9, minor=0)
    monkeypatch.setattr(torch.cuda, "_get_device_properties", lambda index: props, raising=False)
    cudart = types.SimpleNamespace(cudaMemGetInfo=lambda index: (8 * GiB, 16 * GiB))
    monkeypatch.setattr(torch.cuda, "cudart", lambda: cudart)
    return got


def test_the_fake_uses_torchs_own_checks(fake_cuda):
    """What crashed on a GPU: an index-less device reaches a per-device call."""
    with pytest.raises(ValueError, match="specified index"):
        torch.cuda.get_per_process_memory_fraction(torch.device("cuda"))


def test_every_device_is_indexed_and_every_cuda_call_accepts_it(fake_cuda, monkeypatch):
    for asked in ("auto", "cuda", "cuda:0", "CUDA"):
        dev = pick_device(asked)
        assert dev.type == "cuda" and dev.index == 0, asked
    dev = pick_device("auto")
    # the case bank's memory check, the inference accumulation, a packed trial's memory share: torch's checks pass
    assert bank_fits_device(GiB, dev) and not bank_fits_device(6 * GiB, dev)     # ≤ half of the 8 GiB free
    assert accumulation_device(dev, (64, 64, 64), 3) == dev
    assert apply_memory_cap(dev, GpuMemoryCap(share=0.45)) == 0.45 and fake_cuda["set_fraction"] == [(0.45, 0)]
    with pytest.raises(Exception, match="does not exist"):
        pick_device("cuda:3")


def test_a_training_process_is_prepared_once_with_its_cap_kernels_and_seeds(fake_cuda, monkeypatch):
    """``prepare_process`` (what train_model calls): the indexed device, the trial's cap through torch's checked
    call, cuDNN autotuning, the global seeds; the Trainer sets none of them."""
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)        # restored after the test
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", False)
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8")             # what deterministic kernels set
    precision_before = torch.get_float32_matmul_precision()
    try:
        dev = prepare_process("cuda", seed=7, gpu_memory=GpuMemoryCap(share=0.3, gigabytes=8))
        assert dev == torch.device("cuda", 0) and fake_cuda["set_fraction"] == [(0.3, 0)]      # 0.3 < 8 of 16 GiB
        assert torch.backends.cudnn.benchmark and not torch.backends.cudnn.deterministic
        first = torch.rand(3)
        prepare_process("cuda", seed=7, deterministic=True)
        assert torch.equal(torch.rand(3), first)                                # seeded alike
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        assert fake_cuda["set_fraction"] == [(0.3, 0)]                          # no cap: nothing set
    finally:
        torch.set_float32_matmul_precision(precision_before)
        torch.use_deterministic_algorithms(False)


def test_tf32_is_set_so_that_the_legacy_flag_stays_readable():
    """torch ≥ 2.9 raises on reading ``allow_tf32`` after the per-backend API set it; profilers and inductor read it."""
    before = torch.get_float32_matmul_precision(), torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic
    try:
        configure_backends(torch.device("cuda", 0), deterministic=False)
        assert torch.backends.cuda.matmul.allow_tf32 is True and torch.backends.cudnn.allow_tf32 is True
        assert torch.get_float32_matmul_precision() == "high" and torch.backends.cudnn.benchmark
    finally:
        torch.set_float32_matmul_precision(before[0])
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = before[1:]


def _probe_config():
    cfg = make_config(tiny_config(patch_size=[16, 16, 16]))
    return deep_merge(cfg, {"training": {"patch_size": [16, 16, 16]}})


def test_precision_is_measured_once_per_gpu_model_and_net_then_read_from_the_cache(tmp_path, monkeypatch):
    """The calibration times real steps of every setting (here on the CPU, which runs the same probe), picks the
    fastest, writes the table to the cache; the next run reads it without measuring; another net measures again."""
    monkeypatch.setenv(precision.CACHE_ENV, str(tmp_path))
    cfg, logs = _probe_config(), []
    events = types.SimpleNamespace(emit=lambda kind, **kw: logs.append(kw.get("message", "")))
    first = precision.calibrated(cfg, 1, 3, torch.device("cpu"), device_name="Test GPU", bf16=True, events=events,
                                 measure=probe_step_seconds)
    table = first["table"]
    assert [(r["amp"], r["channels_last"]) for r in table] == [(c["amp"], c["channels_last"])
                                                                for c in precision.CANDIDATES]
    assert all(r["seconds"] > 0 for r in table)
    fastest = min(table, key=lambda r: r["seconds"])
    assert first["choice"] == {"amp": fastest["amp"], "channels_last": fastest["channels_last"]}
    assert len(logs) == 1 and logs[0].startswith("precision: ") and "ms" in logs[0]
    assert (tmp_path / precision.CACHE_FILE).is_file()

    def must_not_measure(*args):
        raise AssertionError("measured again despite the cache")

    again = precision.calibrated(cfg, 1, 3, torch.device("cpu"), device_name="Test GPU", bf16=True,
                                 measure=must_not_measure)
    assert again["choice"] == first["choice"]
    other = deep_merge(cfg, {"network": {"channels": 4}})
    seen = []
    precision.calibrated(other, 1, 3, torch.device("cpu"), device_name="Test GPU", bf16=False,
                         measure=lambda *a: seen.append(a[0]["training"]["amp"]) or 0.01)
    assert seen == ["off", "off"]                           # no bf16 rows on a GPU without bf16
    (tmp_path / precision.CACHE_FILE).write_text("{not json")
    assert precision.calibrated(cfg, 1, 3, torch.device("cpu"), device_name="Test GPU", bf16=False,
                                measure=lambda *a: 0.02)["choice"]["amp"] == "off"   # damaged cache: measured


def test_a_failing_setting_is_recorded_and_never_chosen(tmp_path, monkeypatch):
    monkeypatch.setenv(precision.CACHE_ENV, str(tmp_path))

    def measure(cfg, *a):
        if cfg["training"]["amp"] == "bf16":
            raise RuntimeError("no kernel for bf16 conv3d")
        return 0.05 if cfg["training"]["channels_last"] == "on" else 0.04

    result = precision.calibrate(_probe_config(), 1, 3, torch.device("cpu"), bf16=True, measure=measure)
    assert result["choice"] == {"amp": "off", "channels_last": "off"}
    assert [r["error"] for r in result["table"] if r["seconds"] is None] == ["no kernel for bf16 conv3d"] * 2


def test_the_cpu_keeps_its_measured_rules():
    cfg = make_config(tiny_config())
    assert precision.choose_precision(cfg, 1, 3, torch.device("cpu")) == ("auto", "auto")


def test_checkpoints_follow_elapsed_time_not_every_epoch(hippo, tmp_path, monkeypatch):
    """After the first epoch (something to resume from), then only once CHECKPOINT_SECONDS have passed, and after
    the last epoch."""
    from AutoSegCore.training import trainer as trainer_module

    monkeypatch.setattr(trainer_module, "CHECKPOINT_SECONDS", 3600.0)
    cases = preprocessed(hippo, sorted(c.name for c in hippo.cases)[:3])
    seen = []

    def callback(epoch, record):
        state = torch.load(tmp_path / "m" / "checkpoint.pt", weights_only=True)
        seen.append((epoch, state["epoch"]))

    cfg = make_config(tiny_config(epochs=3, steps_per_epoch=2, patch_size=[32, 32, 32]))
    tr = trainer_module.Trainer(cfg, cases[:2], cases[2:], labels=hippo.labels, out_dir=tmp_path / "m",
                                in_channels=1, device="cpu", callback=callback)
    tr.fit(resume=False)
    assert seen == [(1, 1), (2, 1), (3, 3)]

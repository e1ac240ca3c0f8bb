"""The trainer's speed settings (bf16 autocast, channels_last_3d, sync-free train Dice) on real data: same
outputs, finite losses, working models, exact resume."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from trainkit import tiny_config
from AutoSegCore.config import make_config
from AutoSegCore.errors import ConfigError
from AutoSegCore.training.api import train_model
from AutoSegCore.training.trainer import StopTraining, Trainer, fast_argmax, use_channels_last

SETTINGS = [("off", "off"), ("on", "off"), ("off", "on"), ("on", "on")]


def _names(ds):
    return sorted(c.name for c in ds.cases)


def _preprocessed(ds, names):
    from AutoSegCore.data.preprocess import PreprocessCache, Preprocessor

    pre = Preprocessor(make_config()["preprocessing"]).fit(ds.subset(names))
    return PreprocessCache(pre).get_many([ds.case(n) for n in names])


def test_channels_last_auto_means_cpu_only():
    assert use_channels_last("auto", torch.device("cpu"))
    assert not use_channels_last("auto", torch.device("cuda"))
    assert use_channels_last("on", torch.device("cuda")) and not use_channels_last("off", torch.device("cpu"))
    with pytest.raises(ConfigError):
        make_config({"training": {"channels_last": "yes"}})


def test_channels_last_net_computes_the_same_logits(hippo, tmp_path):
    """Same weights, same real batch: NDHWC and NCDHW layouts give the same fp32 logits and gradients."""
    names = _names(hippo)
    cases = _preprocessed(hippo, names[:4])
    cfg = make_config(tiny_config(amp="off", channels_last="on"))
    tr = Trainer(cfg, cases, [], labels=hippo.labels, out_dir=tmp_path, in_channels=1, device="cpu")
    assert tr.channels_last and tr.net.downs[0].conv.unit0.conv.weight.is_contiguous(
        memory_format=torch.channels_last_3d)
    img, lab = tr._sample_batch()
    ref = Trainer(make_config(tiny_config(amp="off", channels_last="off")), cases, [], labels=hippo.labels,
                  out_dir=tmp_path, in_channels=1, device="cpu")
    ref.net.load_state_dict(tr.net.state_dict())
    out_cl = tr.net(img.contiguous(memory_format=torch.channels_last_3d))
    out = ref.net(img)
    assert out_cl.shape == out.shape == (2, 3) + tr.patch
    torch.testing.assert_close(out_cl, out, atol=1e-4, rtol=1e-4)
    out_cl.float().square().mean().backward()
    out.float().square().mean().backward()
    g_cl = tr.net.downs[0].conv.unit0.conv.weight.grad              # the gradient reaching the first layer
    torch.testing.assert_close(g_cl, ref.net.downs[0].conv.unit0.conv.weight.grad, atol=1e-4, rtol=1e-3)


@pytest.mark.parametrize("amp,channels_last", SETTINGS)
def test_every_speed_setting_trains_and_predicts(hippo, tmp_path, amp, channels_last):
    from AutoSegCore.inference.predictor import Predictor

    names = _names(hippo)
    res = train_model(hippo, tiny_config(amp=amp, channels_last=channels_last, epochs=1, steps_per_epoch=3),
                      tmp_path / "m", train_cases=names[:6], val_cases=names[6:8])
    rec = res.history[-1]
    assert np.isfinite(rec["loss"]) and 0.0 <= rec["train_dice"] <= 1.0 and 0.0 <= res.val_dice <= 1.0
    case = hippo.case(names[7])
    from AutoSegCore.data.dataset import read_case

    arrays = read_case(case)
    pred = Predictor(tmp_path / "m").predict_array(arrays.image, arrays.affine)
    assert pred.shape == arrays.label.shape and set(np.unique(pred)) <= {0, 1, 2}


@pytest.mark.parametrize("amp,channels_last", [("on", "on"), ("off", "off")])
def test_exact_resume_with_speed_settings(hippo, tmp_path, amp, channels_last):
    """Interrupted after epoch 1 and resumed: bit-identical weights and losses in either memory format (on the
    CPU; exact resume on CUDA, with deterministic algorithms, is test_device_path's CUDA-only test)."""
    names = _names(hippo)
    cfg = tiny_config(epochs=2, steps_per_epoch=3, amp=amp, channels_last=channels_last)
    kwargs = dict(train_cases=names[:6], val_cases=names[6:7], device="cpu")
    full = train_model(hippo, cfg, tmp_path / "full", **kwargs)

    def interrupt(epoch, record):
        raise StopTraining

    train_model(hippo, cfg, tmp_path / "part", callback=interrupt, **kwargs)
    resumed = train_model(hippo, cfg, tmp_path / "part", **kwargs)
    a = torch.load(tmp_path / "full" / "model.pt", weights_only=True)
    b = torch.load(tmp_path / "part" / "model.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [h["loss"] for h in full.history] == [h["loss"] for h in resumed.history]
    assert [h["train_dice"] for h in full.history] == [h["train_dice"] for h in resumed.history]


def test_fast_argmax_and_confusion_dice_match_the_direct_computation(hippo, tmp_path):
    """max(1).indices == argmax in both layouts; the bincount train Dice equals the per-class formula."""
    torch.manual_seed(0)
    logits = torch.randn(3, 3, 10, 12, 8)
    for x in (logits, logits.contiguous(memory_format=torch.channels_last_3d)):
        assert torch.equal(fast_argmax(x, 1), x.argmax(1))
    assert torch.equal(fast_argmax(logits[0], 0), logits[0].argmax(0))
    names = _names(hippo)
    cases = _preprocessed(hippo, names[:2])
    tr = Trainer(make_config(tiny_config()), cases, [], labels=hippo.labels, out_dir=tmp_path, in_channels=1,
                 device="cpu")
    _, lab = tr._sample_batch()
    tr._confusion = torch.zeros(3, 3, dtype=torch.long)
    logits = torch.randn((lab.shape[0], 3) + lab.shape[2:])
    logits[:, 1] += 2.0 * (lab[:, 0] == 1)            # a prediction that overlaps the truth partly
    tr._accumulate_train_dice(logits, lab)
    pred, truth = logits.argmax(1), lab[:, 0].long()
    expected = np.mean([2 * float(((pred == c) & (truth == c)).sum()) / float((pred == c).sum() + (truth == c).sum())
                        for c in (1, 2)])
    assert tr._train_dice() == pytest.approx(expected, abs=1e-12)

"""The fused Dice + CE equals MONAI's DiceCELoss (value and gradient) on real labels; the confusion kernel
equals ``bincount`` of ``max().indices``; it falls back to MONAI where it does not apply."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from monai.losses import DiceCELoss

from AutoSegCore.data.dataset import read_case
from AutoSegCore.training import fused_loss
from AutoSegCore.training.fused_loss import FusedDiceCELoss, confusion
from AutoSegCore.training.losses import DeepSupervisionWrapper, make_loss

pytestmark = pytest.mark.skipif(fused_loss.load() is None,
                                reason=f"no compiled kernels: {fused_loss.LIBRARY.build_error}")


@pytest.fixture(scope="module")
def real_batch(hippo):
    """4 Hippocampus label maps padded to 48×64×48 and logits of a randomly initialised U-Net on their images."""
    from AutoSegCore.networks import build_network

    images, labels = [], []
    for case in hippo.cases[:4]:
        arr = read_case(case)
        pad = [(0, s - n) for n, s in zip(arr.label.shape, (48, 64, 48))]
        img = (arr.image[0] - arr.image[0].mean()) / arr.image[0].std()
        images.append(np.pad(img, pad))
        labels.append(np.pad(arr.label, pad))
    x = torch.from_numpy(np.stack(images)[:, None].astype(np.float32))
    y = torch.from_numpy(np.stack(labels)[:, None].astype(np.int64))
    torch.manual_seed(0)
    net = build_network({"depth": 3, "channels": 4, "multiplier": 2.0, "n_convs": 1, "conv": "3d",
                         "norm": "instance"}, 1, 3)
    with torch.no_grad():
        logits = net(x) * 4.0                           # a spread of confident and unsure voxels
    assert set(np.unique(y.numpy())) == {0, 1, 2}
    return logits, y


def value_and_grad(loss_fn, logits, target):
    z = logits.clone().requires_grad_()
    loss = loss_fn(z, target)
    loss.backward()
    return loss.detach(), z.grad


def test_same_value_and_gradient_as_monai_on_real_labels(real_batch):
    logits, y = real_batch
    ref_value, ref_grad = value_and_grad(DiceCELoss(to_onehot_y=True, softmax=True), logits, y)
    value, grad = value_and_grad(FusedDiceCELoss(), logits, y)
    assert float(value) == pytest.approx(float(ref_value), rel=1e-5)
    assert torch.allclose(grad, ref_grad, rtol=1e-4, atol=1e-6 * float(ref_grad.abs().max()))
    assert make_loss("dice_ce").forward(logits, y) == pytest.approx(float(ref_value), rel=1e-5)


@pytest.mark.parametrize("classes", [2, 5])
def test_other_class_counts_and_a_class_absent_from_the_batch(classes, real_batch):
    _, y = real_batch
    torch.manual_seed(classes)
    logits = 3 * torch.randn(2, classes, 48, 64, 48)
    target = y[:2].clamp(max=classes - 1)
    if classes == 5:
        assert not (target == 4).any()                     # class 4 never occurs: its Dice term is all smoothing
    ref = value_and_grad(DiceCELoss(to_onehot_y=True, softmax=True), logits, target)
    ours = value_and_grad(FusedDiceCELoss(), logits, target)
    assert float(ours[0]) == pytest.approx(float(ref[0]), rel=1e-5)
    assert torch.allclose(ours[1], ref[1], rtol=1e-4, atol=1e-6 * float(ref[1].abs().max()))


def test_deep_supervision_heads_with_float_targets(real_batch):
    logits, y = real_batch
    heads = [logits, F.avg_pool3d(logits, 2)]
    ref = DeepSupervisionWrapper(DiceCELoss(to_onehot_y=True, softmax=True))(heads, y)
    ours = DeepSupervisionWrapper(FusedDiceCELoss())(heads, y)
    assert float(ours) == pytest.approx(float(ref), rel=1e-5)


def test_result_does_not_depend_on_the_thread_count(real_batch):
    logits, y = real_batch
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = value_and_grad(FusedDiceCELoss(), logits, y)
        torch.set_num_threads(2)
        two = value_and_grad(FusedDiceCELoss(), logits, y)
    finally:
        torch.set_num_threads(before)
    assert float(one[0]) == float(two[0]) and torch.equal(one[1], two[1])


def test_confusion_matches_bincount_of_max_indices(real_batch):
    logits, y = real_batch
    logits = logits.clone()
    logits[0, :, 0, 0, :5] = 1.0                           # ties: the first class wins, as with max().indices
    expected = torch.bincount((logits.max(1).indices * 3 + y[:, 0]).flatten(), minlength=9).view(3, 3)
    assert torch.equal(confusion(logits, y), expected)


def test_label_outside_the_classes_is_an_error(real_batch):
    logits, y = real_batch
    with pytest.raises(ValueError, match="outside 0..2"):
        FusedDiceCELoss()(logits, y * 2)


def test_nan_logits_give_a_nan_loss_not_a_number(real_batch):
    logits, y = real_batch
    bad = logits.clone()
    bad[1, 1, 10, 10, 10] = float("nan")
    assert torch.isnan(FusedDiceCELoss()(bad, y))


def test_falls_back_to_monai_where_it_does_not_apply(real_batch, monkeypatch):
    logits, y = real_batch
    ref = DiceCELoss(to_onehot_y=True, softmax=True)(logits.double(), y)
    assert not fused_loss.applies(logits.double())
    assert float(FusedDiceCELoss()(logits.double(), y)) == pytest.approx(float(ref), rel=1e-12)
    monkeypatch.setenv("AUTOSEG_NATIVE", "0")
    assert not fused_loss.applies(logits) and confusion(logits, y) is None
    assert float(FusedDiceCELoss()(logits, y)) == pytest.approx(float(ref), rel=1e-5)


def test_channels_last_logits_give_the_same_result_and_a_channels_last_gradient(real_batch):
    logits, y = real_batch
    plain = value_and_grad(FusedDiceCELoss(), logits, y)
    cl = logits.contiguous(memory_format=torch.channels_last_3d)
    value, grad = value_and_grad(FusedDiceCELoss(), cl, y)
    assert grad.is_contiguous(memory_format=torch.channels_last_3d)
    assert float(value) == pytest.approx(float(plain[0]), rel=1e-6)
    assert torch.allclose(grad, plain[1], rtol=1e-5, atol=1e-7 * float(plain[1].abs().max()))
    assert torch.equal(confusion(cl, y), confusion(logits, y))

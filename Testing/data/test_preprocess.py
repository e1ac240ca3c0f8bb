"""Preprocessing on real cases and its inverse back to the original grid."""
from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from shared_data import BRATS, SPLEEN, TS_CT

from AutoSegCore.data.dataset import CaseArrays, load_dataset, read_case
from AutoSegCore.data.preprocess import Preprocessor
from AutoSegCore.errors import ConfigError


def _dice(a, b):
    a, b = a > 0, b > 0
    return 2 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


def _padded(arr: CaseArrays, pad=((3, 5), (0, 4), (2, 0))) -> CaseArrays:
    """A real case surrounded by zeros, so cropping to the nonzero box really crops."""
    image = np.pad(arr.image, ((0, 0),) + pad)
    label = np.pad(arr.label, pad)
    return CaseArrays(arr.name, image, label, arr.affine, arr.spacing)


@pytest.mark.parametrize("norm", ["zscore", "percentile_zscore", "minmax", "none", "ct_window"])
def test_crop_round_trip_is_exact(hippo, norm):
    pre = Preprocessor({"normalization": norm, "resampling": "none", "crop_foreground": True})
    pre.fit(hippo.subset(hippo.case_names[:10]))
    for case in hippo.cases[:5]:
        arr = _padded(read_case(case))
        pc = pre(arr)
        assert pc.image.shape[1:] == pc.label.shape == tuple(pc.meta["preprocessed_shape"])
        assert pc.image.shape[1:] == arr.image.shape[1:] or pc.image.shape[1] < arr.image.shape[1]
        back = pre.invert(pc.label, pc.meta)
        assert back.shape == arr.label.shape and np.array_equal(back, arr.label)
        onehot = np.stack([pc.label == v for v in (0, 1, 2)]).astype(np.float32)
        probs = pre.invert(onehot, pc.meta)
        assert probs.shape == (3,) + arr.label.shape and np.array_equal(probs.argmax(0), arr.label)


def test_crop_removes_zero_border_and_affine_follows(hippo):
    arr = _padded(read_case(hippo.cases[0]))
    pc = Preprocessor({"resampling": "none"})(arr)
    assert pc.meta["crop_box"][0][0] == 3 and pc.meta["original_shape"] == list(arr.image.shape[1:])
    start = [s for s, _ in pc.meta["crop_box"]]
    world = np.asarray(pc.meta["preprocessed_affine"]) @ [0, 0, 0, 1]
    assert np.allclose(world, arr.affine @ (start + [1]))


def test_normalisations(hippo):
    arr = read_case(hippo.cases[0])
    z = Preprocessor({"normalization": "zscore"})(arr).image
    assert abs(float(z.mean())) < 1e-4 and abs(float(z.std()) - 1) < 1e-3
    m = Preprocessor({"normalization": "minmax"})(arr).image
    assert m.min() == 0.0 and m.max() == pytest.approx(1.0)
    n = Preprocessor({"normalization": "none", "crop_foreground": False})(arr).image
    assert np.array_equal(n, arr.image)


def test_ct_window_and_percentile_zscore_on_ct():
    ds = load_dataset(TS_CT)
    arr = read_case(ds.cases[1])
    w = Preprocessor({"normalization": "ct_window", "ct_window": [-200, 300]})(arr).image
    assert w.min() == 0.0 and w.max() == 1.0
    pre = Preprocessor({"normalization": "percentile_zscore"}).fit(ds)
    st = pre.intensity[0]
    p = pre(arr).image
    assert p.min() == pytest.approx((st["p0.5"] - st["mean"]) / st["std"], rel=1e-5)
    assert p.max() == pytest.approx((st["p99.5"] - st["mean"]) / st["std"], rel=1e-5)


def test_anisotropic_spleen_resampled_and_inverted():
    spleen = load_dataset(SPLEEN)
    ts = load_dataset(TS_CT)
    # Median spacing over Spleen + the two 3 mm TotalSegmentator CTs is 3 mm: Spleen gets resampled.
    mixed = load_dataset([(c.images, c.label) for c in spleen.cases + ts.cases], labels=ts.labels)
    pre = Preprocessor({"resampling": "median", "normalization": "percentile_zscore"}).fit(mixed)
    assert pre.target_spacing == pytest.approx([3.0, 3.0, 3.0])
    arr = read_case(spleen.cases[0])
    pc = pre(arr)
    assert pc.image.shape[1:] == (43, 44, 43) and pc.label.dtype == np.uint8
    back = pre.invert(pc.label, pc.meta)
    ref = nib.load(spleen.cases[0].label)
    assert back.shape == ref.shape and np.allclose(pc.meta["original_affine"], ref.affine)
    assert _dice(back, arr.label) > 0.95
    fine = Preprocessor({"resampling": "median", "target_spacing": [1.5, 1.5, 1.5], "image_order": 3}).fit(spleen)
    pc = fine(arr)
    assert _dice(fine.invert(pc.label, pc.meta), arr.label) > 0.97
    probs = fine.invert(np.stack([pc.label == 0, pc.label == 1]).astype(np.float32), pc.meta)
    assert probs.shape == (2,) + arr.label.shape and _dice(probs.argmax(0), arr.label) > 0.97


def test_state_round_trip_gives_identical_output():
    ds = load_dataset(BRATS, validate=False).subset(["brats2013_pat0003"])
    pre = Preprocessor({"resampling": "mean", "normalization": "percentile_zscore",
                        "target_spacing": [2.0, 2.0, 2.0]}).fit(ds)
    state = json.loads(json.dumps(pre.state()))
    again = Preprocessor.from_state(state)
    arr = read_case(ds.cases[0])
    a, b = pre(arr), again(arr)
    assert a.image.shape == (2, 120, 120, 78)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.label, b.label) and a.meta == b.meta


def test_unfitted_or_bad_config_raises(hippo):
    arr = read_case(hippo.cases[0])
    with pytest.raises(ConfigError, match="fit"):
        Preprocessor({"resampling": "median"})(arr)
    with pytest.raises(ConfigError, match="normalization"):
        Preprocessor({"normalization": "robust"})
    with pytest.raises(ConfigError, match="ct_window"):
        Preprocessor({"ct_window": [100, -100]})
    with pytest.raises(ConfigError):
        Preprocessor.from_state({"version": 99})

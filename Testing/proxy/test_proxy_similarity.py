"""MI (Eq. 1) and local NCC (Eq. 2) against straightforward references, on random and real volumes."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from scipy.ndimage import uniform_filter

from AutoSegCore.errors import ConfigError, DatasetError
from AutoSegCore.proxy import _native
from AutoSegCore.proxy.similarity import (FLAT_VARIANCE, local_ncc, mutual_information, pairwise_mi, pairwise_ncc,
                                          prepare_volume, roi_bounding_box)


NATIVE = _native.load() is not None
BACKENDS = ["torch", pytest.param("native", marks=pytest.mark.skipif(not NATIVE, reason="no C compiler"))]

# ------------------------------------------------------------------ references (plain numpy / scipy)

def ref_mi(a, b, bins=32):
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    h, _, _ = np.histogram2d(a, b, bins=bins, range=[[a.min(), a.max()], [b.min(), b.max()]])
    p = h / h.sum()
    pa, pb = p.sum(1), p.sum(0)
    nz = p > 0
    return float((p[nz] * np.log(p[nz] / np.outer(pa, pb)[nz])).sum())


def ref_ncc_filter(a, b, w=9):
    """Eq. 2 with scipy's uniform_filter, windows fully inside the volume, flat windows counted as 0."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    inner = tuple(slice(w // 2, s - (w - 1 - w // 2)) for s in a.shape)
    f = lambda x: uniform_filter(x, w, mode="constant", origin=0 if w % 2 else -1)[inner]  # noqa: E731
    ma, mb = f(a), f(b)
    va, vb = f(a * a) - ma * ma, f(b * b) - mb * mb
    cov = f(a * b) - ma * mb
    ok = (va > FLAT_VARIANCE) & (vb > FLAT_VARIANCE)
    return float(np.where(ok, cov ** 2 / np.where(ok, va * vb, 1.0), 0.0).mean())


def ref_ncc_loop(a, b, w):
    """Eq. 2 literally: a double loop over window centres and the voxels of each window."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    values = []
    X, Y, Z = a.shape
    for x, y, z in itertools.product(range(X - w + 1), range(Y - w + 1), range(Z - w + 1)):
        pa = a[x:x + w, y:y + w, z:z + w].ravel()
        pb = b[x:x + w, y:y + w, z:z + w].ravel()
        da, db = pa - pa.mean(), pb - pb.mean()
        num = (da * db).sum() ** 2
        den = (da * da).sum() * (db * db).sum()
        values.append(num / den)
    return float(np.mean(values))


@pytest.fixture(scope="module")
def real_cubes(hippo_cases):
    return torch.stack([prepare_volume(c.image, c.label, roi="none", size=64, name=c.name) for c in hippo_cases])


@pytest.fixture(scope="module")
def real_roi_cubes(hippo_cases):
    return torch.stack([prepare_volume(c.image, c.label, roi="label", size=48, name=c.name) for c in hippo_cases])


# ------------------------------------------------------------------ MI

@pytest.mark.parametrize("backend", BACKENDS)
def test_mi_matches_histogram2d_on_random_volumes(backend):
    g = torch.Generator().manual_seed(1)
    vols = torch.stack([torch.randn(18, 20, 22, generator=g), torch.rand(18, 20, 22, generator=g) ** 3,
                        torch.randint(0, 7, (18, 20, 22), generator=g).float()])
    m = pairwise_mi(vols, bins=32, backend=backend)
    for i, j in itertools.product(range(3), repeat=2):
        assert m[i, j] == pytest.approx(ref_mi(vols[i], vols[j]), abs=1e-5)
    # correlated volumes share more information than independent ones
    assert mutual_information(vols[0], vols[0] * 2 + 0.01 * vols[1], bins=16) > 5 * mutual_information(vols[0], vols[1], bins=16)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("roi", ["none", "label"])
def test_mi_matches_histogram2d_on_hippocampus(roi, backend, real_cubes, real_roi_cubes):
    cubes = real_cubes if roi == "none" else real_roi_cubes
    m = pairwise_mi(cubes, bins=32, backend=backend)
    for i, j in itertools.combinations_with_replacement(range(len(cubes)), 2):
        assert m[i, j] == pytest.approx(ref_mi(cubes[i, 0], cubes[j, 0]), abs=1e-5)
    assert np.array_equal(m, m.T)
    assert (m[~np.eye(len(m), dtype=bool)] > 0).all()


# ------------------------------------------------------------------ NCC

@pytest.mark.parametrize("backend", BACKENDS)
def test_ncc_matches_window_loop_on_random_volumes(backend):
    g = torch.Generator().manual_seed(2)
    a = torch.randn(11, 12, 10, generator=g)
    b = 0.6 * a + torch.randn(11, 12, 10, generator=g)
    for w in (3, 4, 5, 9):
        ours = pairwise_ncc(torch.stack([a, b]), window=w, backend=backend)[0, 1]
        assert ours == pytest.approx(ref_ncc_loop(a, b, w), abs=1e-5)
    assert local_ncc(a, b, window=5) == pytest.approx(ref_ncc_loop(a, b, 5), abs=1e-5)   # the one-pair helper


@pytest.mark.parametrize("backend", BACKENDS)
def test_ncc_matches_uniform_filter_on_hippocampus(backend, real_cubes, real_roi_cubes):
    for cubes in (real_cubes, real_roi_cubes):
        m = pairwise_ncc(cubes, window=9, backend=backend)
        for i, j in itertools.combinations_with_replacement(range(len(cubes)), 2):
            assert m[i, j] == pytest.approx(ref_ncc_filter(cubes[i, 0], cubes[j, 0]), abs=1e-5)
        assert np.array_equal(m, m.T)


@pytest.mark.parametrize("backend", BACKENDS)
def test_ncc_of_volume_with_itself_is_one(backend, real_cubes):
    noise = torch.randn(2, 1, 24, 24, 24, generator=torch.Generator().manual_seed(3))
    assert np.allclose(np.diag(pairwise_ncc(noise, backend=backend)), 1.0, atol=1e-5)
    m = pairwise_ncc(real_cubes, backend=backend)
    assert np.allclose(np.diag(m), 1.0, atol=1e-5)
    off = m[~np.eye(len(m), dtype=bool)]
    assert ((off > 0) & (off < 1)).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_flat_and_constant_volumes_give_numbers_not_nan(backend):
    flat = torch.zeros(1, 16, 16, 16)
    half = torch.randn(1, 16, 16, 16, generator=torch.Generator().manual_seed(4))
    half[:, :10] = 0.0                                 # windows fully in the flat part count as 0
    vols = torch.stack([flat, half])
    ncc = pairwise_ncc(vols, backend=backend)
    mi = pairwise_mi(vols, backend=backend)
    assert np.isfinite(ncc).all() and np.isfinite(mi).all()
    assert ncc[0, 0] == 0.0 and ncc[0, 1] == 0.0 and mi[0, 1] == 0.0
    assert ncc[1, 1] == pytest.approx(ref_ncc_filter(half[0], half[0]), abs=1e-6)
    assert 0 < ncc[1, 1] < 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_multichannel_is_mean_of_channels(backend):
    g = torch.Generator().manual_seed(5)
    vols = torch.randn(3, 2, 14, 14, 14, generator=g)
    vols[:, 1] = vols[:, 1] ** 2 + 0.5 * vols[:, 0]
    mi, ncc = pairwise_mi(vols, backend=backend), pairwise_ncc(vols, window=5, backend=backend)
    per_mi = [pairwise_mi(vols[:, c:c + 1], backend="torch") for c in range(2)]
    per_ncc = [pairwise_ncc(vols[:, c:c + 1], window=5, backend="torch") for c in range(2)]
    assert np.allclose(mi, (per_mi[0] + per_mi[1]) / 2, atol=1e-9)
    assert np.allclose(ncc, (per_ncc[0] + per_ncc[1]) / 2, atol=1e-6)
    assert not np.allclose(per_ncc[0], per_ncc[1])


@pytest.mark.parametrize("backend", BACKENDS)
def test_threads_and_tiles_do_not_change_values(backend, real_cubes):
    cubes = torch.cat([real_cubes, real_cubes[:3].flip(-1)])     # 9 cases: full and partial tiles
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = pairwise_ncc(cubes, backend=backend), pairwise_mi(cubes, backend=backend)
        torch.set_num_threads(2)
        two = pairwise_ncc(cubes, backend=backend), pairwise_mi(cubes, backend=backend)
    finally:
        torch.set_num_threads(previous)
    assert np.array_equal(one[0], two[0]) and np.array_equal(one[1], two[1])
    torch_ncc, torch_mi = pairwise_ncc(cubes, backend="torch"), pairwise_mi(cubes, backend="torch")
    assert np.abs(one[0] - torch_ncc).max() < 1e-5 and np.abs(one[1] - torch_mi).max() < 1e-9


def test_bad_backend_is_a_config_error():
    with pytest.raises(ConfigError, match="backend"):
        pairwise_ncc(torch.randn(2, 12, 12, 12), backend="fortran")


# ------------------------------------------------------------------ ROI

def test_roi_bounding_box_with_margin_and_clipping():
    label = np.zeros((30, 40, 20), dtype=np.uint8)
    label[10:15, 5:25, 18:20] = 2
    label[12, 30, 17] = 1
    box = roi_bounding_box(label, margin=3)
    assert box == (slice(7, 18), slice(2, 34), slice(14, 20))      # z clipped at the volume's end
    assert roi_bounding_box(label, margin=0) == (slice(10, 15), slice(5, 31), slice(17, 20))


def test_roi_crop_on_real_case_equals_bounding_box_resampled(hippo_cases):
    case = hippo_cases[0]
    fg = np.argwhere(case.label > 0)
    lo = np.maximum(fg.min(0) - 4, 0)
    hi = np.minimum(fg.max(0) + 1 + 4, case.label.shape)
    crop = case.image[:, lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
    by_roi = prepare_volume(case.image, case.label, roi="label", size=32, margin=4)
    by_hand = prepare_volume(crop, None, roi="none", size=32)
    assert torch.equal(by_roi, by_hand)
    assert tuple(by_roi.shape) == (1, 32, 32, 32)
    assert abs(float(by_roi.mean())) < 1e-5 and float(by_roi.std(unbiased=False)) == pytest.approx(1, abs=1e-4)


def test_roi_without_foreground_is_a_clear_error(hippo_cases):
    case = hippo_cases[0]
    with pytest.raises(DatasetError, match="no foreground") as info:
        prepare_volume(case.image, np.zeros_like(case.label), roi="label", name=case.name)
    assert case.name in str(info.value) and "roi" in info.value.hint
    with pytest.raises(DatasetError, match="has no label"):
        prepare_volume(case.image, None, roi="label", name=case.name)


def test_without_compiled_kernels_auto_falls_back_to_torch(monkeypatch, tmp_path, real_cubes):
    monkeypatch.setattr(_native.LIBRARY, "tried", False)
    monkeypatch.setattr(_native.LIBRARY, "lib", None)
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    assert _native.load(tmp_path / "native") is None
    assert "no-such-compiler" in (_native.LIBRARY.build_error or "")
    assert not list((tmp_path / "native").glob("*.so"))           # nothing half-built left behind
    m = pairwise_ncc(real_cubes[:3], backend="auto")
    assert np.allclose(np.diag(m), 1.0, atol=1e-5)
    with pytest.raises(ConfigError, match="compiled proxy-data kernels"):
        pairwise_ncc(real_cubes[:3], backend="native")
    monkeypatch.setenv("AUTOSEG_NATIVE", "0")
    monkeypatch.setattr(_native.LIBRARY, "tried", False)
    assert _native.load(tmp_path / "native") is None


@pytest.mark.parametrize("backend", BACKENDS)
def test_large_stacks_go_to_memory_maps_with_same_values(backend, monkeypatch, real_cubes):
    from AutoSegCore.proxy import similarity
    in_ram = pairwise_ncc(real_cubes, backend=backend), pairwise_mi(real_cubes, backend=backend)
    monkeypatch.setattr(similarity, "IN_MEMORY_LIMIT", 0)
    assert isinstance(similarity.new_array((2, 3)), np.memmap)
    mapped = pairwise_ncc(real_cubes, backend=backend), pairwise_mi(real_cubes, backend=backend)
    assert np.array_equal(in_ram[0], mapped[0]) and np.array_equal(in_ram[1], mapped[1])

"""PreprocessCache: memory hits do no file reading, the disk cache is reused across instances, keys follow changes."""
from __future__ import annotations

import os
import shutil

import numpy as np

from AutoSegCore.data.dataset import IO_STATS, Case, load_dataset
from AutoSegCore.data.preprocess import PreprocessCache, Preprocessor


def _reads():
    return IO_STATS["data_reads"]


def test_memory_hit_reads_no_file(hippo):
    cache = PreprocessCache(Preprocessor({"normalization": "zscore"}))
    cases = hippo.cases[:4]
    before = _reads()
    first = cache.get_many(cases)
    assert _reads() - before == 8 and cache.stats["computed"] == 4       # image + label per case
    before = _reads()
    second = cache.get_many(cases)
    assert _reads() == before and cache.stats["memory_hits"] == 4
    assert all(a is b for a, b in zip(first, second))


def test_disk_cache_reused_by_new_instance(tmp_path, hippo):
    cfg = {"normalization": "zscore", "resampling": "none"}
    first = PreprocessCache(Preprocessor(cfg), tmp_path / "cache").get_many(hippo.cases[:3])
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 3
    other = PreprocessCache(Preprocessor(cfg), tmp_path / "cache")
    before = _reads()
    again = other.get_many(hippo.cases[:3])
    assert _reads() == before and other.stats == {"memory_hits": 0, "disk_hits": 3, "computed": 0}
    for a, b in zip(first, again):
        assert np.array_equal(a.image, b.image) and np.array_equal(a.label, b.label) and a.meta == b.meta
    # a different setting is a different key: computed again, not served stale
    changed = PreprocessCache(Preprocessor({**cfg, "normalization": "minmax"}), tmp_path / "cache")
    changed.get(hippo.cases[0])
    assert changed.stats["computed"] == 1


def test_changed_file_or_corrupt_cache_is_recomputed(tmp_path, hippo):
    src = hippo.cases[0]
    img, lbl = tmp_path / src.images[0].name, tmp_path / ("lbl_" + src.label.name)
    shutil.copy(src.images[0], img)
    shutil.copy(src.label, lbl)
    case = Case(src.name, [img], lbl)
    cache_dir = tmp_path / "cache"
    PreprocessCache(Preprocessor({}), cache_dir).get(case)
    st = os.stat(img)
    os.utime(img, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))          # "edited" file
    c2 = PreprocessCache(Preprocessor({}), cache_dir)
    c2.get(case)
    assert c2.stats["computed"] == 1
    for f in cache_dir.glob("*.npz"):
        f.write_bytes(b"not a zip")
    c3 = PreprocessCache(Preprocessor({}), cache_dir)
    pc = c3.get(case)
    assert c3.stats["computed"] == 1 and pc.image.ndim == 4
    c4 = PreprocessCache(Preprocessor({}), cache_dir)
    c4.get(case)
    assert c4.stats["disk_hits"] == 1                                      # the bad file was overwritten


def test_content_hash_key_ignores_mtime(tmp_path, hippo):
    src = hippo.cases[1]
    img = tmp_path / src.images[0].name
    shutil.copy(src.images[0], img)
    case = Case(src.name, [img], src.label)
    cache = PreprocessCache(Preprocessor({}), hash_contents=True)
    key = cache.key(case)
    st = os.stat(img)
    os.utime(img, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert cache.key(case) == key
    assert PreprocessCache(Preprocessor({})).key(case) != key


def test_unlabelled_case_round_trips_through_disk(tmp_path):
    from shared_data import SPLEEN

    case = load_dataset(SPLEEN).cases[0]
    unlabelled = Case(case.name, case.images, None)
    PreprocessCache(Preprocessor({}), tmp_path).get(unlabelled)
    again = PreprocessCache(Preprocessor({}), tmp_path)
    pc = again.get(unlabelled)
    assert again.stats["disk_hits"] == 1 and pc.label is None

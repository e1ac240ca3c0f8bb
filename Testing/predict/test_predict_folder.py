"""`autoseg predict MODEL FOLDER` as nnU-Net users run it: a plain folder of 20 real images, interrupted by real
signals (Ctrl-C, then SIGTERM) after some cases; the finished cases are complete and kept, nothing half-written looks
finished, and each re-run predicts only the rest; --overwrite redoes cases."""
from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import slicerio

from conftest import DEMO, autoseg, autoseg_cmd

pytestmark = pytest.mark.slow
N = 20


def complete_cases(out: Path) -> set[str]:
    """Cases whose two outputs both exist (what a re-run skips)."""
    return {p.name[: -len(".seg.nrrd")] for p in out.glob("*.seg.nrrd") if (out / p.name.replace(".seg.nrrd", ".nii.gz")).is_file()}


def check_outputs_intact(out: Path, scans: Path) -> None:
    """No hidden temp file is left; every visible file reads completely and lies on its input's grid."""
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")], sorted(p.name for p in out.iterdir())
    for p in out.iterdir():
        if p.name.endswith(".seg.nrrd"):
            case = p.name[: -len(".seg.nrrd")]
            seg = slicerio.read_segmentation(str(p))
            assert seg["voxels"].shape == nib.load(str(scans / f"{case}.nii.gz")).shape
            assert {s["name"] for s in seg["segments"]} <= {"Anterior", "Posterior"}
        else:
            assert p.name.endswith(".nii.gz"), p.name
            case = p.name[: -len(".nii.gz")]
            src, pred = nib.load(str(scans / p.name)), nib.load(str(p))
            voxels = np.asarray(pred.dataobj)               # the whole gzip stream: a cut file raises here
            assert voxels.shape == src.shape and set(np.unique(voxels)) <= {0, 1, 2}
            np.testing.assert_allclose(pred.affine, src.affine, atol=1e-6)
        assert (scans / f"{case}.nii.gz").is_file()


def mtimes(out: Path, cases) -> dict[str, int]:
    return {f"{c}{e}": (out / f"{c}{e}").stat().st_mtime_ns for c in cases for e in (".nii.gz", ".seg.nrrd")}


def ignore_sigint() -> None:
    """What a non-interactive shell does to a job it starts in the background (``autoseg predict … &``)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def run_until(args, out: Path, at_least: int, sig: int, log: Path, sigint_ignored: bool = False) -> tuple[int, str]:
    """Start ``autoseg ARGS``; once ``at_least`` cases are complete in ``out``, send ``sig``; (exit code, stderr)."""
    with open(log, "w") as err:
        proc = subprocess.Popen(autoseg_cmd(*args), stdout=subprocess.DEVNULL, stderr=err,
                                preexec_fn=ignore_sigint if sigint_ignored else None)
        try:
            deadline = time.monotonic() + 300
            while proc.poll() is None and time.monotonic() < deadline:
                if out.is_dir() and len(complete_cases(out)) >= at_least:
                    proc.send_signal(sig)
                    break
                time.sleep(0.02)
            rc = proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
    return rc, log.read_text()


def events_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_interrupted_folder_prediction_keeps_finished_cases_and_reruns_predict_only_the_rest(model, tmp_path):
    scans = tmp_path / "scans"                  # a plain folder: no dataset.json, nnU-Net's `-i FOLDER`
    scans.mkdir()
    for f in sorted((DEMO / "imagesTr").glob("*.nii.gz"))[:N]:
        shutil.copyfile(f, scans / f.name)
    names = sorted(p.name[: -len(".nii.gz")] for p in scans.iterdir())
    out = tmp_path / "out"

    # 1. Ctrl-C (a front end's Cancel) after 3 cases, to an engine that inherited SIGINT ignored: it still stops
    rc, err = run_until(["predict", model, scans, "--out", out], out, 3, signal.SIGINT, tmp_path / "1.log",
                        sigint_ignored=True)
    assert rc == 130, err[-2000:]
    assert "Traceback" not in err and "autoseg predict: interrupted" in err, err[-2000:]
    first = complete_cases(out)
    assert 3 <= len(first) < N, err[-2000:]
    assert re.search(rf"interrupted: {len(first)} case\(s\) finished and kept in {re.escape(str(out))}", err), err
    check_outputs_intact(out, scans)
    kept = mtimes(out, first)

    # 2. re-run, stopped by SIGTERM (a scheduler, `kill`) after 2 more cases: the first ones are not redone
    rc, err = run_until(["predict", model, scans, "--out", out], out, len(first) + 2, signal.SIGTERM,
                        tmp_path / "2.log")
    assert rc == 143 and "Traceback" not in err, err[-2000:]           # 128 + SIGTERM, as `autoseg search`
    assert f"skipping {len(first)} of {N} case(s) already predicted" in err, err
    second = complete_cases(out)
    assert first < second and len(second) < N, (sorted(first), sorted(second))
    check_outputs_intact(out, scans)
    assert mtimes(out, first) == kept
    kept = mtimes(out, second)

    # 3. re-run to the end: predicts exactly the remaining cases (events and file times say so)
    events = tmp_path / "3.jsonl"
    r = autoseg("predict", model, scans, "--out", out, "--events", events)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"skipping {len(second)} of {N} case(s) already predicted" in r.stderr
    ev = events_of(events)
    predicted = {e["case"] for e in ev if e["event"] == "artifact" and e["kind"] == "prediction_seg_nrrd"}
    assert predicted == set(names) - second
    done = ev[-1]
    assert done["event"] == "done" and (done["predicted"], done["skipped"]) == (N - len(second), len(second))
    assert {p["case"]: p["status"] for p in done["predictions"]} == {
        n: "skipped" if n in second else "predicted" for n in names}
    assert complete_cases(out) == set(names) and len(list(out.iterdir())) == 2 * N
    check_outputs_intact(out, scans)
    assert mtimes(out, second) == kept
    # not a terminal: plain progress lines (the rich bars would draw nothing in a log)
    assert f"checked {N - len(second)} input(s)" in r.stderr
    assert re.search(rf"^\[\s*\d+ s\] predicting: {N - len(second)}/{N - len(second)} cases done", r.stderr, re.M)

    # 4. nothing left: a re-run predicts nothing; --overwrite redoes what it is given
    r = autoseg("predict", model, scans, "--out", out)
    assert r.returncode == 0 and f"skipping {N} of {N} case(s)" in r.stderr and "predicted 0 case(s)" in r.stderr
    before = mtimes(out, names)
    r = autoseg("predict", model, scans / f"{names[0]}.nii.gz", scans / f"{names[1]}.nii.gz", "--out", out,
                "--overwrite")
    assert r.returncode == 0 and "predicted 2 case(s) →" in r.stderr, r.stderr[-2000:]
    after = mtimes(out, names)
    changed = {k for k in before if after[k] != before[k]}
    assert changed == {f"{n}{e}" for n in names[:2] for e in (".nii.gz", ".seg.nrrd")}
    check_outputs_intact(out, scans)


def test_a_bad_input_in_a_folder_writes_nothing_even_next_to_finished_cases(model, tmp_path, capsys):
    """The up-front check still holds with resumable output: a truncated image anywhere in the folder is reported
    (naming it) before any case is predicted — a first run writes nothing, a re-run adds nothing."""
    from AutoSegCore.cli import main

    scans = tmp_path / "scans"
    scans.mkdir()
    for f in sorted((DEMO / "imagesTr").glob("*.nii.gz"))[:2]:
        shutil.copyfile(f, scans / f.name)
    raw = (DEMO / "imagesTr" / "hippocampus_376.nii.gz").read_bytes()
    (scans / "hippocampus_376.nii.gz").write_bytes(raw[: len(raw) // 2])
    out = tmp_path / "out"
    capsys.readouterr()
    assert main(["predict", str(model), str(scans), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "hippocampus_376.nii.gz: truncated or corrupt" in err and "hint:" in err
    assert not out.exists()


def test_out_cannot_be_the_folder_of_the_scans(model, tmp_path, capsys):
    """`-o` = `-i` would replace each `<case>.nii.gz` scan by its label map: refused before anything is read."""
    from AutoSegCore.cli import main

    scans = tmp_path / "scans"
    scans.mkdir()
    shutil.copyfile(DEMO / "imagesTr" / "hippocampus_003.nii.gz", scans / "hippocampus_003.nii.gz")
    before = (scans / "hippocampus_003.nii.gz").read_bytes()
    for args in ([str(scans)], [str(scans / "hippocampus_003.nii.gz")]):
        capsys.readouterr()
        assert main(["predict", str(model), *args, "--out", str(scans)]) == 2
        err = capsys.readouterr().err
        assert f"{scans}: is the folder of the scans to predict" in err and "hint:" in err
    assert sorted(p.name for p in scans.iterdir()) == ["hippocampus_003.nii.gz"]
    assert (scans / "hippocampus_003.nii.gz").read_bytes() == before

"""Reference plans from nnU-Net v2 for every shared dataset, to compare AutoSegCore's planner against.

For each dataset folder under ``--data`` (MSD layout: ``imagesTr/<case>.nii.gz``, ``labelsTr/<case>.nii.gz``,
``dataset.json``; multi-channel images are 4D x, y, z, c) this script, in a temporary folder:

1. converts the dataset to nnU-Net v2 raw format (``DatasetNNN_<Name>``) with ``nnUNetv2_convert_MSD_dataset``.
   That converter needs an ``imagesTs`` folder and a ``TaskNN_Name`` folder name with a single underscore, which
   none of the shared folders have, so it runs on a staged view of the folder (symlinks plus an empty
   ``imagesTs``). Its result is checked (dataset.json keys, one ``<case>_000N.nii.gz`` per channel); if it fails
   the raw layout is written directly (``imagesTr/<case>_000N.nii.gz`` per channel, ``labelsTr/<case>.nii.gz``,
   dataset.json with channel_names, labels, numTraining, file_ending);
2. runs ``nnUNetv2_extract_fingerprint --verify_dataset_integrity`` (retried without the check if only the
   check fails, and the failure is recorded) and ``nnUNetv2_plan_experiment`` with the default
   ``ExperimentPlanner`` (its default 8 GB GPU memory target), on the CPU, with ``nnUNet_raw``,
   ``nnUNet_preprocessed`` and ``nnUNet_results`` pointing into the temporary folder;
3. reads ``nnUNetPlans.json`` and ``dataset_fingerprint.json``.

nnU-Net runs in a subprocess with the Python of ``--nnunet-python`` (its own venv), so this script needs only
the standard library and can be started with any Python 3.10+.

Output: ``bench/results/nnunet_plans.json`` and a table on stdout. The JSON has ``nnunetv2_version``,
``command`` and ``nnunet_commands``, and ``datasets``: one key per dataset folder with ``status`` ("ok" or
"failed", then ``error``), the conversion method, channel names (= MSD modality), the fingerprint's median
spacing and median shape after crop, the planner notes (planner class, GPU memory target in GB, transpose, the
planner's own messages), and per configuration present (2d, 3d_fullres, 3d_lowres): spacing, patch_size,
batch_size, n_stages, strides (pool op kernel sizes) and kernel_sizes per stage, features_per_stage,
normalization_schemes, use_mask_for_norm, median_image_size_in_voxels.

Axis order: nnU-Net reads NIfTI with SimpleITK and works on numpy arrays of shape (z, y, x), so its spacings and
shapes are reversed from nibabel's (x, y, z); the configurations are moreover in the planner's
``transpose_forward`` order (largest-spacing axis first). Every axis-dependent value is stored twice: ``*_raw``
exactly as in nnU-Net's files with ``axes_raw`` naming each entry, and ``*_xyz`` in nibabel (x, y, z) order
(``axes_xyz``; for 2d only the two in-plane axes, e.g. ["x", "y"]). Task09_Spleen_crop (0.795 x 0.795 x 5.0 mm
in nibabel order) has 3d_fullres spacing_raw [5.0, 0.795, 0.795] and spacing_xyz [0.795, 0.795, 5.0].

Install (either):

    python3.11 -m venv /work/nnunet-venv
    /work/nnunet-venv/bin/pip install torch==2.13.0          # FIRST: the CPU wheel; other specs pull CUDA builds
    /work/nnunet-venv/bin/pip install nnunetv2==2.8.1

or, in the project's own environment: ``pip install torch==2.13.0 && pip install -e '.[bench]'`` and pass
``--nnunet-python .venv/bin/python``.

Run (about 6 minutes for the 7 shared datasets on 2 shared cores, mostly process start-up and conversion):

    python3 bench/nnunet_plans.py                                   # all datasets under /work/shared/data
    python3 bench/nnunet_plans.py --datasets Task09_Spleen_crop     # a subset (the JSON then holds only these)
    python3 bench/nnunet_plans.py --nnunet-python .venv/bin/python --np 2 --keep-temp
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = "/work/shared/data"
DEFAULT_PY = "/work/nnunet-venv/bin/python"
DEFAULT_OUT = ROOT / "bench" / "results" / "nnunet_plans.json"
FIRST_ID = 501  # nnU-Net dataset ids used in the temporary nnUNet_raw (one per dataset, in sorted order)
CONFIGS = ("2d", "3d_fullres", "3d_lowres")
PLANNER = "ExperimentPlanner"
ZYX = "zyx"  # nnU-Net array axis a (SimpleITK order) is ZYX[a]; its nibabel index is 2 - a

# console-script entry points of nnunetv2, called through `python -c` so any python with nnunetv2 works
ENTRY = {
    "nnUNetv2_convert_MSD_dataset": "nnunetv2.dataset_conversion.convert_MSD_dataset:entry_point",
    "nnUNetv2_extract_fingerprint": "nnunetv2.experiment_planning.plan_and_preprocess_entrypoints:extract_fingerprint_entry",
    "nnUNetv2_plan_experiment": "nnunetv2.experiment_planning.plan_and_preprocess_entrypoints:plan_experiment_entry",
}


# ----------------------------------------------------------------------------------------------------- subprocess
def _nn_cmd(py: str, script: str, args: list[str]) -> list[str]:
    mod, fn = ENTRY[script].split(":")
    code = f"import sys; from {mod} import {fn} as f; sys.argv[0] = {script!r}; sys.exit(f())"
    return [py, "-c", code, *args]


def _run(cmd: list[str], env: dict, timeout: float) -> tuple[int, str]:
    try:
        p = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=timeout)
        return p.returncode, p.stdout
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        return 124, out + f"\n[timed out after {timeout:.0f} s]"


def _error_of(output: str, n: int = 6) -> str:
    """The informative tail of a failed nnU-Net call: the exception line(s), else the last lines."""
    lines = [ln.rstrip() for ln in output.splitlines() if ln.strip()]
    exc = [i for i, ln in enumerate(lines) if re.match(r"^[A-Za-z_.]*(Error|Exception)\b|^AssertionError", ln)]
    if exc:
        return "\n".join(lines[exc[-1]:exc[-1] + n])
    return "\n".join(lines[-n:])


# ------------------------------------------------------------------------------------------- raw-format writer
def write_raw_dataset(src: str, dst: str) -> None:
    """Fallback converter (runs inside the nnU-Net python, which has nibabel): MSD folder -> nnU-Net v2 raw."""
    import nibabel as nib
    import numpy as np

    src_p, dst_p = Path(src), Path(dst)
    ds = json.loads((src_p / "dataset.json").read_text())
    (dst_p / "imagesTr").mkdir(parents=True, exist_ok=True)
    (dst_p / "labelsTr").mkdir(parents=True, exist_ok=True)
    entries = ds.get("training") or [{"image": f"./imagesTr/{f.name}", "label": f"./labelsTr/{f.name}"}
                                     for f in sorted((src_p / "imagesTr").glob("*.nii.gz"))]
    n_channels = None
    for e in entries:
        img_f, lab_f = src_p / e["image"], src_p / e["label"]
        case = img_f.name[:-len(".nii.gz")]
        img = nib.load(str(img_f))
        if img.ndim == 3:
            chans = [None]
        elif img.ndim == 4:
            chans = list(range(img.shape[3]))
        else:
            raise RuntimeError(f"{img_f}: unexpected ndim {img.ndim}")
        n_channels = n_channels or len(chans)
        for c in chans:
            out = dst_p / "imagesTr" / f"{case}_{(c or 0):04d}.nii.gz"
            if c is None:
                shutil.copyfile(img_f, out)
                continue
            slope, inter = img.dataobj.slope, img.dataobj.inter
            data = np.asanyarray(img.dataobj[..., c])
            if (slope in (1, None) or np.isnan(slope)) and (inter in (0, None) or np.isnan(inter)):
                data = data.astype(img.get_data_dtype())
            hdr = img.header.copy()
            hdr.set_data_shape(data.shape)
            nib.save(nib.Nifti1Image(data, img.affine, hdr), str(out))
        shutil.copyfile(lab_f, dst_p / "labelsTr" / f"{case}.nii.gz")
    modality = ds.get("channel_names") or ds.get("modality") or {str(i): f"channel{i}" for i in range(n_channels)}
    labels = ds["labels"]
    if all(str(k).lstrip("-").isdigit() for k in labels):  # MSD: {"0": "background"} -> nnU-Net: {"background": 0}
        labels = {v: int(k) for k, v in labels.items()}
    out_json = {"channel_names": {str(k): v for k, v in modality.items()}, "labels": labels,
                "numTraining": len(entries), "file_ending": ".nii.gz", "name": ds.get("name", src_p.name)}
    (dst_p / "dataset.json").write_text(json.dumps(out_json, indent=1))


def _check_raw(raw: Path) -> str | None:
    """None if ``raw`` is a usable nnU-Net v2 raw dataset, else what is wrong with it."""
    try:
        dj = json.loads((raw / "dataset.json").read_text())
    except Exception as e:  # noqa: BLE001
        return f"dataset.json unreadable: {e}"
    missing = [k for k in ("channel_names", "labels", "numTraining", "file_ending") if k not in dj]
    if missing:
        return f"dataset.json lacks {missing}"
    nch = len(dj["channel_names"])
    labels = sorted((raw / "labelsTr").glob("*.nii.gz"))
    if len(labels) != int(dj["numTraining"]):
        return f"{len(labels)} label files, numTraining {dj['numTraining']}"
    for lab in labels:
        case = lab.name[:-len(".nii.gz")]
        for c in range(nch):
            if not (raw / "imagesTr" / f"{case}_{c:04d}.nii.gz").is_file():
                return f"missing imagesTr/{case}_{c:04d}.nii.gz"
    if len(list((raw / "imagesTr").glob("*.nii.gz"))) != nch * len(labels):
        return "imagesTr holds files that match no case/channel"
    return None


# ---------------------------------------------------------------------------------------------- axis handling
def _axes_raw(transpose_forward: list[int], n: int) -> list[str]:
    return [ZYX[a] for a in transpose_forward[-n:]]


def _to_xyz(values, transpose_forward: list[int]):
    """A per-axis list in nnU-Net's transposed (z, y, x) order -> nibabel (x, y, z) order (for 2d: in-plane axes)."""
    if values is None:
        return None
    axes = transpose_forward[-len(values):]
    return [v for _, v in sorted(zip((2 - a for a in axes), values))]


def _axes_xyz(transpose_forward: list[int], n: int) -> list[str]:
    return ["xyz"[i] for i in sorted(2 - a for a in transpose_forward[-n:])]


def _median(rows: list[list[float]]) -> list[float]:
    return [float(statistics.median(col)) for col in zip(*rows)]


def extract_config(cfg: dict, tf: list[int]) -> dict:
    arch = cfg.get("architecture", {}).get("arch_kwargs", {})
    n = len(cfg["patch_size"])
    strides, kernels = arch.get("strides"), arch.get("kernel_sizes")
    return {
        "axes_raw": _axes_raw(tf, n),
        "axes_xyz": _axes_xyz(tf, n),
        "spacing_raw": cfg["spacing"],
        "spacing_xyz": _to_xyz(cfg["spacing"], tf),
        "patch_size_raw": cfg["patch_size"],
        "patch_size_xyz": _to_xyz(cfg["patch_size"], tf),
        "median_image_size_in_voxels_raw": cfg.get("median_image_size_in_voxels"),
        "median_image_size_in_voxels_xyz": _to_xyz(cfg.get("median_image_size_in_voxels"), tf),
        "batch_size": cfg["batch_size"],
        "n_stages": arch.get("n_stages"),
        "strides_raw": strides,
        "strides_xyz": [_to_xyz(s, tf) for s in strides] if strides else None,
        "kernel_sizes_raw": kernels,
        "kernel_sizes_xyz": [_to_xyz(k, tf) for k in kernels] if kernels else None,
        "features_per_stage": arch.get("features_per_stage"),
        "n_conv_per_stage": arch.get("n_conv_per_stage"),
        "n_conv_per_stage_decoder": arch.get("n_conv_per_stage_decoder"),
        "network_class_name": cfg.get("architecture", {}).get("network_class_name"),
        "normalization_schemes": cfg.get("normalization_schemes"),
        "use_mask_for_norm": cfg.get("use_mask_for_norm"),
        "data_identifier": cfg.get("data_identifier"),
        "resampling_fn_data": cfg.get("resampling_fn_data"),
        "resampling_fn_data_kwargs": cfg.get("resampling_fn_data_kwargs"),
    }


# ------------------------------------------------------------------------------------------------ one dataset
def plan_dataset(src: Path, ds_id: int, py: str, tmp: Path, env: dict, n_proc: int, timeout: float,
                 gpu_gb: float) -> dict:
    rec: dict = {"source": str(src), "status": "failed"}
    t0 = time.time()
    msd = json.loads((src / "dataset.json").read_text())
    rec["modality"] = msd.get("modality") or msd.get("channel_names")
    rec["num_cases"] = len(msd.get("training") or list((src / "imagesTr").glob("*.nii.gz")))
    rec["num_labels_incl_background"] = len(msd.get("labels", {}))

    # 1. raw conversion: nnU-Net's MSD converter on a staged view, checked; else our own writer
    name = re.sub(r"[^A-Za-z0-9]", "", src.name)
    nn_name = f"Dataset{ds_id:03d}_{name}"
    raw = Path(env["nnUNet_raw"]) / nn_name
    stage = tmp / "msd_staged" / f"Task{ds_id:03d}_{name}"
    stage.mkdir(parents=True)
    for sub in ("imagesTr", "labelsTr", "dataset.json"):
        (stage / sub).symlink_to(src / sub)
    (stage / "imagesTs").mkdir()  # the converter asserts it exists; the shared folders have none
    conv: dict = {"staged_as": stage.name,
                  "staging_reason": "nnUNetv2_convert_MSD_dataset asserts an imagesTs folder and parses the folder "
                                    "name as Task<id>_<Name> with exactly one underscore"}
    rc, out = _run(_nn_cmd(py, "nnUNetv2_convert_MSD_dataset",
                           ["-i", str(stage), "-overwrite_id", str(ds_id), "-np", str(n_proc)]), env, timeout)
    problem = _error_of(out) if rc else _check_raw(raw)
    if problem is None:
        conv["method"] = "nnUNetv2_convert_MSD_dataset"
    else:
        conv["msd_converter_error"] = problem
        shutil.rmtree(raw, ignore_errors=True)
        rc, out = _run([py, str(Path(__file__).resolve()), "--_write-raw", str(src), str(raw)], env, timeout)
        if rc or _check_raw(raw):
            rec["conversion"] = conv
            rec["error"] = f"raw conversion failed: {_error_of(out) if rc else _check_raw(raw)}"
            return rec
        conv["method"] = "bench/nnunet_plans.py write_raw_dataset (fallback)"
    rec["conversion"] = conv
    rec["nnunet_dataset_name"] = nn_name
    dj = json.loads((raw / "dataset.json").read_text())
    rec["channel_names"] = dj["channel_names"]

    # 2. fingerprint (with the integrity check; without it if only the check fails)
    fp_args = ["-d", str(ds_id), "-np", str(n_proc), "--no_pbar"]
    rc, out = _run(_nn_cmd(py, "nnUNetv2_extract_fingerprint", fp_args + ["--verify_dataset_integrity"]),
                   env, timeout)
    if rc == 0:
        rec["integrity_check"] = "passed"
    else:
        rec["integrity_check"] = f"failed: {_error_of(out)}"
        rc, out = _run(_nn_cmd(py, "nnUNetv2_extract_fingerprint", fp_args + ["--clean"]), env, timeout)
        if rc:
            rec["error"] = f"nnUNetv2_extract_fingerprint failed: {_error_of(out)}"
            return rec
    pre = Path(env["nnUNet_preprocessed"]) / nn_name
    fp = json.loads((pre / "dataset_fingerprint.json").read_text())
    sp_zyx, sh_zyx = _median(fp["spacings"]), _median(fp["shapes_after_crop"])
    rec["fingerprint"] = {
        "axes_raw": list(ZYX), "axes_xyz": list("xyz"),
        "median_spacing_raw": sp_zyx, "median_spacing_xyz": sp_zyx[::-1],
        "median_shape_after_crop_raw": sh_zyx, "median_shape_after_crop_xyz": sh_zyx[::-1],
        "spacings_xyz_per_case": [s[::-1] for s in fp["spacings"]],
        "shapes_after_crop_xyz_per_case": [s[::-1] for s in fp["shapes_after_crop"]],
        "median_relative_size_after_cropping": fp.get("median_relative_size_after_cropping"),
    }

    # 3. experiment planning with the default planner and its default GPU memory target
    rc, out = _run(_nn_cmd(py, "nnUNetv2_plan_experiment", ["-d", str(ds_id), "-pl", PLANNER]), env, timeout)
    plans_f = pre / "nnUNetPlans.json"
    if rc or not plans_f.is_file():
        rec["error"] = f"nnUNetv2_plan_experiment failed: {_error_of(out)}"
        return rec
    plans = json.loads(plans_f.read_text())
    tf = plans["transpose_forward"]
    messages = [ln.strip() for ln in out.splitlines()
                if re.search(r"Attempting|Dropping|WARNING|Warning|lowres", ln) and not ln.lstrip().startswith("{")]
    rec["planner"] = {
        "experiment_planner_used": plans.get("experiment_planner_used"),
        "plans_name": plans.get("plans_name"),
        "gpu_memory_target_gb": gpu_gb,
        "gpu_memory_target_source": "ExperimentPlanner.__init__ default (no -gpu_memory_target given); "
                                    "nnUNetPlans.json itself does not store it",
        "image_reader_writer": plans.get("image_reader_writer"),
        "label_manager": plans.get("label_manager"),
        "transpose_forward": tf, "transpose_backward": plans.get("transpose_backward"),
        "original_median_spacing_after_transp": plans.get("original_median_spacing_after_transp"),
        "original_median_spacing_xyz": _to_xyz(plans.get("original_median_spacing_after_transp"), tf),
        "original_median_shape_after_transp": plans.get("original_median_shape_after_transp"),
        "original_median_shape_xyz": _to_xyz(plans.get("original_median_shape_after_transp"), tf),
        "configurations_in_plans": list(plans.get("configurations", {})),
        "messages": messages,
    }
    rec["configurations"] = {c: extract_config(plans["configurations"][c], tf)
                             for c in CONFIGS if c in plans.get("configurations", {})}
    rec["status"] = "ok"
    rec["seconds"] = round(time.time() - t0, 1)
    return rec


# ------------------------------------------------------------------------------------------------------ table
def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, list):
        return "×".join(_fmt(x) for x in v)
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def table(result: dict) -> str:
    head = ["dataset", "config", "spacing x,y,z (mm)", "patch x,y,z", "bs", "stages", "strides x,y,z per stage",
            "norm"]
    rows = []
    for name, r in result["datasets"].items():
        if r["status"] != "ok":
            rows.append([name, "FAILED", r.get("error", "").splitlines()[0][:90], "", "", "", "", ""])
            continue
        fpr = r["fingerprint"]
        rows.append([name, "median", _fmt(fpr["median_spacing_xyz"]), "shape " + _fmt(fpr["median_shape_after_crop_xyz"]),
                     "", "", f"channels {','.join(r['channel_names'].values())}", ""])
        for c, cfg in r["configurations"].items():
            axes = "".join(cfg["axes_xyz"])
            rows.append(["", f"{c} ({axes})", _fmt(cfg["spacing_xyz"]), _fmt(cfg["patch_size_xyz"]),
                         str(cfg["batch_size"]), str(cfg["n_stages"]),
                         " ".join(_fmt(s) for s in cfg["strides_xyz"]), ",".join(cfg["normalization_schemes"])])
    widths = [max(len(str(x[i])) for x in rows + [head]) for i in range(len(head))]
    line = lambda x: "  ".join(str(v).ljust(w) for v, w in zip(x, widths)).rstrip()  # noqa: E731
    return "\n".join([line(head), line(["-" * w for w in widths])] + [line(x) for x in rows])


# ------------------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--_write-raw"]:  # internal: the fallback converter, run inside the nnU-Net python
        write_raw_dataset(argv[1], argv[2])
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=DEFAULT_DATA, help="folder of MSD-layout dataset folders")
    ap.add_argument("--datasets", nargs="*", help="dataset folder names (default: every folder with dataset.json)")
    ap.add_argument("--nnunet-python", default=DEFAULT_PY, help="python with nnunetv2 installed")
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    ap.add_argument("--np", type=int, default=2, help="processes for conversion and fingerprinting")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per nnU-Net call")
    ap.add_argument("--keep-temp", action="store_true", help="keep the temporary nnUNet_raw/preprocessed folders")
    args = ap.parse_args(argv)

    data = Path(args.data)
    names = args.datasets or sorted(p.name for p in data.iterdir() if (p / "dataset.json").is_file())
    py = args.nnunet_python
    probe = subprocess.run(
        [py, "-c", "import importlib.metadata as m, inspect, json, torch; "
                   "from nnunetv2.experiment_planning.experiment_planners.default_experiment_planner import "
                   "ExperimentPlanner as P; "
                   "print(json.dumps([m.version('nnunetv2'), torch.__version__, "
                   "inspect.signature(P.__init__).parameters['gpu_memory_target_in_gb'].default]))"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if probe.returncode:
        print(f"cannot use nnU-Net from {py}:\n{probe.stderr[-2000:]}", file=sys.stderr)
        return 2
    nn_version, torch_version, gpu_gb = json.loads(probe.stdout.strip().splitlines()[-1])

    tmp = Path(tempfile.mkdtemp(prefix="nnunet_plans_"))
    env = dict(os.environ)
    env.update({k: str(tmp / k) for k in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")})
    for k in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        Path(env[k]).mkdir()
    env.update({"CUDA_VISIBLE_DEVICES": "", "nnUNet_def_n_proc": str(args.np), "OMP_NUM_THREADS": "1",
                "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "nnUNet_compile": "f",
                "PYTHONWARNINGS": "ignore"})

    result = {
        "nnunetv2_version": nn_version,
        "torch_version": torch_version,
        "nnunet_python": py,
        "command": shlex.join([Path(sys.executable).name, os.path.relpath(__file__, ROOT), *argv]),
        "nnunet_commands": [
            "nnUNetv2_convert_MSD_dataset -i <staged Task<id>_<Name>> -overwrite_id <id> -np N",
            "nnUNetv2_extract_fingerprint -d <id> -np N --verify_dataset_integrity --no_pbar",
            f"nnUNetv2_plan_experiment -d <id> -pl {PLANNER}",
        ],
        "planner": PLANNER,
        "gpu_memory_target_gb": gpu_gb,
        "device": "cpu (planning only; CUDA_VISIBLE_DEVICES empty)",
        "generated": _dt.datetime.now().isoformat(timespec="seconds"),
        "axis_order": "*_raw: as in nnU-Net's files (SimpleITK array order z,y,x, permuted by transpose_forward; "
                      "axes_raw names each entry); *_xyz: nibabel (x,y,z) order (2d: in-plane axes, see axes_xyz)",
        "datasets": {},
    }
    try:
        for i, name in enumerate(names):
            print(f"[{i + 1}/{len(names)}] {name} ...", flush=True)
            try:
                rec = plan_dataset(data / name, FIRST_ID + i, py, tmp, env, args.np, args.timeout, gpu_gb)
            except Exception as e:  # noqa: BLE001 - record and go on with the next dataset
                rec = {"source": str(data / name), "status": "failed", "error": f"{type(e).__name__}: {e}"}
            result["datasets"][name] = rec
            print(f"    {rec['status']}" + (f": {rec['error']}" if rec["status"] != "ok" else
                                           f" ({rec['seconds']} s, {rec['conversion']['method']})"), flush=True)
    finally:
        if args.keep_temp:
            print(f"temporary nnU-Net folders kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print()
    print(f"nnU-Net v2 {nn_version} reference plans ({PLANNER}, {gpu_gb} GB target), nibabel x,y,z order:")
    print(table(result))
    print(f"\nwritten to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

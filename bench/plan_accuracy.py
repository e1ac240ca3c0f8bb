"""Held-out Dice of the planned recipe vs today's fixed recipe, same split, same wall-clock, as a user runs them.

Arms (one per sitting: each needs the cores to itself for ``--minutes``; saved as it finishes):
  * ``planned``: ``autoseg train POOL --time 20m`` (the dataset's plan, no config);
  * ``fixed``:   ``autoseg train POOL --no-plan --config bench/configs/fixed-recipe.yaml --time 20m`` (the recipe
    as it was before the planner: each case at its own voxel size, the whole-case canvas, batch 4).
Both train on the same pool (a seeded split: ``--holdout`` of the cases never seen), hold out 20 % of the pool for
their own validation (the CLI's default), and are scored by ``autoseg predict`` + the engine's evaluation on the
held-out cases in their original geometry.  ``--multi-spacing`` first makes a variant of the dataset in which
every case is re-sliced to a random thick-slice spacing (every k-th slice along the last axis, k from
``--slice-steps``, seeded per case; the header spacing follows), trains on it, predicts the re-sliced held-out
images, maps each prediction back onto the original grid (nearest slice) and scores it against the original label.

    python bench/plan_accuracy.py --data ../shared/data/Prostate_PROMISE12 --arm planned
    python bench/plan_accuracy.py --data ../shared/data/Prostate_PROMISE12 --arm fixed
    python bench/plan_accuracy.py --data ../shared/data/Prostate_PROMISE12 --arm compare
    python bench/plan_accuracy.py --data ../shared/data/Prostate_PROMISE12 --multi-spacing --arm planned

Results: bench/results/plan_accuracy_<dataset>[_multispacing]_<arm>.json; ``compare`` prints the paired table
(per-case differences, mean with a 95 % t interval) and writes it to the same name with ``_compare.txt``.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
RESULTS = REPO / "bench" / "results"
AUTOSEG = [sys.executable, "-m", "AutoSegCore"]


def split(names: list[str], holdout: float, seed: int) -> tuple[list[str], list[str]]:
    from AutoSegCore.data.splits import holdout_split

    return holdout_split(names, holdout, seed)


def resliced_dataset(src: Path, dst: Path, steps: list[int], seed: int) -> dict[str, int]:
    """``dst``: every case of ``src`` with every k-th slice along the last axis (k drawn per case); returns k."""
    import nibabel as nib

    meta = json.loads((src / "dataset.json").read_text())
    rng = np.random.default_rng(seed)
    ks = {}
    (dst / "imagesTr").mkdir(parents=True, exist_ok=True)
    (dst / "labelsTr").mkdir(parents=True, exist_ok=True)
    for entry in sorted(meta["training"], key=lambda e: e["image"]):
        name = Path(entry["image"]).name.replace(".nii.gz", "")
        k = int(rng.choice(steps))
        ks[name] = k
        for key, sub in (("image", "imagesTr"), ("label", "labelsTr")):
            out = dst / sub / f"{name}.nii.gz"
            if out.exists():
                continue
            img = nib.load(str(src / entry[key]))
            data = np.asanyarray(img.dataobj)[:, :, ::k]
            affine = img.affine.copy()
            affine[:3, 2] *= k
            nib.save(nib.Nifti1Image(data, affine), str(out))
    meta["training"] = [{"image": f"./imagesTr/{n}.nii.gz", "label": f"./labelsTr/{n}.nii.gz"} for n in ks]
    meta["numTraining"] = len(ks)
    (dst / "dataset.json").write_text(json.dumps(meta, indent=1))
    return ks


def pool_dataset(src: Path, dst: Path, pool: list[str]) -> Path:
    """An MSD dataset folder listing only the ``pool`` cases of ``src``: ``dst/imagesTr`` and ``dst/labelsTr`` hold
    symbolic links to the source files and dataset.json names them relative to ``dst`` (the engine refuses entries
    that are absolute or leave the dataset folder, and follows links made inside it)."""
    meta = json.loads((src / "dataset.json").read_text())
    keep = [e for e in meta["training"] if Path(e["image"]).name.replace(".nii.gz", "") in set(pool)]
    entries = []
    for e in keep:
        entry = {}
        for key, sub in (("image", "imagesTr"), ("label", "labelsTr")):
            target = (src / e[key]).resolve()
            link = dst / sub / target.name
            link.parent.mkdir(parents=True, exist_ok=True)
            if link.is_symlink() or link.exists():
                link.unlink()
            link.symlink_to(target)
            entry[key] = f"./{sub}/{target.name}"
        entries.append(entry)
    for sub in ("imagesTr", "labelsTr"):            # a re-used folder: links of cases no longer in the pool go
        for link in (dst / sub).glob("*") if (dst / sub).is_dir() else []:
            if link.name not in {Path(e[k]).name for e in entries for k in ("image", "label")}:
                link.unlink()
    meta["training"] = entries
    meta["numTraining"] = len(entries)
    dst.mkdir(parents=True, exist_ok=True)
    (dst / "dataset.json").write_text(json.dumps(meta))
    return dst


def run(cmd: list, log: Path) -> float:
    t0 = time.perf_counter()
    with open(log, "a") as fh:
        fh.write(f"$ {' '.join(map(str, cmd))}\n")
        fh.flush()
        r = subprocess.run([str(c) for c in cmd], stdout=fh, stderr=subprocess.STDOUT, cwd=REPO,
                           env={**os.environ, "PYTHONUTF8": "1"})
    if r.returncode != 0:
        raise SystemExit(f"failed ({r.returncode}): {' '.join(map(str, cmd))} — see {log}")
    return time.perf_counter() - t0


def score(pred_dir: Path, original: Path, holdout: list[str], ks: dict[str, int] | None) -> dict:
    """Per-case Dice of ``pred_dir/<case>.nii.gz`` against the original labels (re-sliced predictions are mapped
    back to the original slices: original slice z takes the prediction of re-sliced slice round(z / k))."""
    import nibabel as nib

    from AutoSegCore.data.dataset import load_dataset, read_case
    from AutoSegCore.training.metrics import evaluate_pair

    ds = load_dataset(original)
    per_case, per_class = {}, {}
    for name in holdout:
        arr = read_case(ds.case(name))
        pred = np.asarray(nib.load(str(pred_dir / f"{name}.nii.gz")).dataobj).astype(np.int64)
        if ks:
            z = np.minimum(np.round(np.arange(arr.label.shape[2]) / ks[name]).astype(int), pred.shape[2] - 1)
            pred = pred[:, :, z]
        m = evaluate_pair(pred, arr.label, ds.labels, arr.spacing)
        per_case[name] = float(m["mean_dice"])
        for k, v in m["dice"].items():
            per_class.setdefault(k, {})[name] = float(v)
    return {"mean_dice": float(np.mean(list(per_case.values()))), "per_case": per_case,
            "per_class": {k: float(np.mean(list(v.values()))) for k, v in per_class.items()},
            "per_class_per_case": per_class}


def paired_difference(a: dict[str, float], b: dict[str, float]) -> dict:
    """``a`` − ``b`` over the cases both score (``{case: Dice}``): mean, 95 % t interval, how many ``a`` wins."""
    from scipy import stats

    names = sorted(set(a) & set(b))
    d = np.array([a[n] - b[n] for n in names], dtype=float)
    half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else float("nan")
    mean = float(d.mean()) if len(d) else float("nan")
    return {"n": len(d), "mean": mean, "low": float(mean - half), "high": float(mean + half),
            "better": int((d > 0).sum()),
            "cases": names, "differences": d.tolist()}


def compare(a: dict, b: dict, labels=("planned", "fixed")) -> str:
    p = paired_difference(a["score"]["per_case"], b["score"]["per_case"])
    lines = [f"| arm | held-out mean Dice | per class | worst case | train s | plan |", "|---|---|---|---|---|---|"]
    for label, arm in zip(labels, (a, b)):
        s = arm["score"]
        worst = min(s["per_case"].items(), key=lambda kv: kv[1])
        per_class = ", ".join(f"{k} {v:.3f}" for k, v in s["per_class"].items())
        lines.append(f"| {label} | {s['mean_dice']:.4f} | {per_class} | {worst[1]:.3f} ({worst[0]}) | "
                     f"{arm['train_seconds']:.0f} | {arm.get('plan_summary', '–')} |")
    lines.append(f"\npaired {labels[0]} − {labels[1]} over {p['n']} held-out cases: {p['mean']:+.4f} "
                 f"(95 % CI {p['low']:+.4f} … {p['high']:+.4f}); {labels[0]} better on {p['better']}/{p['n']}")
    return "\n".join(lines)


def plan_summary(model: Path) -> str:
    from AutoSegCore.search.search_dir import PLAN_FILE

    path = model / PLAN_FILE
    if not path.is_file():
        return "–"
    c = json.loads(path.read_text())["config"]
    return (f"patch {'×'.join(map(str, c['training']['patch_size']))} batch {c['training']['batch_size']}, "
            f"depth {c['network']['depth']}, spacing {c['preprocessing'].get('target_spacing') or 'own'}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--arm", choices=("planned", "fixed", "compare"), required=True)
    ap.add_argument("--minutes", type=float, default=20.0)
    ap.add_argument("--holdout", type=float, default=0.3, help="share of the cases held out (never trained on)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--multi-spacing", action="store_true")
    ap.add_argument("--slice-steps", default="2,3,4", help="k of the re-slicing (every k-th slice)")
    ap.add_argument("--work", default="/tmp/autoseg_bench/plan_accuracy")
    args = ap.parse_args()

    from AutoSegCore.data.dataset import load_dataset

    src = Path(args.data).resolve()
    tag = src.name + ("_multispacing" if args.multi_spacing else "")
    result_file = lambda arm: RESULTS / f"plan_accuracy_{tag}_{arm}.json"  # noqa: E731
    if args.arm == "compare":
        a, b = (json.loads(result_file(arm).read_text()) for arm in ("planned", "fixed"))
        text = compare(a, b)
        print(text)
        (RESULTS / f"plan_accuracy_{tag}_compare.txt").write_text(text + "\n")
        return 0
    work = Path(args.work) / tag
    work.mkdir(parents=True, exist_ok=True)
    ks = None
    data = src
    if args.multi_spacing:
        data = work / "resliced"
        ks = resliced_dataset(src, data, [int(k) for k in args.slice_steps.split(",")], args.seed)
    names = sorted(c.name for c in load_dataset(data).cases)
    pool, holdout = split(names, args.holdout, args.seed)
    pool_dir = pool_dataset(data, work / "pool", pool)
    model, pred, log = work / f"model_{args.arm}", work / f"pred_{args.arm}", work / f"{args.arm}.log"
    for p in (model, pred):
        subprocess.run(["rm", "-rf", str(p)])
    log.unlink(missing_ok=True)
    budget = f"{args.minutes:g}m"
    cmd = AUTOSEG + ["train", pool_dir, "--out", model, "--time", budget]
    if args.arm == "fixed":
        cmd += ["--no-plan", "--config", REPO / "bench" / "configs" / "fixed-recipe.yaml"]
    load_before = os.getloadavg()
    seconds = run(cmd, log)
    holdout_images = [data / "imagesTr" / f"{n}.nii.gz" for n in holdout]
    predict_seconds = run(AUTOSEG + ["predict", model, *holdout_images, "--out", pred], log)
    result = {"dataset": src.name, "arm": args.arm, "command": " ".join(map(str, cmd)), "minutes": args.minutes,
              "seed": args.seed, "pool": pool, "holdout": holdout, "slice_steps": ks, "train_seconds": seconds,
              "predict_seconds": predict_seconds, "load_before": load_before, "load_after": os.getloadavg(),
              "plan_summary": plan_summary(model), "history": json.loads((model / "history.json").read_text()),
              "score": score(pred, src, holdout, ks)}
    RESULTS.mkdir(parents=True, exist_ok=True)
    result_file(args.arm).write_text(json.dumps(result, indent=1))
    print(f"{tag} {args.arm}: held-out mean Dice {result['score']['mean_dice']:.4f} "
          f"({len(holdout)} cases; train {seconds:.0f} s) → {result_file(args.arm)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

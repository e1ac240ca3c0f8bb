"""Our plan next to nnU-Net v2's, for every shared dataset: target spacing, patch, poolings per axis, batch.

The reference is ``bench/results/nnunet_plans.json``, made by ``bench/nnunet_plans.py`` (nnU-Net v2.8.1's
``nnUNetv2_plan_experiment``, its default 8 GB GPU target; install with ``pip install -e '.[bench]'`` after
``torch==2.13.0``).  Our planner runs here with ``--device cuda --gpu-memory 8`` (a GPU plan needs no GPU: it is
sized by memory, as nnU-Net's), and the verdict per dataset is: the same target spacing, the same poolings per
level and axis, a patch volume within 2× of nnU-Net's 3d_fullres.  ``--device cpu`` prints the CPU plans (patch
sized by timed steps for ``--budget``); on a machine with a GPU, ``--device cuda`` also times the planned step
there and records its peak memory.

    python bench/plans.py                       # GPU plans at 8 GB vs nnU-Net; exit 1 if a verdict fails
    python bench/plans.py --device cpu --budget 20m
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "Testing"))


def main() -> int:
    from shared_data import DATA_ROOT

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DATA_ROOT), help="folder of MSD datasets")
    ap.add_argument("--reference", default=str(REPO / "bench" / "results" / "nnunet_plans.json"))
    ap.add_argument("--device", default="cuda", help="cuda (memory-sized, no GPU needed) or cpu (timed)")
    ap.add_argument("--gpu-memory", type=float, default=8.0, help="GB a GPU plan is sized for (nnU-Net: 8)")
    ap.add_argument("--budget", default="20m", help="training budget a CPU plan is sized for")
    ap.add_argument("--out", help="JSON result file (default bench/results/plans_<device>.json)")
    args = ap.parse_args()

    import torch

    from AutoSegCore.data.fingerprint import compute_fingerprint
    from AutoSegCore.planning import plan_dataset
    from AutoSegCore.planning.cost import probe_step_seconds

    reference = json.loads(Path(args.reference).read_text())["datasets"]
    on_gpu = args.device.startswith("cuda")
    rows, results, failed = [], {}, []
    for folder in sorted(Path(args.data).iterdir()):
        if not (folder / "dataset.json").is_file():
            continue
        t0 = time.perf_counter()
        fp = compute_fingerprint(folder)
        plan = plan_dataset(fingerprint=fp, device=args.device, budget=args.budget,
                            gpu_memory_gb=args.gpu_memory if on_gpu else None)
        seconds = time.perf_counter() - t0
        cfg = plan["config"]
        ours = {"spacing": plan["choices"]["target_spacing"]["value"], "patch": cfg["training"]["patch_size"],
                "strides": cfg["network"]["strides"], "kernels": cfg["network"]["kernels"],
                "batch": cfg["training"]["batch_size"], "normalization": cfg["preprocessing"]["normalization"],
                "mask_norm": cfg["preprocessing"]["zscore_nonzero"], "plan_seconds": round(seconds, 1),
                "cost": plan["cost"]}
        if on_gpu and torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
            ours["cuda_step_seconds"] = probe_step_seconds(cfg, len(fp["channel_names"]), len(fp["labels"]), "cuda")
            ours["cuda_peak_bytes"] = torch.cuda.max_memory_allocated()
        ref = (reference.get(folder.name) or {}).get("configurations", {}).get("3d_fullres")
        verdict = {}
        if ref:
            ref_strides = ref["strides_xyz"][1:]
            verdict = {"spacing": all(math.isclose(a, b, rel_tol=1e-3) for a, b in zip(ours["spacing"], ref["spacing_xyz"])),
                       "pooling": ours["strides"] == ref_strides,
                       "patch_ratio": math.prod(ours["patch"]) / math.prod(ref["patch_size_xyz"])}
            verdict["ok"] = verdict["spacing"] and verdict["pooling"] and 0.5 <= verdict["patch_ratio"] <= 2.0
            if on_gpu and not verdict["ok"]:
                failed.append(folder.name)
        results[folder.name] = {"ours": ours, "nnunet_3d_fullres": ref and {
            "spacing": ref["spacing_xyz"], "patch": ref["patch_size_xyz"], "strides": ref["strides_xyz"][1:],
            "batch": ref["batch_size"], "normalization": ref["normalization_schemes"]}, "verdict": verdict}
        rows.append((folder.name, ours, ref, verdict))

    def fmt(v):
        return "×".join(f"{x:g}" for x in v)

    def pools(strides):
        return "/".join(str(sum(1 for s in strides if s[a] == 2)) for a in range(3))

    print(f"| dataset | spacing ours / nnU-Net | patch ours / nnU-Net (volume ratio) | poolings x/y/z ours / nnU-Net "
          f"| batch ours / nnU-Net | plan s | verdict |")
    print("|---|---|---|---|---|---|---|")
    for name, ours, ref, verdict in rows:
        if ref is None:
            print(f"| {name} | {fmt(ours['spacing'])} / – | {fmt(ours['patch'])} / – | {pools(ours['strides'])} / – | "
                  f"{ours['batch']} / – | {ours['plan_seconds']} | no reference |")
            continue
        same = "same" if verdict["pooling"] else "differs"
        print(f"| {name} | {fmt(ours['spacing'])} / {fmt(ref['spacing_xyz'])} | {fmt(ours['patch'])} / "
              f"{fmt(ref['patch_size_xyz'])} ({verdict['patch_ratio']:.2f}) | {pools(ours['strides'])} / "
              f"{pools(ref['strides_xyz'][1:])} ({same} per level) | {ours['batch']} / {ref['batch_size']} | "
              f"{ours['plan_seconds']} | {'PASS' if verdict['ok'] else 'FAIL'} |")
        if "cuda_step_seconds" in ours:
            print(f"|   ↳ on {torch.cuda.get_device_name()} | step {ours['cuda_step_seconds']:.3f} s, peak "
                  f"{ours['cuda_peak_bytes'] / 2 ** 30:.2f} GiB of the {args.gpu_memory:g} GB target |||||||")
    if not on_gpu:
        for name, ours, _, _ in rows:
            probes = ", ".join(f"{fmt(p['patch'])}: {p['seconds']:.2f} s" for p in ours["cost"].get("probes", []))
            print(f"{name}: step target {ours['cost'].get('step_target_seconds', 0):.2f} s; probes (batch 2) {probes}")
    out = Path(args.out or REPO / "bench" / "results" / f"plans_{'cuda' if on_gpu else 'cpu'}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"device": args.device, "gpu_memory_gb": args.gpu_memory if on_gpu else None,
                               "budget": args.budget, "torch": torch.__version__, "datasets": results}, indent=1))
    print(f"→ {out}" + (f"; FAIL: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())

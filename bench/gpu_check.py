"""`make gpu-check` (issues 21, 29): the GPU path checked in one command, ≤ 8 minutes on one H100/H200.

Stages, each a subprocess in its own process group with its own time limit (``LIMITS``: 0.25 + 2.5 + 1.25 + 1.5
+ 0.5 + 2 = 8 min), each writing its output into ``--out`` (gpu-check-output/).  A stage passes only on exit 0:
a crash exits 1 like a missed target, so no stage accepts 1.  A stage past its limit is stopped whole — SIGTERM
to its process group and to every process it started (a search's trials run in sessions of their own), SIGKILL
after ``GRACE_SECONDS`` — so no xdist worker or trial outlives it to slow the next stage; it then reads exit 124.

1. ``doctor.txt``          `autoseg doctor`: torch build, each GPU, what --device auto and training.amp: auto pick;
2. ``pytest.txt``          the engine's suite with CUDA visible (Testing/training, search, predict, proxy,
                           networks, spaces, strategies, data, report, experiment, architecture, cli; not slicer,
                           web or postgres), ``-n 8`` workers sharing the one GPU;
3. ``train_throughput.txt`` bench/train_throughput.py --device cuda: our trainer vs the lean MONAI loop (full
                           recipe net) and --jobs 4 packed proxy trials (it exits 1 when one of its verdicts fails);
4. ``search_speedup.txt``  bench/search_speedup.py --quick --device cuda --jobs 2 (exit 1: its verdict is FAIL);
5. ``fp16_scaler.txt``     bench/fp16_scaler.py: fp16 training whose GradScaler starts at 2^48, so its first ≈ 30
                           steps are skipped; passes if it finishes undeclared diverged, the skips counted as the
                           scaler's calibration;
6. ``bohb_search.txt``     the BOHB search of the issue (recipe space, mi+roi:0.25, 8 trials, 4 epochs × 50 steps,
                           --jobs 2), then every failed trial with its error (a diverged one fails the check);
7. ``summary.txt``         each target PASS/FAIL with its figure; the exit status is 0 only if all pass.

Without CUDA it says so and exits 2; ``--dry-run`` instead runs every stage on the CPU with tiny settings (a
check of this script: ≈ 5 min on 2 busy cores, most of it search_speedup's two searches and final
trainings; its figures are noise, so its benches' verdicts, and the exit status, may be FAIL).

    .venv/bin/python bench/gpu_check.py                 # on a GPU machine (= make gpu-check)
    .venv/bin/python bench/gpu_check.py --dry-run       # on CPU: the script end to end, tiny settings
"""
from __future__ import annotations

import argparse
import contextlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = os.environ.get("AUTOSEG_HIPPO", "/work/shared/data/Task04_Hippocampus")
SUITE = ["Testing/training", "Testing/search", "Testing/predict", "Testing/proxy", "Testing/networks",
         "Testing/spaces", "Testing/strategies", "Testing/data", "Testing/report", "Testing/experiment",
         "Testing/architecture", "Testing/cli"]
TRAINER_TARGET, PACKED_TARGET = 1.5, 3.0
# minutes per stage: (on a GPU, in a --dry-run on the CPU); the GPU column sums to the 8 minutes of the issue
LIMITS = {"doctor": (0.25, 0.5), "pytest": (2.5, 2), "train_throughput": (1.25, 3), "search_speedup": (1.5, 3.5),
          "fp16_scaler": (0.5, 1.5), "bohb_search": (2, 1.5)}
GRACE_SECONDS = 3.0         # between SIGTERM (a search checkpoints and ends its trials) and SIGKILL
TIMED_OUT = 124


def stop_stage(proc: subprocess.Popen, grace: float = GRACE_SECONDS) -> None:
    """End a stage's process and everything it started: SIGTERM to its process group and to each descendant (a
    search's fork server puts every trial in a session of its own), SIGKILL to what is left after ``grace``."""
    try:
        family = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        family = []
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)          # the group outlives its leader while a member is alive
        for p in family:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.send_signal(sig)
        if sig == signal.SIGTERM:
            deadline = time.monotonic() + grace
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=grace)
            family = psutil.wait_procs(family, timeout=max(0.0, deadline - time.monotonic()))[1]
    proc.wait()


def run_stage(name: str, cmd: list[str], out: Path, timeout: float) -> tuple[int, float]:
    """Run ``cmd`` in a session of its own with stdout+stderr into ``out/name.txt``; returns (exit status,
    seconds): ``TIMED_OUT`` (124) when it ran past ``timeout`` seconds and was stopped whole (``stop_stage``).
    Whatever it left running in its process group is ended too, so that no stray process loads the next stage."""
    started = time.perf_counter()
    log = out / f"{name}.txt"
    with open(log, "w") as fh:
        fh.write("$ " + shlex.join(cmd) + "\n")
        fh.flush()
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            rc = TIMED_OUT
        finally:                               # also on Ctrl-C of gpu_check itself
            stop_stage(proc)
        if rc == TIMED_OUT:
            fh.write(f"\n[gpu-check] stopped after the stage's limit of {timeout:.0f} s\n")
    seconds = time.perf_counter() - started
    where = log.relative_to(ROOT) if log.is_relative_to(ROOT) else log
    print(f"[gpu-check] {name}: exit {rc} in {seconds:.0f} s → {where}", flush=True)
    return rc, seconds


def speed(text: str, net: str, arm: str) -> float | None:
    """The ratio of a verdict line of bench/train_throughput.py, e.g. 'proxy  --jobs 4 aggregate  speed  3.10×'."""
    m = re.search(rf"^{net}\s+{re.escape(arm)}[^\n]*?speed\s+([0-9.]+)×", text, re.M)
    return float(m.group(1)) if m else None


def failed_trials(study_dir: Path) -> list[tuple[int, str, str]]:
    """(number, state, error) of every failed trial of the study in ``study_dir``."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    from AutoSegCore.search.storage import default_storage_url

    storage = default_storage_url(study_dir)
    rows = []
    for name in optuna.get_all_study_names(storage):
        for t in optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False):
            if t.state == optuna.trial.TrialState.FAIL:          # pruned trials are the strategy's, not faults
                rows.append((t.number, t.state.name, str(t.user_attrs.get("error", ""))))
    return rows


def outcome(rc: int, seconds: float, limit: float) -> str:
    """A stage's exit as the summary says it."""
    if rc == TIMED_OUT:
        return f"stopped at its limit of {limit:.0f} s, exit {TIMED_OUT}"
    return f"exit {rc} in {seconds:.0f} s"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "gpu-check-output"), help="output folder (wiped)")
    ap.add_argument("--data", default=DEFAULT_DATA, help="Hippocampus (MSD Task04)")
    ap.add_argument("--device", default="cuda", help="cuda or cuda:N")
    ap.add_argument("--dry-run", action="store_true", help="on the CPU with tiny settings: checks this script only")
    ap.add_argument("--skip", default="", help="comma-separated stages to skip: doctor, pytest, throughput, speedup, "
                                               "fp16, bohb")
    args = ap.parse_args(argv)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    out = Path(args.out).resolve()
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    py = sys.executable
    summary = [f"# make gpu-check — {time.strftime('%Y-%m-%d %H:%M:%S')}"]

    import torch

    if args.dry_run:
        device = "cpu"
        summary.append("DRY RUN on the CPU with tiny settings: this checks the script, not the GPU targets.")
    elif not torch.cuda.is_available():
        msg = ("NO CUDA: torch.cuda.is_available() is False on this machine (torch " + torch.__version__ + "); "
               "make gpu-check needs an NVIDIA GPU and a CUDA build of torch (`autoseg doctor` says which is "
               "installed). Nothing was run. (bench/gpu_check.py --dry-run runs the stages on the CPU with tiny "
               "settings.)")
        print(msg, file=sys.stderr)
        (out / "summary.txt").write_text("\n".join(summary + [msg, "RESULT: FAIL (no CUDA)"]) + "\n")
        return 2
    else:
        device = args.device
        summary.append(f"device {device}: {torch.cuda.get_device_name(torch.device(device))}, torch {torch.__version__}"
                       f", CUDA {torch.version.cuda}")
    started = time.perf_counter()
    results: list[tuple[str, bool, str]] = []

    def stage(name: str, cmd: list[str]) -> tuple[int, str]:
        limit = 60 * LIMITS[name][1 if args.dry_run else 0]
        rc, sec = run_stage(name, cmd, out, limit)
        return rc, outcome(rc, sec, limit)

    # 1. what the engine sees: torch build, GPUs, the device and precision `auto` picks
    if "doctor" not in skip:
        rc, note = stage("doctor", [py, "-m", "AutoSegCore", "doctor"])
        results.append(("`autoseg doctor` reports the device (doctor.txt)", rc == 0, note))

    # 2. the suite with CUDA visible
    if "pytest" not in skip:
        if args.dry_run:
            cmd = [py, "-m", "pytest", "-q", "--timeout", "300", "-p", "no:cacheprovider",
                   "Testing/training/test_device_path.py", "-k", "devices or fraction or precision"]
        else:
            cmd = [py, "-m", "pytest", "-q", "-n", "8", "--timeout", "600", "-p", "no:cacheprovider",
                   "-m", "not slicer and not web and not postgres", *SUITE]
        rc, note = stage("pytest", cmd)
        tail = (out / "pytest.txt").read_text().strip().splitlines()
        results.append(("suite with CUDA visible (no slicer/web/postgres) passes", rc == 0,
                        f"{note}; {tail[-1] if tail else ''}"))

    # 3. trainer vs lean loop; packed proxy trials (the bench exits 0 only when all its verdicts pass)
    if "throughput" not in skip:
        if args.dry_run:
            tt = ["--nets", "proxy", "--steps-proxy", "6", "--block", "3", "--jobs", "2", "--packed-rounds", "1",
                  "--candidate-rounds", "0"]
        else:
            tt = ["--nets", "full,proxy", "--steps-full", "300", "--steps-proxy", "300", "--block", "50",
                  "--jobs", "4", "--packed-rounds", "3", "--candidate-rounds", "1"]
        rc, note = stage("train_throughput", [py, "bench/train_throughput.py", "--device", device, "--no-save",
                                              "--data", args.data, *tt])
        text = (out / "train_throughput.txt").read_text()
        dev = "cpu" if args.dry_run else device
        full = speed(text, "full", f"single trainer, {dev}") if not args.dry_run else None
        proxy_one = speed(text, "proxy", "single trainer")
        proxy_packed = speed(text, "proxy", f"--jobs {4 if not args.dry_run else 2} aggregate")
        if not args.dry_run:
            results.append((f"trainer ≥ {TRAINER_TARGET}× the lean loop (recipe-size full net)",
                            rc == 0 and full is not None and full >= TRAINER_TARGET,
                            f"{full}× ({note})" if full is not None else f"no figure ({note})"))
        packed_vs_one = proxy_packed / proxy_one if proxy_packed and proxy_one else None
        results.append((f"packed proxy trials ≥ {PACKED_TARGET}× one proxy trial alone (aggregate steps/s)",
                        rc == 0 and packed_vs_one is not None and packed_vs_one >= PACKED_TARGET,
                        (f"{packed_vs_one:.2f}× (packed {proxy_packed}× and one trial {proxy_one}× the lean loop; "
                         f"{note})" if packed_vs_one else f"no figure ({note})")))

    # 4. proxy search vs full search
    if "speedup" not in skip:
        ss = (["--trials", "2", "--epochs", "1", "--min-epochs", "1", "--steps", "2", "--final-epochs", "1",
               "--final-steps", "2", "--holdout", "4"] if args.dry_run else ["--quick"])
        rc, note = stage("search_speedup", [py, "bench/search_speedup.py", "--device", device, "--no-save",
                                            "--jobs", "2", "--data", args.data, "--work", str(out / "search_speedup"),
                                            *ss])
        results.append(("bench/search_speedup.py: proxy search ≥ 10× faster at ≤ 0.01 held-out Dice loss "
                        "(search_speedup.txt)", rc == 0, f"{note} (1: its verdict is FAIL, or it crashed)"))

    # 5. fp16 with forced GradScaler skips: calibration, not divergence
    if "fp16" not in skip:
        rc, note = stage("fp16_scaler", [py, "bench/fp16_scaler.py", "--device", device, "--data", args.data,
                                         *(["--epochs", "2", "--steps", "20"] if args.dry_run else [])])
        verdict = re.findall(r"^fp16 scaler: .*$", (out / "fp16_scaler.txt").read_text(), re.M)
        results.append(("fp16 training, first steps overflowing (GradScaler from 2^48): finishes, not diverged, "
                        "skips counted as calibration", rc == 0, f"{verdict[-1] if verdict else 'no verdict'}; {note}"))

    # 6. the BOHB search of the issue: no diverged trial
    if "bohb" not in skip:
        study = out / "bohb_search"
        n = ["--trials", "2", "--epochs", "1", "--steps-per-epoch", "3"] if args.dry_run else \
            ["--trials", "8", "--epochs", "4", "--steps-per-epoch", "50"]
        rc, note = stage("bohb_search", [py, "-m", "AutoSegCore", "search", args.data, "--space", "unet-recipe",
                                         "--config", "Resources/Configs/recipe.yaml", "--strategy", "bohb",
                                         "--proxy-data", "mi+roi:0.25", *n, "--jobs", "2", "--device", device,
                                         "--no-final", "--out", str(study)])
        try:
            failed = failed_trials(study)
        except Exception as exc:                      # no study.db: the search did not start
            failed = None
            note = f"could not read the study: {exc}; {note}"
        if failed is not None:
            with open(out / "bohb_search.txt", "a") as fh:
                fh.write("\n[gpu-check] failed trials:\n" + "".join(
                    f"  trial {num}: {state} {err}\n" for num, state, err in failed) if failed else
                    "\n[gpu-check] no failed trial\n")
            diverged = [f for f in failed if "diverged" in f[2]]
            note = (f"{len(diverged)} diverged, {len(failed)} failed "
                    f"({'; '.join(f'trial {a}: {c[:120]}' for a, _, c in failed) or 'none'}); {note}")
        results.append((f"BOHB search ({n[1]} trials × {n[3]} epochs × {n[5]} steps, --jobs 2): no diverged trial, "
                        "search exits 0",
                        failed is not None and rc == 0 and not any("diverged" in f[2] for f in failed), note))

    ok = all(passed for _, passed, _ in results)
    summary += [f"{'PASS' if passed else 'FAIL'}  {what}: {figure}" for what, passed, figure in results]
    summary.append(f"RESULT: {'PASS' if ok else 'FAIL'}{' (dry run)' if args.dry_run else ''} — "
                   f"{time.perf_counter() - started:.0f} s in all; outputs in {out}")
    (out / "summary.txt").write_text("\n".join(summary) + "\n")
    print("\n".join(summary))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

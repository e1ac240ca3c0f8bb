"""The parent side of a search: ask the strategy for points, run each as a child process, tell the study.

Fault model: a trial that raises, is killed by a signal, runs out of memory or exceeds its time limit is
recorded as FAILED (with the strategy's penalty value in its user attributes) and the study goes on.
Heartbeats go to the storage while a child runs, so another worker can reclaim a dead worker's trial: every
running study looks for such trials at start and every ``RECOVERY_SECONDS`` (``recover_interrupted``).
A study killed with SIGKILL resumes when the same command is run again: its interrupted trial is re-queued
with the same parameters and continues from the last epoch's checkpoint.  Ctrl-C and the end of the search's
time budget (``--time``, a hard limit) stop the running trials the same way: each is recorded as FAIL "…;
re-queued" with the trial attribute ``requeued`` (no penalty: ``strategies.penalty.was_requeued``) and queued again, so nothing trained is lost.
"""
from __future__ import annotations

import os
import signal
import socket
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import optuna
import psutil

from AutoSegCore.errors import ConfigError, DatasetError
from AutoSegCore.events import NULL_EVENTS, EventWriter
from AutoSegCore.search.launcher import TrialLauncher
from AutoSegCore.search.resume import check_same_settings, study_cases
from AutoSegCore.search.settings import SearchSettings
from AutoSegCore.search.stages import preprocessor_file, stage_fingerprint
from AutoSegCore.search.storage import GRACE_SECONDS
from AutoSegCore.search.trial_process import METRICS, RESULT, read_metrics
from AutoSegCore.search.trial_spec import TrialSpec, study_pruner
from AutoSegCore.strategies.penalty import REQUEUED, REQUEUED_ATTR, state_counts, was_requeued
from AutoSegCore.utils.io import read_json, write_json

FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL)
RECOVERY_SECONDS = GRACE_SECONDS       # how often a running study looks for trials of dead workers


def describe_summary(summary: dict) -> str:
    """One line for people: "8 complete, 37 pruned, 2 stopped and re-queued after 2244 s; best trial 26 (0.8359)"."""
    counts = dict(summary["counts"])
    requeued = counts.pop("REQUEUED", 0)
    counts["FAIL"] = counts.get("FAIL", 0) - requeued
    names = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed", "RUNNING": "running"}
    parts = [f"{counts[k]} {name}" for k, name in names.items() if counts.get(k)]
    parts += [f"{requeued} stopped and re-queued"] if requeued else []
    if counts.get("WAITING"):
        parts.append(f"{counts['WAITING']} queued")
    text = f"{', '.join(parts) or 'no trials'} after {summary['seconds']:.0f} s"
    best = summary.get("best")
    if best:
        text += f"; best trial {best['number']} ({best['value']:.4f})"
    return text


@dataclass
class RunningTrial:
    trial: optuna.trial.Trial
    process: object          # subprocess.Popen or launcher.ForkedTrial: pid, poll(), wait()
    trial_dir: Path
    params: dict
    started: float
    metrics_offset: int = 0
    reported_epochs: set = field(default_factory=set)


def kill_tree(pid: int, timeout: float = 5.0) -> None:
    """Terminate a process and all its children (SIGTERM, then SIGKILL)."""
    try:
        parent = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return
    procs = parent.children(recursive=True) + [parent]
    for p in procs:
        try:
            p.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=timeout)


def describe_exit(code: int, log_tail: str) -> str:
    """Human reason for a failed child: signal, out-of-memory, or the last error line of its log."""
    if "CUDA out of memory" in log_tail or "OutOfMemoryError" in log_tail:
        return "out of memory (CUDA)"
    if "MemoryError" in log_tail or "std::bad_alloc" in log_tail or "DefaultCPUAllocator: can't allocate" in log_tail:
        return "out of memory"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"killed by {name}" + (" (possibly out of memory)" if -code == signal.SIGKILL else "")
    lines = [ln for ln in log_tail.strip().splitlines() if ln.strip()]
    return f"exit code {code}: {lines[-1][:300] if lines else 'no output'}"


class SearchRunner:
    """Runs (or resumes, or joins) one study. ``run_trials`` is the loop; ``run`` adds data selection + final."""

    def __init__(self, settings: SearchSettings, events: EventWriter = NULL_EVENTS, *, join: bool = False) -> None:
        self.s = settings
        self.events = events
        self.join = join
        self.work = Path(settings.out).resolve()
        self.host = socket.gethostname()
        self.launcher = TrialLauncher()
        self.stop_requested = False

    # ------------------------------------------------------------------------------------------ set-up
    def prepare(self) -> None:
        """Open or create the study and select the cases; the fork server starts meanwhile (stopped on error)."""
        from AutoSegCore.proxy.fidelity import Fidelity
        from AutoSegCore.spaces import get_space

        # a mistyped space or proxy spec is refused before the fork server starts (that takes seconds)
        self.fidelity = Fidelity.parse(self.s.proxy_data, self.s.proxy_net)
        self.space = get_space(self.s.space)
        if not Path(self.s.data).exists():
            raise DatasetError(f"{self.s.data}: dataset not found",
                               "pass the dataset folder (dataset.json + imagesTr/ + labelsTr/) or its dataset.json")
        self.work.mkdir(parents=True, exist_ok=True)
        self.launcher.warm()          # the fork server imports torch & co. while the cases are selected
        try:
            self._prepare()
        except BaseException:
            self.launcher.close()
            raise

    def _prepare(self) -> None:
        from AutoSegCore.data.dataset import load_dataset
        from AutoSegCore.search.storage import create_or_load_study, load_study, open_storage
        from AutoSegCore.strategies import make_sampler

        s = self.s
        self.proxy_fixed: list[str] = []
        # Only paper a's fixed proxy (levels=N without width) trains one size for every trial, so only then are
        # the size keys unrankable and dropped; the width rule keeps their order, so the space stays whole.
        if self.fidelity.fixes_network_size:
            from AutoSegCore.networks.proxy import PROXY_KEYS

            self.space, self.proxy_fixed = self.space.without(k for keys in PROXY_KEYS.values() for k in keys)
        self.ds = load_dataset(s.data)
        unknown = sorted(set(s.holdout) - {c.name for c in self.ds.cases})
        if unknown:
            raise ConfigError(f"holdout case(s) not in {s.data}: {', '.join(unknown[:5])}", "check the case names")
        names = [c.name for c in self.ds.cases if c.name not in set(s.holdout)]
        if len(names) < 2:
            raise ConfigError("fewer than 2 cases remain for the search", "use a larger dataset or a smaller holdout")
        self.search_pool = names
        self.storage_url = s.storage_url()
        self.storage = open_storage(self.storage_url, must_exist=self.join)
        directions = list(self.space.directions)
        from AutoSegCore.strategies import MULTI_OBJECTIVE

        if len(directions) > 1 and s.strategy not in MULTI_OBJECTIVE:
            raise ConfigError(f"space '{s.space}' has {len(directions)} objectives but strategy '{s.strategy}' "
                              "optimises one", f"use one of {', '.join(MULTI_OBJECTIVE)}")
        sampler = make_sampler(s.strategy, seed=s.seed)
        pruner = study_pruner(s.strategy, len(directions), s.min_epochs, s.epochs)
        if self.join:
            self.study = load_study(self.storage, s.study_name, sampler=sampler, pruner=pruner)
            self.train_cases, self.val_cases = study_cases(self.study.user_attrs, names, s, self.storage_url,
                                                           self.events, join=True)
        else:
            # the study's own settings are checked before the proxy selection writes proxy.json
            self.study = create_or_load_study(self.storage, s.study_name, directions, sampler, pruner)
            attrs = self.study.user_attrs
            check_same_settings(attrs, s, self.fidelity, self.storage_url)
            self.train_cases, self.val_cases = (study_cases(attrs, names, s, self.storage_url, self.events, join=False)
                                                or self._select_cases(names))
            for key, value in (("space", s.space), ("strategy", s.strategy), ("proxy_data", self.fidelity.data_label),
                               ("proxy_net", self.fidelity.net_label), ("settings", s.to_dict()),
                               ("fixed_by_proxy_net", self.proxy_fixed),
                               ("cases", {"train": self.train_cases, "val": self.val_cases})):
                if attrs.get(key) != value:
                    self.study.set_user_attr(key, value)
        self._reseed_sampler()
        # stage output: the one reading of the training cases' voxels that every trial's preprocessing needs
        self.fingerprint, self.fingerprint_path = stage_fingerprint(self.ds, self.train_cases, self.work)
        self.directions = [d.name.lower() for d in self.study.directions]
        write_json(self.work / "search.json", {
            **s.to_dict(), "study_name": s.study_name, "storage": self.storage_url,
            "storage_is_default": not s.storage, "directions": self.directions,
            "fidelity": self.fidelity.to_dict(), "train_cases": self.train_cases, "val_cases": self.val_cases})

    def _reseed_sampler(self) -> None:
        """A sampler's random stream restarts from its seed in every process, so a resumed study or a joining
        worker with the study's seed would draw the configurations already drawn (random search; the start-up
        trials of TPE, BOHB, …).  A fresh study keeps ``--seed`` (reproducible); a resumed one offsets it by the
        trials it holds (still reproducible); a worker also mixes in its host and process id, since workers
        that join at the same moment see the same trial count."""
        from AutoSegCore.strategies import make_sampler

        n = len(self.study.get_trials(deepcopy=False))
        if not n and not self.join:
            return
        salt = n if not self.join else n + zlib.crc32(f"{self.host}:{os.getpid()}".encode())
        self.study.sampler = make_sampler(self.s.strategy, seed=(self.s.seed + salt) % 2**32)

    def _select_cases(self, names: list[str]) -> tuple[list[str], list[str]]:
        """Proxy data by MI/NCC/random when asked (paper a: 50/50 train/val of the selection), else a holdout split."""
        from AutoSegCore.data.splits import holdout_split

        if self.fidelity.data_method is None:
            return holdout_split(sorted(names), self.s.val_fraction, self.s.seed)
        proxy_json = self.work / "proxy.json"
        if proxy_json.is_file():
            saved = read_json(proxy_json)
            if saved.get("method") == self.fidelity.data_method and set(saved.get("selected", [])) <= set(names):
                return list(saved["train"]), list(saved["val"])
        from AutoSegCore.proxy.selection import save_proxy, select_proxy_data

        sel = select_proxy_data(self.ds.subset(names), method=self.fidelity.data_method,
                                roi="label" if self.fidelity.roi else "none", budget=self.fidelity.budget,
                                seed=self.s.seed, val_fraction=0.5, cache_dir=self.work / "cache",
                                device=self.s.device)
        save_proxy(sel, proxy_json)
        self.events.emit("artifact", kind="proxy", path=str(proxy_json))
        return list(sel.train), list(sel.val)

    # ---------------------------------------------------------------------------------------- recovery
    def recover_interrupted(self) -> int:
        """Trials left RUNNING by a dead worker are failed and re-queued with the same parameters; the re-run
        continues from the dead trial's last checkpoint.  Dead means: of this host and its process is gone, or of
        any host and without a heartbeat for the storage's grace period (a machine that lost power).  Safe with
        many workers at once: only the one whose FAIL lands re-queues, and no one reclaims its own trials."""
        storage = self.study._storage
        try:          # Optuna's fail_stale_trials fails them but returns nothing: they could not be re-queued
            stale = set(storage._get_stale_trial_ids(self.study._study_id))
        except Exception:            # no heartbeat on this storage (journal file), or heartbeats disabled
            stale = set()
        n = 0
        for t in self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            worker = t.system_attrs.get("autoseg_worker") or {}
            here = worker.get("host") == self.host
            if here and int(worker.get("parent_pid", -1)) == os.getpid():
                continue                         # our own running trial (its heartbeat may merely be late)
            if here and not psutil.pid_exists(int(worker.get("parent_pid", -1))):
                why = "worker died"
            elif t._trial_id in stale:
                why = f"worker on {worker.get('host', 'an unknown host')} stopped sending heartbeats"
            else:
                continue
            try:
                storage.set_trial_user_attr(t._trial_id, "error", f"{why}; {REQUEUED}")
                storage.set_trial_user_attr(t._trial_id, REQUEUED_ATTR, True)
                if not storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL):
                    continue
            except optuna.exceptions.UpdateFinishedTrialError:
                continue                         # it just finished, or another worker reclaimed it first
            child = worker.get("child_pid")
            if here and child and psutil.pid_exists(int(child)):
                kill_tree(int(child))            # an orphaned trial of this host (pids mean nothing elsewhere)
            self.study.enqueue_trial(t.params, user_attrs={"resume_from": worker.get("trial_dir", ""),
                                                            "requeued_from": t.number}, skip_if_exists=False)
            n += 1
        return n

    # -------------------------------------------------------------------------------------------- loop
    def _out_of_time(self, started: float) -> bool:
        return self.s.time_limit is not None and time.time() - started >= self.s.time_limit

    def _budget_left(self, started: float) -> bool:
        if self.stop_requested or self._out_of_time(started):
            return False
        if self.s.trials is None:
            return True
        trials = self.study.get_trials(deepcopy=False)
        if any(t.state == optuna.trial.TrialState.WAITING for t in trials):
            return True        # re-queued trials always run
        return self._counted(trials) < self.s.trials

    @staticmethod
    def _counted(trials) -> int:
        """Trials that use up ``--trials``: finished or running; one failed as "re-queued" is replaced by its re-run."""
        return sum(t.state == optuna.trial.TrialState.RUNNING or (t.state in FINISHED and not was_requeued(t))
                   for t in trials)

    def _start_trial(self) -> RunningTrial | None:

        trial = self.study.ask()
        params = self.space.suggest(trial)
        if not self.space.is_legal(params):
            pen = list(self.space.worst_objectives())
            trial.set_user_attr("error", "illegal architecture")
            trial.set_user_attr("penalty", pen)
            self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
            self.events.emit("trial_finished", trial=trial.number, state="FAIL", params=params,
                             error="illegal architecture", value=None)
            return None
        full_config = self.space.to_config(params, self.s.base_config)
        config = {**full_config, "network": self.fidelity.apply_network(full_config["network"])}
        # trials are budgeted in epochs (their values are Dice at one fidelity): a base config's time_limit is
        # for trainings of a single config (the final one gets --final-time), never for a trial
        config["training"] = {**config["training"], "epochs": self.s.epochs, "seed": self.s.seed, "time_limit": None}
        if self.s.steps_per_epoch:
            config["training"]["steps_per_epoch"] = self.s.steps_per_epoch
        trial_dir = self.work / "trials" / f"{trial.number:04d}"
        trial_dir.mkdir(parents=True, exist_ok=True)
        spec = TrialSpec(
            number=trial.number, trial_id=trial._trial_id, storage=self.storage_url, study_name=self.s.study_name,
            strategy=self.s.strategy, directions=self.directions, data=str(Path(self.s.data).resolve()),
            config=config, train_cases=self.train_cases, val_cases=self.val_cases, min_epochs=self.s.min_epochs,
            threads=self.s.threads_per_job(), device=self._trial_device(trial.number),
            memory_gb=self.s.trial_memory_gb, cache_dir=str(self.work / "cache"),
            resume_from=trial.user_attrs.get("resume_from"), fingerprint=str(self.fingerprint_path),
            preprocessor=self._preprocessor_file(config))
        spec.write(trial_dir)
        trial.set_user_attr("config", config)
        trial.set_user_attr("full_config", full_config)
        trial.set_user_attr("fidelity", self.fidelity.to_dict())
        proc = self.launcher.start(trial_dir, None, trial_dir / "log.txt")
        self.study._storage.set_trial_system_attr(trial._trial_id, "autoseg_worker", {
            "host": self.host, "parent_pid": os.getpid(), "child_pid": proc.pid, "trial_dir": str(trial_dir)})
        self.events.emit("trial_started", trial=trial.number, params=params, pid=proc.pid,
                         fidelity=self.fidelity.to_dict())
        return RunningTrial(trial, proc, trial_dir, params, time.time())

    def _preprocessor_file(self, config: dict) -> str | None:
        """The trial's fitted preprocessing as a stage output; None for a config that cannot build one (its trial
        then fails on it, in its own process, as any bad config does)."""
        try:
            return str(preprocessor_file(config, self.ds, self.train_cases, self.fingerprint,
                                         self.work / "preprocessing"))
        except Exception:
            return None

    def _pack_longest_first(self) -> None:
        """Longest-processing-time-first packing of the remaining trials of a random search on several jobs.

        With jobs in parallel the study ends when its last trial does; started in sampling order, a long trial
        drawn late runs alone while the other jobs idle.  A strategy that ignores results (random) can draw
        every remaining point now: they are queued (Optuna ``enqueue_trial``, durable across a resume) from
        the most to the least estimated compute — network FLOPs per voxel × batch × steps × epochs — which is
        the classic LPT schedule.  The points are exactly the sampler's stream, only their order changes.
        Adaptive strategies (TPE, BOHB, …) must see results first, so they keep one point per free job; a
        time-limited study keeps the sampling order too.
        """
        if self.s.strategy != "random" or self.s.jobs < 2 or self.s.trials is None or self.s.time_limit is not None:
            return             # under a time budget, long trials first would finish fewer trials
        trials = self.study.get_trials(deepcopy=False)
        if any(t.state == optuna.trial.TrialState.WAITING for t in trials):
            return                 # already packed by an earlier run of this study, or re-queued work first
        remaining = self.s.trials - self._counted(trials)
        if remaining < 2:
            return
        scratch = optuna.create_study(directions=self.study.directions, sampler=self.study.sampler)
        points = [self.space.suggest(scratch.ask()) for _ in range(remaining)]
        costs = [self._estimated_cost(p) for p in points]
        order = sorted(range(remaining), key=lambda i: -costs[i])      # stable: ties keep the sampling order
        for i in order:
            self.study.enqueue_trial(points[i], user_attrs={"packed_cost": costs[i]})
        self.events.emit("log", message=f"random search on {self.s.jobs} jobs: {remaining} trials queued "
                                        "longest first (estimated compute) so no job idles at the end")

    def _estimated_cost(self, params: dict) -> float:
        """Relative compute of a point as its trial would train it (0 for a point that will not train)."""
        from AutoSegCore.networks.measure import flops_per_voxel

        try:
            cfg = self.space.to_config(params, self.s.base_config)
            net = self.fidelity.apply_network(cfg["network"])
            t = cfg["training"]
            steps = self.s.steps_per_epoch or t["steps_per_epoch"]
            per_voxel = flops_per_voxel(net, self.ds.num_channels, len(self.ds.labels))
            return per_voxel * t["batch_size"] * steps * self.s.epochs
        except Exception:          # an illegal point fails at once in its trial; it costs nothing to run
            return 0.0

    def _trial_device(self, number: int) -> str:
        """The device of trial ``number`` (its TrialSpec's): parallel trials on several GPUs take turns over them."""
        import torch

        if self.s.device in ("auto", "cuda") and self.s.jobs > 1 and torch.cuda.is_available():
            return f"cuda:{number % torch.cuda.device_count()}"
        return self.s.device

    def _poll_metrics(self, rt: RunningTrial) -> None:
        from AutoSegCore.events import read_events

        recs, rt.metrics_offset = read_events(rt.trial_dir / METRICS, rt.metrics_offset)
        for rec in recs:
            self.events.emit("epoch", trial=rt.trial.number, epoch=rec.get("epoch"), epochs=self.s.epochs,
                             loss=rec.get("loss"), val_dice=rec.get("val_dice"), seconds=rec.get("seconds"))

    def _finish(self, rt: RunningTrial, code: int | None, reason: str | None = None) -> None:
        try:
            self._record(rt, code, reason)
        except optuna.exceptions.UpdateFinishedTrialError:
            self._reclaimed_meanwhile(rt)

    def _reclaimed_meanwhile(self, rt: RunningTrial) -> None:
        """Another worker judged this trial dead (no heartbeat within the grace period) and re-queued it."""
        self.events.emit("log", message=f"trial {rt.trial.number} was re-queued by another worker while it ran "
                                        f"(no heartbeat for {GRACE_SECONDS} s); its re-run is what the study keeps")

    def _record(self, rt: RunningTrial, code: int | None, reason: str | None) -> None:
        self._poll_metrics(rt)
        trial, result_path = rt.trial, rt.trial_dir / RESULT
        result = read_json(result_path) if (code == 0 and result_path.is_file()) else None
        if result is None:
            tail = (rt.trial_dir / "log.txt").read_text(errors="replace")[-4000:]
            error = reason or describe_exit(code if code is not None else -9, tail)
            trial.set_user_attr("error", error)
            trial.set_user_attr("penalty", list(self.space.worst_objectives()))
            trial.set_user_attr("seconds", time.time() - rt.started)
            self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
            self.events.emit("trial_finished", trial=trial.number, state="FAIL", params=rt.params, error=error,
                             value=None)
            return
        for key in ("val_dice", "val_dice_per_class", "num_params", "seconds", "epochs"):
            trial.set_user_attr(key, result.get(key))
        trial.set_user_attr("history", read_metrics(rt.trial_dir))      # the study's one per-epoch record
        if result["status"] == "pruned":
            self.study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            self.events.emit("trial_finished", trial=trial.number, state="PRUNED", params=rt.params,
                             value=result["val_dice"], epochs=result["epochs"])
            return
        values = self.space.objectives(result)
        self.study.tell(trial, values if len(values) > 1 else values[0])
        self.events.emit("trial_finished", trial=trial.number, state="COMPLETE", params=rt.params,
                         value=values[0] if len(values) == 1 else list(values), val_dice=result["val_dice"],
                         epochs=result["epochs"], seconds=result["seconds"])

    def _heartbeat(self, running: list[RunningTrial]) -> None:
        record = getattr(self.study._storage, "record_heartbeat", None)
        if record:
            for rt in running:
                try:
                    record(rt.trial._trial_id)
                except Exception:
                    pass

    def run_trials(self) -> dict:
        """Run trials until the trial count or time budget is reached; resumable and safe to run on many hosts."""
        started = time.time()
        requeued = self.recover_interrupted()
        self.events.emit("study_started", study=self.s.study_name, storage=self._public_storage(),
                         space=self.s.space, strategy=self.s.strategy, fidelity=self.fidelity.to_dict(),
                         trials=self.s.trials, jobs=self.s.jobs, resumed_trials=len(self.study.trials),
                         requeued=requeued)
        if self.proxy_fixed:
            self.events.emit("log", message=f"proxy net {self.fidelity.net_label}: not searching "
                             f"{', '.join(self.proxy_fixed)} (every proxy trial trains the same value); the final "
                             "network takes them from the base config")
        if not self.join:
            self._pack_longest_first()
        running: list[RunningTrial] = []
        last_beat, last_recovery = 0.0, time.time()
        try:
            while True:
                while len(running) < self.s.jobs and self._budget_left(started):
                    rt = self._start_trial()
                    if rt:
                        running.append(rt)
                if not running:
                    break
                time.sleep(0.3)
                if time.time() - last_beat > 5:
                    self._heartbeat(running)
                    last_beat = time.time()
                if time.time() - last_recovery > RECOVERY_SECONDS:      # a peer that died mid-study
                    last_recovery = time.time()
                    reclaimed = self.recover_interrupted()
                    if reclaimed:
                        self.events.emit("log", message=f"re-queued {reclaimed} trial(s) of a dead worker; they "
                                                        "continue from their last checkpoint")
                for rt in list(running):
                    self._poll_metrics(rt)
                    code = rt.process.poll()
                    timed_out = self.s.trial_timeout and time.time() - rt.started > self.s.trial_timeout
                    if code is None and timed_out:
                        kill_tree(rt.process.pid)
                        rt.process.wait()
                        self._finish(rt, None, reason=f"exceeded the trial time limit of {self.s.trial_timeout:g} s")
                        running.remove(rt)
                    elif code is not None:
                        self._finish(rt, code)
                        running.remove(rt)
                if running and self._out_of_time(started):
                    # --time is the search's budget, not a time after which no trial starts (Optuna's
                    # ``timeout``): what runs past it would delay the final training by up to a whole trial
                    n = len(running)
                    self._stop_and_requeue(running, f"stopped at the search time limit ({self.s.time_limit:g} s)")
                    self.events.emit("log", message=f"search time limit reached: {n} running trial(s) stopped at "
                                     "their last checkpoint and re-queued; re-run the command with more --time to "
                                     "continue them")
                self._progress(started)
        except KeyboardInterrupt as exc:         # Ctrl-C, or SIGTERM/SIGHUP (search/signals.py)
            self.stop_requested = True
            signum = getattr(exc, "signum", None)
            why = f"stopped by {signal.Signals(signum).name}" if signum else "interrupted by the user"
            self._stop_and_requeue(running, why)
            self.events.emit("log", message="interrupted: " + describe_summary(self.study_summary(time.time() - started))
                             + "; re-run the same command to resume (stopped trials continue from their last "
                               "checkpoint)")
            raise
        finally:
            self.launcher.close()
        return self.study_summary(time.time() - started)

    def _stop_and_requeue(self, running: list[RunningTrial], reason: str) -> None:
        """Stop every running trial and queue its parameters again; the re-run resumes from the trial's last
        epoch checkpoint (at most the running epoch is lost).  Recorded as FAIL "<reason>; re-queued", which no
        strategy reads as a verdict on the config (``was_requeued``)."""
        for rt in list(running):
            kill_tree(rt.process.pid)
            rt.process.wait()
            self._poll_metrics(rt)
            error = f"{reason}; {REQUEUED}"
            running.remove(rt)
            try:
                rt.trial.set_user_attr("error", error)
                rt.trial.set_user_attr(REQUEUED_ATTR, True)
                rt.trial.set_user_attr("seconds", time.time() - rt.started)
                self.study.tell(rt.trial, state=optuna.trial.TrialState.FAIL)
            except optuna.exceptions.UpdateFinishedTrialError:
                self._reclaimed_meanwhile(rt)
                continue
            self.study.enqueue_trial(rt.params, user_attrs={"resume_from": str(rt.trial_dir),
                                                            "requeued_from": rt.trial.number})
            self.events.emit("trial_finished", trial=rt.trial.number, state="FAIL", params=rt.params, error=error,
                             value=None, requeued=True)

    def _progress(self, started: float) -> None:
        trials = self.study.get_trials(deepcopy=False, states=FINISHED)
        if self.s.trials:
            frac = min(1.0, len(trials) / self.s.trials)
        elif self.s.time_limit:
            frac = min(1.0, (time.time() - started) / self.s.time_limit)
        else:
            frac = 0.0
        if getattr(self, "_last_frac", None) != frac:
            self._last_frac = frac
            self.events.emit("progress", fraction=frac, message=f"{len(trials)} trials finished")

    def _public_storage(self) -> str:
        from AutoSegCore.search.storage import redact

        return redact(self.storage_url)

    def study_summary(self, seconds: float) -> dict:
        trials = self.study.get_trials(deepcopy=False)
        counts = state_counts(trials)
        best = None
        if len(self.directions) == 1:
            try:
                bt = self.study.best_trial
                best = {"number": bt.number, "value": bt.value, "params": bt.params,
                        "folder": str(self.work / "trials" / f"{bt.number:04d}")}
            except ValueError:
                best = None
        failed = [t for t in trials if t.state == optuna.trial.TrialState.FAIL and not was_requeued(t)]
        last_error = ({"trial": failed[-1].number, "error": failed[-1].user_attrs.get("error", "unknown"),
                       "folder": str(self.work / "trials" / f"{failed[-1].number:04d}")} if failed else None)
        return {"study": self.s.study_name, "out": str(self.work), "counts": counts, "best": best,
                "seconds": seconds, "last_error": last_error}

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
from dataclasses import dataclass, field
from pathlib import Path

import optuna

from AutoSegCore.events import NULL_EVENTS, EventWriter
from AutoSegCore.search.budget import NO_SIGNAL_ATTR, no_signal
from AutoSegCore.search.launcher import TrialLauncher
from AutoSegCore.search.packing import pack_longest_first
from AutoSegCore.search.prepare import PreparedStudy, prepare_study
from AutoSegCore.search.processes import describe_exit, kill_tree  # noqa: F401 - kill_tree: part of the runner's API
from AutoSegCore.search.recovery import recover_interrupted
from AutoSegCore.search.settings import SearchSettings
from AutoSegCore.utils.signals import finish_stop_undisturbed
from AutoSegCore.search.stages import preprocessor_file
from AutoSegCore.search.storage import GRACE_SECONDS
from AutoSegCore.utils.storage_url import child_env, redact
from AutoSegCore.search.summary import PLANNED_ATTR, counted, describe_summary, study_summary  # noqa: F401 - describe_summary: API
from AutoSegCore.search.trial_process import METRICS, RESULT, read_metrics
from AutoSegCore.search.trial_spec import TrialSpec
from AutoSegCore.strategies.penalty import FINISHED, REQUEUED, REQUEUED_ATTR
from AutoSegCore.utils.io import read_json

RECOVERY_SECONDS = GRACE_SECONDS       # how often a running study looks for trials of dead workers


@dataclass
class RunningTrial:
    trial: optuna.trial.Trial
    process: object          # subprocess.Popen or launcher.ForkedTrial: pid, poll(), wait()
    trial_dir: Path
    params: dict
    started: float
    device: str = ""
    metrics_offset: int = 0
    reported_epochs: set = field(default_factory=set)


class SearchRunner:
    """Runs (or resumes, or joins) one study: ``prepare`` (``search/prepare.py``: the study opened, the cases
    selected, the plan made, once, as a :class:`PreparedStudy`) then ``run_trials``, the loop here; dead-worker
    recovery, longest-first packing and the summary are plain functions of the prepared study."""

    def __init__(self, settings: SearchSettings, events: EventWriter = NULL_EVENTS, *, join: bool = False) -> None:
        self.settings = settings
        self.events = events
        self.join = join
        self.host = socket.gethostname()
        self.launcher = TrialLauncher()
        self.prepared: PreparedStudy | None = None
        self.stop_requested = False
        self.no_signal: dict | None = None       # the planned trial learned nothing: no more trials (budget.no_signal)
        self._started = time.time()
        self.parent_gpu: dict[str, tuple[int, int]] = {}    # what this process keeps per GPU (release_parent_gpu)

    def prepare(self) -> PreparedStudy:
        """Open or create the study, select the cases, plan (``prepare.prepare_study``); the fork server starts
        meanwhile."""
        self.prepared = prepare_study(self.settings, self.events, launcher=self.launcher, host=self.host,
                                      join=self.join)
        return self.prepared

    def study_summary(self, seconds: float) -> dict:
        return study_summary(self.prepared, seconds)

    # -------------------------------------------------------------------------------------------- loop
    def _out_of_time(self, started: float) -> bool:
        return self.settings.time_limit is not None and time.time() - started >= self.settings.time_limit

    def _budget_left(self, started: float) -> bool:
        if self.stop_requested or self._out_of_time(started) or self.no_signal:
            return False
        if self.settings.trials is None:
            return True
        trials = self.prepared.study.get_trials(deepcopy=False)
        if any(t.state == optuna.trial.TrialState.WAITING for t in trials):
            return True        # re-queued trials always run
        return counted(trials) < self.settings.trials

    def _start_trial(self, running: list[RunningTrial] | None = None) -> RunningTrial | None:
        p = self.prepared
        trial = p.study.ask()
        params = p.space.suggest(trial)
        if not p.space.is_legal(params):
            pen = list(p.space.worst_objectives())
            trial.set_user_attr("error", "illegal architecture")
            trial.set_user_attr("penalty", pen)
            p.study.tell(trial, state=optuna.trial.TrialState.FAIL)
            self.events.emit("trial_finished", trial=trial.number, state="FAIL", params=params,
                             error="illegal architecture", value=None)
            return None
        full_config = p.space.to_config(params, self.settings.base_config, p.plan)
        config = {**full_config, "network": p.fidelity.apply_network(full_config["network"])}
        # trials are budgeted in epochs (their values are Dice at one fidelity): a base config's time_limit is
        # for trainings of a single config (the final one gets --final-time), never for a trial
        config["training"] = {**config["training"], "epochs": self.settings.epochs, "seed": self.settings.seed, "time_limit": None}
        if self.settings.steps_per_epoch:
            config["training"]["steps_per_epoch"] = self.settings.steps_per_epoch
        trial_dir = p.folder.trial(trial.number)
        trial_dir.mkdir(parents=True, exist_ok=True)
        device, fraction = self._trial_device([rt.device for rt in running or []])
        spec = TrialSpec(
            number=trial.number, trial_id=trial._trial_id, storage=p.storage_url, study_name=self.settings.study_name,
            strategy=self.settings.strategy, directions=p.directions, data=str(Path(self.settings.data).resolve()),
            config=config, train_cases=p.train_cases, val_cases=p.val_cases, min_epochs=self.settings.min_epochs,
            threads=self.settings.threads_per_job(), device=device, memory_fraction=fraction,
            memory_gb=self.settings.trial_memory_gb, cache_dir=str(p.folder.cache),
            resume_from=trial.user_attrs.get("resume_from"), fingerprint=str(p.fingerprint_path),
            preprocessor=self._preprocessor_file(config))
        spec.write(trial_dir)
        trial.set_user_attr("config", config)
        trial.set_user_attr("full_config", full_config)
        trial.set_user_attr("fidelity", p.fidelity.to_dict())
        # the storage password (if the URL has one) travels in the child's environment, not in spec.json
        proc = self.launcher.start(trial_dir, child_env(p.storage_url), trial_dir / "log.txt")
        p.study._storage.set_trial_system_attr(trial._trial_id, "autoseg_worker", {
            "host": self.host, "parent_pid": os.getpid(), "child_pid": proc.pid, "trial_dir": str(trial_dir)})
        self.events.emit("trial_started", trial=trial.number, params=params, pid=proc.pid,
                         fidelity=p.fidelity.to_dict())
        return RunningTrial(trial, proc, trial_dir, params, time.time(), device=device)

    def _preprocessor_file(self, config: dict) -> str | None:
        """The trial's fitted preprocessing as a stage output; None for a config that cannot build one (its trial
        then fails on it, in its own process, as any bad config does)."""
        try:
            p = self.prepared
            return str(preprocessor_file(config, p.ds, p.train_cases, p.fingerprint, p.folder.preprocessing))
        except Exception:
            return None

    def _devices(self) -> list[str] | None:
        """The devices trials spread over: ``--devices``, else every visible GPU when ``device`` is auto or cuda,
        else ``device``; None when "auto" finds no GPU (each trial resolves it itself, as before).  Asking torch
        for the GPU count does not initialise CUDA here, and the fork server is a separate process anyway."""
        from AutoSegCore.utils.device import parse_devices

        if self.settings.devices:
            return parse_devices(self.settings.devices)
        if self.settings.device in ("auto", "cuda"):
            devices = parse_devices(self.settings.device)
            return None if devices == ["cpu"] else devices
        return [self.settings.device]

    def _trial_device(self, running: list[str]) -> tuple[str, float | None]:
        """The next trial's device and GPU memory share (its TrialSpec's), given the devices of the trials
        running now: the least busy device first; trials sharing a GPU each get an equal cap of what the search
        process leaves of its memory (``release_parent_gpu``)."""
        from AutoSegCore.utils.device import memory_fraction, next_device

        devices = self._devices()
        if devices is None:
            return self.settings.device, None
        device = next_device(devices, running)
        return device, memory_fraction(devices, self.settings.jobs, device, *self.parent_gpu.get(device, (0, 0)))

    def release_parent_gpu(self) -> None:
        """Before the first trial: free what this process cached on the GPUs (the plan's probe, proxy selection
        and the forecast may have run on them), measure what it keeps (its CUDA context), which the trials'
        memory shares then leave out, and log how trials share a GPU (CUDA MPS or time-slicing)."""
        from AutoSegCore.utils.device import describe_gpu_sharing, mps_pipe_directory, release_parent_memory

        devices = self._devices()
        if devices is None:
            return
        self.parent_gpu = release_parent_memory(devices)
        line = describe_gpu_sharing(devices, self.settings.jobs, self.parent_gpu, mps_pipe_directory())
        if line:
            self.events.emit("log", message=line)

    def _poll_metrics(self, rt: RunningTrial) -> None:
        from AutoSegCore.events import read_events

        recs, rt.metrics_offset = read_events(rt.trial_dir / METRICS, rt.metrics_offset)
        for rec in recs:
            self.events.emit("epoch", trial=rt.trial.number, epoch=rec.get("epoch"), epochs=self.settings.epochs,
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
        result = read_json(result_path) if result_path.is_file() else None
        if reason is not None or result is None or result.get("status") == "failed":
            if reason is None and result is not None:       # the child's own account (trial_process.failure_of)
                error, kind = f"{result['kind']}: {result['error']}", result["kind"]
                error += f" — {result['hint']}" if result.get("hint") else ""
            else:                                           # stopped by us, or died without a word (a signal)
                tail = (rt.trial_dir / "log.txt").read_text(errors="replace")[-4000:]
                error, kind = reason or describe_exit(code if code is not None else -9, tail), "killed"
            trial.set_user_attr("error", error)
            trial.set_user_attr("error_kind", kind)
            trial.set_user_attr("penalty", list(self.prepared.space.worst_objectives()))
            trial.set_user_attr("seconds", time.time() - rt.started)
            self.prepared.study.tell(trial, state=optuna.trial.TrialState.FAIL)
            self.events.emit("trial_finished", trial=trial.number, state="FAIL", params=rt.params, error=error,
                             value=None)
            return
        for key in ("val_dice", "val_dice_per_class", "num_params", "seconds", "epochs"):
            trial.set_user_attr(key, result.get(key))
        trial.set_user_attr("history", read_metrics(rt.trial_dir))      # the study's one per-epoch record
        if result["status"] == "pruned":
            self.prepared.study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            self.events.emit("trial_finished", trial=trial.number, state="PRUNED", params=rt.params,
                             value=result["val_dice"], epochs=result["epochs"])
            return
        values = self.prepared.space.objectives(result)
        self.prepared.study.tell(trial, values if len(values) > 1 else values[0])
        if trial.user_attrs.get(PLANNED_ATTR):
            why = no_signal(self.settings, result.get("val_dice"), self.prepared.fingerprint)
            if why:
                left = float(self.settings.time_limit) - (time.time() - self._started)
                self.no_signal = {"trial": trial.number, "epochs": self.settings.epochs, "why": why,
                                  "seconds_left": max(0.0, left)}
                self.prepared.study.set_user_attr(NO_SIGNAL_ATTR, self.no_signal)
                self.events.emit("log", message=f"search stopped: {why}; the rest of the search's time trains "
                                                "the planned recipe (the final training says how)")
        self.events.emit("trial_finished", trial=trial.number, state="COMPLETE", params=rt.params,
                         value=values[0] if len(values) == 1 else list(values), val_dice=result["val_dice"],
                         epochs=result["epochs"], seconds=result["seconds"])

    def _heartbeat(self, running: list[RunningTrial]) -> None:
        record = getattr(self.prepared.study._storage, "record_heartbeat", None)
        if record:
            for rt in running:
                try:
                    record(rt.trial._trial_id)
                except Exception:
                    pass

    def run_trials(self) -> dict:
        """Run trials until the trial count or time budget is reached; resumable and safe to run on many hosts."""
        started = self._started = time.time()
        requeued = recover_interrupted(self.prepared.study, self.host)
        seen = self.prepared.study.user_attrs.get(NO_SIGNAL_ATTR)      # decided by an earlier run of this study
        self.no_signal = seen if seen and int(seen.get("epochs", 0)) >= int(self.settings.epochs) else None
        self.events.emit("study_started", study=self.settings.study_name, storage=self._public_storage(),
                         space=self.settings.space, strategy=self.settings.strategy, fidelity=self.prepared.fidelity.to_dict(),
                         trials=self.settings.trials, jobs=self.settings.jobs, resumed_trials=len(self.prepared.study.trials),
                         requeued=requeued)
        if self.prepared.fixed_by_proxy_net:
            self.events.emit("log", message=f"proxy net {self.prepared.fidelity.net_label}: not searching "
                             f"{', '.join(self.prepared.fixed_by_proxy_net)} (every trial's proxy network has the same value); "
                             "the final network takes them from the base config")
        if not self.join:
            pack_longest_first(self.prepared, self.events)
        self.release_parent_gpu()
        running: list[RunningTrial] = []
        last_beat, last_recovery = 0.0, time.time()
        try:
            while True:
                while len(running) < self.settings.jobs and self._budget_left(started):
                    rt = self._start_trial(running)
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
                    reclaimed = recover_interrupted(self.prepared.study, self.host)
                    if reclaimed:
                        self.events.emit("log", message=f"re-queued {reclaimed} trial(s) of a dead worker; they "
                                                        "continue from their last checkpoint")
                for rt in list(running):
                    self._poll_metrics(rt)
                    code = rt.process.poll()
                    timed_out = self.settings.trial_timeout and time.time() - rt.started > self.settings.trial_timeout
                    if code is None and timed_out:
                        kill_tree(rt.process.pid)
                        rt.process.wait()
                        self._finish(rt, None, reason=f"exceeded the trial time limit of {self.settings.trial_timeout:g} s")
                        running.remove(rt)
                    elif code is not None:
                        self._finish(rt, code)
                        running.remove(rt)
                if running and self.no_signal:
                    self._stop_and_requeue(running, "stopped: the planned recipe learned nothing at this trial size")
                if running and self._out_of_time(started):
                    # --time is the search's budget, not a time after which no trial starts (Optuna's
                    # ``timeout``): what runs past it would delay the final training by up to a whole trial
                    n = len(running)
                    self._stop_and_requeue(running, f"stopped at the search time limit ({self.settings.time_limit:g} s)")
                    self.events.emit("log", message=f"search time limit reached: {n} running trial(s) stopped at "
                                     "their last checkpoint and re-queued; re-run the command with more --time to "
                                     "continue them")
                self._progress(started)
        except KeyboardInterrupt as exc:         # Ctrl-C, or SIGTERM/SIGHUP (utils/signals.py)
            self.stop_requested = True
            finish_stop_undisturbed()
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
                self.prepared.study.tell(rt.trial, state=optuna.trial.TrialState.FAIL)
            except optuna.exceptions.UpdateFinishedTrialError:
                self._reclaimed_meanwhile(rt)
                continue
            self.prepared.study.enqueue_trial(rt.params, user_attrs={"resume_from": str(rt.trial_dir),
                                                            "requeued_from": rt.trial.number})
            self.events.emit("trial_finished", trial=rt.trial.number, state="FAIL", params=rt.params, error=error,
                             value=None, requeued=True)

    def _progress(self, started: float) -> None:
        trials = self.prepared.study.get_trials(deepcopy=False, states=FINISHED)
        if self.settings.trials:
            frac = min(1.0, len(trials) / self.settings.trials)
        elif self.settings.time_limit:
            frac = min(1.0, (time.time() - started) / self.settings.time_limit)
        else:
            frac = 0.0
        if getattr(self, "_last_frac", None) != frac:
            self._last_frac = frac
            self.events.emit("progress", fraction=frac, message=f"{len(trials)} trials finished")

    def _public_storage(self) -> str:
        return redact(self.prepared.storage_url)

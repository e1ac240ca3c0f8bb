"""The trainer: epochs are the fidelity unit; per-epoch callback; checkpoints (timed) and exact resume.

Cases are moved to the training device once (``augment.CaseBank``); batches are cut and augmented there with one
seeded generator on that device, and nothing is read back to the host until the epoch ends: losses, the train
Dice's confusion matrix, the skipped-step count and the divergence check stay on the device (a per-step
copy and host sync had made the trainer 0.32× a plain loop on an H200).  Validation runs sliding-window
inference on the training canvas (padding validation volumes differently from training shifts InstanceNorm
statistics: measured on Hippocampus).
"""
from __future__ import annotations

import json
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from AutoSegCore.config import deep_merge
from AutoSegCore.errors import ConfigError, OutOfDeviceMemory, StopTraining, TrainingDiverged  # noqa: F401
from AutoSegCore.events import NULL_EVENTS, EventWriter
from AutoSegCore.training.augment import augment_on_device, case_bank, safe_flip_axes
from AutoSegCore.training.fused_loss import FusedDiceCELoss, available as fused_available, confusion
from AutoSegCore.training.losses import DeepSupervisionWrapper, make_loss
from AutoSegCore.training.canvas import choose_patch
from AutoSegCore.training.model_io import RESUME_HINT, read_checkpoint, save_model
from AutoSegCore.training.numerics import amp_dtype, loss_layout, use_channels_last
from AutoSegCore.training.precision import choose_precision
from AutoSegCore.training.optim import make_optimizer, make_scheduler, replan_horizon, schedule_factor
from AutoSegCore.training.validation import add_confusion, fast_argmax, labels_on, settle_largest_component, validate_cases
from AutoSegCore.utils.device import pick_device
from AutoSegCore.utils.io import atomic_path, write_json

CHECKPOINT = "checkpoint.pt"
# a checkpoint after the first epoch (something to resume from early), then once this many seconds have passed
# since the last, and after the last epoch: on a GPU an epoch takes seconds and a checkpoint of the recipe net
# (58 MB, copied off the device) would otherwise cost as much as many steps
CHECKPOINT_SECONDS = 60.0
MAX_BAD_STEPS = 20          # consecutive non-finite steps before a run is declared diverged


@dataclass
class TrainResult:
    model_dir: Path
    epochs_done: int
    val_dice: float                       # mean foreground Dice at the last validated epoch
    val_dice_per_class: dict[str, float]
    val_dice_per_case: list[float]
    best_val_dice: float
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    num_params: int = 0


class Trainer:
    """Train one config on preprocessed cases (``train_data``/``val_data``: their arrays, where ``train_model``'s
    ``train_cases`` are names). ``callback(epoch, record)`` may raise to stop/prune."""

    def __init__(self, config: dict, train_data: list, val_data: list, *, labels: dict[int, str],
                 out_dir: str | Path, in_channels: int, device: str = "auto",
                 events: EventWriter = NULL_EVENTS, callback: Callable[[int, dict], None] | None = None,
                 extra_info: dict | None = None, study_run: dict | None = None) -> None:
        from AutoSegCore.networks import build_network, count_parameters, size_divisor

        self.config = config
        self.training_config = config["training"]
        self.labels = {int(k): v for k, v in labels.items()}
        self.out_classes = max(self.labels) + 1
        self.out_dir = Path(out_dir)
        self.device = pick_device(str(device))      # process-wide settings: training.process.prepare_process
        self.events, self.callback, self.in_channels = events, callback, in_channels
        self.study_run = dict(study_run or {})      # {"trial": n} / {"member": i}: see train_model
        self.extra_info = extra_info or {}
        if not train_data:
            raise ValueError("no training cases")
        seed = int(self.training_config.get("seed", 0))
        with torch.random.fork_rng(devices=[]):     # the weights from the run's own seed; global state untouched
            torch.random.default_generator.manual_seed(seed)
            self.net = build_network(config["network"], in_channels, self.out_classes).to(self.device)
        self.num_params = count_parameters(config["network"], in_channels, self.out_classes)
        self.two_d = config["network"].get("conv") == "2d"
        divisor = size_divisor(config["network"])
        self.patch = choose_patch([c.image.shape[1:] for c in train_data], divisor, self.training_config.get("patch_size"))
        flip = self.training_config["augmentation"].get("flip_axes", "auto")
        self.flip_axes = safe_flip_axes([c.label for c in train_data]) if flip == "auto" else list(flip)
        self.train_data, self.val_data = train_data, val_data
        self.bank = case_bank(train_data, self.device, self.events)
        self.loss_fn = DeepSupervisionWrapper(make_loss(self.training_config["loss"]))
        self.fused_loss = isinstance(self.loss_fn.loss, FusedDiceCELoss) and fused_available(self.device)
        self.optimizer = make_optimizer(self.net.parameters(), self.training_config)
        self.total_steps = self.training_config["epochs"] * self.training_config["steps_per_epoch"]
        self.scheduler = make_scheduler(self.optimizer, self.training_config, self.total_steps)
        # training.time_limit (seconds): the schedule ends at the wall-clock budget; epochs is then only a cap
        self.time_limit = self.training_config.get("time_limit")
        self.horizon = self.training_config["epochs"]         # the epoch at which the lr schedule ends
        amp, layout = choose_precision(deep_merge(config, {"training": {"patch_size": list(self.patch)}}),
                                       in_channels, self.out_classes, self.device, self.events)
        self.amp = amp_dtype(amp, self.device)
        self.channels_last = use_channels_last(layout, self.device)
        if self.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last_3d)
        self.scaler = torch.amp.GradScaler("cuda") if (self.amp == torch.float16) else None
        self.seed = seed
        # the crops are drawn where the cases are, the augmentation where the batch is: a bank in host memory
        # feeding a GPU then draws nothing on the host that would have to be copied over each step
        self.gen = torch.Generator(device=self.bank.device).manual_seed(seed)
        self.aug_gen = (self.gen if self.bank.device == self.device
                        else torch.Generator(device=self.device).manual_seed(seed + 1))
        self._last_checkpoint, self._val_labels = -math.inf, None
        self.epoch, self.history, self.best, self.skipped_steps = 0, [], -1.0, 0
        # per-run counters on the device, read once per epoch: skipped steps, the current and the longest run of
        # consecutive non-finite steps (the divergence check)
        self._skipped = self._bad_run = self._worst_run = torch.zeros((), dtype=torch.long, device=self.device)
        self._host_skip = False              # an optimiser without an on-device skip skipped a step (see _step)

    # ----------------------------------------------------------------------------------------- data
    def _sample_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """One augmented batch on the training device: (B, C, *patch) float images, (B, 1, *patch) uint8 labels."""
        aug = self.training_config["augmentation"]
        img, lab = self.bank.sample(self.training_config["batch_size"], self.patch, aug, self.flip_axes, self.gen,
                                    self.two_d, to=self.device)
        return augment_on_device(img, lab, aug, self.aug_gen, self.two_d)

    # ------------------------------------------------------------------------------------ checkpoint
    def _checkpoint_state(self) -> dict:
        return {
            "epoch": self.epoch, "model": self.net.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict() if self.scaler else {},
            "generator": self.gen.get_state(), "torch_rng": torch.get_rng_state(),
            "aug_generator": self.aug_gen.get_state() if self.aug_gen is not self.gen else None,
            "cuda_rng": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
            "history": self.history, "best": self.best, "horizon": self.horizon,
            "trained_as": self._trained_as(),
        }

    def _trained_as(self) -> str:
        """What a checkpoint's weights mean: the network and the preprocessing (JSON, sorted keys).  The training
        section may change on resume (more epochs, another time budget), these may not."""
        return json.dumps({k: self.config.get(k) for k in ("network", "preprocessing")}, sort_keys=True, default=str)

    def save_checkpoint(self) -> None:
        with atomic_path(self.out_dir / CHECKPOINT) as tmp:
            torch.save(self._checkpoint_state(), tmp)

    def try_resume(self) -> bool:
        """Continue from ``checkpoint.pt`` in out_dir if present (weights_only=True)."""
        path = self.out_dir / CHECKPOINT
        if not path.is_file():
            return False
        state = read_checkpoint(path, self._trained_as())
        try:
            self.net.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
        except (RuntimeError, KeyError, ValueError) as exc:     # checkpoints from before "trained_as"
            from AutoSegCore.data.volumes import short_error

            raise ConfigError(f"{path} does not fit this config's network ({short_error(exc)})", RESUME_HINT) from None
        if self.scaler and state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        try:
            self.gen.set_state(state["generator"])
            if self.aug_gen is not self.gen:
                self.aug_gen.set_state(state["aug_generator"])
        except (RuntimeError, TypeError, KeyError):  # written on another device (type): same run, other stream
            self.gen.manual_seed(self.seed + int(state["epoch"]))
            if self.aug_gen is not self.gen:
                self.aug_gen.manual_seed(self.seed + 1 + int(state["epoch"]))
            self.events.emit("log", message=f"{path}: written on another device type; the augmentation's random "
                                            "stream restarts (the run continues, not bit-identically)")
        torch.set_rng_state(state["torch_rng"])
        if self.device.type == "cuda" and state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(state["cuda_rng"], self.device)
        self.epoch, self.history, self.best = int(state["epoch"]), list(state["history"]), float(state["best"])
        if int(state.get("horizon", self.horizon)) != self.horizon:    # LambdaLR does not save its function
            self._set_horizon(int(state["horizon"]))
        self.skipped_steps = int(self.history[-1].get("skipped_steps", 0)) if self.history else 0   # run total
        return True

    # ------------------------------------------------------------------------------------------ budget
    def _set_horizon(self, epochs: int) -> None:
        """End the lr schedule at ``epochs`` from now on (the next step already uses the new curve)."""
        self.horizon = epochs
        factor = self.scheduler.lr_lambdas[0] = schedule_factor(self.training_config, epochs * self.training_config["steps_per_epoch"])
        for group, base in zip(self.optimizer.param_groups, self.scheduler.base_lrs):
            group["lr"] = base * factor(self.scheduler.last_epoch)

    def _spent(self) -> float:
        """Seconds of this run so far, over every sitting (a resumed run continues with what is left)."""
        return float(sum(r["seconds"] for r in self.history))

    def _final_val_seconds(self) -> float:
        """What the closing validation will cost: the last one measured, else ≈ half a training step per case."""
        measured = [r["val_seconds"] for r in self.history if "val_seconds" in r]
        if measured:
            return float(measured[-1])
        train_s = [r["seconds"] for r in self.history[-5:]]
        return 0.5 * len(self.val_data) * (float(np.mean(train_s)) / self.training_config["steps_per_epoch"] if train_s else 0.0)

    def _replan(self, epoch_seconds_now: float, cap: int) -> bool:
        """Re-fit the schedule's end to the time left (``replan_horizon``); True when this epoch is the last."""
        recent = [r["seconds"] for r in self.history[-19:]] + [epoch_seconds_now]   # validations amortised
        reserve = self._final_val_seconds()
        left = float(self.time_limit) - self._spent() - epoch_seconds_now - reserve
        new = replan_horizon(self.epoch, self.horizon, cap, float(np.mean(recent)), left)
        if new != self.horizon:
            self._set_horizon(new)
        return self.epoch >= self.horizon or left <= 0

    # ------------------------------------------------------------------------------------------ loop
    def _train_step(self) -> torch.Tensor:
        """One optimiser step; returns the loss as a device tensor.  Nothing here waits for the device."""
        img, lab = self._sample_batch()
        if self.channels_last:
            img = img.contiguous(memory_format=torch.channels_last_3d)
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast(self.device.type, dtype=self.amp, enabled=self.amp is not None):
            out = self.net(img)
        # MONAI's losses get fp32 NCDHW logits and int64 labels: its DiceCE (fwd + bwd, batch 4 at 48×64×48) took
        # 11.2 ms on them vs 15.5 ms on channels-last logits and uint8 labels; the fused Dice + CE reads either
        # layout and uint8 labels, and keeping the net's layout keeps its gradient there too.
        keep = self.fused_loss
        out = [loss_layout(o, keep) for o in out] if isinstance(out, (list, tuple)) else loss_layout(out, keep)
        if not keep:
            lab = lab.long()
        loss = self.loss_fn(out, lab)
        self._accumulate_train_dice(out[0] if isinstance(out, (list, tuple)) else out, lab)
        if self.scaler:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
            finite = self._clip_gradients()
            # the scaler skips a non-finite step itself and halves its scale: while the scale is ≥ 1 that is its
            # calibration (fp16 overflow of scaled gradients), not divergence; below 1 the gradients overflow
            # unscaled and the step counts as bad
            calibrating = self.scaler._get_scale_async() >= 1.0
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self._count_steps(finite, finite | calibrating)
        else:
            loss.backward()
            finite = self._clip_gradients()
            self._step(finite)
            self._count_steps(finite, finite)
        with warnings.catch_warnings():
            if self._host_skip:   # torch warns when a scheduler step precedes every optimiser step; this skip is ours
                warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step\\(\\)`")
            self.scheduler.step()
        return loss.detach()

    def _clip_gradients(self) -> torch.Tensor:
        """Clip the gradient norm (``grad_clip``); returns whether it is finite, as a device tensor (no sync).

        One NaN step would poison every weight for good.  Besides diverging losses, measured here: oneDNN's bf16
        weight gradient of a 3×3×3 conv on a 2×2×2 input (a depth-6 U-Net's bottleneck at a 64³ patch) is
        sporadically NaN with 2 threads (≈ 1 in 30 calls; never with 1 thread or fp32), which turned a 0.82
        validation-Dice config into 0 after 300 steps.  Such a step is skipped (``_step``), as GradScaler does."""
        clip = self.training_config.get("grad_clip")
        norm = torch.nn.utils.clip_grad_norm_(self.net.parameters(), float(clip) if clip else float("inf"))
        return torch.isfinite(norm)

    def _step(self, finite: torch.Tensor) -> None:
        """``optimizer.step()`` that leaves weights and optimiser state untouched when ``finite`` is False.

        torch's fused Adam / AdamW / SGD (``make_optimizer``) take a ``found_inf`` flag on the device — the way
        GradScaler skips steps — so the skip needs no host sync; the other optimisers read the flag (one host
        sync per step: free on CPU, a pipeline stall on a GPU)."""
        if getattr(self.optimizer, "_step_supports_amp_scaling", False):
            self.optimizer.grad_scale, self.optimizer.found_inf = None, (~finite).float()
            try:
                self.optimizer.step()
            finally:
                del self.optimizer.grad_scale, self.optimizer.found_inf
        elif bool(finite):
            self.optimizer.step()
        else:
            self._host_skip = True

    def _count_steps(self, finite: torch.Tensor, good: torch.Tensor) -> None:
        """Device-side counters: skipped (non-finite) steps, and runs of consecutive bad steps (divergence)."""
        self._skipped = self._skipped + (~finite).long()
        self._bad_run = (self._bad_run + 1) * (~good).long()
        self._worst_run = torch.maximum(self._worst_run, self._bad_run)

    def _check_divergence(self) -> None:
        """Once per epoch: the run diverged if ``MAX_BAD_STEPS`` steps in a row had non-finite gradients."""
        skipped, worst = (int(v) for v in torch.stack([self._skipped, self._worst_run]).cpu())
        self.skipped_steps = skipped
        if worst >= MAX_BAD_STEPS:
            hint = "lower training.lr or set training.grad_clip"
            if self.amp == torch.float16:
                hint += ", or set training.amp to bf16 or off (fp16 overflows)"
            raise TrainingDiverged(f"training diverged: the gradients were not finite for {MAX_BAD_STEPS} steps in "
                                   f"a row (epoch {self.epoch + 1})", hint)

    @torch.no_grad()
    def _accumulate_train_dice(self, logits: torch.Tensor, lab: torch.Tensor) -> None:
        """Running foreground Dice on the (augmented) training batches — the train_dice of EMONAS-Net's f1.

        One confusion matrix per batch (compiled on CPU, else counted on the device), summed on the device: no
        host sync per step."""
        counts = confusion(logits, lab)
        if counts is not None:
            self._confusion += counts
            return
        k = self.out_classes
        add_confusion(self._confusion, fast_argmax(logits, 1) * k + lab[:, 0], k)

    def _train_dice(self) -> float:
        cm = self._confusion.double().cpu().numpy()          # rows: prediction, columns: truth
        inter, total = np.diag(cm)[1:], cm.sum(0)[1:] + cm.sum(1)[1:]
        dice = np.where(total > 0, 2 * inter / np.maximum(total, 1), 1.0)
        return float(dice.mean()) if len(dice) else 0.0

    def validate(self, last: bool = False) -> dict:
        if self._val_labels is None:
            self._val_labels = labels_on(self.device, self.val_data)
        auto = self.config.get("inference", {}).get("largest_component") == "auto"  # decided on the last maps
        self.val_predictions = [] if last and auto and not self.study_run else None
        return validate_cases(self.net, self.val_data, self._val_labels, self.labels, self.patch, device=self.device,
                              amp=self.amp, channels_last=self.channels_last, keep=self.val_predictions)

    def fit(self, resume: bool = True) -> TrainResult:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        t_start = time.perf_counter()
        if resume:
            self.try_resume()
        self.net.train()
        epochs, steps = self.training_config["epochs"], self.training_config["steps_per_epoch"]
        last_val = self.history[-1] if self.history else {}
        # a time-limited run that already reached its horizon or spent its budget trains no further epoch
        finished = bool(self.time_limit and self.history
                        and (self.epoch >= self.horizon or self._spent() >= float(self.time_limit)))
        self._skipped = torch.full((), self.skipped_steps, dtype=torch.long, device=self.device)
        try:
            while self.epoch < epochs and not finished:
                t0 = time.perf_counter()
                self._confusion = torch.zeros(self.out_classes, self.out_classes, dtype=torch.long,
                                              device=self.device)
                # losses stay tensors until the epoch ends: one host sync per epoch, not per step
                losses = torch.stack([self._train_step() for _ in range(steps)]).double().cpu().numpy()
                self._check_divergence()
                self.epoch += 1
                finite = losses[np.isfinite(losses)]
                record = {"epoch": self.epoch, "loss": float(finite.mean()) if finite.size else float("nan"),
                          "train_dice": self._train_dice(), "lr": self.scheduler.get_last_lr()[0]}
                if self.skipped_steps:
                    record["skipped_steps"] = self.skipped_steps      # so far in this run (non-finite gradients)
                finished = self.epoch >= epochs
                if self.time_limit:
                    finished = self._replan(time.perf_counter() - t0, epochs) or finished
                    record["horizon"] = self.horizon
                if self.val_data and (self.epoch % self.training_config.get("val_every", 1) == 0 or finished):
                    t_val = time.perf_counter()
                    last_val = self.validate(last=finished)
                    record.update(last_val)
                    record["val_seconds"] = time.perf_counter() - t_val     # of "seconds": where an epoch goes
                    self.best = max(self.best, last_val["val_dice"])
                record["seconds"] = time.perf_counter() - t0
                self.history.append(record)
                now = time.perf_counter()
                if finished or now - self._last_checkpoint >= CHECKPOINT_SECONDS:
                    self.save_checkpoint()
                    self._last_checkpoint = now
                self.events.emit("epoch", **self.study_run, epoch=self.epoch, epochs=self.horizon, loss=record["loss"],
                                 val_dice=record.get("val_dice"), seconds=record["seconds"])
                if self.callback:
                    self.callback(self.epoch, record)
        except StopTraining:          # a stop between epochs: keep every finished epoch for the resume
            self.save_checkpoint()
        except torch.OutOfMemoryError as exc:
            raise OutOfDeviceMemory.in_training(self.device, self.epoch + 1, self.training_config["batch_size"], self.patch, self.num_params,
                                exc) from None
        result = TrainResult(
            model_dir=self.out_dir, epochs_done=self.epoch, val_dice=float(last_val.get("val_dice", 0.0)),
            val_dice_per_class=last_val.get("val_dice_per_class", {}),
            val_dice_per_case=last_val.get("val_dice_per_case", []), best_val_dice=self.best,
            history=self.history, seconds=time.perf_counter() - t_start, num_params=self.num_params)
        if self.epoch >= epochs or finished:
            self.save_final(result)
        return result

    def save_final(self, result: TrainResult) -> None:
        config = self.config
        if config.get("inference", {}).get("largest_component") == "auto" and not self.study_run:
            config = settle_largest_component(self, config)
        info = {
            "format": "autoseg-model/1", "config": config, "labels": {str(k): v for k, v in self.labels.items()},
            "in_channels": self.in_channels, "out_channels": self.out_classes, "patch_size": list(self.patch),
            "flip_axes": self.flip_axes, "num_params": self.num_params, "epochs": result.epochs_done,
            "val_dice": result.val_dice, "val_dice_per_class": result.val_dice_per_class, **self.extra_info,
        }
        save_model(self.out_dir, self.net, info)
        write_json(self.out_dir / "history.json", self.history)

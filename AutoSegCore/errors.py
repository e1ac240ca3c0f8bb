"""Exception types for user mistakes: the CLI prints them as one line plus a hint, never a traceback."""
from __future__ import annotations


class AutoSegError(Exception):
    """A problem the user can fix. `message` names the file/value; `hint` says how to fix it."""

    exit_code = 2           # what the CLI exits with: 2 = a user mistake

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} — {self.hint}" if self.hint else self.message


class DatasetError(AutoSegError):
    """Invalid or unreadable input dataset."""


class ConfigError(AutoSegError):
    """Invalid configuration / search-space file or option."""


class StrategyError(ConfigError, ValueError):
    """Unknown strategy or bad strategy option (a ValueError too, as Optuna expects from samplers)."""


class StorageError(AutoSegError):
    """Study storage unreachable or corrupt."""


class SearchFailed(AutoSegError):
    """A search ran to its end but every trial failed, so there is no model: exit code 1 (the cause may be the
    data, the base config or the machine, not necessarily a mistyped option)."""

    exit_code = 1


class TrainingDiverged(AutoSegError):
    """The gradients stayed non-finite: the run cannot recover (a trial records it as failed, with this message)."""


class OutOfDeviceMemory(AutoSegError):
    """A training step ran out of GPU memory (torch's OutOfMemoryError, said as one line with the ways out)."""

    @classmethod
    def in_training(cls, device, epoch: int, batch: int, patch, num_params: int,
                    exc: BaseException) -> "OutOfDeviceMemory":
        """One line naming what was being trained and the ways out, after freeing torch's cached blocks.  In a
        search the trial fails with it (its ``result.json`` says kind "out-of-memory") and the study goes on."""
        if getattr(device, "type", None) == "cuda":
            import torch

            torch.cuda.empty_cache()
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "out of memory"
        return cls(f"CUDA out of memory on {device} in epoch {epoch} (batch {batch}, canvas "
                   f"{'×'.join(str(p) for p in patch)}, {num_params:,} parameters): {first[:200]}",
                   "lower training.batch_size or training.patch_size, or run fewer trials per GPU (--jobs)")


class StopTraining(Exception):
    """Raised by a training callback to end training after the current epoch (the trainer then writes its checkpoint);
    not an error: the run ends normally (a pruned trial, a stop request)."""

"""SIGTERM and SIGHUP stop a long command (search, worker, predict) as Ctrl-C does, and Ctrl-C always works.

``timeout``, systemd, job schedulers and a closed terminal send SIGTERM or SIGHUP, whose default ends the
process at once: a search's running trials (own sessions, so they never see the terminal's signals) would train
on as orphans, and a prediction would leave its case half-written.  Inside :func:`stop_signals_interrupt` those
signals raise :class:`StopSignal`, a ``KeyboardInterrupt``: the trial loop stops its trials at their last
checkpoint, re-queues them, prints the summary and closes the fork server, exactly as for Ctrl-C.

SIGINT is the front ends' Cancel (the Slicer module and the web page send it first, SIGTERM only if the engine
does not stop in time).  A process started in the background of a non-interactive shell inherits SIGINT
*ignored*, and Python then leaves it ignored: Cancel would do nothing for the grace period and then end as
"interrupted (SIGTERM)".  :func:`sigint_interrupts` (around every CLI command) makes SIGINT raise
``KeyboardInterrupt`` again.
"""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Iterator

STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))


class StopSignal(KeyboardInterrupt):
    """A stop signal received; ``exit_code`` is the shell's 128 + signal number."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.exit_code = 128 + signum


def _raise_stop(signum: int, frame) -> None:
    for sig in STOP_SIGNALS:           # the stop under way (killing trials, telling the study) is not cut short
        signal.signal(sig, signal.SIG_IGN)
    raise StopSignal(signum)


@contextmanager
def stop_signals_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM/SIGHUP raise ``StopSignal`` in the main thread (elsewhere: nothing changes)."""
    with _handlers(dict.fromkeys(STOP_SIGNALS, _raise_stop)):
        yield


@contextmanager
def sigint_interrupts() -> Iterator[None]:
    """Within the block, SIGINT raises ``KeyboardInterrupt`` in the main thread even if it was inherited ignored."""
    with _handlers({signal.SIGINT: signal.default_int_handler}):
        yield


@contextmanager
def _handlers(handlers: dict) -> Iterator[None]:
    """Install ``handlers`` (signal → handler) for the block, the previous ones back after it; main thread only."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, handler) for sig, handler in handlers.items()}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def finish_stop_undisturbed() -> None:
    """While a stop (Ctrl-C) is under way, a following SIGTERM/SIGHUP (a front end escalating its cancel) must not
    cut the re-queueing short; only where :func:`stop_signals_interrupt` is active (the commands), never in a
    caller's own process."""
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in STOP_SIGNALS:
        if signal.getsignal(sig) is _raise_stop:
            signal.signal(sig, signal.SIG_IGN)

"""A trial the runner stopped and queued again says so in a trial attribute (``requeued``), which the strategies
read; the error text's "; re-queued" suffix is only for people, and read only from studies older than the attribute."""
from __future__ import annotations

import optuna
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

from AutoSegCore.strategies import was_requeued
from AutoSegCore.strategies.penalty import state_counts


def _failed(**attrs):
    return optuna.trial.create_trial(state=TrialState.FAIL, params={"x": 0.5},
                                     distributions={"x": FloatDistribution(0, 1)}, user_attrs=attrs)


def test_the_attribute_decides_and_old_studies_still_read():
    assert was_requeued(_failed(error="stopped by SIGTERM; re-queued", requeued=True))
    assert was_requeued(_failed(error="anything the runner words differently", requeued=True))
    assert not was_requeued(_failed(error="exit code 1: ... re-queued", requeued=False))
    assert was_requeued(_failed(error="interrupted by the user; re-queued"))        # a study from before
    assert not was_requeued(_failed(error="exit code 1: RuntimeError"))
    counts = state_counts([_failed(requeued=True), _failed(error="boom")])
    assert counts["FAIL"] == 2 and counts["REQUEUED"] == 1

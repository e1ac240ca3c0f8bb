"""The lr schedule: warm-up then cosine / poly / constant, and a horizon that can be shortened mid-run."""
import math

import pytest
import torch

from AutoSegCore.training.optim import make_scheduler, replan_horizon, schedule_factor


def _lrs(cfg: dict, total: int, swap_at: int | None = None, new_total: int | None = None) -> list[float]:
    """The lr each optimiser step uses, stepping a real AdamW and LambdaLR as the trainer does."""
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([p], lr=1e-3)
    sched = make_scheduler(opt, cfg, total)
    seen = []
    for step in range(total):
        if step == swap_at:
            sched.lr_lambdas[0] = schedule_factor(cfg, new_total)
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return seen


def test_warmup_then_cosine_to_one_percent():
    lrs = _lrs({"scheduler": "cosine", "warmup_steps": 10}, 100)
    assert lrs[0] == pytest.approx(1e-4)                       # (0 + 1) / 10 of the base lr
    assert lrs[9] == pytest.approx(1e-3)                       # warm-up done
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:]))      # cosine never rises
    mid = 10 + 45                                              # half-way through the cosine part
    assert lrs[mid] == pytest.approx(1e-3 * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * 0.5))))
    assert lrs[-1] == pytest.approx(1e-3 * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * 89 / 90))))


def test_warmup_is_capped_at_a_quarter_of_a_short_run():
    lrs = _lrs({"scheduler": "constant", "warmup_steps": 200}, 40)
    assert lrs[9] == pytest.approx(1e-3) and lrs[8] < 1e-3     # 40 // 4 = 10 warm-up steps, not 200
    assert lrs[10:] == pytest.approx([1e-3] * 30)


def test_poly_reaches_zero():
    lrs = _lrs({"scheduler": "poly", "warmup_steps": 0}, 50)
    assert lrs[0] == pytest.approx(1e-3)
    assert schedule_factor({"scheduler": "poly", "warmup_steps": 0}, 50)(50) == 0.0


def test_shortened_horizon_ends_the_cosine_at_the_new_total():
    """What bench/budget_accuracy.py does when an epoch runs slower than calibrated."""
    cfg = {"scheduler": "cosine", "warmup_steps": 0}
    full = _lrs(cfg, 100)
    short = _lrs(cfg, 100, swap_at=20, new_total=60)
    # the swap applies from the next scheduler step: step 20's lr was already set at the end of step 19
    assert short[:21] == pytest.approx(full[:21])              # the past is untouched
    assert short[21] < full[21]                                 # the rest is compressed ...
    assert short[59] == pytest.approx(1e-3 * schedule_factor(cfg, 60)(59))
    assert short[60:] == pytest.approx([1e-3 * 0.01] * 40)      # ... and held at the floor after the new end


def test_replan_horizon_shortens_at_once_and_lengthens_only_early():
    # 10 s epochs, 1000 s left after epoch 20: 100 more fit
    assert replan_horizon(20, planned=200, cap=400, epoch_seconds=10, seconds_left=1000) == 120   # slower: shorten
    assert replan_horizon(20, planned=100, cap=400, epoch_seconds=10, seconds_left=1000) == 120   # faster: lengthen
    assert replan_horizon(20, planned=100, cap=110, epoch_seconds=10, seconds_left=1000) == 110   # ... to the cap
    assert replan_horizon(20, planned=119, cap=400, epoch_seconds=10, seconds_left=1000) == 119   # within 2 %: keep
    assert replan_horizon(60, planned=100, cap=400, epoch_seconds=10, seconds_left=1000) == 100   # late: keep
    assert replan_horizon(60, planned=200, cap=400, epoch_seconds=10, seconds_left=-5) == 60      # past the deadline


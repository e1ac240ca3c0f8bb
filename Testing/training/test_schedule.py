"""The lr schedule: warm-up then cosine / poly / constant, and a horizon re-fitted mid-run to a wall-clock budget."""
import math
import random

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
    """What bench/budget_accuracy_v1.py does when an epoch runs slower than calibrated."""
    cfg = {"scheduler": "cosine", "warmup_steps": 0}
    full = _lrs(cfg, 100)
    short = _lrs(cfg, 100, swap_at=20, new_total=60)
    # the swap applies from the next scheduler step: step 20's lr was already set at the end of step 19
    assert short[:21] == pytest.approx(full[:21])              # the past is untouched
    assert short[21] < full[21]                                 # the rest is compressed ...
    assert short[59] == pytest.approx(1e-3 * schedule_factor(cfg, 60)(59))
    assert short[60:] == pytest.approx([1e-3 * 0.01] * 40)      # ... and held at the floor after the new end


def test_replan_horizon_moves_either_way_beyond_a_two_percent_band():
    # 10 s epochs, 1000 s left after epoch 20: 100 more fit
    assert replan_horizon(20, planned=200, cap=400, epoch_seconds=10, seconds_left=1000) == 120   # slower: shorten
    assert replan_horizon(20, planned=100, cap=400, epoch_seconds=10, seconds_left=1000) == 120   # faster: lengthen
    assert replan_horizon(20, planned=100, cap=110, epoch_seconds=10, seconds_left=1000) == 110   # ... to the cap
    assert replan_horizon(20, planned=119, cap=400, epoch_seconds=10, seconds_left=1000) == 119   # within 2 %: keep
    assert replan_horizon(20, planned=121, cap=400, epoch_seconds=10, seconds_left=1000) == 121   # within 2 %: keep
    assert replan_horizon(60, planned=100, cap=400, epoch_seconds=10, seconds_left=1000) == 160   # late: lengthen too
    assert replan_horizon(60, planned=200, cap=400, epoch_seconds=10, seconds_left=-5) == 60      # past the deadline


def test_replanned_runs_use_their_budget_under_noisy_epoch_times():
    """A simulated 7000 s run (the 2-hour bench's shape): the calibration is off 2x, epochs are 20 +- 2 s and the
    machine changes speed by up to 20 % after 30 epochs; the re-planned run must end within 3 % of its deadline
    and not more than one epoch past it (a one-way rule ended such runs 4-8 % early)."""
    rng = random.Random(0)
    for _ in range(40):
        plan, cap, spent, times, epoch = 760, 1520, 0.0, [], 0
        speed = 20.0
        while True:
            if epoch == 30:
                speed *= rng.choice([0.8, 1.0, 1.2])
            times.append(max(1.0, rng.gauss(speed, 2.0)))
            spent += times[-1]
            epoch += 1
            plan = replan_horizon(epoch, plan, cap, sum(times[-20:]) / len(times[-20:]), 7000.0 - spent)
            if epoch >= plan or spent > 7000.0:
                break
        assert 0.97 * 7000 <= spent <= 7000 + max(times), (spent, epoch, plan)

"""Trainer on real data: learning, exact resume, losses/optimisers, multi-channel, deep supervision."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from shared_data import BRATS, HIPPO, SPINE
from trainkit import tiny_config
from AutoSegCore.config import make_config
from AutoSegCore.errors import ConfigError
from AutoSegCore.training.api import train_model
from AutoSegCore.training.trainer import StopTraining


def _names(ds):
    return sorted(c.name for c in ds.cases)


def test_exact_resume_gives_identical_weights(hippo, tmp_path):
    """Interrupt after epoch 1 of 3, resume from checkpoint.pt: same weights as an uninterrupted run (on the CPU,
    bit-identical; CUDA's deterministic exact resume is test_device_path's CUDA-only test)."""
    names = _names(hippo)
    cfg = tiny_config(epochs=3, steps_per_epoch=3)
    cfg["training"]["augmentation"] = {"rotate_prob": 0.5, "scale_prob": 0.5, "gamma_prob": 0.5}
    kwargs = dict(train_cases=names[:6], val_cases=names[6:8], device="cpu")
    full = train_model(hippo, cfg, tmp_path / "full", **kwargs)

    def interrupt(epoch, record):
        if epoch == 1:
            raise StopTraining

    part = train_model(hippo, cfg, tmp_path / "part", callback=interrupt, **kwargs)
    assert part.epochs_done == 1 and not (tmp_path / "part" / "model.pt").exists()
    resumed = train_model(hippo, cfg, tmp_path / "part", **kwargs)
    assert resumed.epochs_done == 3
    a = torch.load(tmp_path / "full" / "model.pt", weights_only=True)
    b = torch.load(tmp_path / "part" / "model.pt", weights_only=True)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert [h["loss"] for h in full.history] == pytest.approx([h["loss"] for h in resumed.history], abs=0)


def test_a_checkpoint_of_another_network_is_refused_and_kept(hippo, tmp_path):
    """Resuming into a folder whose checkpoint another network wrote: a one-line ConfigError naming the file and
    the way out, before any step — the checkpoint is left as it was.  A changed training section still resumes."""
    names = _names(hippo)
    kwargs = dict(train_cases=names[:4], val_cases=names[4:6])

    def interrupt(epoch, record):
        raise StopTraining

    cfg = tiny_config(epochs=3, steps_per_epoch=2)
    train_model(hippo, cfg, tmp_path / "m", callback=interrupt, **kwargs)
    checkpoint = tmp_path / "m" / "checkpoint.pt"
    before = checkpoint.read_bytes()
    other = tiny_config(epochs=3, steps_per_epoch=2)
    other["network"]["channels"] *= 2
    with pytest.raises(ConfigError, match="checkpoint of another network") as err:
        train_model(hippo, other, tmp_path / "m", **kwargs)
    assert str(checkpoint) in err.value.message and "--no-resume" in err.value.hint
    assert checkpoint.read_bytes() == before and not (tmp_path / "m" / "model.pt").exists()
    # a checkpoint from before 'trained_as' was recorded: the weights themselves do not fit
    state = torch.load(checkpoint, weights_only=True)
    del state["trained_as"]
    torch.save(state, checkpoint)
    with pytest.raises(ConfigError, match="does not fit this config's network"):
        train_model(hippo, other, tmp_path / "m", **kwargs)
    checkpoint.write_bytes(before[: len(before) // 2])
    with pytest.raises(ConfigError, match="not a readable checkpoint"):
        train_model(hippo, cfg, tmp_path / "m", **kwargs)
    checkpoint.write_bytes(before)
    longer = tiny_config(epochs=4, steps_per_epoch=2)
    assert train_model(hippo, longer, tmp_path / "m", **kwargs).epochs_done == 4


@pytest.mark.parametrize("loss", ["dice", "generalized_dice", "dice_ce", "dice_focal", "dice_topk", "dice_hausdorff"])
def test_every_loss_trains(hippo, tmp_path, loss):
    names = _names(hippo)
    res = train_model(hippo, tiny_config(loss=loss, epochs=1, steps_per_epoch=2), tmp_path,
                      train_cases=names[:4], val_cases=names[4:5])
    assert np.isfinite(res.history[-1]["loss"])
    assert 0.0 <= res.val_dice <= 1.0


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "rmsprop", "adamax", "novograd", "sgd"])
def test_every_optimizer_changes_weights(hippo, tmp_path, optimizer):
    names = _names(hippo)
    cfg = make_config(tiny_config(optimizer=optimizer, epochs=1, steps_per_epoch=2, lr=1e-3))
    from AutoSegCore.networks import build_network

    torch.manual_seed(0)
    before = build_network(cfg["network"], 1, 3).state_dict()
    train_model(hippo, cfg, tmp_path, train_cases=names[:4], val_cases=[])
    after = torch.load(tmp_path / "model.pt", weights_only=True)
    changed = sum(not torch.equal(before[k], after[k]) for k in before if before[k].dtype.is_floating_point)
    assert changed > len(before) // 2


def test_deep_supervision_and_2d(hippo, tmp_path):
    names = _names(hippo)
    cfg = tiny_config()
    cfg["network"].update(deep_supervision=True, conv="2d", depth=4)
    res = train_model(hippo, cfg, tmp_path, train_cases=names[:4], val_cases=names[4:6])
    assert res.epochs_done == 2 and np.isfinite(res.history[-1]["loss"])


@pytest.mark.slow
@pytest.mark.parametrize("root,channels", [(BRATS, 2), (SPINE, 3)])
def test_multichannel_training_and_prediction_geometry(tmp_path, root, channels):
    """Multi-channel MSD data (4D images): trains, predicts in the input's exact geometry."""
    import nibabel as nib

    from AutoSegCore.data.dataset import load_dataset
    from AutoSegCore.prediction import predict_files
    from AutoSegCore.inference.predictor import Predictor

    ds = load_dataset(root)
    assert ds.num_channels == channels
    names = _names(ds)
    cfg = tiny_config(epochs=1, steps_per_epoch=2, batch_size=1, patch_size=[64, 64, 32])
    train_model(ds, cfg, tmp_path / "m", train_cases=names[:1], val_cases=names[-1:])
    case = ds.case(names[-1])
    out = predict_files(Predictor(tmp_path / "m"), [case.images], tmp_path / "pred")
    img = nib.load(str(case.images[0]))
    pred = nib.load(out[0]["nifti"])
    assert pred.shape == img.shape[:3]
    np.testing.assert_allclose(pred.affine, img.affine, atol=1e-5)


@pytest.mark.slow
def test_learns_hippocampus(hippo, tmp_path):
    """A short real training reaches a Dice measured on this machine (not a toy threshold)."""
    names = _names(hippo)
    cfg = {"network": {"depth": 3, "channels": 16, "n_convs": 1},
           "training": {"epochs": 8, "steps_per_epoch": 25, "warmup_steps": 20}}
    res = train_model(hippo, cfg, tmp_path, train_cases=names[:40], val_cases=names[-8:])
    # measured here: 0.81 after 150 steps on 24 cases (default recipe); threshold set below that
    assert res.val_dice > LEARN_THRESHOLD, res.history
    assert all(v > 0.6 for v in res.val_dice_per_class.values())


LEARN_THRESHOLD = 0.7


def _poison_unet_output(steps):
    """A global forward hook (real torch machinery) that makes the U-Net's training output NaN on ``steps``."""
    from AutoSegCore.networks.unet import UNet

    calls = {"n": 0}

    def hook(module, args, output):
        if isinstance(module, UNet) and module.training:
            calls["n"] += 1
            if steps == "all" or calls["n"] in steps:
                return output * float("nan")
        return None

    return torch.nn.modules.module.register_module_forward_hook(hook)


def test_a_non_finite_step_is_skipped_and_training_goes_on(hippo, tmp_path):
    import warnings

    names = _names(hippo)
    handle = _poison_unet_output({1})                   # the very first step: no optimiser step precedes it
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            res = train_model(hippo, tiny_config(epochs=2, steps_per_epoch=3), tmp_path, train_cases=names[:4],
                              val_cases=names[4:6])
    finally:
        handle.remove()
    assert not [w for w in caught if "lr_scheduler.step" in str(w.message)]  # the skip is deliberate: no warning
    assert [h.get("skipped_steps") for h in res.history] == [1, 1]          # cumulative count per run
    assert all(np.isfinite(h["loss"]) for h in res.history)                  # the NaN step is left out of the mean
    weights = torch.load(tmp_path / "model.pt", weights_only=True)
    assert all(torch.isfinite(w).all() for w in weights.values() if w.dtype.is_floating_point)
    assert 0.0 <= res.val_dice <= 1.0


def test_the_skipped_step_count_survives_a_resume(hippo, tmp_path):
    names = _names(hippo)
    kwargs = dict(train_cases=names[:4], val_cases=[])
    cfg = tiny_config(epochs=2, steps_per_epoch=3)

    def interrupt(epoch, record):
        if epoch == 1:
            raise StopTraining

    handle = _poison_unet_output({2})
    try:
        part = train_model(hippo, cfg, tmp_path, callback=interrupt, **kwargs)
    finally:
        handle.remove()
    assert part.epochs_done == 1 and part.history[0]["skipped_steps"] == 1
    resumed = train_model(hippo, cfg, tmp_path, **kwargs)
    assert resumed.epochs_done == 2 and resumed.history[1]["skipped_steps"] == 1       # a run total, not reset


def test_gradients_that_stay_non_finite_stop_the_run_with_a_clear_error(hippo, tmp_path):
    from AutoSegCore.training.trainer import MAX_BAD_STEPS, TrainingDiverged

    names = _names(hippo)
    handle = _poison_unet_output("all")
    try:
        with pytest.raises(TrainingDiverged, match=f"not finite for {MAX_BAD_STEPS} steps") as err:
            train_model(hippo, tiny_config(epochs=1, steps_per_epoch=MAX_BAD_STEPS + 5), tmp_path,
                        train_cases=names[:4], val_cases=[])
    finally:
        handle.remove()
    assert "training.lr" in err.value.hint


def test_grad_clip_is_validated(hippo, tmp_path):
    from AutoSegCore.errors import ConfigError

    for bad in (-1, 0, "12", True):
        with pytest.raises(ConfigError, match="grad_clip"):
            make_config({"training": {"grad_clip": bad}})
    assert make_config({"training": {"grad_clip": None}})["training"]["grad_clip"] is None


def test_largest_component_is_decided_on_the_last_validation_maps(hippo, tmp_path, monkeypatch):
    """``largest_component: auto`` settles on the final validation's label maps — the same maps a fresh
    prediction of the saved weights gives — without a second sliding-window pass over the validation cases."""
    from AutoSegCore.inference import sliding_window as inference
    from AutoSegCore.training.trainer import Trainer
    from trainkit import preprocessed

    names = _names(hippo)[:5]
    cases = preprocessed(hippo, names)
    cfg = make_config({**tiny_config(epochs=1, patch_size=[32, 32, 32]), "inference": {"largest_component": "auto"}})
    tr = Trainer(cfg, cases[:3], cases[3:], labels=hippo.labels, out_dir=tmp_path / "m",
                 in_channels=hippo.num_channels, device="cpu")
    windows = []
    real = inference.predict_probs
    monkeypatch.setattr(inference, "predict_probs", lambda *a, **k: windows.append(1) or real(*a, **k))
    tr.fit(resume=False)
    assert len(windows) == len(tr.val_data)            # the final validation only: nothing predicted twice
    assert len(tr.val_predictions) == 2 and all(p.dtype == np.uint8 for p in tr.val_predictions)
    for case, kept in zip(tr.val_data, tr.val_predictions):
        again = real(tr.net, torch.from_numpy(np.ascontiguousarray(case.image)), tr.patch, device=tr.device,
                     amp=tr.amp, overlap=0.25, channels_last=tr.channels_last).argmax(0).numpy()
        assert np.array_equal(kept, again)
    saved = __import__("json").loads((tmp_path / "m" / "model.json").read_text())
    assert isinstance(saved["config"]["inference"]["largest_component"], list)


def test_a_training_can_start_from_the_weights_of_a_model_of_the_same_network(hippo, tmp_path):
    """``init_from`` (a search's final training starts from its winning trial): the same network starts from the
    model's weights — with a vanishing lr they are still those weights after training, and model.json says where
    they came from — while another network is told why not and trains from its own seeded initialisation."""
    import json

    from AutoSegCore.events import EventWriter

    names = _names(hippo)
    kwargs = dict(train_cases=names[:4], val_cases=names[4:6], device="cpu")
    train_model(hippo, tiny_config(epochs=2, steps_per_epoch=2), tmp_path / "trial", **kwargs)
    still = tiny_config(epochs=1, steps_per_epoch=1, lr=1e-12, weight_decay=0.0, seed=5)
    log: list[dict] = []
    events = EventWriter(None)
    events.listeners.append(log.append)
    train_model(hippo, still, tmp_path / "warm", init_from=tmp_path / "trial", events=events, **kwargs)
    train_model(hippo, still, tmp_path / "cold", **kwargs)
    trial, warm, cold = (torch.load(tmp_path / n / "model.pt", weights_only=True) for n in ("trial", "warm", "cold"))
    weights = [k for k in trial if trial[k].is_floating_point() and "running" not in k]
    assert all(torch.allclose(warm[k], trial[k], atol=1e-6) for k in weights)
    assert not all(torch.allclose(cold[k], trial[k], atol=1e-3) for k in weights)
    info = json.loads((tmp_path / "warm" / "model.json").read_text())
    assert info["started_from"] == str(tmp_path / "trial")
    assert any(r.get("message") == f"starting from the weights of {tmp_path / 'trial'}" for r in log)

    log.clear()
    wider = tiny_config(epochs=1, steps_per_epoch=1, lr=1e-12, weight_decay=0.0, seed=5)
    wider["network"]["channels"] = 12
    train_model(hippo, wider, tmp_path / "other", init_from=tmp_path / "trial", events=events, **kwargs)
    assert any("not starting from the weights" in r.get("message", "") and "another network" in r["message"]
               for r in log)
    assert "started_from" not in json.loads((tmp_path / "other" / "model.json").read_text())

"""What a resumed study must keep from its first run: its trial values are "Dice of this point on this rung at this
budget, on these cases", so a re-run (or a joining worker) that changed any of it would rank incomparable values
together.  Checked against the study's own user attributes before anything is written."""
from __future__ import annotations

import json
from pathlib import Path

from AutoSegCore.errors import ConfigError
from AutoSegCore.events import EventWriter
from AutoSegCore.search.settings import SearchSettings
from AutoSegCore.utils.storage_url import redact

# what a trial's value depends on besides its point and rung
FIDELITY_SETTINGS = ("epochs", "min_epochs", "steps_per_epoch")


def _canonical(value) -> str:
    """A config as JSON with sorted keys: the study's stored copy (JSON) and a freshly loaded YAML compare equal."""
    return json.dumps(value or {}, sort_keys=True, default=str)


def check_same_settings(attrs: dict, s: SearchSettings, fidelity, storage_url: str) -> None:
    """``ConfigError`` listing every setting the re-run changed (space, strategy, rung, budgets, base config)."""
    study_settings = attrs.get("settings") or {}
    saved = {**{k: attrs[k] for k in ("space", "strategy", "proxy_data", "proxy_net") if attrs.get(k) is not None},
             **{k: study_settings[k] for k in FIDELITY_SETTINGS if k in study_settings}}
    asked = {"space": s.space, "strategy": s.strategy, "proxy_data": fidelity.data_label,
             "proxy_net": fidelity.net_label, **{k: getattr(s, k) for k in FIDELITY_SETTINGS}}
    changed = [f"--{k.replace('_', '-')} {v} → {asked[k]}" for k, v in saved.items() if v != asked[k]]
    if "base_config" in study_settings and _canonical(study_settings["base_config"]) != _canonical(s.base_config):
        changed.append("--config: a different base config")
    if changed:
        raise ConfigError(f"the study in {redact(storage_url)} was started with other settings "
                          f"({'; '.join(changed)}); their trial values would not be comparable",
                          "re-run with the same --space/--strategy/--proxy-data/--proxy-net/--epochs/"
                          "--min-epochs/--steps-per-epoch, or use another --out (or --study-name)")


def study_cases(attrs: dict, names: list[str], s: SearchSettings, storage_url: str, events: EventWriter, *,
                join: bool) -> tuple[list[str], list[str]] | None:
    """The cases the study's trials ran on (a dataset given more cases since must not move the split under them);
    None for a study that has none yet.  A dataset lacking any of them is refused; a moved copy is logged."""
    cases = attrs.get("cases") or {}
    train, val = list(cases.get("train") or []), list(cases.get("val") or [])
    missing = [n for n in train + val if n not in set(names)]
    if join and (missing or not train):
        raise ConfigError(f"this machine's copy of {s.data} lacks case(s) of the study: {missing[:3]}",
                          "give every worker the same dataset (e.g. a shared folder)")
    if not train:
        return None
    before = (attrs.get("settings") or {}).get("data")
    if missing:
        raise ConfigError(f"{s.data} lacks {len(missing)} case(s) the study in {redact(storage_url)} ran on "
                          f"(e.g. {', '.join(missing[:3])}); it was started on {before}",
                          "re-run with the study's dataset, or use another --out (or --study-name)")
    if not join and before and Path(str(before)).resolve() != Path(str(s.data)).resolve():
        events.emit("log", message=f"resuming on {s.data} (the study started on {before}): "
                                   f"its {len(train) + len(val)} cases are all there")
    return train, val

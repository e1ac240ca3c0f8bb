"""Set-up of a search (a mixin of :class:`~AutoSegCore.search.runner.SearchRunner`): open or create the study,
check it was made with the same settings, select the cases (proxy data), write the stage outputs."""
from __future__ import annotations

import os
import zlib
from pathlib import Path

from AutoSegCore.errors import ConfigError, DatasetError
from AutoSegCore.search.resume import check_same_settings, study_cases
from AutoSegCore.search.stages import stage_fingerprint, stage_plan
from AutoSegCore.utils.storage_url import redact
from AutoSegCore.search.trial_spec import study_pruner
from AutoSegCore.utils.io import read_json, write_json


class StudySetup:
    def prepare(self) -> None:
        """Open or create the study and select the cases; the fork server starts meanwhile (stopped on error)."""
        from AutoSegCore.proxy.fidelity import Fidelity
        from AutoSegCore.spaces import get_space

        # a mistyped space, --proxy-data or --proxy-net is refused before the fork server starts (that takes seconds)
        self.fidelity = Fidelity.parse(self.settings.proxy_data, self.settings.proxy_net)
        self.space = get_space(self.settings.space)
        if not Path(self.settings.data).exists():
            raise DatasetError(f"{self.settings.data}: dataset not found",
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

        s = self.settings
        self.fixed_by_proxy_net: list[str] = []
        # Only the proxy paper's fixed proxy network (levels=N without width) trains one size for every trial, so
        # only then are the size keys unrankable and dropped; the width rule keeps their order, so the space stays whole.
        if self.fidelity.fixes_network_size:
            from AutoSegCore.networks.proxy import PROXY_KEYS

            self.space, self.fixed_by_proxy_net = self.space.without(k for keys in PROXY_KEYS.values() for k in keys)
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
            # the study's own settings are checked before the proxy-data selection writes proxy.json
            self.study = create_or_load_study(self.storage, s.study_name, directions, sampler, pruner)
            attrs = self.study.user_attrs
            check_same_settings(attrs, s, self.fidelity, self.storage_url)
            self.train_cases, self.val_cases = (study_cases(attrs, names, s, self.storage_url, self.events, join=False)
                                                or self._select_cases(names))
            for key, value in (("space", s.space), ("strategy", s.strategy), ("proxy_data", self.fidelity.data_label),
                               ("proxy_net", self.fidelity.net_label), ("settings", s.to_dict()),
                               ("fixed_by_proxy_net", self.fixed_by_proxy_net),
                               ("cases", {"train": self.train_cases, "val": self.val_cases})):
                if attrs.get(key) != value:
                    self.study.set_user_attr(key, value)
        self._reseed_sampler()
        # stage output: the one reading of the training cases' voxels that every trial's preprocessing needs
        self.fingerprint, self.fingerprint_path = stage_fingerprint(self.ds, self.train_cases, self.work)
        # the dataset's plan: what every trial's config (and a space's relative ranges) is merged over; kept in
        # the study, so a resumed run and a worker on another machine merge over the same plan, not a re-measured one
        self.plan = None
        if s.plan:
            saved = self.study.user_attrs.get("plan")
            self.plan = stage_plan(self.fingerprint, self.work, device=s.device, budget=s.final_time,
                                   events=self.events, saved=saved)
            if saved is None:
                self.study.set_user_attr("plan", self.plan)
        self.directions = [d.name.lower() for d in self.study.directions]
        write_json(self.work / "search.json", {
            **s.to_dict(), "study_name": s.study_name, "storage": redact(self.storage_url),
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
        self.study.sampler = make_sampler(self.settings.strategy, seed=(self.settings.seed + salt) % 2**32)

    def _select_cases(self, names: list[str]) -> tuple[list[str], list[str]]:
        """Proxy data by MI/NCC/random when asked (proxy paper: 50/50 train/val of the selection), else a holdout split."""
        from AutoSegCore.data.splits import holdout_split

        if self.fidelity.data_method is None:
            return holdout_split(sorted(names), self.settings.val_fraction, self.settings.seed)
        proxy_json = self.work / "proxy.json"
        if proxy_json.is_file():
            saved = read_json(proxy_json)
            if saved.get("method") == self.fidelity.data_method and set(saved.get("selected", [])) <= set(names):
                return list(saved["train"]), list(saved["val"])
        from AutoSegCore.proxy.selection import save_proxy, select_proxy_data

        sel = select_proxy_data(self.ds.subset(names), method=self.fidelity.data_method,
                                roi="label" if self.fidelity.roi else "none", budget=self.fidelity.budget,
                                seed=self.settings.seed, val_fraction=0.5, cache_dir=self.work / "cache",
                                device=self.settings.device)
        save_proxy(sel, proxy_json)
        self.events.emit("artifact", kind="proxy", path=str(proxy_json))
        return list(sel.train), list(sel.val)

"""Optuna's own sampler conformance suite (optuna.testing.pytest_samplers) run against each of our samplers.

Which cases apply:
- every sampler: BasicSamplerTestCase (sample_independent types/bounds/step grid, NaN values, partial fixing…);
- every sampler: RelativeSamplerTestCase — all four sample jointly in sample_relative (CRS/MOEA/D/BOHB on the
  unit cube, the RL controller parameter after parameter);
- single-objective samplers (bohb, crs, rl): SingleOnlySamplerTestCase (ValueError on multi-objective studies);
- moead: MultiObjectiveSamplerTestCase.
"""
import pytest
from optuna.testing.pytest_samplers import (BasicSamplerTestCase, MultiObjectiveSamplerTestCase,
                                            RelativeSamplerTestCase, SingleOnlySamplerTestCase)

from AutoSegCore.strategies import make_sampler


class TestBOHBConformance(BasicSamplerTestCase, RelativeSamplerTestCase, SingleOnlySamplerTestCase):
    @pytest.fixture
    def sampler(self):
        return lambda: make_sampler("bohb", seed=0, min_budget=1, max_budget=9, eta=3)


class TestCRSConformance(BasicSamplerTestCase, RelativeSamplerTestCase, SingleOnlySamplerTestCase):
    @pytest.fixture
    def sampler(self):
        return lambda: make_sampler("crs", seed=0)


class TestRLConformance(BasicSamplerTestCase, RelativeSamplerTestCase, SingleOnlySamplerTestCase):
    @pytest.fixture
    def sampler(self):
        return lambda: make_sampler("rl", seed=0, hidden=8)


class TestMOEADConformance(BasicSamplerTestCase, RelativeSamplerTestCase, MultiObjectiveSamplerTestCase):
    @pytest.fixture
    def sampler(self):
        return lambda: make_sampler("moead", seed=0, population_size=6)

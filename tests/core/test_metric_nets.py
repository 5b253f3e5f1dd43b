"""polydiff.metric_nets: metric networks stored by recipe (shipped, cached, or trained)."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from polydiff import metric_nets
from polydiff.errors import PolydiffError


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("POLYDIFF_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(metric_nets.ENV_MODE, raising=False)
    return tmp_path / "cache" / "metric_nets"


def _trainer(calls: list, value: float = 1.5):
    def train():
        calls.append(1)
        net = nn.Linear(3, 2)
        with torch.no_grad():
            net.weight.fill_(value)
        return net, {"accuracy": 0.9}

    return train


def test_a_miss_trains_and_stores_then_the_next_call_loads(cache):
    calls: list = []
    recipe = {"net": "toy", "version": 1, "steps": 10}
    net, info = metric_nets.load_or_train("toy", recipe, lambda: nn.Linear(3, 2), _trainer(calls))
    assert calls == [1] and info == {"accuracy": 0.9}
    path = cache / metric_nets.file_name("toy", recipe)
    assert path.is_file()
    again, info2 = metric_nets.load_or_train("toy", recipe, lambda: nn.Linear(3, 2), _trainer(calls))
    assert calls == [1] and info2 == info and not again.training
    assert torch.equal(again.weight, net.weight) and torch.all(again.weight == 1.5)
    state, stored_recipe, _ = metric_nets.read(path)
    assert stored_recipe == recipe and set(state) == {"weight", "bias"}


def test_the_key_follows_every_recipe_field_and_shipped_folders_come_first(cache, tmp_path):
    a = {"net": "toy", "version": 1, "steps": 10}
    assert metric_nets.recipe_key(a) == metric_nets.recipe_key(dict(reversed(list(a.items()))))
    assert metric_nets.recipe_key(a) != metric_nets.recipe_key({**a, "version": 2})
    assert metric_nets.recipe_key(a) != metric_nets.recipe_key({**a, "steps": 11})
    shipped = tmp_path / "shipped"
    metric_nets.save(_trainer([], 7.0)()[0], shipped / metric_nets.file_name("toy", a), a, {"from": "shipped"})
    calls: list = []
    net, info = metric_nets.load_or_train("toy", a, lambda: nn.Linear(3, 2), _trainer(calls), shipped=[shipped])
    assert calls == [] and info == {"from": "shipped"} and torch.all(net.weight == 7.0)
    assert not cache.exists()  # nothing trained, nothing cached


def test_stale_weights_are_retrained_with_a_warning(cache):
    recipe = {"net": "toy", "version": 1}
    metric_nets.save(nn.Linear(4, 2), cache / metric_nets.file_name("toy", recipe), recipe)
    calls: list = []
    with pytest.warns(UserWarning, match="bump the recipe's 'version'"):
        net, _ = metric_nets.load_or_train("toy", recipe, lambda: nn.Linear(3, 2), _trainer(calls))
    assert calls == [1] and net.weight.shape == (2, 3)


def test_train_mode_always_trains_and_stores_nothing(cache, monkeypatch):
    monkeypatch.setenv(metric_nets.ENV_MODE, "train")
    recipe = {"net": "toy", "version": 1}
    calls: list = []
    for _ in range(2):
        metric_nets.load_or_train("toy", recipe, lambda: nn.Linear(3, 2), _trainer(calls))
    assert calls == [1, 1] and not cache.exists()


def test_a_recipe_that_is_not_json_is_an_error():
    with pytest.raises(PolydiffError, match="JSON"):
        metric_nets.recipe_key({"data": torch.zeros(2)})


def test_an_unwritable_cache_warns_and_still_returns_the_network(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("POLYDIFF_CACHE", str(blocker))
    monkeypatch.delenv(metric_nets.ENV_MODE, raising=False)
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        net, _ = metric_nets.load_or_train("toy", {"v": 1}, lambda: nn.Linear(3, 2), _trainer([]))
    assert isinstance(net, nn.Linear) and any("could not store" in str(w.message) for w in got)


def test_neither_path_moves_the_callers_random_state(cache):
    recipe = {"net": "toy", "version": 1}

    def train():
        torch.manual_seed(123)  # a recipe that seeds globally
        return nn.Linear(3, 2), {}

    for _ in range(2):  # trains, then loads
        torch.manual_seed(0)
        metric_nets.load_or_train("toy", recipe, lambda: nn.Linear(3, 2), train)
        after = torch.rand(3)
        torch.manual_seed(0)
        assert torch.equal(after, torch.rand(3))

"""The instructors' reserve, the pools and the run seed: instructors and students never share an image, and each
student seed draws its own images while val and the reserve stay fixed."""

from __future__ import annotations

import collections

import numpy as np
import pytest

from geokt_plugin import data as D
from geokt_plugin.data.subsets import RUN_SEED_ENV, resolve_seed

_RNG = np.random.default_rng(7)
TARGETS = _RNG.permutation(np.repeat(np.arange(10), 300))  # 3,000 items, 300 per class
KW = dict(val_size=200, reserve=500, split_seed=0)


def _split(**kw):
    return set(D.split_indices(TARGETS, **{**KW, **kw}))


def test_val_reserve_and_student_pools_are_disjoint_and_balanced():
    val = _split(split="val", seed=0)
    reserve = _split(split="train", pool="reserve", seed=0)
    students = [_split(split="train", subset_size=400, seed=s) for s in range(4)]
    assert len(val) == 200 and len(reserve) == 500
    assert not val & reserve
    for student in students:
        assert len(student) == 400 and not student & reserve and not student & val
        counts = collections.Counter(int(TARGETS[i]) for i in student)
        assert set(counts.values()) == {40}
    assert len({frozenset(s) for s in students}) == 4  # each seed its own images


def test_val_and_reserve_do_not_depend_on_the_student_seed():
    assert _split(split="val", seed=0) == _split(split="val", seed=5)  # split_seed fixes val
    assert _split(split="train", pool="reserve", seed=0) == _split(split="train", pool="reserve", seed=3)


def test_student_plus_reserve_is_the_union_and_fractions_stay_nested():
    union = _split(split="train", pool="student+reserve", subset_size=400, seed=2)
    assert union == _split(split="train", subset_size=400, seed=2) | _split(split="train", pool="reserve", seed=0)
    half = _split(split="train", subset_size=400, fraction=0.5, seed=2)
    assert len(half) == 200 and half <= _split(split="train", subset_size=400, seed=2)


def test_without_reserve_the_old_split_is_unchanged():
    old = D.split_indices(TARGETS, split="train", subset_size=300, val_size=200, seed=4)
    assert old == D.split_indices(TARGETS, split="train", subset_size=300, val_size=200, seed=4, split_seed=4)


def test_classes_filter_first_then_val_reserve_and_pool():
    kw = {**KW, "reserve": 300}  # classes 0 and 1: 600 items, 200 of them val
    reserve = D.split_indices(TARGETS, split="train", pool="reserve", classes=[0, 1], seed=0, **kw)
    val = D.split_indices(TARGETS, split="val", classes=[0, 1], seed=0, **kw)
    assert len(reserve) == 300 and {int(TARGETS[i]) for i in reserve} == {0, 1} and not set(reserve) & set(val)


def test_run_seed_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv(RUN_SEED_ENV, "3")
    assert _split(split="train", subset_size=400, seed="run") == _split(split="train", subset_size=400, seed=3)
    assert resolve_seed("run", "owner") == 3


def test_run_seed_without_the_environment_says_how_to_set_it(monkeypatch):
    monkeypatch.delenv(RUN_SEED_ENV, raising=False)
    with pytest.raises(ValueError, match=r"owner: seed: 'run' .* GEOKT_RUN_SEED is unset.*geokt-train --seed S"):
        resolve_seed("run", "owner")
    monkeypatch.setenv(RUN_SEED_ENV, "x1")
    with pytest.raises(ValueError, match=r"GEOKT_RUN_SEED is 'x1'"):
        resolve_seed("run", "owner")


@pytest.mark.parametrize("seed", [-1, 1.5, True, "0"])
def test_bad_seeds_are_named(seed):
    with pytest.raises(ValueError, match=r"owner: seed must be an integer >= 0 or 'run'"):
        resolve_seed(seed, "owner")


@pytest.mark.parametrize(("kw", "message"), [
    ({"pool": "teachers"}, r"unknown pool 'teachers'; choose one of \['student', 'reserve', 'student\+reserve'\]"),
    ({"pool": "reserve", "reserve": 0}, r"pool 'reserve' needs reserve > 0"),
    ({"reserve": -2}, r"reserve must be an integer >= 0, got -2"),
    ({"reserve": 5000}, r"reserve=5000 but only 2800 images are available"),
])
def test_bad_pools_and_reserves_are_named(kw, message):
    with pytest.raises(ValueError, match=message):
        D.split_indices(TARGETS, **{**KW, "split": "train", "seed": 0, **kw}, owner="owner")


def test_fashion_mnist_reserve_is_disjoint_from_the_students(monkeypatch):
    kw = dict(val_size=1000, split_seed=0, reserve=5000)
    reserve = D.fashion_mnist(split="train", pool="reserve", seed=0, **kw)
    monkeypatch.setenv(RUN_SEED_ENV, "1")
    student = D.fashion_mnist(split="train", subset_size=1000, seed="run", **kw)
    assert len(reserve) == 5000 and len(student) == 1000
    as_bytes = {bytes(reserve.images[i].numpy()) for i in range(len(reserve))}
    assert not any(bytes(student.images[i].numpy()) in as_bytes for i in range(len(student)))

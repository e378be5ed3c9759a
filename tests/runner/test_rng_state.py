"""RNG states captured for checkpoints: plain data, restored exactly."""

from __future__ import annotations

import random

import numpy as np
import torch

from geokt_plugin.runner.rng import rng_state, set_rng_state


def test_train_rng_state_round_trip_is_plain_data():
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    state = rng_state()
    expected = (random.random(), float(np.random.rand()), float(torch.rand(())))
    random.seed(9)
    np.random.seed(9)
    torch.manual_seed(9)
    set_rng_state(state)
    assert (random.random(), float(np.random.rand()), float(torch.rand(()))) == expected
    assert isinstance(state["torch"], bytes) and isinstance(state["numpy"][1], bytes)

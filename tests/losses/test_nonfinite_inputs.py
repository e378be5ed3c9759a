"""A NaN or infinity in a point makes that point set's value non-finite, for every loss and either network.

docs/losses.md ("Properties"): never a finite, wrong value that a training loop's NaN guard cannot see; the other
sets of the batch keep their values and gradients (``reduction="none"``).
"""

from __future__ import annotations

import math

import pytest
import torch

from geokt_plugin.losses import LOSS_SPECS
from geokt_plugin.testing import pair

BAD_IMAGE = 1


def _call(name: str, s: torch.Tensor, t: torch.Tensor, scope: str, grad: bool):
    s = s.detach().clone().requires_grad_(grad)
    with torch.set_grad_enabled(grad):
        out = LOSS_SPECS[name].function(s, t, scope=scope, reduction="none")
    if grad:
        out.sum().backward()
    return out.detach(), s.grad


@pytest.mark.parametrize("grad", [True, False], ids=["grad", "no_grad"])
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("scope", ["image", "batch"])
@pytest.mark.parametrize("side", ["student", "teacher"])
def test_nonfinite_point_makes_its_set_non_finite(loss_name, side, scope, bad, grad):
    s, t = pair(3, 3, 4, 4, 5, 4, 4, seed=5)
    clean_value, clean_grad = _call(loss_name, s, t, scope, grad)
    broken = (s if side == "student" else t).clone()
    broken[BAD_IMAGE, 0, 2, 1] = bad
    s_in, t_in = (broken, t) if side == "student" else (s, broken)
    value, g = _call(loss_name, s_in, t_in, scope, grad)
    bad_set = BAD_IMAGE if scope == "image" else 0
    assert not torch.isfinite(value[bad_set]), f"{loss_name}: a {bad} in the {side} gave {value[bad_set].item()}"
    others = [i for i in range(value.numel()) if i != bad_set]
    torch.testing.assert_close(value[others], clean_value[others], rtol=1e-12, atol=0)
    if grad:
        assert not torch.isfinite(g[bad_set if scope == "image" else slice(None)]).all()
        if scope == "image":
            torch.testing.assert_close(g[others], clean_grad[others], rtol=1e-12, atol=0)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_nonfinite_point_makes_the_reduced_loss_non_finite(loss_name, reduction):
    s, t = pair(2, 3, 4, 4, 5, 4, 4, seed=6)
    t[0, 1, 0, 0] = math.inf
    assert not torch.isfinite(LOSS_SPECS[loss_name].function(s, t, reduction=reduction))

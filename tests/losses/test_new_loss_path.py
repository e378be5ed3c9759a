"""A toy loss added through exactly the touch points of docs/contributing.md, and picked up by the machinery.

The toy compares squared distances, ``L = mean_{i != j} (A_s[i,j] - w * A_t[i,j])^2`` with ``A = Q + 1e-12``
(clamped ``Q``) and a knob ``teacher_weight = w``. It is written as a new loss would be: a per-block value and
``dL/dQ`` coefficients (a :class:`BlockLoss`), a pure function on the shared frame, a thin ``GeoKT`` module, a
LossSpec row. The row and the registry key are registered for the test only and removed afterwards.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import pytest
import torch
from torch import Tensor
from torchdistill.losses import registry as loss_registry
from torchdistill.losses.registry import get_mid_level_loss

from geokt_plugin import registry
from geokt_plugin.losses import LOSS_SPECS, BlockLoss, Blocks, GeoKTLoss, LossSpec, register_loss_spec
from geokt_plugin.losses.checks import check_positive
from geokt_plugin.losses.kernel import block_diag, geometric_loss
from geokt_plugin.testing import (
    assert_matches_reference,
    assert_module_contract,
    gradcheck_student,
    pair,
    reference,
)

# ----------------------------------------------------------------------------------------------------------------
# The new loss: what would be its own file under geokt_plugin/losses/
# ----------------------------------------------------------------------------------------------------------------


class _ToyBlocks(BlockLoss):
    """One pass: each block adds its value and its pair coefficients ``dL/dQ``."""

    def __init__(self, blocks: Blocks, *, teacher_weight: float) -> None:
        super().__init__(blocks)
        self.teacher_weight = teacher_weight

    def block(self, sets: slice, rows: slice) -> None:
        b, pairs = self.blocks, self.blocks.n * (self.blocks.n - 1)
        a_s, negative, a_t = b.clamped_pair(sets, rows)
        u = a_s - self.teacher_weight * a_t
        block_diag(u, rows).zero_()
        b.value[sets] += u.pow(2).sum((1, 2)) / pairs
        if b.need_grad:  # dL/dQ = 2 u / pairs where Q >= 0 (the clamp's rule), 0 on the diagonal
            b.add_pair_grad(sets, rows, (2.0 / pairs * u).masked_fill_(negative, 0.0))


def _check_knobs(owner: str, *, teacher_weight: float) -> dict[str, Any]:
    check_positive(owner, "teacher_weight", teacher_weight)
    return {"teacher_weight": float(teacher_weight)}


def toy_sq_distance_loss(
    student: Tensor,
    teacher: Tensor,
    *,
    teacher_weight: float = 1.0,
    max_points: int | None = None,
    scope: str = "image",
    reduction: str = "mean",
    generator: torch.Generator | None = None,
    chunk_size: int | None = None,
) -> Tensor:
    """Mean squared difference of squared distances (a toy, not scale invariant)."""
    owner = "toy_sq_distance_loss"
    knobs = _check_knobs(owner, teacher_weight=teacher_weight)
    return geometric_loss(owner, partial(_ToyBlocks, **knobs), student, teacher, max_points=max_points, scope=scope,
                          reduction=reduction, generator=generator, chunk_size=chunk_size)


class GeoKTToySqDistanceLoss(GeoKTLoss):
    """Toy loss module (registered by the fixture below, not at import).

    Example YAML sub-term::

        toy:
          criterion:
            key: 'GeoKTToySqDistanceLoss'
            kwargs: {student_module_path: 'layer2', teacher_module_path: 'layer2', teacher_weight: 2.0}
          weight: 1.0
    """

    function = staticmethod(toy_sq_distance_loss)
    check_knobs = staticmethod(_check_knobs)


def toy_reference(student, teacher, *, teacher_weight, max_points=None, scope="image", reduction="mean",
                  generator=None) -> Tensor:
    """The toy by loops over the reference's point sets (float64)."""
    s_sets, t_sets = reference.point_sets(student, teacher, max_points=max_points, scope=scope, generator=generator)
    values = []
    for s_points, t_points in zip(s_sets, t_sets, strict=True):
        d_s, d_t, n = reference.distances(s_points), reference.distances(t_points), len(s_points)
        total = sum((d_s[i][j] ** 2 - teacher_weight * d_t[i][j] ** 2) ** 2
                    for i in range(n) for j in range(n) if i != j)
        values.append(total / (n * (n - 1)))
    return reference._reduce(values, reduction)


# ----------------------------------------------------------------------------------------------------------------
# Registration for the test only
# ----------------------------------------------------------------------------------------------------------------


@pytest.fixture
def toy_spec():
    """Register the module (guarded, GeoKT key) and its LossSpec row; remove both afterwards."""
    registry.register_mid_level_loss(GeoKTToySqDistanceLoss)
    spec = register_loss_spec(LossSpec("toy", toy_sq_distance_loss, GeoKTToySqDistanceLoss, reference=toy_reference))
    try:
        yield spec
    finally:
        LOSS_SPECS.pop(spec.name)
        registry.unregister("mid_level_loss", spec.key)
    assert spec.key not in loss_registry.MIDDLE_LEVEL_LOSS_DICT


def test_new_loss_path_row_and_key_are_picked_up(toy_spec):
    assert toy_spec.key == "GeoKTToySqDistanceLoss"
    assert toy_spec.knobs == {"teacher_weight": 1.0}
    assert toy_spec.key in registry.registered_keys("mid_level_loss")  # what the contract tests parametrise over
    assert LOSS_SPECS["toy"] is toy_spec


def test_new_loss_path_passes_the_module_contract(toy_spec):
    assert_module_contract(toy_spec.key)


def test_new_loss_path_builds_through_torchdistill(toy_spec):
    config = {"key": toy_spec.key, "kwargs": {"student_module_path": "layer2", "teacher_module_path": "layer3",
                                              "teacher_weight": 2, "chunk_size": 3}}
    loss = get_mid_level_loss(config)
    assert type(loss) is GeoKTToySqDistanceLoss
    assert repr(loss) == (
        "GeoKTToySqDistanceLoss(student='layer2:output', teacher='layer3:output', teacher_weight=2.0, "
        "max_points=None, scope='image', reduction='mean', chunk_size=3)"
    )
    s, t = pair(2, 3, 4, 4, 2, 4, 4, seed=1)
    value = loss({"layer2": {"output": s}}, {"layer3": {"output": t}})
    torch.testing.assert_close(value, toy_sq_distance_loss(s, t, teacher_weight=2.0), rtol=0, atol=0)
    with pytest.raises(TypeError, match=r"GeoKTToySqDistanceLoss: unknown argument\(s\) \['teacher_wieght'\]"):
        get_mid_level_loss({"key": toy_spec.key, "kwargs": {"student_module_path": "a", "teacher_module_path": "b",
                                                            "teacher_wieght": 1.0}})
    with pytest.raises(ValueError, match="GeoKTToySqDistanceLoss: teacher_weight must be a finite number > 0"):
        GeoKTToySqDistanceLoss("a", "b", teacher_weight=0)


@pytest.mark.parametrize("scope", ["image", "batch"])
@pytest.mark.parametrize("chunk_size", [None, 1, 5])
def test_new_loss_path_matches_its_reference_and_gradcheck(toy_spec, scope, chunk_size):
    s, t = pair(2, 2, 3, 3, 3, 2, 3, seed=3)
    knobs = {**toy_spec.knobs, "scope": scope, "reduction": "none"}
    assert_matches_reference(toy_spec.function, toy_spec.reference_function(), s, t, chunk_size=chunk_size, **knobs)
    assert gradcheck_student(toy_spec.function, s, t, scope=scope, chunk_size=chunk_size, teacher_weight=0.5)

"""Checks every loss must pass, callable on any :class:`~geokt_plugin.losses.LossSpec` or registry key.

The parametrised tests call these over the table and the registry; a test that defines a loss at test time
calls them on its own row, so a new loss is held to exactly the same contract.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from .tensors import randn, tol

__all__ = [
    "MINIMAL_KWARGS",
    "assert_matches_reference",
    "assert_module_contract",
    "call_with_fresh_generator",
    "gradcheck_student",
    "minimal_kwargs",
]

# The smallest kwargs any GeoKT mid-level loss may need; each key only gets the ones its __init__ accepts.
MINIMAL_KWARGS = {"student_module_path": "layer2", "teacher_module_path": "layer2"}


def minimal_kwargs(cls: type) -> dict[str, str]:
    """The entries of :data:`MINIMAL_KWARGS` that ``cls.__init__`` accepts."""
    accepted = inspect.signature(cls.__init__).parameters
    return {k: v for k, v in MINIMAL_KWARGS.items() if k in accepted}


def assert_module_contract(key: str) -> None:
    """Build ``key`` through torchdistill from minimal kwargs; forward and backward give finite values.

    Checks: the class is named by its key, has no parameters (torchdistill never optimises the criterion), gives a
    finite scalar on a random ``io_dict``, sends a non-zero finite gradient to the student, and has a ``repr``
    that names it and its layer.
    """
    from torchdistill.losses import registry as loss_registry
    from torchdistill.losses.registry import get_mid_level_loss

    cls = loss_registry.MIDDLE_LEVEL_LOSS_DICT[key]
    assert cls.__name__ == key
    loss = get_mid_level_loss({"key": key, "kwargs": minimal_kwargs(cls)})
    assert isinstance(loss, nn.Module) and type(loss) is cls
    assert list(loss.parameters()) == []
    student = randn(2, 6, 4, 4, seed=50, dtype=torch.float32).requires_grad_(True)
    teacher = randn(2, 10, 4, 4, seed=51, dtype=torch.float32)
    student_io = {".": {"output": randn(2, 10, seed=52)}, "layer2": {"output": student}}
    teacher_io = {".": {"output": randn(2, 10, seed=53)}, "layer2": {"output": teacher}}
    value = loss(student_io, teacher_io, torch.tensor([0, 1]))
    assert value.shape == () and torch.isfinite(value)
    value.backward()
    assert student.grad is not None and torch.isfinite(student.grad).all() and student.grad.abs().sum() > 0
    text = repr(loss)
    assert text.startswith(f"{key}(") and "layer2" in text


def assert_matches_reference(
    function: Callable[..., Tensor], reference: Callable[..., Tensor], student: Tensor, teacher: Tensor,
    *, chunk_size: int | None = None, **knobs: Any,
) -> None:
    """``function`` equals its float64 loop ``reference`` on float64 maps (a ``generator`` is re-seeded per call).

    ``chunk_size`` goes to ``function`` only: it bounds memory and never changes the value.
    """
    chunk = {} if chunk_size is None else {"chunk_size": chunk_size}
    got = call_with_fresh_generator(function, student, teacher, **knobs, **chunk)
    want = call_with_fresh_generator(reference, student, teacher, **knobs)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, want, **tol(torch.float64))


def call_with_fresh_generator(
    function: Callable[..., Tensor], student: Tensor, teacher: Tensor, **knobs: Any
) -> Tensor:
    """Call ``function`` with a fresh copy of the ``generator``'s seed, so repeated calls draw the same positions."""
    if isinstance(knobs.get("generator"), torch.Generator):
        knobs["generator"] = torch.Generator().manual_seed(knobs["generator"].initial_seed())
    return function(student, teacher, **knobs)


def gradcheck_student(
    function: Callable[..., Tensor], student: Tensor, teacher: Tensor, *, seed: int | None = None,
    eps: float = 1e-6, **knobs: Any,
) -> bool:
    """float64 ``gradcheck`` w.r.t. the student of per-set values; with ``seed``, every call samples alike."""
    s = student.detach().clone().requires_grad_(True)

    def loss(x: Tensor) -> Tensor:
        gen = {} if seed is None else {"generator": torch.Generator().manual_seed(seed)}
        return function(x, teacher, reduction="none", **knobs, **gen)

    return torch.autograd.gradcheck(loss, (s,), eps=eps, atol=1e-5, rtol=1e-3)

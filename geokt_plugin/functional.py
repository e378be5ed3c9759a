"""Pure tensor math of the geometric local-activation losses.

The normative definition is ``shared/spec/geometric-losses.md`` (mirrored in ``docs/losses.md``). It is this
project's precise formulation of what Theodorakopoulos, Fotopoulou and Economou describe in "Geometric
Regularization of Local Activations for Knowledge Transfer in Convolutional Neural Networks" (Information
12(8):333, 2021); it is not the paper's own equations, which we could not read.

Every loss compares two feature maps, the student's ``(B, Cs, Hs, Ws)`` and the instructor's ``(B, Ct, Ht, Wt)``.
Each spatial position is a *local feature* (a point in channel space); the losses compare the neighbourhood
geometry of those points, so ``Cs`` and ``Ct`` are free.

This module imports nothing from the package and knows nothing about torchdistill.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "REDUCTIONS",
    "SCOPES",
    "local_distance_loss",
    "neighbor_kl_loss",
    "neighbor_rank_loss",
    "normalized_distances",
    "pairwise_sq_distances",
    "point_sets",
]

REDUCTIONS = ("mean", "sum", "none")
SCOPES = ("image", "batch")

_DIST_EPS = 1e-12  # added under the square root: finite gradients at coincident points
_SCALE_EPS = 1e-12  # floor of the mean distance: finite values for collapsed point sets


# ----------------------------------------------------------------------------------------------------------------
# Validation of the knobs (shared with the registered modules, which call these at construction time).
# ----------------------------------------------------------------------------------------------------------------


def check_choice(owner: str, name: str, value: object, choices: tuple[str, ...]) -> None:
    """Raise ``ValueError`` unless ``value`` is one of ``choices``."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"Unknown {name} {value!r} for {owner}; choose one of {list(choices)}.")


def check_neighbors(owner: str, neighbors: object, *, allow_none: bool) -> None:
    """Raise unless ``neighbors`` is an integer >= 1 (or ``None`` when allowed)."""
    if neighbors is None and allow_none:
        return
    if isinstance(neighbors, bool) or not isinstance(neighbors, int):
        allowed = "an integer >= 1 or None" if allow_none else "an integer >= 1"
        raise TypeError(f"{owner}: neighbors must be {allowed}, got {neighbors!r} ({type(neighbors).__name__}).")
    if neighbors < 1:
        raise ValueError(f"{owner}: neighbors must be >= 1, got {neighbors}. Use a positive neighbourhood size.")


def check_positive(owner: str, name: str, value: object) -> None:
    """Raise unless ``value`` is a finite real number > 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{owner}: {name} must be a positive number, got {value!r} ({type(value).__name__}).")
    if not value > 0 or value == float("inf"):
        raise ValueError(f"{owner}: {name} must be a finite number > 0, got {value}.")


def check_max_points(owner: str, max_points: object) -> None:
    """Raise unless ``max_points`` is ``None`` or an integer >= 2."""
    if max_points is None:
        return
    if isinstance(max_points, bool) or not isinstance(max_points, int):
        raise TypeError(
            f"{owner}: max_points must be None or an integer >= 2, got {max_points!r} ({type(max_points).__name__})."
        )
    if max_points < 2:
        raise ValueError(
            f"{owner}: max_points must be None or an integer >= 2, got {max_points}. "
            "A point set needs at least 2 local features."
        )


def check_generator(owner: str, generator: object) -> None:
    """Raise unless ``generator`` is ``None`` or a ``torch.Generator``."""
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"{owner}: generator must be None or a torch.Generator, got {type(generator).__name__}.")


def check_common(
    owner: str, *, max_points: object, scope: object, reduction: object, generator: object = None
) -> None:
    """Validate the knobs every loss shares: ``max_points``, ``scope``, ``reduction``, ``generator``."""
    check_max_points(owner, max_points)
    check_choice(owner, "scope", scope, SCOPES)
    check_choice(owner, "reduction", reduction, REDUCTIONS)
    check_generator(owner, generator)


# ----------------------------------------------------------------------------------------------------------------
# Shared geometry.
# ----------------------------------------------------------------------------------------------------------------


def point_sets(
    student: Tensor,
    teacher: Tensor,
    *,
    max_points: int | None = None,
    scope: str = "image",
    generator: torch.Generator | None = None,
    owner: str = "geokt_plugin.functional",
) -> tuple[Tensor, Tensor]:
    """Turn two feature maps into aligned point sets, as the spec's "Inputs" section defines.

    Steps: check shapes; pool the larger map to ``(min(Hs, Ht), min(Ws, Wt))``; upcast to float32 (float64 if
    either input is float64); detach the teacher; flatten positions to points; optionally sample ``max_points``
    positions (the same for every image and both networks); group by ``scope``.

    Args:
        student: ``(B, Cs, Hs, Ws)`` student feature map.
        teacher: ``(B, Ct, Ht, Wt)`` instructor feature map.
        max_points: sample this many positions when ``H*W`` exceeds it.
        scope: ``"image"`` (one set per image) or ``"batch"`` (one set of all ``B*H*W`` points).
        generator: random generator used by the sampling.
        owner: name used in error messages.

    Returns:
        ``(S, n, Cs)`` student points and ``(S, n, Ct)`` detached teacher points, with ``S = B`` for
        ``"image"`` and ``S = 1`` for ``"batch"``.
    """
    for role, x in (("student", student), ("teacher", teacher)):
        if not isinstance(x, Tensor):
            raise TypeError(f"{owner}: the {role} feature map must be a torch.Tensor, got {type(x).__name__}.")
    if student.dim() != 4 or teacher.dim() != 4:
        raise ValueError(
            f"{owner}: expected 4-D feature maps (B, C, H, W), got student {tuple(student.shape)} and teacher "
            f"{tuple(teacher.shape)}. Hook a convolutional layer's output, not a pooled or flattened one."
        )
    if student.shape[0] != teacher.shape[0]:
        raise ValueError(
            f"{owner}: batch sizes differ, student {tuple(student.shape)} vs teacher {tuple(teacher.shape)}. "
            "Both networks must see the same batch."
        )
    if not (student.is_floating_point() and teacher.is_floating_point()):
        raise TypeError(
            f"{owner}: feature maps must be floating point, got student {student.dtype} and teacher {teacher.dtype}."
        )
    B = student.shape[0]
    H = min(student.shape[2], teacher.shape[2])
    W = min(student.shape[3], teacher.shape[3])
    n_points = H * W if scope == "image" else B * H * W
    if n_points < 2:
        raise ValueError(
            f"{owner}: a point set needs at least 2 local features, but student {tuple(student.shape)} and teacher "
            f"{tuple(teacher.shape)} align to {H}x{W} positions (scope={scope!r}, batch {B}). Hook an earlier layer "
            "with a larger feature map, or use scope 'batch'."
        )
    dtype = torch.float64 if torch.float64 in (student.dtype, teacher.dtype) else torch.float32
    s = student.to(dtype)
    t = teacher.detach().to(dtype)
    if s.shape[2:] != (H, W):
        s = F.adaptive_avg_pool2d(s, (H, W))
    if t.shape[2:] != (H, W):
        t = F.adaptive_avg_pool2d(t, (H, W))
    s = s.flatten(2).transpose(1, 2)  # (B, N, Cs); point n is position (n // W, n % W)
    t = t.flatten(2).transpose(1, 2)
    N = H * W
    if max_points is not None and N > max_points:
        gen_device = generator.device if generator is not None else torch.device("cpu")
        idx = torch.randperm(N, generator=generator, device=gen_device)[:max_points].to(s.device)
        s = s.index_select(1, idx)
        t = t.index_select(1, idx)
    if scope == "batch":
        s = s.reshape(1, -1, s.shape[-1])
        t = t.reshape(1, -1, t.shape[-1])
    return s, t


def pairwise_sq_distances(points: Tensor) -> Tensor:
    """Squared Euclidean distances within each point set.

    ``Q[i, j] = ||x_i||^2 + ||x_j||^2 - 2 <x_i, x_j>``, clamped at 0 (the expansion can round below zero).

    Args:
        points: ``(S, n, C)`` point sets.

    Returns:
        ``(S, n, n)`` squared distances; the diagonal is not meaningful and callers mask it.
    """
    sq_norms = points.pow(2).sum(-1)
    gram = torch.bmm(points, points.transpose(1, 2))
    return (sq_norms.unsqueeze(2) + sq_norms.unsqueeze(1) - 2.0 * gram).clamp_min(0.0)


def normalized_distances(points: Tensor) -> Tensor:
    """Distances divided by their mean over ``i != j`` in each set.

    ``D = sqrt(Q + 1e-12)``, ``s = mean_{i != j} D[i, j]``, ``Dn = D / max(s, 1e-12)``.

    Args:
        points: ``(S, n, C)`` point sets with ``n >= 2``.

    Returns:
        ``(S, n, n)`` normalised distances. The diagonal holds ``sqrt(1e-12) / s`` and must be masked.
    """
    n = points.shape[1]
    dist = (pairwise_sq_distances(points) + _DIST_EPS).sqrt()
    off_diag_sum = dist.sum((1, 2)) - dist.diagonal(dim1=1, dim2=2).sum(-1)
    scale = (off_diag_sum / (n * (n - 1))).clamp_min(_SCALE_EPS)
    return dist / scale[:, None, None]


def _diagonal_mask(n: int, device: torch.device) -> Tensor:
    return torch.eye(n, dtype=torch.bool, device=device)


def _teacher_neighbors(dn_t: Tensor, k: int, diag: Tensor) -> Tensor:
    """Indices ``(S, n, k)`` of each point's ``k`` nearest instructor neighbours, itself excluded."""
    with torch.no_grad():
        return dn_t.masked_fill(diag, float("inf")).topk(k, dim=-1, largest=False).indices


def _reduce(per_set: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return per_set.mean()
    if reduction == "sum":
        return per_set.sum()
    return per_set


def _geometric_loss(
    owner: str,
    per_set_fn: Callable[[Tensor, Tensor], Tensor],
    student: Tensor,
    teacher: Tensor,
    *,
    max_points: int | None,
    scope: str,
    reduction: str,
    generator: torch.Generator | None,
) -> Tensor:
    """Shared frame: validate, build point sets with autocast off, apply ``per_set_fn``, reduce."""
    check_common(owner, max_points=max_points, scope=scope, reduction=reduction, generator=generator)
    device_type = student.device.type if isinstance(student, Tensor) else "cpu"
    # Geometry must not run in fp16/bf16: the distance expansion cancels catastrophically at low precision.
    with torch.autocast(device_type=device_type, enabled=False):
        s, t = point_sets(student, teacher, max_points=max_points, scope=scope, generator=generator, owner=owner)
        return _reduce(per_set_fn(s, t), reduction)


# ----------------------------------------------------------------------------------------------------------------
# The three losses.
# ----------------------------------------------------------------------------------------------------------------


def local_distance_loss(
    student: Tensor,
    teacher: Tensor,
    *,
    neighbors: int | None = 8,
    max_points: int | None = None,
    scope: str = "image",
    reduction: str = "mean",
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Huber penalty on normalised distances along the instructor's kNN graph.

    For one point set of ``n`` points with ``k = min(neighbors, n - 1)``:

    .. math::
        L = \frac{1}{nk} \sum_i \sum_{j \in K(i)} \mathrm{huber}(Dn_s[i,j] - Dn_t[i,j]),\quad
        \mathrm{huber}(x) = \begin{cases} x^2/2 & |x| < 1 \\ |x| - 1/2 & \text{else} \end{cases}

    ``K(i)`` are the ``k`` nearest instructor neighbours of ``i``; with ``neighbors=None`` it is every
    ``j != i`` and the factor is ``1/(n(n-1))``.

    Args:
        student: ``(B, Cs, Hs, Ws)`` student feature map.
        teacher: ``(B, Ct, Ht, Wt)`` instructor feature map (detached).
        neighbors: neighbourhood size ``k``, or ``None`` for all pairs.
        max_points: sample this many positions per image when ``H*W`` is larger.
        scope: ``"image"`` or ``"batch"``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` over the point sets.
        generator: random generator for the sampling.

    Returns:
        A scalar, or ``(B,)`` / ``(1,)`` per-set values with ``reduction="none"``.
    """
    owner = "local_distance_loss"
    check_neighbors(owner, neighbors, allow_none=True)

    def per_set(s: Tensor, t: Tensor) -> Tensor:
        n = s.shape[1]
        diag = _diagonal_mask(n, s.device)
        dn_s, dn_t = normalized_distances(s), normalized_distances(t)
        if neighbors is None:
            err = F.huber_loss(dn_s, dn_t, reduction="none", delta=1.0).masked_fill(diag, 0.0)
            return err.sum((1, 2)) / (n * (n - 1))
        k = min(neighbors, n - 1)
        idx = _teacher_neighbors(dn_t, k, diag)
        err = F.huber_loss(dn_s.gather(2, idx), dn_t.gather(2, idx), reduction="none", delta=1.0)
        return err.sum((1, 2)) / (n * k)

    return _geometric_loss(
        owner, per_set, student, teacher, max_points=max_points, scope=scope, reduction=reduction, generator=generator
    )


def neighbor_kl_loss(
    student: Tensor,
    teacher: Tensor,
    *,
    bandwidth: float = 0.5,
    max_points: int | None = None,
    scope: str = "image",
    reduction: str = "mean",
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""KL divergence between instructor and student neighbourhood distributions.

    Each network uses its own normalised distances, so ``bandwidth`` means the same in both:

    .. math::
        P[j|i] = \mathrm{softmax}_{j \ne i}\left(-Dn[i,j]^2 / \mathrm{bandwidth}\right),\qquad
        L = \frac{1}{n} \sum_i \sum_{j \ne i} P_t[j|i] \left(\log P_t[j|i] - \log P_s[j|i]\right)

    Args:
        student: ``(B, Cs, Hs, Ws)`` student feature map.
        teacher: ``(B, Ct, Ht, Wt)`` instructor feature map (detached).
        bandwidth: kernel width on the normalised scale (mean distance 1).
        max_points: sample this many positions per image when ``H*W`` is larger.
        scope: ``"image"`` or ``"batch"``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` over the point sets.
        generator: random generator for the sampling.

    Returns:
        A scalar, or ``(B,)`` / ``(1,)`` per-set values with ``reduction="none"``.
    """
    owner = "neighbor_kl_loss"
    check_positive(owner, "bandwidth", bandwidth)

    def per_set(s: Tensor, t: Tensor) -> Tensor:
        n = s.shape[1]
        diag = _diagonal_mask(n, s.device)
        log_p_s = _masked_log_softmax(-normalized_distances(s).pow(2) / bandwidth, diag)
        log_p_t = _masked_log_softmax(-normalized_distances(t).pow(2) / bandwidth, diag)
        return (log_p_t.exp() * (log_p_t - log_p_s)).sum((1, 2)) / n

    return _geometric_loss(
        owner, per_set, student, teacher, max_points=max_points, scope=scope, reduction=reduction, generator=generator
    )


def neighbor_rank_loss(
    student: Tensor,
    teacher: Tensor,
    *,
    neighbors: int = 8,
    temperature: float = 0.1,
    max_points: int | None = None,
    scope: str = "image",
    reduction: str = "mean",
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""KL divergence from the uniform distribution on the instructor's kNN set to the student's soft choice.

    .. math::
        q[j|i] = \mathrm{softmax}_{j \ne i}\left(-Dn_s[i,j] / T\right),\qquad
        L = \frac{1}{n} \sum_i \left(-\log k - \frac{1}{k} \sum_{j \in K(i)} \log q[j|i]\right) \ge 0

    Args:
        student: ``(B, Cs, Hs, Ws)`` student feature map.
        teacher: ``(B, Ct, Ht, Wt)`` instructor feature map (detached).
        neighbors: neighbourhood size ``k`` (an integer; ``k = min(neighbors, n - 1)``).
        temperature: softness ``T`` of the student's neighbour choice.
        max_points: sample this many positions per image when ``H*W`` is larger.
        scope: ``"image"`` or ``"batch"``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` over the point sets.
        generator: random generator for the sampling.

    Returns:
        A scalar, or ``(B,)`` / ``(1,)`` per-set values with ``reduction="none"``.
    """
    owner = "neighbor_rank_loss"
    check_neighbors(owner, neighbors, allow_none=False)
    check_positive(owner, "temperature", temperature)

    def per_set(s: Tensor, t: Tensor) -> Tensor:
        n = s.shape[1]
        k = min(neighbors, n - 1)
        diag = _diagonal_mask(n, s.device)
        idx = _teacher_neighbors(normalized_distances(t), k, diag)
        log_q = _masked_log_softmax(-normalized_distances(s) / temperature, diag)
        mean_log_q = log_q.gather(2, idx).mean(-1)  # (S, n)
        return (-math.log(k) - mean_log_q).mean(-1)

    return _geometric_loss(
        owner, per_set, student, teacher, max_points=max_points, scope=scope, reduction=reduction, generator=generator
    )


def _masked_log_softmax(logits: Tensor, diag: Tensor) -> Tensor:
    """``log_softmax`` over ``j != i``; the diagonal is excluded and set to 0 so ``0 * log 0`` never appears."""
    return logits.masked_fill(diag, float("-inf")).log_softmax(-1).masked_fill(diag, 0.0)

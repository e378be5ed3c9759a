"""The fused, memory-bounded kernel every loss runs on: row blocks, exact gradients computed in the forward pass.

Autograd over the dense (n, n) pipeline keeps several n x n intermediates per network until backward (a 32x32
stage at batch 128 holds 512 MiB per matrix). Instead, ``_FusedSetLoss`` computes each set's value *and* its exact
gradient w.r.t. the student points in the forward pass, walking the distance matrices in row blocks, and saves
only that gradient (the size of the student points) for backward. Nothing is recomputed in backward; peak extra
memory is a few matrices of one block, bounded by ``chunk_size``.

On CPU, a loss that defines ``native_block`` runs on the native C++ kernels instead wherever the blocks hold whole
sets (:mod:`.native`, docs/performance.md); the block kernel here is the path everywhere else.

A loss plugs in as a :class:`BlockLoss`: it says what one block contributes (values, ``dL/dQ`` pair coefficients,
the scale's share); :class:`Blocks` owns the blocks, the accumulators and the block geometry. The gradient is the
derivative of exactly the forward computation (same expansion, same clamp, same eps), derived by hand:

  Q_ij = |x_i|^2 + |x_j|^2 - 2 <x_i, x_j>,  A = max(Q, 0) + eps,  D = sqrt(A),  s = mean_{i != j} D.
  dQ_ij/dx_i = 2 (x_i - x_j),  dQ_ij/dx_j = 2 (x_j - x_i);  dD/dQ = [Q >= 0] / (2 D)  (torch's clamp_min rule).
  With C = dL/dQ on a row block:  grad[rows] += 2 (rowsum(C) x_rows - C X),  grad += 2 (colsum(C) X - C^T x_rows).
  ds/dx_i = 2 / (n (n - 1)) * sum_j W_ij (x_i - x_j) with W = [Q >= 0] / D off the diagonal (W is symmetric).
  dL/ds is only known once every block is done, so grad = direct part + dL/ds * ds/dx at the end.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from . import native
from .checks import check_chunk_size, check_common
from .compiled import block_function
from .geometry import AUTO_BLOCK_ENTRIES, DIST_EPS, SCALE_EPS, point_sets, reduce, rescale_overflowing

__all__ = [
    "BlockLoss",
    "Blocks",
    "block_diag",
    "block_distances",
    "fill_diag",
    "geometric_loss",
    "inv_distances",
    "pair_grad",
    "scale_grad",
    "set_values",
    "sq_block",
]


Augmented = tuple[Tensor, Tensor]  # (points, squared norms)
Side = tuple[Tensor, Tensor, Tensor, Tensor]  # one network on a row block: rows, their norms, all points, norms
Block = tuple[slice, slice]  # (sets, set-local rows)


def row_blocks(num_sets: int, n: int, chunk_size: int | None) -> list[Block]:
    """Cover the ``num_sets * n`` rows by blocks ``(sets, rows)`` of at most ``max(chunk_size, n)`` rows.

    ``chunk_size >= n`` groups ``chunk_size // n`` whole sets per block; a smaller one splits each set's rows.
    ``None`` picks the rows so that one block holds about ``AUTO_BLOCK_ENTRIES`` distances.
    """
    rows = chunk_size if chunk_size is not None else max(1, AUTO_BLOCK_ENTRIES // n)
    if rows >= n:
        per = rows // n
        return [(slice(a, min(a + per, num_sets)), slice(0, n)) for a in range(0, num_sets, per)]
    return [(slice(a, a + 1), slice(r, min(r + rows, n))) for a in range(num_sets) for r in range(0, n, rows)]


def block_diag(m: Tensor, start: int | slice) -> Tensor:
    """View of the entries ``(i, i)`` of a row block whose first row is set-local row ``start`` (or ``rows.start``)."""
    return m.diagonal(offset=start.start if isinstance(start, slice) else start, dim1=1, dim2=2)


def fill_diag(m: Tensor, start: int, value: float) -> Tensor:
    """``m`` with its block diagonal (see :func:`block_diag`) set to ``value``: in place when eager; compiled, as a
    mask the compiler fuses into the producer (an in-place diagonal write would cost it a full extra pass)."""
    if torch.compiler.is_compiling():
        rows = torch.arange(m.shape[1], device=m.device).unsqueeze(1) + start
        return torch.where(rows == torch.arange(m.shape[2], device=m.device), value, m)
    block_diag(m, start).fill_(value)
    return m


# Pure per-block helpers: the losses' block functions (compiled or eager, see .compiled) are built from these.


def sq_block(side: Side) -> Tensor:
    """Unclamped squared distances ``(b, r, n)`` of a block's rows to every point of their sets: one fused bmm."""
    x_rows, sq_rows, x_all, sq_all = side
    q = torch.baddbmm(sq_rows.unsqueeze(2), x_rows, x_all.transpose(1, 2), alpha=-2.0)
    return q.add_(sq_all.unsqueeze(1))


def block_distances(side: Side, start: int) -> Tensor:
    """``D = sqrt(max(Q, 0) + eps)`` of a row block, with the diagonal set to 0."""
    return fill_diag(sq_block(side).clamp_min_(0.0).add_(DIST_EPS).sqrt_(), start, 0.0)


def inv_distances(d: Tensor, negative: Tensor, start: int) -> Tensor:
    """``W = [Q >= 0] / D`` with a zero diagonal (``d`` has a zero diagonal, so its reciprocal is inf there)."""
    return fill_diag(d.reciprocal().masked_fill_(negative, 0.0), start, 0.0)


def pair_grad(c: Tensor, x_rows: Tensor, x_all: Tensor) -> tuple[Tensor, Tensor]:
    """``d/dx sum_ij c_ij Q_ij`` of a row block, as ``(rows' part, all points' part)`` (``c``: zero diagonal)."""
    rows_part = (c.sum(2, keepdim=True) * x_rows - torch.bmm(c, x_all)).mul_(2.0)
    all_part = (c.sum(1).unsqueeze(-1) * x_all - torch.bmm(c.transpose(1, 2), x_rows)).mul_(2.0)
    return rows_part, all_part


def scale_grad(w: Tensor, x_rows: Tensor, x_all: Tensor) -> Tensor:
    """``ds/dx_rows`` of a row block given ``w = [Q >= 0] / D`` on it (zero diagonal)."""
    n = x_all.shape[1]
    return (w.sum(2, keepdim=True) * x_rows - torch.bmm(w, x_all)).mul_(2.0 / (n * (n - 1)))


@block_function(cpu_auto=True)
def _distance_sums(side: Side, start: int) -> Tensor:
    """Per-set sums of a row block's off-diagonal distances."""
    return block_distances(side, start).sum((1, 2))


class Blocks:
    """The row blocks of one evaluation, their geometry, and the accumulators the losses add to.

    Attributes:
        s, t: centred ``(S, n, C)`` student and instructor points; ``aug_s``, ``aug_t`` add their squared norms.
        blocks: the ``(sets, rows)`` blocks, in order.
        need_grad: whether gradients are wanted (otherwise ``grad`` and ``vdir`` are ``None``).
        value: ``(S,)`` per-set values. dscale: ``(S,)`` ``dL/ds`` of the student's scale.
        grad: the direct part of ``dL/dx``. vdir: ``ds/dx``. Both through :meth:`add`.
        device: the points' device type, for :func:`~geokt_plugin.losses.compiled.block_function` calls.
    """

    def __init__(self, s: Tensor, t: Tensor, chunk_size: int | None, need_grad: bool) -> None:
        self.s, self.t = s, t
        self.num_sets, self.n = s.shape[0], s.shape[1]
        self.blocks = row_blocks(self.num_sets, self.n, chunk_size)
        self.need_grad = need_grad
        self.device = s.device.type
        self.aug_s: Augmented = (s, s.pow(2).sum(-1))
        self.aug_t: Augmented = (t, t.pow(2).sum(-1))
        self.value = s.new_zeros(self.num_sets)
        self.dscale = s.new_zeros(self.num_sets)
        self.grad = torch.zeros_like(s) if need_grad else None
        self.vdir: Tensor | None = None  # allocated by the first add(vdir=...): the native kernels never need it

    @staticmethod
    def side(aug: Augmented, sets: slice, rows: slice) -> Side:
        """``(x_rows, |x_rows|^2, x_all, |x_all|^2)`` of one network on a row block: a block function's input."""
        x, sq = aug
        return x[sets, rows], sq[sets, rows], x[sets], sq[sets]

    def sq(self, aug: Augmented, sets: slice, rows: slice) -> Tensor:
        """Unclamped squared distances ``(b, r, n)`` of a row block to every point of its sets."""
        return sq_block(self.side(aug, sets, rows))

    def distances(self, aug: Augmented, sets: slice, rows: slice) -> Tensor:
        """``D = sqrt(max(Q, 0) + eps)`` of a row block, with the diagonal set to 0."""
        return block_distances(self.side(aug, sets, rows), rows.start)

    def clamped_pair(self, sets: slice, rows: slice) -> tuple[Tensor, Tensor | None, Tensor]:
        """``(A_s, [Q_s < 0], A_t)`` of a row block, ``A = max(Q, 0) + eps = D^2``; the mask only with gradients."""
        q_s = self.sq(self.aug_s, sets, rows)
        negative = q_s < 0 if self.need_grad else None
        a_s = q_s.clamp_min_(0.0).add_(DIST_EPS)
        return a_s, negative, self.sq(self.aug_t, sets, rows).clamp_min_(0.0).add_(DIST_EPS)

    def add_pair_grad(self, sets: slice, rows: slice, c: Tensor) -> None:
        """``grad += d/dx sum_ij c_ij Q_ij`` for a row block (``c``: ``(b, r, n)``, zero diagonal, any symmetry)."""
        self.add(sets, rows, None, grad=pair_grad(c, self.s[sets, rows], self.s[sets]))

    def add_scale_grad(self, sets: slice, rows: slice, w: Tensor) -> None:
        """``vdir[rows] += ds/dx_rows`` given ``w = [Q >= 0] / D`` on the block (zero diagonal)."""
        self.add(sets, rows, None, vdir=scale_grad(w, self.s[sets, rows], self.s[sets]))

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a :func:`~geokt_plugin.losses.compiled.block_function` on this evaluation's device and set size."""
        return fn(self.device, self.n, *args)

    def scales(self, aug: Augmented) -> Tensor:
        """``s = max(mean_{i != j} D, 1e-12)`` per set, accumulated block by block."""
        total = aug[1].new_zeros(self.num_sets)
        for sets, rows in self.blocks:
            total[sets] += self.call(_distance_sums, self.side(aug, sets, rows), rows.start)
        return self.mean_scale(total)

    def mean_scale(self, off_diagonal_sum: Tensor) -> Tensor:
        """``max(sum / (n (n - 1)), 1e-12)``: the scale from a per-set sum of off-diagonal distances."""
        return (off_diagonal_sum / (self.n * (self.n - 1))).clamp_min(SCALE_EPS)

    def add(self, sets: slice, rows: slice, value: Tensor | None, dscale: Tensor | None = None,
            grad: tuple[Tensor, Tensor] | None = None, vdir: Tensor | None = None) -> None:
        """Add a block's contributions: per-set ``value`` and ``dscale``, ``grad`` from :func:`pair_grad` (rows'
        part, all points' part) and ``vdir`` from :func:`scale_grad`; ``None`` adds nothing."""
        if value is not None:
            self.value[sets] += value
        if dscale is not None:
            self.dscale[sets] += dscale
        if grad is not None:
            self.grad[sets, rows] += grad[0]
            self.grad[sets] += grad[1]
        if vdir is not None:
            if self.vdir is None:
                self.vdir = torch.zeros_like(self.s)
            self.vdir[sets, rows] += vdir

    def result(self) -> tuple[Tensor, Tensor | None]:
        """Per-set values and, with gradients, ``dL/dx = grad + dL/ds * ds/dx``."""
        if self.grad is None or self.vdir is None:
            return self.value, self.grad
        return self.value, self.grad.add_(self.dscale[:, None, None] * self.vdir)


class BlockLoss(ABC):
    """One loss on the blocks: what each block adds to the values and gradients of :class:`Blocks`.

    The kernel calls ``prepare()``, ``block(sets, rows)`` for every block, ``finish()``, then, when gradients are
    needed and ``second_pass`` is true, ``grad_block(sets, rows)`` for every block. A loss whose gradient needs
    per-row or per-set totals (a kNN gather, a ratio of row sums) collects them in the first pass and adds the
    gradient in the second. Per-set data that does not change between blocks (scales, instructor neighbourhoods
    or masks) belongs in ``prepare``.
    """

    second_pass = False
    # A loss with a native kernel (:mod:`.native`) defines ``native_block(sets, block) -> per-set values`` for a
    # block of whole sets, ``block = (G_s, G_t, |x_s|^2, |x_t|^2)`` (Gram matrices and squared norms); with
    # gradients the kernel overwrites ``G_t`` by ``C'``, where ``dL/dX = -2 (C' X + C'^T X)``. The kernel runs it on CPU
    # wherever the blocks hold whole sets.
    native_block: Callable[[slice, tuple[Tensor, Tensor, Tensor, Tensor]], Tensor] | None = None

    def __init__(self, blocks: Blocks) -> None:
        self.blocks = blocks

    def prepare(self) -> None:  # noqa: B027  (an optional hook: empty by default)
        """Per-set data needed by every block. Default: nothing."""

    @abstractmethod
    def block(self, sets: slice, rows: slice) -> None:
        """First pass over one block: add to ``blocks.value`` and, where already known, to the gradients."""

    def finish(self) -> None:  # noqa: B027  (an optional hook: empty by default)
        """After the first pass. Default: nothing."""

    def grad_block(self, sets: slice, rows: slice) -> None:  # noqa: B027  (an optional hook: empty by default)
        """Second pass over one block (only with ``second_pass = True`` and gradients). Default: nothing."""


LossFactory = Callable[[Blocks], BlockLoss]


class _FusedSetLoss(torch.autograd.Function):
    """Per-set values whose gradient w.r.t. the student points was computed in the forward pass."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, s: Tensor, t: Tensor, make_loss: LossFactory, chunk_size: int | None, need_grad: bool,
        broken: Tensor,
    ) -> Tensor:
        blocks = Blocks(s, t, chunk_size, need_grad)
        loss = make_loss(blocks)
        whole = native.whole_set_blocks(blocks.num_sets, blocks.n, chunk_size)
        if whole is not None and loss.native_block is not None and native.wanted(blocks.device, s.dtype):
            _native_pass(blocks, loss, whole)
        else:
            _block_passes(blocks, loss)
        value, grad = blocks.result()
        value = value.masked_fill(broken, math.nan)  # unconditional: no device sync
        # A points-sized pass: on CPU, where asking costs no sync, only when a set is broken.
        if grad is not None and (grad.device.type != "cpu" or bool(broken.any())):
            grad.masked_fill_(broken[:, None, None], math.nan)
        if grad is not None:
            ctx.save_for_backward(grad)
        return value

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        (grad,) = ctx.saved_tensors
        return grad_out[:, None, None] * grad, None, None, None, None, None


def _block_passes(blocks: Blocks, loss: BlockLoss) -> None:
    """The block kernel: ``prepare``, a first pass, ``finish``, and the second pass where the loss has one."""
    loss.prepare()
    for sets, rows in blocks.blocks:
        loss.block(sets, rows)
    loss.finish()
    if blocks.need_grad and loss.second_pass:
        for sets, rows in blocks.blocks:
            loss.grad_block(sets, rows)


def _native_pass(blocks: Blocks, loss: BlockLoss, whole: list[slice]) -> None:
    """The native kernels: per block of whole sets, each network's Gram matrix by one batched matmul, the loss in
    C++, and ``grad += -2 (C' X + C'^T X)`` by two more (BLAS reads the transpose in place); no scale pass, no
    ``ds/dx``: the kernel folds the scale's share into ``C'``."""
    (points_s, sq_s), (points_t, sq_t) = blocks.aug_s, blocks.aug_t
    for sets in whole:
        x_s, x_t = points_s[sets], points_t[sets]
        g_s, g_t = torch.bmm(x_s, x_s.transpose(1, 2)), torch.bmm(x_t, x_t.transpose(1, 2))
        blocks.value[sets] += loss.native_block(sets, (g_s, g_t, sq_s[sets], sq_t[sets]))
        if blocks.grad is not None:
            blocks.grad[sets].baddbmm_(g_t, x_s, alpha=-2.0).baddbmm_(g_t.transpose(1, 2), x_s, alpha=-2.0)


def set_values(s: Tensor, t: Tensor, make_loss: LossFactory, chunk_size: int | None) -> Tensor:
    """Per-set values of the loss ``make_loss`` builds, for point sets ``s`` (student) and ``t`` (instructor)."""
    # Distances do not depend on a common translation. Centring each set first keeps the expansion's cancellation
    # relative to the spread of the points rather than to their (often large, post-ReLU) norm, and makes identical
    # points give Q = 0 up to the square of the centring residue: constant maps get a zero gradient, not noise / s^2.
    # A NaN or inf in a point of a set makes that set's value NaN (docs/losses.md, "Properties"): without this, the
    # instructor's points enter some losses only through a kNN or a tree, which a NaN leaves finite but wrong.
    # One pass per network gives both: a set's largest |x| is non-finite exactly when a point is (amax keeps NaN).
    peak_s, peak_t = s.detach().abs().amax(dim=(1, 2)), t.abs().amax(dim=(1, 2))
    broken = ~(peak_s.isfinite() & peak_t.isfinite())
    s, t = rescale_overflowing(s, peak_s), rescale_overflowing(t, peak_t)
    # Contiguous (S, n, C) points: every block's matmuls read them without a copy of their transposed layout.
    s, t = (s - s.mean(1, keepdim=True)).contiguous(), (t - t.mean(1, keepdim=True)).contiguous()
    need_grad = torch.is_grad_enabled() and s.requires_grad
    return _FusedSetLoss.apply(s, t, make_loss, chunk_size, need_grad, broken)


def geometric_loss(
    owner: str,
    make_loss: LossFactory,
    student: Tensor,
    teacher: Tensor,
    *,
    max_points: int | None,
    scope: str,
    reduction: str,
    generator: torch.Generator | None,
    chunk_size: int | None,
) -> Tensor:
    """The frame of every loss: validate, build point sets with autocast off, run the kernel, reduce.

    Args:
        owner: the loss function's name, for error messages.
        make_loss: builds the loss's :class:`BlockLoss` on the :class:`Blocks` of this call.
        student: ``(B, Cs, Hs, Ws)`` student feature map.
        teacher: ``(B, Ct, Ht, Wt)`` instructor feature map (detached).
        max_points: sample this many positions per image when ``H*W`` is larger.
        scope: ``"image"`` or ``"batch"``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` over the point sets.
        generator: random generator for the sampling.
        chunk_size: distance-matrix rows materialised at once (memory bound, see ``docs/performance.md``);
            ``None`` picks blocks of about 2**18 distances. The result does not depend on it.

    Returns:
        A scalar, or ``(B,)`` / ``(1,)`` per-set values with ``reduction="none"``.
    """
    check_chunk_size(owner, chunk_size)
    check_common(owner, max_points=max_points, scope=scope, reduction=reduction, generator=generator)
    device_type = student.device.type if isinstance(student, Tensor) else "cpu"
    # Geometry must not run in fp16/bf16: the distance expansion cancels catastrophically at low precision.
    with torch.autocast(device_type=device_type, enabled=False):
        s, t = point_sets(student, teacher, max_points=max_points, scope=scope, generator=generator, owner=owner)
        return reduce(set_values(s, t, make_loss, chunk_size), reduction)

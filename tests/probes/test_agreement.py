"""knn_agreement: a plain loop reference, exact on random and tied inputs; invariances; chance level; errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from geokt_plugin.probes import knn_agreement


def reference_agreement(student: np.ndarray, instructor: np.ndarray, k: int) -> float:
    """Straight from the definition, for maps of one spatial size and every position used (no sampling)."""
    B, _, H, W = student.shape
    n = H * W
    shared = 0
    for b in range(B):
        s = student[b].reshape(student.shape[1], n).T  # point p is position (p // W, p % W)
        t = instructor[b].reshape(instructor.shape[1], n).T
        for i in range(n):
            sets = []
            for x in (s, t):
                dist = [(float(np.sqrt(np.sum((x[i] - x[j]) ** 2))), j) for j in range(n) if j != i]
                sets.append({j for _, j in sorted(dist)[:k]})  # ties: the smaller index first
            shared += len(sets[0] & sets[1])
    return shared / (B * n * k)


def maps(seed: int, *shape: int, dtype=torch.float64) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.mark.parametrize(("seed", "Cs", "Ct", "H", "W", "k"), [(0, 3, 5, 3, 4, 2), (1, 4, 4, 4, 4, 5),
                                                                (2, 2, 6, 2, 5, 1), (3, 5, 3, 3, 3, 7)])
def test_knn_agreement_equals_the_loop_reference_on_random_maps(seed, Cs, Ct, H, W, k):
    s, t = maps(seed, 3, Cs, H, W), maps(seed + 100, 3, Ct, H, W)
    got = knn_agreement(s, t, k=k, max_points=None)
    assert got.dtype == torch.float64 and got.shape == ()
    assert float(got) == reference_agreement(s.numpy(), t.numpy(), k)


def test_knn_agreement_breaks_ties_by_index_as_the_reference():
    # small integers: distances are exact, so many are equal, and the result depends on the tie rule
    g = torch.Generator().manual_seed(5)
    s = torch.randint(0, 3, (2, 2, 4, 4), generator=g).double()
    t = torch.randint(0, 3, (2, 3, 4, 4), generator=g).double()
    for k in (1, 3, 6):
        assert float(knn_agreement(s, t, k=k, max_points=None)) == reference_agreement(s.numpy(), t.numpy(), k)
    assert knn_agreement(s, t, k=3, max_points=None) == knn_agreement(s, t, k=3, max_points=None)


def test_knn_agreement_aligns_sizes_by_pooling_and_samples_the_same_positions():
    s, t = maps(7, 2, 3, 8, 8), maps(8, 2, 4, 4, 4)
    pooled = F.adaptive_avg_pool2d(s, (4, 4))
    assert float(knn_agreement(s, t, k=3, max_points=None)) == reference_agreement(pooled.numpy(), t.numpy(), 3)
    # max_points: the positions of torch.randperm under the generator, one choice for both maps and all images
    idx = torch.randperm(16, generator=torch.Generator().manual_seed(3))[:6]

    def pick(x: torch.Tensor) -> torch.Tensor:
        return x.flatten(2)[:, :, idx].reshape(x.shape[0], x.shape[1], 1, 6)

    got = knn_agreement(s, t, k=2, max_points=6, generator=torch.Generator().manual_seed(3))
    assert float(got) == reference_agreement(pick(pooled).numpy(), pick(t).numpy(), 2)


def test_knn_agreement_of_float32_maps_matches_float64():
    s, t = maps(9, 2, 4, 5, 5), maps(10, 2, 4, 5, 5)
    assert knn_agreement(s.float(), t.float(), k=4) == knn_agreement(s, t, k=4)


@settings(max_examples=50, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**31 - 1), C=st.integers(1, 6), extra=st.integers(0, 3), H=st.integers(2, 5),
       k=st.integers(1, 3), log_scale=st.floats(-3.0, 3.0), shift=st.floats(-10.0, 10.0))
def test_knn_agreement_is_one_for_a_rotated_scaled_translated_copy(seed, C, extra, H, k, log_scale, shift):
    t = maps(seed, 2, C, H, 3)
    rotation, _ = torch.linalg.qr(maps(seed + 1, C + extra, C + extra))
    points = t.flatten(2).transpose(1, 2)  # (B, n, C); padded with zero channels, then rotated in C + extra
    padded = torch.cat([points, points.new_zeros(*points.shape[:2], extra)], dim=-1)
    moved = 2.0 ** log_scale * padded @ rotation.T + shift * maps(seed + 2, C + extra)
    s = moved.transpose(1, 2).reshape(2, C + extra, H, 3)
    assert float(knn_agreement(s, t, k=k, max_points=None)) == 1.0


def test_knn_agreement_of_independent_maps_is_k_over_n_minus_one_on_average():
    # 256 images x 16 points: the mean of 4096 overlaps, each 0..k; its standard error is about 0.005 here
    s, t = maps(11, 256, 4, 4, 4), maps(12, 256, 4, 4, 4)
    for k in (2, 5):
        got = float(knn_agreement(s, t, k=k))
        assert 0.0 <= got <= 1.0
        assert got == pytest.approx(k / 15, abs=0.03)


def test_knn_agreement_takes_no_gradient_and_leaves_its_inputs_alone():
    s = maps(13, 2, 3, 4, 4).requires_grad_(True)
    t = maps(14, 2, 3, 4, 4)
    before = s.detach().clone()
    got = knn_agreement(s, t, k=3)
    assert not got.requires_grad and got.grad_fn is None
    assert torch.equal(s.detach(), before)


def test_knn_agreement_errors_name_the_argument():
    s, t = maps(0, 2, 3, 4, 4), maps(1, 2, 3, 4, 4)
    with pytest.raises(ValueError, match=r"knn_agreement: k must be an integer >= 1, got 0\. Use a positive"):
        knn_agreement(s, t, k=0)
    with pytest.raises(TypeError, match=r"knn_agreement: k must be an integer >= 1, got 2.5 \(float\)"):
        knn_agreement(s, t, k=2.5)
    with pytest.raises(ValueError, match=r"knn_agreement: k must be smaller than the 16 points per image, got k=16 "
                                         r".*align to 4x4 positions, max_points=None\)\. Use k <= 15"):
        knn_agreement(s, t, k=16, max_points=None)
    with pytest.raises(ValueError, match=r"k must be smaller than the 5 points per image, got k=5 .*max_points=5"):
        knn_agreement(s, t, k=5, max_points=5)
    with pytest.raises(ValueError, match=r"knn_agreement: student must be a 4-D feature map \(B, C, H, W\), got "
                                         r"shape \(2, 3, 16\)"):
        knn_agreement(s.flatten(2), t)
    with pytest.raises(ValueError, match=r"knn_agreement: instructor must be a 4-D feature map .* got shape \(2, 3\)"):
        knn_agreement(s, t[:, :, 0, 0])
    with pytest.raises(ValueError, match=r"knn_agreement: student and instructor batch sizes differ, student "
                                         r"\(2, 3, 4, 4\) vs instructor \(1, 3, 4, 4\)"):
        knn_agreement(s, t[:1])
    with pytest.raises(TypeError, match=r"knn_agreement: instructor must be a torch.Tensor feature map, got list"):
        knn_agreement(s, [1.0])
    with pytest.raises(ValueError, match=r"knn_agreement: max_points must be None or an integer >= 2, got 1"):
        knn_agreement(s, t, k=1, max_points=1)

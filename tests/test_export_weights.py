"""Offline weight quantization and smoothing factors."""

import numpy as np
import pytest

from ilsim.errors import InputError
from ilsim.export.smoothing import smoothing_factors
from ilsim.export.weights import quantize_weight


@pytest.mark.parametrize("bits", [2, 3, 4, 6, 8])
def test_weight_codes_in_range_and_reconstruction_error_within_half_step(bits):
    rng = np.random.default_rng(bits)
    w = rng.standard_normal((24, 40)) * rng.uniform(0.01, 2.0, size=(24, 1))
    qw = quantize_weight(w, bits)
    levels = (1 << bits) - 1
    assert qw.q.dtype == np.uint8 and qw.q.max() <= levels and qw.zp.min() >= 0 and qw.zp.max() <= levels
    assert qw.m.max() < 1 << 16 and qw.m.max() >= 1 << 15  # the shared shift is as large as allowed
    step = qw.m / 2.0 ** qw.shift
    err = np.abs(qw.dequantize() - w)
    # clipping may cut the largest |w| per row by up to 50%; everything inside the clip range is
    # within half a step plus the dyadic scale error (relative 2^-16 of |q - zp| <= 2^bits steps)
    inside = err <= step[:, None] * (0.5 + 2.0 ** (bits - 15)) + 1e-12
    clipped_max = np.abs(w).max(axis=1, keepdims=True) * 0.5
    assert np.all(inside | (np.abs(w) >= clipped_max))


def test_clipping_search_never_does_worse_than_no_clipping():
    rng = np.random.default_rng(0)
    w = rng.standard_t(df=2, size=(16, 64))  # heavy tails: clipping helps
    best = quantize_weight(w, 3)
    plain = quantize_weight(w, 3, clip_grid=(1.0,))
    assert ((best.dequantize() - w) ** 2).sum() <= ((plain.dequantize() - w) ** 2).sum() + 1e-9


def test_all_zero_channels_and_bad_weights():
    w = np.zeros((3, 5))
    w[1] = 1.0
    qw = quantize_weight(w, 4)
    assert np.all(qw.dequantize()[[0, 2]] == 0)
    with pytest.raises(InputError, match="NaN or Inf"):
        quantize_weight(np.array([[1.0, np.nan]]), 4, name="layers.0.q_proj")
    with pytest.raises(InputError, match="bits must be in"):
        quantize_weight(np.ones((2, 2)), 9)


def test_smoothing_preserves_the_product_and_balances_ranges():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((32, 8)) * np.array([1, 1, 50, 1, 1, 1, 0.1, 1])
    w = rng.standard_normal((6, 8))
    s = smoothing_factors(np.abs(x).max(axis=0), [w], alpha=0.5)
    assert np.allclose((x / s) @ (w * s).T, x @ w.T)
    ratio = np.abs(x / s).max(axis=0) / np.abs(w * s).max(axis=0)
    assert np.allclose(ratio, 1.0)  # alpha = 0.5 equalises the two maxima per channel
    with pytest.raises(InputError, match="channels"):
        smoothing_factors(np.ones(7), [w])

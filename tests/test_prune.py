"""Pruning (ilsim/export/prune.py, SparseGPT in ilsim/export/gptq.py): masks hit their sparsity
exactly, pruned weights are stored as exact zeros, SparseGPT's codes and mask are the textbook
algorithm's on the stored grid, and pruning with the Hessian loses less than pruning by magnitude."""

import numpy as np
import pytest

from ilsim.errors import InputError
from ilsim.export.gptq import gptq_quantize_weight, sparsegpt_quantize_weight
from ilsim.export.prune import (Sparsity, effective_bits, group_mask, lowest_mask, parse_sparsity, prune_count,
                                wanda_mask)
from ilsim.export.weights import quantize_weight
from test_gptq import _hessian, _layer, _output_error

HALF = parse_sparsity(0.5, "unstructured")
TWO_FOUR = parse_sparsity(None, "2:4")


def test_patterns_parse_and_bad_ones_are_one_line_errors():
    assert HALF == Sparsity(0.5) and not HALF.structured and HALF.pattern == "unstructured"
    assert TWO_FOUR == Sparsity(0.5, 2, 4) and TWO_FOUR.pattern == "2:4"
    assert parse_sparsity(None, "1:4").fraction == 0.75
    for fraction, pattern, message in [(1.0, "unstructured", r"sparsity must be in \[0, 1\)"),
                                       (-0.1, "unstructured", r"sparsity must be in \[0, 1\)"),
                                       (0.5, "2-4", "must be 'unstructured' or 'N:M'"),
                                       (0.5, "4:4", r"needs 1 <= N < M <= 64"),
                                       (0.3, "2:4", "disagrees with pattern 2:4")]:
        with pytest.raises(InputError, match=message):
            parse_sparsity(fraction, pattern)


def test_lowest_and_group_masks_pick_the_lowest_with_ties_to_the_lowest_index():
    scores = np.array([[3.0, 1.0, 1.0, 2.0, 0.0, 5.0, 5.0, 5.0]])
    assert lowest_mask(scores, 3).tolist() == [[False, True, True, False, True, False, False, False]]
    assert group_mask(scores, 2, 4).tolist() == [[False, True, True, False, True, True, False, False]]
    assert prune_count(96, 0.5) == 48 and prune_count(10, 0.25) == 2     # 2.5 rounds half to even


@pytest.mark.parametrize("sparsity", [HALF, TWO_FOUR, parse_sparsity(None, "1:4"), parse_sparsity(0.3, "unstructured")])
def test_wanda_prunes_exactly_its_share_of_each_row_or_group_by_weight_times_input_norm(sparsity):
    x, w = _layer()
    h = _hessian(x)
    mask = wanda_mask(w, h, sparsity)
    if sparsity.structured:
        per_group = mask.reshape(w.shape[0], -1, sparsity.group).sum(axis=-1)
        assert np.all(per_group == sparsity.group - sparsity.keep)
    else:
        assert np.all(mask.sum(axis=1) == prune_count(w.shape[1], sparsity.fraction))
    score = np.abs(w) * np.sqrt(np.diag(h))
    # every kept weight of a row scores at least as high as every pruned one (unstructured)
    if not sparsity.structured:
        assert all(score[r][mask[r]].max() <= score[r][~mask[r]].min() for r in range(w.shape[0]))


@pytest.mark.parametrize("sparsity", [HALF, TWO_FOUR])
@pytest.mark.parametrize("bits", [2, 4, 8])
def test_sparsegpt_hits_the_sparsity_exactly_and_stores_pruned_weights_as_zeros(sparsity, bits):
    x, w = _layer(k=256)
    qw, mask = sparsegpt_quantize_weight(w, _hessian(x), bits, sparsity)
    assert mask.sum() == w.size // 2                                  # 0.5 of 48 x 256, exactly
    if sparsity.structured:
        assert np.all(mask.reshape(w.shape[0], -1, 4).sum(axis=-1) == 2)
    else:                                                             # per block of 128 columns
        assert mask[:, :128].sum() == mask[:, 128:].sum() == w.shape[0] * 64
    assert np.all(qw.q[mask] == np.broadcast_to(qw.zp[:, None], w.shape)[mask])
    assert np.all(qw.dequantize()[mask] == 0.0)


def _textbook_sparsegpt(w, h, qw, sparsity, percdamp=0.01, block=128):
    """The authors' loop (sparsegpt.py, right-looking: each column updates the rest of its block
    at once) on the grid ``qw`` stores; (codes, mask)."""
    w, h = np.array(w, dtype=np.float64), np.array(h, dtype=np.float64)
    k = h.shape[0]
    hinv = np.linalg.inv(h + percdamp * np.mean(np.diag(h)) * np.eye(k))
    u = np.linalg.cholesky((hinv + hinv.T) * 0.5).T
    scale, zp = qw.m / float(1 << qw.shift), qw.zp.astype(np.float64)
    levels = (1 << qw.bits) - 1
    q, mask = np.zeros(w.shape, dtype=np.uint8), np.zeros(w.shape, dtype=bool)
    for i1 in range(0, k, block):
        i2 = min(i1 + block, k)
        w1, err1 = w[:, i1:i2].copy(), np.zeros((w.shape[0], i2 - i1))
        d = np.diag(u)[i1:i2]
        m1 = np.zeros(w1.shape, dtype=bool)
        if not sparsity.structured:
            m1 = lowest_mask((w1 ** 2 / d[None, :] ** 2).T, prune_count(w1.size, sparsity.fraction)).T
        for i in range(i2 - i1):
            if sparsity.structured and i % sparsity.group == 0:
                tmp = w1[:, i:i + sparsity.group] ** 2 / d[None, i:i + sparsity.group] ** 2
                m1[:, i:i + sparsity.group] = group_mask(tmp, sparsity.keep, sparsity.group)
            code = np.where(m1[:, i], zp, np.clip(np.rint(w1[:, i] / scale) + zp, 0, levels))
            q[:, i1 + i] = code
            err = (w1[:, i] - (code - zp) * scale) / u[i1 + i, i1 + i]
            w1[:, i:] -= np.outer(err, u[i1 + i, i1 + i:i2])
            err1[:, i] = err
        mask[:, i1:i2] = m1
        w[:, i2:] -= err1 @ u[i1:i2, i2:]
    return q, mask


@pytest.mark.parametrize("sparsity", [HALF, TWO_FOUR])
@pytest.mark.parametrize("bits", [3, 8])
def test_sparsegpt_codes_and_mask_are_the_textbook_algorithms(sparsity, bits):
    x, w = _layer(k=256)
    h = _hessian(x)
    qw, mask = sparsegpt_quantize_weight(w, h, bits, sparsity)
    want_q, want_mask = _textbook_sparsegpt(w, h, qw, sparsity)
    assert np.array_equal(mask, want_mask) and np.array_equal(qw.q, want_q)


@pytest.mark.parametrize("sparsity", [HALF, TWO_FOUR])
@pytest.mark.parametrize("bits", [4, 8])
def test_pruning_with_the_hessian_loses_less_than_by_magnitude(sparsity, bits):
    """Output error at 50 %: SparseGPT < Wanda + GPTQ < Wanda + round-to-nearest < magnitude + RTN."""
    x, w = _layer(k=256)
    h = _hessian(x)
    sparsegpt = _output_error(x, w, sparsegpt_quantize_weight(w, h, bits, sparsity)[0])
    mask = wanda_mask(w, h, sparsity)
    wanda_gptq = _output_error(x, w, gptq_quantize_weight(w, h, bits, mask=mask))
    wanda_rtn = _output_error(x, w, quantize_weight(np.where(mask, 0.0, w), bits))
    magnitude = wanda_mask(w, np.eye(w.shape[1]), sparsity)
    magnitude_rtn = _output_error(x, w, quantize_weight(np.where(magnitude, 0.0, w), bits))
    assert sparsegpt < wanda_gptq < wanda_rtn < magnitude_rtn, (sparsegpt, wanda_gptq, wanda_rtn, magnitude_rtn)


def test_gptq_with_a_fixed_mask_stores_the_masked_weights_as_zeros():
    x, w = _layer(k=256)
    mask = wanda_mask(w, _hessian(x), TWO_FOUR)
    qw = gptq_quantize_weight(w, _hessian(x), 4, mask=mask, act_order=True)
    assert np.all(qw.dequantize()[mask] == 0.0)
    with pytest.raises(InputError, match="mask shape"):
        gptq_quantize_weight(w, _hessian(x), 4, mask=mask[:, :8])


def test_structured_pruning_needs_a_multiple_of_m_inputs():
    x, w = _layer(k=96)
    with pytest.raises(InputError, match=r"2:4 sparsity needs an input size that is a multiple of 4"):
        wanda_mask(w[:, :95], _hessian(x[:, :95]), TWO_FOUR, name="layers.0.q_proj")
    with pytest.raises(InputError, match="block_size 126 must be a multiple of 4"):
        sparsegpt_quantize_weight(w, _hessian(x), 4, TWO_FOUR, block_size=126)


def test_effective_bits_count_kept_codes_and_positions():
    assert effective_bits(4, 0, 100, HALF) == 4.0
    assert effective_bits(4, 50, 100, HALF) == 3.0           # 50 x 4 + a 100-bit mask
    assert effective_bits(4, 50, 100, TWO_FOUR) == 3.0       # 50 x (4 + 2) / 100
    assert effective_bits(8, 75, 100, parse_sparsity(None, "1:4")) == 2.5

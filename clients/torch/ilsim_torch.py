"""ilsim_torch: a PyTorch port of five ilsim integer operators, bit-exact with ilsim.

Operators (contracts in docs/spec/; the ilsim ``*_reference`` functions are the truth):

    matmul_accumulate(a, a_zp, b, b_zp, ...)          docs/spec/matmul.md
    di_matmul(a, a_zp, a_m, a_k, b, b_zp, b_m, b_k, ...)
    di_exp(x, m, k, ...)            order 1 and 2     docs/spec/exp.md
    di_softmax(x, m, k, ...)        order 1 and 2     docs/spec/softmax.md
    di_rmsnorm(x, m, k, gamma, gamma_k, ...)          docs/spec/norm.md
    quantize_rows(x, m_in, k_in, ...)                 docs/spec/quantize.md (used by the above)

Element paths are torch integer tensors (int64 intermediates; never float). Per-row / per-column
scale arithmetic (a few integers per row: folded scales, output scales, |t|, clip thresholds,
eps in row units, ms) runs on Python ints, as in ilsim, because some of it needs more than 64
bits. Every int64 intermediate stays within the bound the spec declares (noted at each step),
so nothing can wrap silently.

Device: every function follows the device of its first tensor input (CPU or CUDA); the optional
``device`` keyword overrides it. Results are torch tensors on that device; the NamedTuples have
the field names of ilsim's (RowQuant, ExpOut).

Errors: InputError (an input or attribute outside the contract) and WidthError (a declared width
overflows), both ValueError subclasses. Validation covers the width checks of the contracts
(accumulator, product, sum, |t|, output shifts, zero rows, ...); attribute range checks are
lighter than ilsim's (see clients/torch/README.md).
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import NamedTuple

import torch

__all__ = ["InputError", "WidthError", "RowQuant", "ExpOut", "div_round", "rshift_round",
           "quantize_rows", "matmul_accumulate", "di_matmul_wide", "di_matmul", "di_exp",
           "di_softmax", "di_rmsnorm"]

MAX_SHIFT = 63
ROUNDINGS = ("floor", "trunc", "half_up", "half_away", "half_even")
I64 = torch.int64


class InputError(ValueError):
    """An input or attribute outside the operator's contract."""


class WidthError(ValueError):
    """A value overflows its declared width."""


class RowQuant(NamedTuple):
    """real[r, j] = m[r] / 2^k[r] * (q[r, j] - zp[r])."""

    q: torch.Tensor
    zp: torch.Tensor
    m: torch.Tensor
    k: torch.Tensor


class ExpOut(NamedTuple):
    """y / t_abs ~= exp(x * m / 2^k)."""

    y: torch.Tensor
    t_abs: torch.Tensor


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------

def _mode(rounding) -> str:
    value = getattr(rounding, "value", rounding)
    if value not in ROUNDINGS:
        raise InputError(f"unknown rounding mode {rounding!r}; expected one of {ROUNDINGS}")
    return value


def _device(device, *values):
    if device is not None:
        return torch.device(device)
    for v in values:
        if isinstance(v, torch.Tensor):
            return v.device
    return torch.device("cpu")


def _t(value, device) -> torch.Tensor:
    """Any integer array-like (numpy, list, int, tensor) as an int64 tensor on ``device``."""
    if isinstance(value, torch.Tensor):
        if value.is_floating_point() or value.is_complex():
            raise InputError(f"expected an integer tensor, got {value.dtype}")
        return value.to(device=device, dtype=I64)
    out = torch.as_tensor(value, device=device)
    if out.is_floating_point() or out.is_complex() or out.dtype == torch.bool:
        raise InputError(f"expected integers, got {out.dtype}")
    return out.to(I64)


def _storage(bits: int, signed: bool) -> torch.dtype:
    """A torch dtype that holds every value of the width (uint16/uint32 widen: torch lacks them)."""
    if bits <= 8:
        return torch.int8 if signed else torch.uint8
    if bits <= 16:
        return torch.int16 if signed else torch.int32
    if bits <= 32:
        return torch.int32 if signed else I64
    return I64


def _width_range(bits: int, signed: bool) -> tuple[int, int]:
    return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)


def _check_width(x: torch.Tensor, bits: int, signed: bool, what: str) -> torch.Tensor:
    lo, hi = _width_range(bits, signed)
    if x.numel():
        bad = (x < lo) | (x > hi)
        if bool(bad.any()):
            idx = tuple(int(i) for i in torch.nonzero(bad)[0].tolist())
            raise WidthError(f"{what}{list(idx)} = {int(x[idx])} overflows "
                             f"{'signed' if signed else 'unsigned'} {bits} bits")
    return x


def _check_input(x: torch.Tensor, bits: int, signed: bool, what: str) -> None:
    lo, hi = _width_range(bits, signed)
    if x.numel() and (int(x.min()) < lo or int(x.max()) > hi):
        raise InputError(f"{what} is outside {'signed' if signed else 'unsigned'} {bits} bits")


def _int_attr(value, lo: int, hi: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) and not hasattr(value, "__index__"):
        raise InputError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if not lo <= value <= hi:
        raise InputError(f"{name} must be in [{lo}, {hi}], got {value}")
    return value


def _round_quotient(q, rem_nonzero, cmp_half, negative, mode: str):
    """Apply the rounding mode to a floor quotient q (cmp_half: sign(remainder - divisor/2))."""
    if mode == "floor":
        return q
    if mode == "trunc":
        return q + (rem_nonzero & negative).to(I64)
    up, tie = cmp_half > 0, cmp_half == 0
    if mode == "half_up":
        return q + (up | tie).to(I64)
    if mode == "half_away":
        return q + (up | (tie & ~negative)).to(I64)
    return q + (up | (tie & ((q & 1) == 1))).to(I64)  # half_even


def div_round(a: torch.Tensor, b: torch.Tensor, mode="half_up") -> torch.Tensor:
    """round(a / b) in ``mode`` for int64 a (|a| < 2^62) and b in (0, 2^62), broadcast.

    torch.div(rounding_mode="floor") is the floor quotient for negative a as well ("//" on
    tensors is also floor, but named explicitly here); the remainder is then in [0, b).
    """
    mode = _mode(mode)
    q = torch.div(a, b, rounding_mode="floor")
    rem = a - q * b                            # in [0, b): |q * b| <= |a| + b < 2^63
    cmp_half = torch.sign(rem - (b - rem))     # sign(2 rem - b) without forming 2 rem
    return _round_quotient(q, rem != 0, cmp_half, a < 0, mode)


def rshift_round(x: torch.Tensor, s: torch.Tensor, mode="half_up") -> torch.Tensor:
    """round(x / 2^s) in ``mode`` for int64 x (|x| < 2^62) and s in [0, 63], broadcast."""
    mode = _mode(mode)
    s = torch.clamp(s, 0, 63)
    q = torch.bitwise_right_shift(x, s)        # arithmetic shift: floor(x / 2^s)
    rem = x - torch.bitwise_left_shift(q, s)   # in [0, 2^s)
    half = torch.bitwise_left_shift(torch.ones_like(s), torch.clamp(s - 1, min=0))
    cmp_half = torch.where(s > 0, torch.sign(rem - half), torch.full_like(rem, -1))
    return _round_quotient(q, rem != 0, cmp_half, x < 0, mode)


# Python-int twins for the per-row / per-column scale arithmetic (may exceed 64 bits).

def _round_quotient_int(q: int, twice_rem: int, divisor: int, negative: bool, mode: str) -> int:
    if mode == "floor":
        return q
    if mode == "trunc":
        return q + 1 if (twice_rem and negative) else q
    if twice_rem != divisor:
        return q + 1 if twice_rem > divisor else q
    if mode == "half_up":
        return q + 1
    if mode == "half_away":
        return q if negative else q + 1
    return q + (q & 1)


def div_round_int(a: int, b: int, mode="half_up") -> int:
    q = a // b
    return _round_quotient_int(q, 2 * (a - q * b), b, a < 0, _mode(mode))


def rshift_round_int(x: int, s: int, mode="half_up") -> int:
    if s == 0:
        return x
    q = x >> s
    return _round_quotient_int(q, 2 * (x - (q << s)), 1 << s, x < 0, _mode(mode))


# ---------------------------------------------------------------------------------------------
# quantize_rows
# ---------------------------------------------------------------------------------------------

def _row_output_scale(m_in: int, k_in: int, value_range: int, levels: int, mbits: int,
                      row: int) -> tuple[int, int]:
    """(m', k') = round(m_in * R * 2^t / d) / 2^(k_in + t), t the largest with m' < 2^mbits."""
    num = m_in * value_range
    if num == 0:
        return 0, 0
    hi_m = 1 << mbits

    def rounded(t: int) -> int:
        return div_round_int(num << t, levels) if t >= 0 else div_round_int(num, levels << -t)

    t = mbits - 1 - (num.bit_length() - levels.bit_length())
    while rounded(t) >= hi_m:
        t -= 1
    while rounded(t + 1) < hi_m:
        t += 1
    if k_in + t > MAX_SHIFT:
        t = MAX_SHIFT - k_in
    if k_in + t < 0:
        raise WidthError(f"quantize_rows: output scale of row {row} is >= 2^{mbits}")
    m_out = rounded(t)
    if m_out == 0:
        raise WidthError(f"quantize_rows: output scale of row {row} rounds to 0")
    return m_out, k_in + t


def quantize_rows(x, m_in, k_in, *, bits: int, symmetric: bool = False, in_bits: int = 48,
                  mbits: int = 16, rounding="half_up", zero_rows: str = "error",
                  device=None) -> RowQuant:
    """Dynamic per-row quantization of x[..., N] (signed in_bits, in_bits + bits <= 62)."""
    dev = _device(device, x)
    mode = _mode(rounding)
    _int_attr(bits, 2, 16, "bits")
    _int_attr(mbits, 2, 30, "mbits")
    if not (2 <= in_bits and in_bits + bits <= 62):
        raise InputError("quantize_rows: in_bits + bits must be <= 62")
    if zero_rows not in ("error", "zero"):
        raise InputError(f"zero_rows must be 'error' or 'zero', got {zero_rows!r}")
    x = _t(x, dev)
    _check_input(x, in_bits, True, "quantize_rows x")
    shape = tuple(x.shape)
    flat = x.reshape(-1, shape[-1])
    rows = flat.shape[0]
    m_rows = torch.broadcast_to(_t(m_in, dev), shape[:-1]).reshape(-1).tolist()
    k_rows = torch.broadcast_to(_t(k_in, dev), shape[:-1]).reshape(-1).tolist()
    levels = (1 << (bits - 1)) - 1 if symmetric else (1 << bits) - 1
    if symmetric:
        lo = torch.zeros(rows, dtype=I64, device=dev)
        value_range = flat.abs().amax(dim=1)
    else:
        lo = torch.clamp(flat.amin(dim=1), max=0)
        value_range = torch.clamp(flat.amax(dim=1), min=0) - lo   # < 2^(in_bits+1)
    zero = value_range == 0
    if zero_rows == "error" and bool(zero.any()):
        r = int(torch.nonzero(zero)[0, 0])
        raise WidthError(f"quantize_rows: row {r} is all zeros (zero_rows='error')")
    safe = torch.where(zero, torch.ones_like(value_range), value_range)
    # x * d: |x| < 2^(in_bits-1), d < 2^bits, in_bits + bits <= 62: exact in int64
    zp = torch.zeros_like(lo) if symmetric else div_round(-lo * levels, safe, "half_up")
    q = div_round(flat * levels, safe[:, None], mode) + zp[:, None]
    if not symmetric:
        q = torch.clamp(q, 0, levels)
    q = torch.where(zero[:, None], torch.zeros_like(q), q)
    zp = torch.where(zero, torch.zeros_like(zp), zp)
    scales = [_row_output_scale(int(m_rows[r]), int(k_rows[r]), int(R), levels, mbits, r)
              for r, R in enumerate(value_range.tolist())]
    m_out = torch.tensor([s[0] for s in scales], dtype=I64, device=dev).reshape(shape[:-1])
    k_out = torch.tensor([s[1] for s in scales], dtype=I64, device=dev).reshape(shape[:-1])
    return RowQuant(q.reshape(shape).to(_storage(bits, symmetric)), zp.reshape(shape[:-1]), m_out, k_out)


# ---------------------------------------------------------------------------------------------
# matmul_accumulate, di_matmul
# ---------------------------------------------------------------------------------------------

def _int_matmul_nt(a: torch.Tensor, b: torch.Tensor, chunk_elems: int = 1 << 24) -> torch.Tensor:
    """sum_k a[i, k] * b[j, k] in int64 (exact while K * max|a| * max|b| < 2^63, checked by callers).

    CPU: torch.mm on int64. CUDA has no integer GEMM in torch, so a broadcast multiply-sum over row
    chunks is used there (a GPU kernel would use int8/int32 tensor-core MMA instead).
    """
    if a.device.type == "cpu":
        return torch.mm(a, b.t())
    return _int_matmul_nt_broadcast(a, b, chunk_elems)


def _int_matmul_nt_broadcast(a: torch.Tensor, b: torch.Tensor, chunk_elems: int = 1 << 24) -> torch.Tensor:
    """The device-agnostic path of :func:`_int_matmul_nt`: exact int64 multiply-sum over row chunks."""
    m, k = a.shape
    n = b.shape[0]
    out = torch.empty((m, n), dtype=I64, device=a.device)
    step = max(1, chunk_elems // max(1, n * k))
    for i in range(0, m, step):
        out[i:i + step] = (a[i:i + step, None, :] * b[None, :, :]).sum(dim=-1)
    return out


def _operands(a, a_zp, b, b_zp, a_bits, b_bits, a_signed, b_signed, acc_bits, dev):
    a_bits = _int_attr(a_bits, 2, 16, "a_bits")
    b_bits = _int_attr(b_bits, 2, 16, "b_bits")
    _int_attr(acc_bits, 2, 62, "acc_bits")
    a, a_zp, b, b_zp = (_t(v, dev) for v in (a, a_zp, b, b_zp))
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[1]:
        raise InputError(f"a [M, K] and b [N, K] must share K, got {tuple(a.shape)}, {tuple(b.shape)}")
    if tuple(a_zp.shape) != (a.shape[0],) or tuple(b_zp.shape) != (b.shape[0],):
        raise InputError("a_zp must be [M] and b_zp [N]")
    for v, bits, signed, name in ((a, a_bits, a_signed, "a"), (a_zp, a_bits, a_signed, "a_zp"),
                                  (b, b_bits, b_signed, "b"), (b_zp, b_bits, b_signed, "b_zp")):
        _check_input(v, bits, bool(signed), name)
    # K * (2^a_bits - 1) * (2^b_bits - 1) < 2^63 keeps every int64 partial sum exact
    if a.shape[1] * ((1 << a_bits) - 1) * ((1 << b_bits) - 1) >= 1 << 63:
        raise InputError("acc: the declared widths allow an int64 overflow for this K")
    return a, a_zp, b, b_zp


def _accumulate(a, a_zp, b, b_zp, acc_bits) -> torch.Tensor:
    a_diff = a - a_zp[:, None]                 # |a - a_zp| <= 2^a_bits - 1
    b_diff = b - b_zp[:, None]
    return _check_width(_int_matmul_nt(a_diff, b_diff), acc_bits, True, "acc")


def matmul_accumulate(a, a_zp, b, b_zp, *, a_bits: int, b_bits: int, a_signed: bool = False,
                      b_signed: bool = True, acc_bits: int = 32, device=None) -> torch.Tensor:
    """acc[i, j] = sum_k (a[i,k] - a_zp[i]) * (b[j,k] - b_zp[j]), signed acc_bits, checked."""
    dev = _device(device, a, b)
    a, a_zp, b, b_zp = _operands(a, a_zp, b, b_zp, a_bits, b_bits, a_signed, b_signed, acc_bits, dev)
    return _accumulate(a, a_zp, b, b_zp, acc_bits).to(_storage(acc_bits, True))


def _scale_vec(m, k, length, mbits, name, dev) -> tuple[list[int], list[int]]:
    m, k = _t(m, dev), _t(k, dev)
    if tuple(m.shape) != (length,) or tuple(k.shape) != (length,):
        raise InputError(f"{name}_m and {name}_k must have shape ({length},)")
    _check_input(m, mbits, False, f"{name}_m")
    if k.numel() and (int(k.min()) < 0 or int(k.max()) > MAX_SHIFT):
        raise InputError(f"{name}_k must be in [0, 63]")
    return m.tolist(), k.tolist()


def _wide(a, a_zp, a_m, a_k, b, b_zp, b_m, b_k, a_bits, b_bits, a_signed, b_signed, acc_bits, mbits,
          rounding, dev):
    mode = _mode(rounding)
    mbits = _int_attr(mbits, 2, 30, "mbits")
    acc_bits = _int_attr(acc_bits, 2, 62 - mbits, "acc_bits")
    a, a_zp, b, b_zp = _operands(a, a_zp, b, b_zp, a_bits, b_bits, a_signed, b_signed, acc_bits, dev)
    a_m, a_k = _scale_vec(a_m, a_k, a.shape[0], mbits, "a", dev)
    b_m, b_k = _scale_vec(b_m, b_k, b.shape[0], mbits, "b", dev)
    # per-column scale fold on Python ints: kref = min b_k, b_m' = round(b_m / 2^(b_k - kref))
    kref = min(b_k) if b_k else 0
    b_m_folded = [rshift_round_int(mj, kj - kref, mode) for mj, kj in zip(b_m, b_k)]
    k_out = [ka + kref for ka in a_k]
    for i, kv in enumerate(k_out):
        if kv > MAX_SHIFT:
            raise WidthError(f"output scale shift k[{i}] = {kv} exceeds 63")
    acc = _accumulate(a, a_zp, b, b_zp, acc_bits)
    # |acc| <= 2^(acc_bits-1), b_m' < 2^mbits, acc_bits + mbits <= 62: exact in int64
    p = _check_width(acc * torch.tensor(b_m_folded, dtype=I64, device=dev)[None, :],
                     acc_bits + mbits, True, "p")
    return p, torch.tensor(a_m, dtype=I64, device=dev), torch.tensor(k_out, dtype=I64, device=dev)


def di_matmul_wide(a, a_zp, a_m, a_k, b, b_zp, b_m, b_k, *, a_bits: int, b_bits: int,
                   a_signed: bool = False, b_signed: bool = True, acc_bits: int = 32, mbits: int = 16,
                   rounding="half_up", device=None):
    """(p, m, k) with real(a) @ real(b)^T ~= m[i] / 2^k[i] * p[i, j] (ilsim's WideOut fields)."""
    dev = _device(device, a, b)
    p, m, k = _wide(a, a_zp, a_m, a_k, b, b_zp, b_m, b_k, a_bits, b_bits, a_signed, b_signed,
                    acc_bits, mbits, rounding, dev)
    return p.to(_storage(acc_bits + mbits, True)), m, k


def di_matmul(a, a_zp, a_m, a_k, b, b_zp, b_m, b_k, *, a_bits: int, b_bits: int,
              a_signed: bool = False, b_signed: bool = True, acc_bits: int = 32, mbits: int = 16,
              rounding="half_up", out_bits: int = 8, out_symmetric: bool = False,
              zero_rows: str = "error", device=None) -> RowQuant:
    """DI-MatMul: di_matmul_wide, then quantize_rows(p, m, k, bits=out_bits, in_bits=acc_bits+mbits)."""
    dev = _device(device, a, b)
    _int_attr(out_bits, 2, 16, "out_bits")
    if _int_attr(mbits, 2, 30, "mbits") + _int_attr(acc_bits, 2, 62, "acc_bits") + out_bits > 62:
        raise InputError("acc_bits + mbits + out_bits must be <= 62")
    if zero_rows not in ("error", "zero"):
        raise InputError(f"zero_rows must be 'error' or 'zero', got {zero_rows!r}")
    p, m, k = _wide(a, a_zp, a_m, a_k, b, b_zp, b_m, b_k, a_bits, b_bits, a_signed, b_signed,
                    acc_bits, mbits, rounding, dev)
    return quantize_rows(p, m, k, bits=out_bits, symmetric=out_symmetric, in_bits=acc_bits + mbits,
                         mbits=mbits, rounding=rounding, zero_rows=zero_rows, device=dev)


# ---------------------------------------------------------------------------------------------
# di_exp
# ---------------------------------------------------------------------------------------------

ORDER2_C, ORDER2_A2 = 9, 87
ORDER2_T_BITS = (61 - ORDER2_C) // 2          # 26: order 2 needs |t| < 2^26


def exp_t_abs_int(m: int, k: int) -> int:
    """|t| = round_half_up(2^k / m_f), m_f = m + (m >> 1) - (m >> 4) (Python ints)."""
    return div_round_int(1 << k, m + (m >> 1) - (m >> 4))


def _t_abs_checked(m: int, k: int, out_bits: int, order: int) -> int:
    t_abs = exp_t_abs_int(m, k)
    if t_abs == 0:
        raise InputError(f"the scale {m}/2^{k} is too large for DI-Exp (|t| = 0)")
    if t_abs >= 1 << out_bits:
        raise WidthError(f"|t| = {t_abs} of scale {m}/2^{k} overflows uint{out_bits}")
    if order == 2 and t_abs >= 1 << ORDER2_T_BITS:
        raise WidthError(f"|t| = {t_abs} of scale {m}/2^{k}: order 2 needs |t| < 2^26")
    return t_abs


def exp_from_t(x: torch.Tensor, t_abs: torch.Tensor, order: int) -> torch.Tensor:
    """y ~= |t| * 2^(x / |t|) for int64 x in [-2^61, 0] and |t| in [1, 2^62) (order 2: < 2^26)."""
    q = torch.div(-x, t_abs, rounding_mode="floor")   # both >= 0: q = floor(x / t) >= 0
    r = x + q * t_abs                                  # in (t, 0]; q * |t| <= -x
    big = q >= 63
    qs = torch.clamp(q, max=62)
    if order == 1:
        # ((r >> 1) + |t|) >> q: (r >> 1) + |t| in [0, |t|], arithmetic shifts (floors)
        y = torch.bitwise_right_shift(torch.bitwise_right_shift(r, 1) + t_abs, qs)
        return torch.where(big, torch.zeros_like(y), y)
    # order 2: zero once |t| * P(f) / 2^q < 1/2, i.e. q >= 63 or (q >= 1 and |t| >> (q - 1) == 0)
    tiny = big | ((q >= 1) & (torch.bitwise_right_shift(t_abs, torch.clamp(qs - 1, min=0)) == 0))
    qs = torch.where(tiny, torch.zeros_like(qs), qs)   # q <= bits(|t|) <= 26 where used
    # numerator < 2^(2*26 + 9 + 1) and denominator |t| * 2^(9 + q) < 2^62: exact in int64
    numerator = (t_abs * t_abs * (1 << ORDER2_C) + r * t_abs * (1 << (ORDER2_C - 1))
                 + ORDER2_A2 * r * (t_abs + r))
    denominator = torch.bitwise_left_shift(t_abs, qs + ORDER2_C)
    y = torch.div(numerator + torch.bitwise_right_shift(denominator, 1), denominator, rounding_mode="floor")
    return torch.where(tiny, torch.zeros_like(y), y)


def di_exp(x, m, k, *, in_bits: int = 16, out_bits: int = 32, order: int = 1, device=None) -> ExpOut:
    """DI-Exp (I-LLM Algorithm 1) for x <= 0 with the real scale m / 2^k (broadcast against x)."""
    dev = _device(device, x, m, k)
    in_bits = _int_attr(in_bits, 2, 62, "in_bits")
    out_bits = _int_attr(out_bits, 2, 62, "out_bits")
    order = _int_attr(order, 1, 2, "order")
    x, m, k = _t(x, dev), _t(m, dev), _t(k, dev)
    _check_input(x, in_bits, True, "x")
    if x.numel() and int(x.max()) > 0:
        raise InputError("DI-Exp takes x <= 0")
    _check_input(m, 30, False, "m")
    if m.numel() and int(m.min()) < 1:
        raise InputError("a scale multiplier must be >= 1")
    if k.numel() and (int(k.min()) < 0 or int(k.max()) > MAX_SHIFT):
        raise InputError("k must be in [0, 63]")
    try:
        scale_shape = torch.broadcast_shapes(m.shape, k.shape)
        ok = torch.broadcast_shapes(scale_shape, x.shape) == x.shape
    except RuntimeError:
        ok = False
    if not ok:
        raise InputError("scale shapes must broadcast to x's shape")
    m_b, k_b = torch.broadcast_to(m, scale_shape), torch.broadcast_to(k, scale_shape)
    # |t| per scale on Python ints (2^k / m_f; 2^63 is beyond int64), checked against out_bits
    t_list = [_t_abs_checked(int(mm), int(kk), out_bits, order)
              for mm, kk in zip(m_b.reshape(-1).tolist(), k_b.reshape(-1).tolist())]
    t_abs = torch.tensor(t_list, dtype=I64, device=dev).reshape(scale_shape)
    y = exp_from_t(x, torch.broadcast_to(t_abs, x.shape), order)
    return ExpOut(y.to(_storage(out_bits, False)), t_abs)


# ---------------------------------------------------------------------------------------------
# di_softmax
# ---------------------------------------------------------------------------------------------

def _clip_fraction(clip):
    if clip is None:
        return None
    if isinstance(clip, bool) or not isinstance(clip, (int, Fraction)) and not hasattr(clip, "__index__"):
        raise InputError(f"clip must be a positive int or Fraction, got {clip!r}")
    c = Fraction(clip) if isinstance(clip, Fraction) else Fraction(int(clip))
    if c <= 0:
        raise InputError(f"clip must be > 0, got {clip}")
    return c


def di_softmax(x, m, k, *, in_bits: int = 16, clip=15, out_bits: int = 8, out_frac_bits: int = 8,
               mask=None, order: int = 1, sum_bits: int = 32, device=None) -> torch.Tensor:
    """DI-ClippedSoftmax over the last axis; p (uint out_bits, scale 2^-out_frac_bits)."""
    dev = _device(device, x, m, k)
    in_bits = _int_attr(in_bits, 2, 32, "in_bits")
    out_bits = _int_attr(out_bits, 2, 16, "out_bits")
    frac = _int_attr(out_frac_bits, 1, out_bits, "out_frac_bits")
    sum_bits = _int_attr(sum_bits, 2, 32, "sum_bits")
    order = _int_attr(order, 1, 2, "order")
    clip = _clip_fraction(clip)
    x = _t(x, dev)
    if x.dim() < 1:
        raise InputError("x must have at least one dimension")
    _check_input(x, in_bits, True, "x")
    shape = tuple(x.shape)
    n = shape[-1]
    if mask is None:
        keep = torch.ones(shape, dtype=torch.bool, device=dev)
    else:
        keep = torch.as_tensor(mask, device=dev)
        if keep.dtype != torch.bool:
            raise InputError("mask must be a bool tensor (True = keep)")
        keep = torch.broadcast_to(keep, shape)
    if bool((~keep.any(dim=-1)).any()):
        raise InputError("mask keeps no element of some row")
    m, k = _t(m, dev), _t(k, dev)
    _check_input(m, 30, False, "m")
    if m.numel() and int(m.min()) < 1:
        raise InputError("a scale multiplier must be >= 1")
    if k.numel() and (int(k.min()) < 0 or int(k.max()) > MAX_SHIFT):
        raise InputError("k must be in [0, 63]")
    try:
        m_rows = torch.broadcast_to(m, shape[:-1]).reshape(-1).tolist()
        k_rows = torch.broadcast_to(k, shape[:-1]).reshape(-1).tolist()
    except RuntimeError:
        raise InputError("m, k must be scalars or have the row shape x.shape[:-1]") from None
    # per-row constants on Python ints: |t| (uint sum_bits) and c_int = min(round(c 2^k / m), 2^in_bits)
    t_rows = [_t_abs_checked(int(mm), int(kk), sum_bits, order) for mm, kk in zip(m_rows, k_rows)]
    cap = 1 << in_bits
    if clip is None:
        c_rows = [cap] * len(m_rows)
    else:
        c_rows = [min(div_round_int(clip.numerator << int(kk), clip.denominator * int(mm)), cap)
                  for mm, kk in zip(m_rows, k_rows)]
    x2 = x.reshape(-1, n)
    keep2 = keep.reshape(-1, n)
    t_abs = torch.tensor(t_rows, dtype=I64, device=dev)[:, None]
    neg_clip = -torch.tensor(c_rows, dtype=I64, device=dev)[:, None]
    row_max = torch.where(keep2, x2, torch.full_like(x2, -(1 << 62))).amax(dim=1, keepdim=True)
    # d in [-2^in_bits, 0] for kept elements (masked ones are set to 0 and dropped below)
    d = torch.where(keep2, torch.maximum(x2 - row_max, neg_clip), torch.zeros_like(x2))
    e = torch.where(keep2, exp_from_t(d, torch.broadcast_to(t_abs, d.shape), order), torch.zeros_like(d))
    total = e.sum(dim=1, keepdim=True)          # <= N * |t| < 2^31 * 2^32: no wrap
    over = total[:, 0] > (1 << sum_bits) - 1
    if bool(over.any()):
        raise WidthError(f"S[{int(torch.nonzero(over)[0, 0])}] overflows uint{sum_bits}")
    # e * 2^F <= 2^32 * 2^16: exact; S >= |t| >= 1
    p = torch.clamp(div_round(torch.bitwise_left_shift(e, frac), total, "half_up"), max=(1 << out_bits) - 1)
    p = torch.where(keep2, p, torch.zeros_like(p))
    return p.reshape(shape).to(_storage(out_bits, False))


# ---------------------------------------------------------------------------------------------
# di_rmsnorm
# ---------------------------------------------------------------------------------------------

NUM_LIMIT = 1 << 62
ISQRT_MAX = 1 << 62


def isqrt(n: torch.Tensor) -> torch.Tensor:
    """floor(sqrt(n)) for int64 n in [0, 2^62]: the restoring bit-pair method, 32 fixed steps."""
    n = n.clone()
    root = torch.zeros_like(n)
    for shift in range(62, -2, -2):
        bit = 1 << shift
        take = n >= root + bit
        n = torch.where(take, n - (root + bit), n)
        root = torch.where(take, torch.bitwise_right_shift(root, 1) + bit, torch.bitwise_right_shift(root, 1))
    return root


def di_rmsnorm(x, m, k, gamma, gamma_k, *, in_bits=16, eps_m=42950, eps_k=32, rms_frac_bits=8,
               out_frac_bits=8, out_bits=8, out_symmetric=False, mbits=16, y_bits=32,
               rounding="half_up", zero_rows="error", device=None) -> RowQuant:
    """Integer RMSNorm of x[..., D] (per-row scale m / 2^k), gain gamma / 2^gamma_k, then quantize_rows."""
    dev = _device(device, x, gamma)
    mode = _mode(rounding)
    in_bits = _int_attr(in_bits, 2, 16, "in_bits")
    mbits = _int_attr(mbits, 2, 30, "mbits")
    eps_m = _int_attr(eps_m, 0, (1 << 32) - 1, "eps_m")
    eps_k = _int_attr(eps_k, 0, MAX_SHIFT, "eps_k")
    f = _int_attr(rms_frac_bits, 0, 31, "rms_frac_bits")
    g = _int_attr(out_frac_bits, 0, 31, "out_frac_bits")
    out_bits = _int_attr(out_bits, 2, 16, "out_bits")
    y_bits = _int_attr(y_bits, 8, 62 - out_bits, "y_bits")
    gamma_k = _int_attr(gamma_k, 0, MAX_SHIFT - g, "gamma_k")
    if zero_rows not in ("error", "zero"):
        raise InputError(f"zero_rows must be 'error' or 'zero', got {zero_rows!r}")
    x = _t(x, dev)
    if x.dim() < 1:
        raise InputError("x must have at least one dimension")
    _check_input(x, in_bits, True, "x")
    shape = tuple(x.shape)
    d = shape[-1]
    gamma = _t(gamma, dev)
    if tuple(gamma.shape) != (d,):
        raise InputError(f"gamma must have shape ({d},)")
    _check_input(gamma, mbits + 1, True, "gamma")
    m, k = _t(m, dev), _t(k, dev)
    _check_input(m, mbits, False, "x.m")
    if k.numel() and (int(k.min()) < 0 or int(k.max()) > MAX_SHIFT):
        raise InputError("k must be in [0, 63]")
    if shape[:-1] == () and m.numel() == 1 and k.numel() == 1:
        m, k = m.reshape(()), k.reshape(())           # a 1-D x is one row
    try:
        m_rows = torch.broadcast_to(m, shape[:-1]).reshape(-1)
        k_rows = torch.broadcast_to(k, shape[:-1]).reshape(-1)
    except RuntimeError:
        raise InputError("m, k do not broadcast to the row shape") from None
    x2 = x.reshape(-1, d)
    x2 = torch.where((m_rows == 0)[:, None], torch.zeros_like(x2), x2)   # a zero scale: real zeros
    # S = sum x^2 <= D * 2^(2 in_bits - 2), unsigned 2 in_bits - 1 + ceil(log2 D) bits
    s = _check_width((x2 * x2).sum(dim=1), 2 * in_bits - 1 + (d - 1).bit_length(), False, "S")
    # per row on Python ints: e_r = eps / s_r^2 in row units (2F frac bits), ms, checked to 2^62
    ms_rows = []
    for r, (s_r, m_r, k_r) in enumerate(zip(s.tolist(), m_rows.tolist(), k_rows.tolist())):
        e_r = 0 if m_r == 0 else div_round_int(eps_m << (2 * k_r + 2 * f), (m_r * m_r) << eps_k)
        if e_r > ISQRT_MAX:
            raise WidthError(f"e[{r}] = {e_r} exceeds 2^62")
        ms = ((s_r << (2 * f)) + d * e_r) // d
        if ms > ISQRT_MAX:
            raise WidthError(f"ms[{r}] = {ms} exceeds 2^62")
        ms_rows.append(ms)
    roots = isqrt(torch.tensor(ms_rows, dtype=I64, device=dev))
    bad = (roots == 0) & (s > 0)
    if bool(bad.any()):
        raise WidthError(f"r[{int(torch.nonzero(bad)[0, 0])}] = 0: rms_frac_bits too small")
    # numerators v * gamma * 2^(F+G): |v * gamma| <= 2^15 * 2^30, checked |num| < 2^62 before shifting
    vg = x2 * gamma[None, :]
    fg = f + g
    if bool((vg.abs() > ((NUM_LIMIT - 1) >> fg)).any()):
        raise WidthError("num = v * gamma * 2^(F+G) overflows |num| < 2^62")
    num = torch.bitwise_left_shift(vg, fg)
    den = roots[:, None]
    y = torch.where(den == 0, torch.zeros_like(num),
                    div_round(num, torch.where(den == 0, torch.ones_like(den), den), mode))
    _check_width(y, y_bits, True, "y")
    out = quantize_rows(y, 1, g + gamma_k, bits=out_bits, symmetric=out_symmetric, in_bits=y_bits,
                        mbits=mbits, rounding=mode, zero_rows=zero_rows, device=dev)
    return RowQuant(out.q.reshape(shape), *(v.reshape(shape[:-1]) for v in out[1:]))

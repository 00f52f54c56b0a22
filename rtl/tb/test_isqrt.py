"""cocotb bench for rtl/isqrt.v: drive every golden n, compare r bit for bit."""

import cocotb
from cocotb.triggers import Timer

from _vectors import read_hex, vectors_dir


@cocotb.test()
async def isqrt_matches_golden(dut):
    width = len(dut.n)  # N_BITS = 32: rtl/vectors/isqrt; N_BITS = 64: isqrt64 (n <= 2^62)
    sub, suffix = {32: ("isqrt", ""), 64: ("isqrt64", "64")}[width]
    d = vectors_dir() / sub
    ns, rs = read_hex(d / "n.hex", "n" + suffix), read_hex(d / "r.hex", "r" + suffix)
    assert len(ns) == len(rs) > 0
    bad = []
    for i, (n, want) in enumerate(zip(ns, rs)):
        dut.n.value = n
        await Timer(1, unit="ns")
        got = dut.r.value
        if not got.is_resolvable or got.to_unsigned() != want:
            bad.append((i, n, str(got), want))
    for i, n, got, want in bad[:10]:
        dut._log.error(f"case {i}: n={n}: rtl r={got} golden r={want}")
    assert not bad, f"{len(bad)} of {len(rs)} isqrt cases differ; first: {bad[0]}"
    dut._log.info(f"{len(rs)} isqrt cases bit-exact (N_BITS = {width})")

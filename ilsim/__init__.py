"""ilsim: a bit-exact, integer-only reference simulator for I-LLM quantized LLaMA models.

Layers, in the direction data flows:
    ilsim.arith    integer primitives (rounding shifts, division, dyadic numbers, isqrt)
    ilsim.ops      the I-LLM operators, each a scalar reference and a fast path
    ilsim.testing  hypothesis strategies and a bit-exactness checker for other implementations
"""

__version__ = "0.1.0"
#: Version of the written operator contracts in docs/spec/. Bumped on any change of semantics.
SPEC_VERSION = "1.0"

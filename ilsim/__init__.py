"""ilsim: a bit-exact, integer-only reference simulator for I-LLM quantized LLaMA models.

Layers, in the direction data flows:
    ilsim.arith        integer primitives (rounding shifts and division, dyadic numbers, isqrt)
    ilsim.ops          the I-LLM operators, each a scalar reference beside a fast path
    ilsim.graph        the integer graph file: format, validation, graph ops
    ilsim.interpreter  runs a graph on integers, with a KV cache, tracing and a width audit
    ilsim.hf, ilsim.float_model, ilsim.export, ilsim.fakequant
                       the float side (offline): checkpoints, float reference, export, fake-quant
    ilsim.golden       golden vectors (operators and model traces) and their verification
    ilsim.testing      hypothesis strategies and a bit-exactness checker for other implementations
    ilsim.cli          the `ilsim` command
"""

__version__ = "0.1.0"
#: Version of the written operator contracts in docs/spec/. Bumped on any change of semantics.
SPEC_VERSION = "1.0"

"""The I-LLM operators. Each module holds one operator family: its fast path, its scalar
reference (``*_reference``, same signature) and its float meaning (``*_float``, tests only).
:mod:`ilsim.ops.registry` lists them all."""

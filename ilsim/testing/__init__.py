"""Public testing API: hypothesis strategies for quantized tensors and operator cases, and
:func:`assert_bit_exact`, which checks another implementation of an operator against ilsim."""

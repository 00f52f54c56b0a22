"""Errors raised by ilsim. Every message names the operator and the tensor it is about."""


class IlsimError(Exception):
    """Base class of every error ilsim raises on purpose."""


class InputError(IlsimError, ValueError):
    """An operator or file received input that breaks its contract (dtype, shape, range, attribute)."""


class WidthError(IlsimError, OverflowError):
    """An intermediate left its declared bit width. Never silently wrapped: this is raised instead."""


class ZeroRangeError(InputError):
    """A row given to dynamic quantization has max == min == 0, so it has no scale to derive."""

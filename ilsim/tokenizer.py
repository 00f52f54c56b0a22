"""The text tokenizer: ``tokenizers.Tokenizer`` from its JSON text, with errors that name the source."""

from __future__ import annotations

import numpy as np

from ilsim.errors import InputError


class Tokenizer:
    """A thin wrapper of ``tokenizers.Tokenizer`` with clear errors."""

    def __init__(self, json_text: str | None, source: str):
        if json_text is None:
            raise InputError(f"{source}: no tokenizer (a checkpoint needs tokenizer.json; a graph carries it)")
        from tokenizers import Tokenizer as HFTokenizer

        try:
            self._tok = HFTokenizer.from_str(json_text)
        except Exception as err:   # tokenizers raises its own Exception type for a malformed file
            message = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise InputError(f"{source}: corrupt tokenizer (tokenizer.json text): {message[:200]}") from None

    def encode(self, text: str) -> np.ndarray:
        return np.array(self._tok.encode(text).ids, dtype=np.int64)

    def decode(self, ids) -> str:
        return self._tok.decode([int(i) for i in ids])

    def decode_special(self, ids) -> str:
        """The text of ``ids`` with special tokens kept (e.g. '<|im_start|>')."""
        return self._tok.decode([int(i) for i in ids], skip_special_tokens=False)

"""The graph JSON's schema: every entry's JSON type and range, checked before anything reads it.

A document that passes has the types the rest of the loader assumes (so a wrong type is a
GraphError naming the entry, never a TypeError deep inside), and sizes within stated limits (so
nothing is allocated from an absurd declaration). Operator semantics (which attributes an op
takes, their ranges) are checked above this, by graph/validate.py.
"""

from __future__ import annotations

import math

from ilsim.errors import InputError
from ilsim.hf.safetensors_file import MAX_ELEMENTS, MAX_NDIM

#: limits stated in docs/spec/graph.md ("Limits")
MAX_DIMENSION = 1 << 31          # any one declared dimension
# a tensor's number of dimensions and elements: the container's own limits (MAX_NDIM, MAX_ELEMENTS)
MAX_NAME_LENGTH = 1024
MAX_WIDTH = 64                   # a declared bit width
MODEL_LIMITS = {                 # ModelInfo field -> (lowest, highest)
    "vocab_size": (1, 1 << 24), "hidden_size": (1, 1 << 20), "num_layers": (1, 1 << 12),
    "num_heads": (1, 1 << 12), "num_kv_heads": (1, 1 << 12), "head_dim": (2, 1 << 14),
    "max_positions": (1, 1 << 24),
}
MODEL_OPTIONAL = {"bos_token_id", "eos_token_id", "name"}
NODE_KEYS = {"name", "op", "inputs", "params", "attrs", "outputs"}


class SchemaError(InputError):
    """The graph JSON breaks its schema (graph/format.py re-raises it as a GraphError)."""


def _is_int(value) -> bool:
    return type(value) is int


def _need(cond: bool, message: str) -> None:
    if not cond:
        raise SchemaError(message)


def _name(value, what: str) -> str:
    _need(isinstance(value, str) and 0 < len(value) <= MAX_NAME_LENGTH,
          f"{what} must be a non-empty string of at most {MAX_NAME_LENGTH} characters, got {short_repr(value)}")
    return value


def short_repr(value) -> str:
    """repr(value), at most 60 characters (a value nested too deeply to print is named by its type)."""
    try:
        text = repr(value)
    except RecursionError:
        return f"a {type(value).__name__} nested too deeply to print"
    return text if len(text) <= 60 else text[:57] + "..."


def _string_map(value, what: str) -> None:
    _need(isinstance(value, dict), f"{what} must be an object of names, got {short_repr(value)}")
    for key, name in value.items():
        _name(name, f"{what}[{key!r}]")


def check_model(model) -> None:
    _need(isinstance(model, dict), f"'model' must be an object, got {short_repr(model)}")
    missing = sorted(set(MODEL_LIMITS) - set(model))
    _need(not missing, f"'model' lacks {missing}")
    unknown = sorted(set(model) - set(MODEL_LIMITS) - MODEL_OPTIONAL)
    _need(not unknown, f"'model' has unknown entries {unknown}")
    for key, (lo, hi) in MODEL_LIMITS.items():
        value = model[key]
        _need(_is_int(value) and lo <= value <= hi, f"model.{key} must be an integer in [{lo}, {hi}], got "
                                                    f"{short_repr(value)}")
    for key in ("bos_token_id", "eos_token_id"):
        value = model.get(key)
        _need(value is None or (_is_int(value) and 0 <= value < model["vocab_size"]),
              f"model.{key} must be null or a token id in [0, {model['vocab_size']}), got {short_repr(value)}")
    _need(isinstance(model.get("name", ""), str), f"model.name must be a string, got {short_repr(model.get('name'))}")


def check_constant(name: str, decl, dtypes) -> None:
    where = f"constant {name!r}"
    _name(name, "a constant's name")
    _need(isinstance(decl, dict) and set(decl) == {"dtype", "shape", "bits", "signed"},
          f"{where}: the declaration must be an object with exactly dtype, shape, bits, signed; got {short_repr(decl)}")
    _need(isinstance(decl["dtype"], str) and decl["dtype"] in dtypes, f"{where}: unsupported dtype {short_repr(decl['dtype'])} (supported: "
                                   f"{', '.join(sorted(dtypes))})")
    shape = decl["shape"]
    _need(isinstance(shape, list) and len(shape) <= MAX_NDIM
          and all(_is_int(d) and 0 <= d <= MAX_DIMENSION for d in shape),
          f"{where}: shape must be a list of at most {MAX_NDIM} integers in [0, 2^31], got {short_repr(shape)}")
    _need(math.prod(max(d, 1) for d in shape) <= MAX_ELEMENTS,
          f"{where}: shape {shape} has more than 2^{MAX_ELEMENTS.bit_length() - 1} elements")
    _need(_is_int(decl["bits"]) and 1 <= decl["bits"] <= MAX_WIDTH,
          f"{where}: bits must be an integer in [1, {MAX_WIDTH}], got {short_repr(decl['bits'])}")
    _need(isinstance(decl["signed"], bool), f"{where}: signed must be true or false, got {short_repr(decl['signed'])}")


def check_node(i: int, node) -> None:
    _need(isinstance(node, dict), f"node #{i} must be an object, got {short_repr(node)}")
    _need("name" in node and "op" in node, f"node #{i} needs a name and an op")
    name = _name(node["name"], f"node #{i}'s name")
    where = f"node {name!r}"
    unknown = sorted(set(node) - NODE_KEYS)
    _need(not unknown, f"{where} has unknown keys {unknown}")
    _name(node["op"], f"{where}: op")
    _string_map(node.get("inputs", {}), f"{where}: inputs")
    _string_map(node.get("params", {}), f"{where}: params")
    attrs = node.get("attrs", {})
    _need(isinstance(attrs, dict), f"{where}: attrs must be an object, got {short_repr(attrs)}")
    for key, value in attrs.items():
        _need(isinstance(value, (bool, int)) and (isinstance(value, bool) or -(1 << 63) <= value < 1 << 63),
              f"{where}: attribute {key!r} must be an integer (64-bit) or a boolean, got {short_repr(value)}")
    outputs = node.get("outputs", [])
    _need(isinstance(outputs, list), f"{where}: outputs must be a list of names, got {short_repr(outputs)}")
    for out in outputs:
        _name(out, f"{where}: an output")


def check_document(doc, dtypes) -> None:
    """SchemaError naming the entry unless ``doc`` has the graph JSON's types and limits."""
    _need(isinstance(doc, dict), f"the graph JSON must be an object, got {type(doc).__name__}")
    for key in ("model", "nodes", "constants", "inputs", "outputs"):
        _need(key in doc, f"the graph JSON lacks the {key!r} entry")
    check_model(doc["model"])
    _need(isinstance(doc["constants"], dict), f"'constants' must be an object, got {short_repr(doc['constants'])}")
    for name, decl in doc["constants"].items():
        check_constant(name, decl, dtypes)
    _need(isinstance(doc["nodes"], list), f"'nodes' must be a list, got {short_repr(doc['nodes'])}")
    for i, node in enumerate(doc["nodes"]):
        check_node(i, node)
    for key in ("inputs", "outputs"):
        value = doc[key]
        _need(isinstance(value, list) and len(value) == 1, f"{key!r} must be a list of one name, got {short_repr(value)}")
        _name(value[0], f"{key}[0]")
    _need(isinstance(doc.get("quant", {}), dict), f"'quant' must be an object, got {short_repr(doc.get('quant'))}")

"""Every attribute of every op, mutated to values around and beyond its range: the graph either is
refused at load (a GraphError naming the node) or the fast and the reference runs agree -- the same
integers, or the same kind of ilsim error. A fast path never accepts what its reference refuses."""

import copy
import os

import numpy as np
import pytest

from ilsim.errors import IlsimError
from ilsim.export.build import ExportOptions, export_model
from ilsim.graph.format import GraphError
from ilsim.graph.node_types import GRAPH_OPS
from ilsim.graph.validate import validate_graph
from ilsim.hf import LlamaConfig, load_checkpoint, random_llama_weights, save_checkpoint
from ilsim.interpreter import Interpreter

CONFIG = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=1,
                     num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=32,
                     tie_word_embeddings=True, rope_theta=500.0)
DEEP = os.environ.get("ILSIM_HYPOTHESIS_PROFILE") == "deep"
#: integers around every range an attribute has (widths 1..64, shifts 0..63, orders 1..2, counts)
INT_VALUES = (-5, -1, 0, 1, 2, 3, 15, 16, 17, 31, 33, 48, 62, 63, 64, 99, 2 ** 31) if DEEP else \
    (-1, 0, 1, 3, 17, 33, 64, 99)


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt")
    save_checkpoint(path, CONFIG, random_llama_weights(CONFIG, seed=0))
    ckpt = load_checkpoint(path)
    ids = np.random.default_rng(1).integers(0, CONFIG.vocab_size, size=128)
    g = export_model(ckpt, ids, ExportOptions(method="rotate", calib_context=16, calib_windows=2))
    assert {n.op for n in g.nodes} == set(GRAPH_OPS), "the test graph must hold every op"
    return g


def run(graph, reference: bool):
    """The logits of a 5-token prompt, or the ilsim error's class."""
    try:
        interp = Interpreter(graph, reference=reference)
        out = interp.forward(np.arange(5) % CONFIG.vocab_size, interp.new_state())
    except IlsimError as err:
        return type(err)
    return tuple(np.asarray(v).tolist() for v in out)


def mutations(graph):
    """(op, node index, attribute, value) for the first node of each op."""
    seen = set()
    for index, node in enumerate(graph.nodes):
        if node.op in seen:
            continue
        seen.add(node.op)
        for key, (kind, _default) in GRAPH_OPS[node.op].attrs.items():
            values = (True, False) if kind is bool else INT_VALUES
            for value in values:
                if node.attrs.get(key, _default) != value:
                    yield node.op, index, key, value


def test_every_op_and_attribute_is_mutated(graph):
    covered = {(op, key) for op, _, key, _ in mutations(graph)}
    assert covered == {(op.name, key) for op in GRAPH_OPS.values() for key in op.attrs}


@pytest.mark.parametrize("op", sorted(GRAPH_OPS))
def test_a_mutated_attribute_is_refused_at_load_or_runs_alike_on_both_paths(graph, op):
    refused = accepted = 0
    for name, index, key, value in mutations(graph):
        if name != op:
            continue
        mutated = copy.copy(graph)
        mutated.nodes = list(graph.nodes)
        node = copy.deepcopy(graph.nodes[index])
        node.attrs[key] = value
        mutated.nodes[index] = node
        try:
            validate_graph(mutated)
        except GraphError as err:
            assert node.name in str(err), str(err)
            refused += 1
            continue
        accepted += 1
        fast, ref = run(mutated, False), run(mutated, True)
        assert fast == ref, f"{node.name}.{key} = {value!r}: fast {fast if isinstance(fast, type) else 'ran'}, " \
                            f"reference {ref if isinstance(ref, type) else 'ran'}"
    assert refused, f"{op}: no mutation was refused at load"


@pytest.mark.parametrize("key, value, message", [
    ("exp_order", 0, "order must be one of"),
    ("exp_order", 3, "order must be one of"),
    ("clip_num", 0, "clip_num >= 1"),
    ("clip_num", -5, "clip_num >= 1"),
    ("clip_den", 0, "clip_den >= 1"),
    ("p_bits", 1, "out_bits must be an integer in"),
    ("p_bits", 17, "out_bits must be an integer in"),
    ("out_bits", 1, "bits must be in"),
    ("av_acc_bits", 70, "acc_bits"),
    ("num_heads", 2 ** 18, "do not match the model"),
])
def test_the_attention_attributes_the_reference_refuses_are_refused_at_load(graph, key, value, message):
    mutated = copy.copy(graph)
    mutated.nodes = [copy.deepcopy(n) if n.op == "attention" else n for n in graph.nodes]
    next(n for n in mutated.nodes if n.op == "attention").attrs[key] = value
    with pytest.raises(GraphError, match=message):
        validate_graph(mutated)


@pytest.mark.parametrize("reference", [False, True])
def test_a_run_time_overflow_names_the_file_and_the_node(graph, reference):
    from ilsim.errors import WidthError

    mutated = copy.copy(graph)
    mutated.nodes = [copy.deepcopy(n) if n.name == "layers.0.q_proj" else n for n in graph.nodes]
    mutated.node("layers.0.q_proj").attrs["acc_bits"] = 4
    validate_graph(mutated)                        # a legal width, too narrow for these weights
    interp = Interpreter(mutated, reference=reference)
    with pytest.raises(WidthError, match=r"<export>: node 'layers.0.q_proj' \(di_matmul\): di_matmul: .*acc"):
        interp.forward(np.arange(5), interp.new_state())

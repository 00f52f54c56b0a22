"""Export methods (rotate, smooth, gptq and their combinations) on a small random model with planted
outlier channels: each rotation is an exact re-parametrisation of the float model, each method
lowers the fake-quant error where it should, and every method's graph keeps the contracts
(whole-model fast == reference, prefill + decode == one prefill, the width audit clean)."""

import numpy as np
import pytest

from ilsim.errors import InputError
from ilsim.export.build import ExportOptions, export_model, parse_method
from ilsim.export.rotate import random_hadamard, rotate_checkpoint
from ilsim.fakequant import FakeQuantLM
from ilsim.float_model import FloatLlama
from ilsim.hf import LlamaConfig, load_checkpoint, random_llama_weights, save_checkpoint
from ilsim.interpreter import Interpreter

CONFIG = LlamaConfig(vocab_size=96, hidden_size=48, intermediate_size=96, num_hidden_layers=2,
                     num_attention_heads=4, num_key_value_heads=2, head_dim=12, max_position_embeddings=128,
                     tie_word_embeddings=True, rope_theta=500.0)
CALIB = dict(calib_context=64, calib_windows=6)


def outlier_weights(seed=0):
    """Random weights whose residual stream has a few channels 30-60x larger than the rest (as
    pretrained LLMs have): the embedding and the o/down projections write them, the norm gains
    keep them."""
    w = random_llama_weights(CONFIG, seed=seed)
    rng = np.random.default_rng(seed + 100)
    channels = rng.choice(CONFIG.hidden_size, size=3, replace=False)
    scale = np.ones(CONFIG.hidden_size, dtype=np.float32)
    scale[channels] = rng.uniform(30, 60, size=3)
    w["model.embed_tokens.weight"] *= scale
    for i in range(CONFIG.num_hidden_layers):
        for name in ("self_attn.o_proj", "mlp.down_proj"):
            w[f"model.layers.{i}.{name}.weight"] *= scale[:, None]
        w[f"model.layers.{i}.input_layernorm.weight"] *= scale
    return w


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("outliers")
    save_checkpoint(path, CONFIG, outlier_weights())
    return load_checkpoint(path)


def text_ids(n, seed):
    """Token ids with structure (a repeated random phrase with noise), so attention is not flat."""
    rng = np.random.default_rng(seed)
    phrase = rng.integers(0, CONFIG.vocab_size, size=17)
    ids = np.resize(phrase, n)
    noise = rng.random(n) < 0.2
    ids[noise] = rng.integers(0, CONFIG.vocab_size, size=int(noise.sum()))
    return ids


def fake_quant_error(checkpoint, method, wbits, abits, **kw):
    """Mean squared error of the fake-quant logits against the float model on held-out ids."""
    graph = export_model(checkpoint, text_ids(512, 1), ExportOptions(wbits=wbits, abits=abits, method=method,
                                                                     **CALIB, **kw))
    ids = text_ids(96, 7)
    want = FloatLlama(checkpoint, dtype=np.float64).forward(ids)
    got = FakeQuantLM(graph).forward(ids)
    return float(np.mean((got - want) ** 2)), graph


def test_parse_method_orders_and_rejects():
    assert parse_method("gptq+rotate") == ("rotate", "gptq")
    assert parse_method("rtn") == ()
    with pytest.raises(InputError, match="unknown method"):
        parse_method("rotate+awq")
    with pytest.raises(InputError, match="cannot be combined"):
        parse_method("rtn+gptq")
    with pytest.raises(InputError):
        ExportOptions(method="nope").validate()


def test_random_hadamard_is_orthogonal_at_the_model_sizes():
    for n in (48, 64, 576, 1536):
        q = random_hadamard(n, seed=3)
        assert np.allclose(q @ q.T, np.eye(n), atol=1e-12)


def test_the_rotated_checkpoint_computes_the_same_logits(checkpoint):
    ids = text_ids(40, 3)
    want = FloatLlama(checkpoint, dtype=np.float64).forward(ids)
    rotated = rotate_checkpoint(checkpoint, seed=5)
    got = FloatLlama(rotated, dtype=np.float64).forward(ids)
    assert np.max(np.abs(got - want)) < 1e-9 * np.max(np.abs(want))
    assert not rotated.config.tie_word_embeddings
    # the outlier channels are gone from the rotated residual stream
    x = FloatLlama(checkpoint, dtype=np.float64).embed_tokens
    xr = FloatLlama(rotated, dtype=np.float64).embed_tokens
    ratio = lambda a: np.abs(a).max(axis=0).max() / np.median(np.abs(a).max(axis=0))  # noqa: E731
    assert ratio(xr) < ratio(x) / 4


@pytest.mark.parametrize("wbits,abits", [(4, 8), (4, 4)])
def test_rotation_lowers_the_fake_quant_error_on_outlier_channels(checkpoint, wbits, abits):
    rtn, _ = fake_quant_error(checkpoint, "rtn", wbits, abits)
    rotated, graph = fake_quant_error(checkpoint, "rotate", wbits, abits)
    assert rotated < 0.5 * rtn, (rotated, rtn)
    assert sum(node.op == "di_hadamard" for node in graph.nodes) == CONFIG.num_hidden_layers


@pytest.mark.parametrize("base", ["rtn", "rotate"])
def test_gptq_lowers_the_fake_quant_error_at_low_weight_bits(checkpoint, base):
    plain, _ = fake_quant_error(checkpoint, base, 3, 8)
    method = "gptq" if base == "rtn" else f"{base}+gptq"
    gptq, _ = fake_quant_error(checkpoint, method, 3, 8)
    assert gptq < 0.8 * plain, (gptq, plain)


def test_smoothing_lowers_the_fake_quant_error_at_low_activation_bits(checkpoint):
    plain, _ = fake_quant_error(checkpoint, "rtn", 8, 4)
    smooth, _ = fake_quant_error(checkpoint, "smooth", 8, 4)
    assert smooth < plain, (smooth, plain)


@pytest.mark.parametrize("method", ["rotate", "rotate+smooth+gptq", "gptq"])
def test_every_method_keeps_the_contracts(checkpoint, method):
    graph = export_model(checkpoint, text_ids(256, 1), ExportOptions(wbits=4, abits=4, method=method, **CALIB))
    assert graph.quant["method"] == method
    ids = text_ids(20, 9)
    fast = Interpreter(graph)
    ref = Interpreter(graph, reference=True)
    a = fast.forward(ids, fast.new_state())
    b = ref.forward(ids, ref.new_state())
    for name, x, y in zip(a._fields, a, b):
        assert np.array_equal(x, y), (method, name)
    state = fast.new_state()
    fast.forward(ids[:13], state)
    rows = [fast.forward(ids[t:t + 1], state) for t in range(13, 20)]
    assert all(np.array_equal(r.p[0], a.p[t]) for t, r in zip(range(13, 20), rows))
    audit = Interpreter(graph)
    audit.audit = True
    audit.forward(ids, audit.new_state())
    over = [n for n, r in audit.widths.items() if r.used_bits() > r.bits]
    assert over == []


def test_exports_are_deterministic(checkpoint):
    a = export_model(checkpoint, text_ids(256, 1), ExportOptions(wbits=4, abits=8, method="rotate+gptq", **CALIB))
    b = export_model(checkpoint, text_ids(256, 1), ExportOptions(wbits=4, abits=8, method="rotate+gptq", **CALIB))
    assert a.constants.keys() == b.constants.keys()
    assert all(np.array_equal(a.constants[k], b.constants[k]) for k in a.constants)


def test_abits_is_the_width_of_every_matmul_input_and_inner_values_stay_at_8_bits(checkpoint):
    """W4A4: every linear layer but the head and both attention matmuls read 4-bit inputs; q and k
    before RoPE, the SwiGLU inputs and the head's input are at 8 bits (ExportOptions.inner_bits /
    head_abits), the SwiGLU output into the online Hadamard at 16 (hadamard_in_bits); the
    probabilities are uint16 at 2^-15."""
    graph = export_model(checkpoint, text_ids(256, 1), ExportOptions(wbits=4, abits=4, method="rotate", **CALIB))
    nodes = {node.name: node for node in graph.nodes}
    for i in range(CONFIG.num_hidden_layers):
        p = f"layers.{i}"
        for proj in ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"):
            assert nodes[f"{p}.{proj}"].attrs["a_bits"] == 4, proj
        for proj in ("q_proj", "k_proj", "gate_proj", "up_proj"):
            assert nodes[f"{p}.{proj}"].attrs["out_bits"] == 8, proj
        attn = nodes[f"{p}.attention"].attrs
        assert (attn["in_bits"], attn["qk_bits"], attn["v_bits"], attn["out_bits"]) == (8, 4, 4, 4)
        assert (attn["p_bits"], attn["p_frac_bits"]) == (16, 15)
        assert (nodes[f"{p}.swiglu"].attrs["in_bits"], nodes[f"{p}.swiglu"].attrs["out_bits"]) == (8, 16)
        assert (nodes[f"{p}.down_hadamard"].attrs["in_bits"], nodes[f"{p}.down_hadamard"].attrs["out_bits"]) == (16, 4)
    assert nodes["final_norm"].attrs["out_bits"] == 8 and nodes["lm_head"].attrs["a_bits"] == 8
    narrow = export_model(checkpoint, text_ids(256, 1), ExportOptions(wbits=4, abits=4, method="smooth", inner_bits=4,
                                                                      head_abits=4, **CALIB))
    widths = {node.attrs.get("out_bits") for node in narrow.nodes if node.op in ("di_rmsnorm", "di_swiglu")}
    assert widths == {4}


def test_rotate_also_rotates_queries_and_keys_per_head(checkpoint, monkeypatch):
    """Method rotate puts the per-head Hadamard on queries and keys after RoPE (qk_hadamard, with
    RoPE's output at rope_out_bits) and folds its factor head_dim into W_q: with every activation
    quantizer of the fake-quant model switched off, the graph computes the logits of the graph
    without it (the weights differ only by their rounding)."""
    import ilsim.fakequant as fakequant

    graph = export_model(checkpoint, text_ids(256, 1), ExportOptions(wbits=8, abits=8, method="rotate", **CALIB))
    plain = export_model(checkpoint, text_ids(256, 1), ExportOptions(wbits=8, abits=8, method="rotate",
                                                                     qk_hadamard=False, **CALIB))
    attn = [node.attrs for node in graph.nodes if node.op == "attention"]
    assert [(a["qk_hadamard"], a["rope_out_bits"]) for a in attn] == [(1, 16)] * CONFIG.num_hidden_layers
    assert all("qk_hadamard" not in node.attrs for node in plain.nodes if node.op == "attention")
    monkeypatch.setattr(fakequant, "fake_quant_rows", lambda values, bits, symmetric: values)
    ids = text_ids(48, 3)
    got, want = FakeQuantLM(graph).forward(ids), FakeQuantLM(plain).forward(ids)
    assert np.max(np.abs(got - want)) < 0.01 * np.max(np.abs(want)), np.max(np.abs(got - want))


@pytest.mark.parametrize("attr,value,pattern", [
    ("qk_hadamard", 2, "qk_hadamard must be 0 or 1"),
    ("rope_out_bits", 17, r"rope_out_bits must be in \[2, 16\]"),
    ("rope_out_bits", 1, r"rope_out_bits must be in \[2, 16\]"),
])
def test_the_query_key_hadamard_attributes_are_checked_at_load(checkpoint, attr, value, pattern):
    from ilsim.graph.format import GraphError
    from ilsim.graph.validate import validate_graph

    graph = export_model(checkpoint, text_ids(256, 1), ExportOptions(wbits=8, abits=8, method="rotate", **CALIB))
    node = next(node for node in graph.nodes if node.op == "attention")
    node.attrs[attr] = value
    with pytest.raises(GraphError, match=pattern):
        validate_graph(graph)


def test_the_query_key_hadamard_needs_method_rotate_and_a_hadamard_size():
    assert ExportOptions(method="rotate+gptq").uses_qk_hadamard(64)
    assert ExportOptions(method="rotate").uses_qk_hadamard(12)
    assert not ExportOptions(method="rotate").uses_qk_hadamard(10)      # no Hadamard matrix of order 10
    assert not ExportOptions(method="smooth+gptq").uses_qk_hadamard(64)
    assert not ExportOptions(method="rotate", qk_hadamard=False).uses_qk_hadamard(64)


def _assert_contracts(graph, ids):
    """Whole-model fast == reference, prefill + decode == one prefill, the width audit clean."""
    fast, ref = Interpreter(graph), Interpreter(graph, reference=True)
    a, b = fast.forward(ids, fast.new_state()), ref.forward(ids, ref.new_state())
    for name, x, y in zip(a._fields, a, b):
        assert np.array_equal(x, y), name
    state = fast.new_state()
    fast.forward(ids[:13], state)
    assert all(np.array_equal(fast.forward(ids[t:t + 1], state).p[0], a.p[t]) for t in range(13, len(ids)))
    audit = Interpreter(graph)
    audit.audit = True
    audit.forward(ids, audit.new_state())
    assert [n for n, r in audit.widths.items() if r.used_bits() > r.bits] == []


@pytest.mark.parametrize("method,pattern", [("sparsegpt", "unstructured"), ("sparsegpt", "2:4"),
                                            ("wanda", "unstructured"), ("rotate+wanda+gptq", "2:4")])
def test_pruning_methods_hit_their_sparsity_exactly_and_keep_the_contracts(checkpoint, method, pattern):
    graph = export_model(checkpoint, text_ids(256, 1), ExportOptions(wbits=4, abits=8, method=method,
                                                                     sparsity_pattern=pattern, **CALIB))
    report = graph.quant["report"]["pruning"]
    per_layer = sum(CONFIG.hidden_size * n for n in (48, 24, 24, 48)) + 3 * CONFIG.hidden_size * 96
    assert report["weights"] == CONFIG.num_hidden_layers * per_layer
    assert report["pruned"] * 2 == report["weights"] and report["sparsity"] == 0.5
    assert report["zero_weights"] >= report["pruned"] and report["pattern"] == pattern
    assert report["effective_bits"] == 3.0 and report["dense_bits"] == 4.0      # 4-bit codes: 0.5 x 4 + 1
    zeros = 0
    for node in graph.nodes:
        if node.op == "di_matmul" and node.name != "lm_head":
            q, zp = graph.constants[node.params["b"]].astype(np.int64), graph.constants[node.params["b_zp"]]
            zeros += int((q == zp[:, None].astype(np.int64)).sum())
            if pattern == "2:4":   # at most 2 non-zeros in every 4 consecutive inputs of a row
                assert np.all((q != zp[:, None]).reshape(q.shape[0], -1, 4).sum(axis=-1) <= 2), node.name
    assert zeros == report["zero_weights"]
    _assert_contracts(graph, text_ids(20, 9))


def test_sparsegpt_loses_less_than_wanda_with_round_to_nearest(checkpoint):
    sparsegpt, _ = fake_quant_error(checkpoint, "sparsegpt", 4, 8)
    wanda, _ = fake_quant_error(checkpoint, "wanda", 4, 8)
    assert sparsegpt < wanda, (sparsegpt, wanda)


def test_knowledge_distillation_lowers_its_loss_and_keeps_the_contracts(tmp_path):
    """kd on a small random model (no planted outliers: a model whose logits are in the
    thousands has KL divergences in the hundreds of nats): the distillation loss falls from its
    start, the trained weights are exported on the grid they trained on, and the graph keeps the
    contracts."""
    pytest.importorskip("torch")
    save_checkpoint(tmp_path, CONFIG, random_llama_weights(CONFIG, seed=3))
    plain = load_checkpoint(tmp_path)
    opts = ExportOptions(wbits=4, abits=4, method="kd", kd_steps=12, kd_lr=3e-4, kd_windows=4, **CALIB)
    graph = export_model(plain, text_ids(512, 1), opts)
    kd = graph.quant["report"]["kd"]
    assert kd["kept"] and kd["loss_end"] < 0.9 * kd["loss_start"], kd
    assert len(kd["step_losses"]) == 12 and kd["windows"] == 4
    _assert_contracts(graph, text_ids(20, 9))
    with pytest.raises(InputError, match="kd combines with rotate and smooth only"):
        ExportOptions(method="kd+gptq").validate()
    with pytest.raises(InputError, match="wanda and sparsegpt are two ways to prune"):
        parse_method("wanda+sparsegpt")
    with pytest.raises(InputError, match="sparsegpt already quantizes with GPTQ"):
        parse_method("gptq+sparsegpt")

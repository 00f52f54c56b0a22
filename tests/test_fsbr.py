"""Learned FSBR (export/fsbr.py) on the planted-outlier model of test_export_methods: the torch block
at its closed-form start computes what the `smooth` graph's fake-quant model computes, every block's
loss falls below that start, the fake-quant logit error falls below `smooth`'s at W4A4 and W4A8, the
graph keeps the contracts (fast == reference, the width audit), exports repeat byte for byte, and
without torch the method is a one-line error (exit 2 through the CLI)."""

import sys

import numpy as np
import pytest

from ilsim.cli import main
from ilsim.errors import InputError
from ilsim.export.build import ExportOptions, export_model, parse_method
from ilsim.export.calibrate import calibrate
from ilsim.fakequant import FakeQuantLM
from ilsim.float_model import FloatLlama
from ilsim.hf import save_checkpoint
from ilsim.interpreter import Interpreter
from test_export_methods import CALIB, CONFIG, checkpoint, text_ids  # noqa: F401 (checkpoint: a fixture)

CALIB_TOKENS = 2048                 # 32 windows of 64: on the 8 windows test_export_methods calibrates on,
#                                     the blocks over-fit (their loss falls, held-out error does not)
FSBR = dict(fsbr_calib_windows=32, fsbr_batch=4, fsbr_epochs=10)


def calib_ids():
    return text_ids(CALIB_TOKENS, 1)


def held_out_windows():
    """Three windows of 96 tokens that follow the calibration text (same source, unseen tokens)."""
    ids = text_ids(CALIB_TOKENS + 3 * 96, 1)[CALIB_TOKENS:]
    return [ids[i * 96:(i + 1) * 96] for i in range(3)]


def logit_error(checkpoint, graph):
    """Mean squared error of the fake-quant logits against the float model, over held_out_windows."""
    model = FloatLlama(checkpoint, dtype=np.float64)
    fake = FakeQuantLM(graph)
    return float(np.mean([np.mean((fake.forward(ids) - model.forward(ids)) ** 2) for ids in held_out_windows()]))


def options(method, wbits, abits, **kw):
    return ExportOptions(wbits=wbits, abits=abits, method=method, **CALIB, **(FSBR | kw))


@pytest.fixture(scope="module")
def graphs(checkpoint):
    """(method, wbits, abits) -> graph, exported once for the module."""
    torch = pytest.importorskip("torch")
    assert torch is not None
    cache = {}

    def get(method, wbits, abits):
        key = (method, wbits, abits)
        if key not in cache:
            cache[key] = export_model(checkpoint, calib_ids(), options(method, wbits, abits))
        return cache[key]
    return get


def test_fsbr_is_a_method_between_smooth_and_gptq():
    assert parse_method("gptq+fsbr+rotate") == ("rotate", "fsbr", "gptq")
    assert parse_method("smooth+fsbr") == ("smooth", "fsbr")


def test_the_block_at_its_start_computes_what_the_smooth_graph_computes(checkpoint):
    """The torch block with the closed-form factors and the clipping search's ratios against the
    fake-quant model of the `smooth` graph, layer by layer on the graph's own layer inputs. They
    differ only where the graph's dyadic scales (16-bit multipliers) move a rounding."""
    torch = pytest.importorskip("torch")
    from ilsim.export import fsbr
    from ilsim.export.rope_tables import rope_tables

    opts = options("smooth", 4, 4)
    graph = export_model(checkpoint, calib_ids(), opts)
    fake = FakeQuantLM(graph)
    ids = calib_ids()[:64]
    values, positions, cache = {graph.inputs[0]: ids}, np.arange(ids.size), fake.new_cache()
    for node in graph.nodes:
        values[node.outputs[0]] = fake._run(node, {r: values[n] for r, n in node.inputs.items()}, positions, cache)
    stats = calibrate(FloatLlama(checkpoint, dtype=np.float64), calib_ids(), opts.calib_context, opts.calib_windows)
    spec = fsbr.BlockSpec.from_options(CONFIG, opts, online_hadamard=False)
    tables = rope_tables(64, CONFIG.head_dim, CONFIG.rope_theta, opts.rope_frac_bits)
    rope = (torch.tensor(tables.cos / 2.0 ** opts.rope_frac_bits), torch.tensor(tables.sin / 2.0 ** opts.rope_frac_bits))
    for i in range(CONFIG.num_hidden_layers):
        w = fsbr._layer_arrays(checkpoint, i)
        factors, clips = fsbr.closed_form_start(w, stats[i].absmax, spec, opts.smooth_alpha)
        weights = fsbr.quantized_block_weights({k: torch.tensor(v) for k, v in w.items()},
                                               {k: torch.tensor(v) for k, v in factors.items()},
                                               {k: torch.tensor(v) for k, v in clips.items()}, spec)
        for name in fsbr.LINEARS:
            want = fake.weights[f"layers.{i}.{name}_proj"]
            assert np.max(np.abs(weights[name].numpy() - want)) <= 2e-4 * np.max(np.abs(want)), (i, name)
        x = torch.tensor(values["h.embed" if i == 0 else f"h.{i - 1}.mlp"])[None]
        got = fsbr.block_forward(x, weights, spec, rope, quant=True)[0].numpy()
        want = values[f"h.{i}.mlp"]
        assert np.mean((got - want) ** 2) < 1e-3 * np.mean(want ** 2), i


@pytest.mark.parametrize("wbits,abits", [(4, 4), (4, 8)])
def test_every_block_learns_below_its_closed_form_start(checkpoint, wbits, abits):
    pytest.importorskip("torch")
    from ilsim.export.fsbr import LINEARS, learn_fsbr

    layers = learn_fsbr(checkpoint, calib_ids(), options("fsbr", wbits, abits))
    assert len(layers) == CONFIG.num_hidden_layers
    for layer in layers:
        assert layer.best_epoch > 0 and layer.loss_end < layer.loss_start, layer
        assert layer.loss_end == min(layer.epoch_losses) and len(layer.epoch_losses) == FSBR["fsbr_epochs"]
        assert set(layer.clip) == set(LINEARS)
        assert all(np.all((0.45 < c) & (c < 1.02)) for c in layer.clip.values())
        assert set(layer.smooth) == {"qk", "norm_qkv", "v_o", "norm_gate_up", "gate_up", "up_down"}
        half = CONFIG.head_dim // 2
        assert np.array_equal(layer.smooth["qk"][:, :half], layer.smooth["qk"][:, half:])


@pytest.mark.parametrize("wbits,abits,ratio", [(4, 4, 1.0), (4, 8, 0.85)])
def test_fsbr_lowers_the_fake_quant_logit_error_below_smooth(checkpoint, graphs, wbits, abits, ratio):
    """Measured here: W4A4 0.91 of smooth's error, W4A8 0.68. On this model the error is mostly the
    4-bit rounding of the o/down rows that write the three outlier channels (values ~2000), which
    smoothing cannot change and a different clip ratio re-rounds at random; the learned gain is
    therefore small at W4A4 and varies with the model's seed (0.91-1.03 over seeds 0-2; W4A8
    0.68-1.01). On two layers of SmolLM2-135M the held-out gain is larger and steady."""
    smooth = logit_error(checkpoint, graphs("smooth", wbits, abits))
    learned = logit_error(checkpoint, graphs("fsbr", wbits, abits))
    assert learned < ratio * smooth, (learned, smooth, learned / smooth)


@pytest.mark.parametrize("method", ["fsbr", "rotate+fsbr"])
def test_the_fsbr_graph_keeps_the_contracts(checkpoint, graphs, method):
    graph = graphs(method, 4, 4)
    assert graph.quant["method"] == method
    assert (sum(node.op == "di_hadamard" for node in graph.nodes) == CONFIG.num_hidden_layers) == ("rotate" in method)
    ids = text_ids(20, 9)
    fast, ref = Interpreter(graph), Interpreter(graph, reference=True)
    a = fast.forward(ids, fast.new_state())
    b = ref.forward(ids, ref.new_state())
    for name, x, y in zip(a._fields, a, b):
        assert np.array_equal(x, y), (method, name)
    audit = Interpreter(graph)
    audit.audit = True
    audit.forward(ids, audit.new_state())
    assert [n for n, r in audit.widths.items() if r.used_bits() > r.bits] == []


def test_fsbr_exports_are_deterministic(checkpoint, graphs):
    a = graphs("fsbr", 4, 8)
    b = export_model(checkpoint, calib_ids(), options("fsbr", 4, 8))
    assert a.constants.keys() == b.constants.keys()
    assert all(np.array_equal(a.constants[k], b.constants[k]) for k in a.constants)


def test_fsbr_with_no_epochs_is_the_smooth_export(checkpoint, graphs):
    """Zero epochs keep the closed-form start: the factors and the clipping search's ratios."""
    pytest.importorskip("torch")
    start = export_model(checkpoint, calib_ids(), options("fsbr", 4, 4, fsbr_epochs=0))
    smooth = graphs("smooth", 4, 4)
    assert all(np.array_equal(start.constants[k], smooth.constants[k]) for k in smooth.constants)


def test_without_torch_fsbr_is_a_one_line_error(checkpoint, monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "torch", None)          # `import torch` raises ImportError
    message = "method fsbr needs torch: pip install 'ilsim[calibrate]'"
    with pytest.raises(InputError) as err:
        export_model(checkpoint, calib_ids(), options("rotate+fsbr", 4, 4))
    assert str(err.value) == message
    export_model(checkpoint, text_ids(256, 1), ExportOptions(wbits=4, abits=4, method="rotate+smooth", **CALIB))

    from test_cli import CONFIG as CLI_CONFIG, TEXT, char_tokenizer_json
    from ilsim.hf import random_llama_weights

    ckpt = tmp_path / "tiny"
    save_checkpoint(ckpt, CLI_CONFIG, random_llama_weights(CLI_CONFIG, seed=3))
    (ckpt / "tokenizer.json").write_text(char_tokenizer_json())
    (tmp_path / "calib.txt").write_text(TEXT)
    monkeypatch.setenv("ILSIM_CACHE", str(tmp_path / "cache"))
    capsys.readouterr()
    assert main(["export", str(ckpt), str(tmp_path / "g.ilsim"), "--method", "fsbr",
                 "--calib", str(tmp_path / "calib.txt")]) == 2
    captured = capsys.readouterr()
    assert captured.err == f"ilsim export: error: {message}\n"
    assert not (tmp_path / "g.ilsim").exists()


def test_fsbr_options_are_checked():
    for bad in (dict(fsbr_epochs=-1), dict(fsbr_batch=0), dict(fsbr_calib_windows=0), dict(fsbr_lr_smooth=0.0),
                dict(fsbr_dtype="float16"), dict(fsbr_threads=0)):
        with pytest.raises(InputError):
            ExportOptions(method="fsbr", **bad).validate()


def test_smooth_layer_takes_given_factors_and_reports_the_closed_form_ones():
    """smooth_layer with the factors it reported applies exactly the same transform; a qk factor
    that differs within a RoPE pair, or of the wrong shape, is refused."""
    from ilsim.export.smoothing import FSBR_PAIRS, smooth_layer

    rng = np.random.default_rng(4)
    h, hkv, d, hidden, inter = 4, 2, 12, 48, 96
    shapes = {"q": (h * d, hidden), "k": (hkv * d, hidden), "v": (hkv * d, hidden), "o": (hidden, h * d),
              "gate": (inter, hidden), "up": (inter, hidden), "down": (hidden, inter)}
    w0 = {k: rng.normal(size=s) for k, s in shapes.items()} | {"attn_norm": rng.uniform(0.5, 2, hidden),
                                                              "mlp_norm": rng.uniform(0.5, 2, hidden)}
    stats = {"q": rng.uniform(0.1, 30, (h, d)), "k": rng.uniform(0.1, 30, (hkv, d)),
             "attn_in": rng.uniform(0.1, 50, hidden), "o_in": rng.uniform(0.1, 5, h * d),
             "mlp_in": rng.uniform(0.1, 50, hidden), "gate": rng.uniform(0.1, 9, inter),
             "up": rng.uniform(0.1, 9, inter), "down_in": rng.uniform(0.1, 40, inter)}
    closed, reported = {k: v.copy() for k, v in w0.items()}, {}
    gate_div = smooth_layer(closed, stats, h, hkv, d, factors_out=reported)
    assert set(reported) == set(FSBR_PAIRS)
    given = {k: v.copy() for k, v in w0.items()}
    assert np.array_equal(smooth_layer(given, stats, h, hkv, d, factors=reported), gate_div)
    assert all(np.array_equal(given[k], closed[k]) for k in w0)
    bad = dict(reported, qk=reported["qk"] * np.r_[np.ones(d - 1), 2.0])
    with pytest.raises(InputError, match="RoPE pair"):
        smooth_layer({k: v.copy() for k, v in w0.items()}, stats, h, hkv, d, factors=bad)
    with pytest.raises(InputError, match="shape"):
        smooth_layer({k: v.copy() for k, v in w0.items()}, stats, h, hkv, d,
                     factors=dict(reported, up_down=np.ones(inter + 1)))

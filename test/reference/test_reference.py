"""Tests of the NumPy reference against the spec's hand-checkable goldens.

Run with: /usr/bin/python3 -m unittest discover -s test/reference
"""

import contextlib
import io
import json
import math
import struct
import tempfile
import unittest
from pathlib import Path

import numpy as np

import mixer_ref as ref

REPO_ROOT = Path(__file__).resolve().parents[2]
MODELS = REPO_ROOT / "models"

# Router probabilities of the routing goldens: G = 1, T = 6, E = 3.
GOLDEN_PROBS = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.6, 0.3, 0.1],
                         [0.3, 0.3, 0.4], [0.9, 0.05, 0.05], [0.2, 0.2, 0.6]])


def moe_config(**changes) -> ref.MoeConfig:
    """An experts-choose MoeConfig with one-wide experts, then `changes`."""
    fields = dict(num_experts=2, expert_d_ff=1, routing="experts_choose", k=1,
                  batch_prioritized=True, train_capacity_factor=1.0,
                  eval_capacity_factor=1.0, min_expert_capacity=4,
                  max_group_size=4096, router_dtype="float32")
    fields.update(changes)
    return ref.MoeConfig(**fields)


def buffers(slot: np.ndarray) -> list:
    """Per expert, the tokens in buffer order (from a slot [T, E] matrix)."""
    result = []
    for e in range(slot.shape[1]):
        tokens = np.nonzero(slot[:, e] >= 0)[0]
        result.append([int(t) for t in tokens[np.argsort(slot[tokens, e])]])
    return result


def dispatched_weights(slot: np.ndarray) -> np.ndarray:
    """Combine weights: the token's probability where dispatched, else 0."""
    return np.where(slot >= 0, GOLDEN_PROBS, 0.0)


class StructuredMatrixTest(unittest.TestCase):
    def test_circulant_matrix(self):
        np.testing.assert_array_equal(
            ref.circulant_matrix(np.arange(4)),
            [[0, 3, 2, 1], [1, 0, 3, 2], [2, 1, 0, 3], [3, 2, 1, 0]])

    def test_toeplitz_matrix(self):
        np.testing.assert_array_equal(
            ref.toeplitz_matrix(np.arange(7)),
            [[3, 4, 5, 6], [2, 3, 4, 5], [1, 2, 3, 4], [0, 1, 2, 3]])

    def test_circulant_mixing_golden(self):
        x = np.arange(24.0).reshape(1, 4, 6)
        y = ref.mix_structured(x, ref.circulant_matrix(np.arange(4.0)),
                               ref.circulant_matrix(np.arange(6.0)))[0]
        row0 = [1110, 1164, 1182, 1164, 1110, 1020]
        np.testing.assert_allclose(
            y, [row0, [1290, 1344, 1362, 1344, 1290, 1200], row0,
                [570, 624, 642, 624, 570, 480]])

    def test_toeplitz_mixing_golden(self):
        x = np.arange(12.0).reshape(1, 4, 3)
        y = ref.mix_structured(x, ref.toeplitz_matrix(np.arange(7.0)),
                               ref.toeplitz_matrix(np.arange(5.0)))[0]
        np.testing.assert_allclose(y, [[1062, 720, 378], [856, 580, 304],
                                       [650, 440, 230], [444, 300, 156]])


class MixingTest(unittest.TestCase):
    X = np.array([[1, 0, 0, 11, 9, 2, 0.4, 2], [1, 1, 0, 1, 0, 2, 8, 1],
                  [1, 4, 0, 5, 5, 0, -3, 1]])

    def test_fourier_golden(self):
        y = ref.mix_fourier(self.X[None], hartley=False)[0]
        row1 = [11.9, 1.11301, 6.00192, -3.09031, -3.1, 4.93955, 11.19808,
                -28.96225]
        np.testing.assert_allclose(
            y[0], [52.4, -19.48528, 11.6, -2.51472, -7.6, -2.51472, 11.6,
                   -19.48528], atol=1e-4)
        np.testing.assert_allclose(y[1], row1, atol=1e-4)
        np.testing.assert_allclose(y[2], [row1[0]] + row1[:0:-1], atol=1e-4)

    def test_hartley_golden(self):
        y = ref.mix_fourier(self.X[None], hartley=True)[0]
        np.testing.assert_allclose(
            y[0], [52.4, -14.98579, -0.4, 12.78478, -7.6, -17.81421, 23.6,
                   -23.98478], atol=1e-4)

    def test_fourier_is_cosine_sum(self):
        # Y[n,k] = Σ_i Σ_j X[i,j]·cos(2π(n·i/S + k·j/D)).
        s, d = self.X.shape
        i, j = np.meshgrid(np.arange(s), np.arange(d), indexing="ij")
        expected = [[np.sum(self.X * np.cos(2 * np.pi
                                            * (n * i / s + k * j / d)))
                     for k in range(d)] for n in range(s)]
        np.testing.assert_allclose(ref.mix_fourier(self.X[None], False)[0],
                                   expected, atol=1e-9)

    def test_linear_mixing_is_untransposed(self):
        # A unit at X[0,0] picks column 0 of W_s and row 0 of W_h.
        ws = np.array([[1.0, 2.0], [0.0, 1.0]])
        wh = np.array([[1.0, 3.0], [0.0, 1.0]])
        x = np.array([[[1.0, 0.0], [0.0, 0.0]]])
        np.testing.assert_allclose(ref.mix_linear(x, ws, wh)[0],
                                   [[1.0, 3.0], [0.0, 0.0]])


class ElementwiseTest(unittest.TestCase):
    def test_gelu_golden(self):
        np.testing.assert_allclose(ref.gelu(np.array([-1.0, 0.0, 1.0, 2.0])),
                                   [-0.158808, 0.0, 0.841192, 1.954598],
                                   atol=1e-6)

    def test_layer_norm(self):
        y = ref.layer_norm(np.array([1.0, 2.0, 3.0, 4.0]), np.full(4, 2.0),
                           np.full(4, 0.5), 1e-12)
        np.testing.assert_allclose(
            y, np.array([-1.5, -0.5, 0.5, 1.5]) / math.sqrt(1.25) * 2 + 0.5)

    def test_layer_norm_constant_row_clamps_variance(self):
        # E[x²] − mean² can come out slightly negative for a constant row.
        x = np.full(7, 0.7)
        self.assertLess((x * x).mean() - x.mean() ** 2, -1e-20)
        y = ref.layer_norm(x, np.ones(7), np.full(7, 0.25), 1e-20)
        self.assertTrue(np.all(np.isfinite(y)))
        np.testing.assert_allclose(y, 0.25, atol=1e-3)

    def test_round_to_bfloat16(self):
        ulp = 2.0 ** -7  # bf16 spacing in [1, 2)
        values = np.array([1 + ulp / 2, 1 + 3 * ulp / 2,
                           1 + ulp / 2 + 2 ** -20, -(1 + 3 * ulp / 2), 0.1,
                           np.inf, np.nan])
        got = ref.round_to_bfloat16(values)
        np.testing.assert_array_equal(
            got[:5],
            [1.0, 1 + 2 * ulp, 1 + ulp, -(1 + 2 * ulp), 0.10009765625])
        self.assertEqual(got[5], np.inf)
        self.assertTrue(np.isnan(got[6]))

    def test_bfloat16_softmax_rounds_each_step(self):
        # 0.99609375 − 2 = −(1 + 2^-8) ties to −1: the row routes as
        # [0, −1, −2, −3] does; a repeated maximum shares exactly.
        p = ref.bfloat16_softmax(np.array([[2.0, 0.99609375, 0.0, -1.0],
                                           [0.0, -1.0, -2.0, -3.0],
                                           [-np.inf, 7.0, 7.0, -np.inf]]))
        np.testing.assert_array_equal(p[0], p[1])
        np.testing.assert_array_equal(p[2], [0.0, 0.5, 0.5, 0.0])
        np.testing.assert_array_equal(p, ref.round_to_bfloat16(p))
        self.assertFalse(np.array_equal(
            ref.softmax(np.array([2.0, 0.99609375, 0.0, -1.0])),
            ref.softmax(np.array([0.0, -1.0, -2.0, -3.0]))))

    def test_bfloat16_router_rounds_operands_and_logits(self):
        # x rounds first (1 + 2^-9 → 1), then the product 1 + 2^-8 ties
        # down to 1: both logits are 1, unlike in float32.
        x = np.array([[1.0 + 2.0 ** -9, 1.0]])
        kernel = np.array([[1.0, 1.0], [2.0 ** -8, 0.0]])
        bias = np.zeros(2)
        p = ref.router_probabilities(x, kernel, bias, "bfloat16")
        np.testing.assert_array_equal(p, [[0.5, 0.5]])
        q = ref.router_probabilities(x, kernel, bias, "float32")
        self.assertNotEqual(q[0, 0], q[0, 1])


class AttentionTest(unittest.TestCase):
    """One head of width one, identity projections: logits q·k = x_q·x_k."""

    PARAMS = {"a/out/kernel": np.ones((1, 1, 1)), "a/out/bias": np.zeros(1)}
    for proj in ("query", "key", "value"):
        PARAMS[f"a/{proj}/kernel"] = np.ones((1, 1, 1))
        PARAMS[f"a/{proj}/bias"] = np.zeros((1, 1))
    X = np.array([[[1.0], [2.0], [3.0]]])
    IDS = np.array([[5, 5, 0]])  # last token is pad (pad_id 0)

    def test_padding_mask(self):
        y = ref.attention(self.X, self.PARAMS, "a", self.IDS, 0,
                          causal=False)[0, :, 0]
        e1, e2, e4 = math.exp(1), math.exp(2), math.exp(4)
        self.assertAlmostEqual(y[0], (e1 + 2 * e2) / (e1 + e2))
        self.assertAlmostEqual(y[1], (e2 + 2 * e4) / (e2 + e4))
        self.assertAlmostEqual(y[2], 2.0)  # pad query: uniform over all keys

    def test_causal_mask(self):
        y = ref.attention(self.X, self.PARAMS, "a", self.IDS, 0,
                          causal=True)[0, :, 0]
        e2, e4 = math.exp(2), math.exp(4)
        self.assertAlmostEqual(y[0], 1.0)
        self.assertAlmostEqual(y[1], (e2 + 2 * e4) / (e2 + e4))
        self.assertAlmostEqual(y[2], 2.0)


class GroupingTest(unittest.TestCase):
    def test_num_groups_table(self):
        for max_group, tokens, groups in [
                (8, 32, 4), (16, 32, 2), (3, 32, 16), (32, 32, 1), (64, 32, 1),
                (4096, 6144, 1)]:
            self.assertEqual(ref.num_groups(tokens, max_group), groups)

    def test_sparse_mixer_group_shapes(self):
        moe = ref.load_config(MODELS / "sparse_mixer_base.json").moe
        fast = ref.load_config(MODELS / "fast_sparse_mixer_base.json").moe
        self.assertEqual(ref.group_shape(512, moe, 1.0), (1, 512, 32))
        self.assertEqual(ref.group_shape(512, fast, 0.5), (1, 512, 16))
        self.assertEqual(ref.group_shape(8 * 512, moe, 1.0), (1, 4096, 256))
        self.assertEqual(ref.group_shape(8 * 512, fast, 0.5), (1, 4096, 128))
        self.assertEqual(ref.group_shape(16 * 512, moe, 1.0)[:2], (2, 4096))
        self.assertEqual(ref.group_shape(24 * 512, moe, 1.0)[:2], (3, 4096))

    def test_capacity_rounds_half_to_even_and_has_a_minimum(self):
        moe = moe_config(num_experts=4, min_expert_capacity=1)
        self.assertEqual(ref.group_shape(10, moe, 1.0), (1, 10, 2))  # 2.5 → 2
        self.assertEqual(ref.group_shape(14, moe, 1.0), (1, 14, 4))  # 3.5 → 4
        self.assertEqual(ref.group_shape(4, moe, 0.1), (1, 4, 1))  # minimum
        with self.assertRaises(ValueError):
            ref.group_shape(4, moe, 8.0)  # C = 8 > T = 4


class RoutingTest(unittest.TestCase):
    def test_experts_choose_golden(self):
        slot = ref.route_experts_choose(GOLDEN_PROBS, capacity=2)
        self.assertEqual(buffers(slot), [[4, 0], [1, 2], [5, 3]])

    def test_tokens_choose_k1_bpr_golden(self):
        slot = ref.route_tokens_choose(GOLDEN_PROBS, 1, 2,
                                       batch_prioritized=True)
        self.assertEqual(buffers(slot), [[4, 0], [1], [5, 3]])
        expected = np.zeros((6, 3))
        expected[[0, 1, 3, 4, 5], [0, 1, 2, 0, 2]] = [0.7, 0.8, 0.4, 0.9, 0.6]
        np.testing.assert_allclose(dispatched_weights(slot), expected)

    def test_tokens_choose_k1_no_bpr_golden(self):
        slot = ref.route_tokens_choose(GOLDEN_PROBS, 1, 2,
                                       batch_prioritized=False)
        self.assertEqual(buffers(slot), [[0, 2], [1], [3, 5]])
        self.assertFalse(np.any(slot[4] >= 0))  # t4 dropped

    def test_tokens_choose_k2_bpr_golden(self):
        slot = ref.route_tokens_choose(GOLDEN_PROBS, 2, 2,
                                       batch_prioritized=True)
        expected = np.zeros((6, 3))
        expected[[4, 4, 1, 0, 5, 3], [0, 1, 1, 0, 2, 2]] = [
            0.9, 0.05, 0.8, 0.7, 0.6, 0.4]
        np.testing.assert_allclose(dispatched_weights(slot), expected)

    def test_sigmoid_topk_ties_pick_lower_expert(self):
        mask = ref.route_sigmoid_topk(np.array([[0.9, 0.1, 0.5, 0.5]]), 2)
        np.testing.assert_array_equal(mask, [[True, False, True, False]])

    def test_experts_choose_layer(self):
        # D = 1, E = 2, T = 4, C = 1: logits (x, −x) → p0 = sigmoid(2x).
        moe = moe_config(num_experts=2, eval_capacity_factor=0.5,
                         min_expert_capacity=1)
        params = {"encoder/router_weights_0/kernel": np.array([[1.0, -1.0]]),
                  "encoder/router_weights_0/bias": np.zeros(2),
                  "encoder/expert_0/intermediate/kernel": np.ones((2, 1, 1)),
                  "encoder/expert_0/intermediate/bias": np.zeros((2, 1)),
                  "encoder/expert_0/output/kernel": np.ones((2, 1, 1)),
                  "encoder/expert_0/output/bias": np.array([[10.0], [20.0]])}
        x = np.array([[1.0], [2.0], [3.0], [4.0]])
        y = ref.moe_layer(x, params, 0, moe)[:, 0]

        def gelu(v):
            inner = math.sqrt(2 / math.pi) * (v + 0.044715 * v ** 3)
            return 0.5 * v * (1 + math.tanh(inner))

        def p0(v):
            return 1 / (1 + math.exp(-2 * v))

        self.assertAlmostEqual(y[3], p0(4) * (gelu(4) + 10))  # expert 0's pick
        # Expert 1 takes token 0.
        self.assertAlmostEqual(y[0], (1 - p0(1)) * (gelu(1) + 20))
        self.assertEqual(list(y[1:3]), [0.0, 0.0])  # taken by nobody

    def test_sigma_moe_layer(self):
        # D = 1, E = 3, k = 2: gates sigmoid(1, −1, 2) pick experts 2 and 0.
        moe = moe_config(num_experts=3, routing="sigmoid_topk", k=2)
        params = {
            "encoder/router_weights_0/expert_sel": np.array([[1.0], [-1.0],
                                                             [2.0]]),
            "encoder/expert_0/keys": np.ones((3, 1, 1)),
            "encoder/expert_0/values": np.array([[[1.0]], [[10.0]],
                                                 [[100.0]]])}
        y = ref.moe_layer(np.array([[1.0], [-1.0]]), params, 0, moe)[:, 0]

        def sigmoid(v):
            return 1 / (1 + math.exp(-v))

        self.assertAlmostEqual(y[0], sigmoid(2) * 100 + sigmoid(1) * 1)
        self.assertEqual(y[1], 0.0)  # ReLU(−1) = 0 for every expert


class ConfigTest(unittest.TestCase):
    def test_placements(self):
        cases = [("MIDDLE", 4, 14, {5, 6, 7, 8}),
                 ("TOP", 4, 14, {10, 11, 12, 13}),
                 ("MIDDLE", 4, 8, {2, 3, 4, 5}),
                 ("BOTTOM", 2, 8, {0, 1}),
                 ("MIXED", 4, 14, {0, 3, 6, 9, 12}),
                 ("MIXED", 0, 14, set())]
        for layout, count, layers, expected in cases:
            placement = {"layout": layout, "count": count}
            self.assertEqual(ref.resolve_placement(placement, layers),
                             expected)
        self.assertEqual(ref.resolve_placement([3, 1], 4), {1, 3})

    def test_defaults(self):
        cfg = ref.parse_config({
            "name": "m", "embeddings": {"vocab_size": 10, "max_seq_length": 4},
            "d_model": 8, "num_layers": 2, "d_ff": 16,
            "mixing": {"kind": "attention"},
            "attention": {"num_heads": 2}, "moe_layers": [1],
            "moe": {"num_experts": 2, "expert_d_ff": 4}})
        self.assertEqual((cfg.type_vocab_size, cfg.d_emb, cfg.pad_id),
                         (4, 8, 0))
        self.assertEqual((cfg.layer_norm_epsilon, cfg.norm, cfg.head_dim),
                         (1e-12, "post", 4))
        self.assertEqual(cfg.moe, ref.MoeConfig(
            num_experts=2, expert_d_ff=4, routing="experts_choose", k=1,
            batch_prioritized=True, train_capacity_factor=1.0,
            eval_capacity_factor=1.0, min_expert_capacity=4,
            max_group_size=4096, router_dtype="float32"))
        self.assertFalse(cfg.pooler or cfg.mlm or cfg.nsp or cfg.causal_lm)

    def test_parameter_counts(self):
        self.assertEqual(ref.parameter_count(ref.load_config(
            MODELS / "sparse_mixer_base.json")), 182_356_802)
        self.assertEqual(ref.parameter_count(ref.load_config(
            MODELS / "bert_base.json")), 111_835_138)

    def test_sparse_mixer_layer_kinds(self):
        cfg = ref.load_config(MODELS / "sparse_mixer_base.json")
        names = dict(ref.parameter_specs(cfg))
        self.assertEqual(names["encoder/linear_transform_9/input_kernel"],
                         (512, 512))
        self.assertEqual(names["encoder/attention_10/self/query/kernel"],
                         (512, 8, 64))
        self.assertEqual(names["encoder/expert_5/intermediate/kernel"],
                         (16, 512, 2048))
        self.assertNotIn("encoder/feed_forward_5/intermediate/kernel", names)
        self.assertNotIn("encoder/linear_transform_10/input_kernel", names)


class TensorFileTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = Path(self.tmp.name)

    def tearDown(self):
        self.tmp.cleanup()

    def test_reads_handmade_safetensors(self):
        header = json.dumps({
            "__metadata__": {"k": "v"},
            "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
            "b": {"dtype": "I64", "shape": [1, 1], "data_offsets": [8, 16]},
        }).encode()
        path = self.dir / "h.safetensors"
        path.write_bytes(struct.pack("<Q", len(header)) + header
                         + struct.pack("<ffq", 1.5, -2.0, -7))
        tensors = ref.read_safetensors(path)
        np.testing.assert_array_equal(tensors["a"],
                                      np.array([1.5, -2.0], np.float32))
        np.testing.assert_array_equal(tensors["b"], [[-7]])
        self.assertEqual(tensors["b"].dtype, np.int64)

    def test_safetensors_layout_and_round_trip(self):
        tensors = {"x": np.arange(6, dtype=np.float32).reshape(2, 3),
                   "ids": np.array([[1, 2]], dtype=np.int32)}
        path = self.dir / "t.safetensors"
        ref.write_safetensors(path, tensors)
        data = path.read_bytes()
        (length,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8:8 + length])
        self.assertEqual(header["x"], {"dtype": "F32", "shape": [2, 3],
                                       "data_offsets": [0, 24]})
        self.assertEqual(header["ids"]["dtype"], "I32")
        self.assertEqual(len(data), 8 + length + 32)
        back = ref.read_tensors(path)
        for name, value in tensors.items():
            np.testing.assert_array_equal(back[name], value)
            self.assertEqual(back[name].dtype, value.dtype)

    def test_npz_and_npy(self):
        np.savez(self.dir / "a.npz", input_ids=np.ones((1, 2), np.int32))
        np.save(self.dir / "type_ids.npy", np.zeros((1, 2), np.int32))
        self.assertEqual(list(ref.read_tensors(self.dir / "a.npz")),
                         ["input_ids"])
        self.assertEqual(list(ref.read_tensors(self.dir / "type_ids.npy")),
                         ["type_ids"])


class CommandLineTest(unittest.TestCase):
    """forward / compare / random-* on a tiny model, through main()."""

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = Path(self.tmp.name)

    def tearDown(self):
        self.tmp.cleanup()

    def run_cli(self, *args) -> int:
        with contextlib.redirect_stdout(io.StringIO()):
            return ref.main([str(a) for a in args])

    def test_forward_and_compare(self):
        model = MODELS / "tiny" / "sparse_mixer_tiny.json"
        weights, batch = self.dir / "w.safetensors", self.dir / "b.safetensors"
        out = self.dir / "out.safetensors"
        self.assertEqual(self.run_cli("random-weights", model, "--seed", 1,
                                      "-o", weights), 0)
        self.assertEqual(self.run_cli("random-batch", model, "--batch", 3,
                                      "-o", batch), 0)
        self.assertEqual(self.run_cli("forward", model, "--weights", weights,
                                      "--input", batch, "--output", out), 0)
        outputs = ref.read_tensors(out)
        self.assertEqual({k: v.shape for k, v in outputs.items()},
                         {"sequence_output": (3, 8, 16),
                          "pooled_output": (3, 16),
                          "mlm_logits": (3, 8, 64), "nsp_logits": (3, 2)})
        self.assertEqual(self.run_cli("compare", out, out), 0)
        changed = dict(outputs)
        changed["pooled_output"] = outputs["pooled_output"] + 1e-3
        ref.write_tensors(self.dir / "c.npz", changed)
        self.assertEqual(self.run_cli("compare", self.dir / "c.npz", out), 1)
        self.assertEqual(self.run_cli("compare", self.dir / "c.npz", out,
                                      "--rtol", 1e-2), 0)
        del changed["nsp_logits"]
        ref.write_tensors(self.dir / "d.npz", changed)
        self.assertEqual(self.run_cli("compare", self.dir / "d.npz", out,
                                      "--rtol", 1e-2), 1)

    def test_random_batch(self):
        cfg = ref.load_config(MODELS / "tiny" / "bert_tiny.json")
        batch = ref.random_batch(cfg, 4, seed=3)
        ids = batch["input_ids"]
        self.assertEqual(ids.dtype, np.int32)
        self.assertFalse(np.any(ids[::2] == cfg.pad_id))
        for row in ids[1::2]:
            pads = row == cfg.pad_id
            self.assertTrue(pads[-1] and not pads[0])
            # Pads only trail: no pad is followed by a non-pad.
            self.assertFalse(np.any(np.diff(pads.astype(int)) < 0))
        self.assertTrue(np.all(batch["type_ids"] < cfg.type_vocab_size))


class ForwardPropertyTest(unittest.TestCase):
    def test_all_tiny_models_run(self):
        for path in sorted((MODELS / "tiny").glob("*.json")):
            with self.subTest(model=path.name):
                cfg = ref.load_config(path)
                batch = ref.random_batch(cfg, 2, seed=0)
                out = ref.forward(cfg, ref.random_weights(cfg, 0), **batch)
                for value in out.values():
                    self.assertEqual(value.dtype, np.float32)
                    self.assertTrue(np.all(np.isfinite(value)))

    def test_causal_lm_ignores_later_tokens(self):
        cfg = ref.load_config(MODELS / "tiny" / "sigma_moe_tiny.json")
        weights = ref.random_weights(cfg, 0)
        ids = ref.random_batch(cfg, 1, seed=0)["input_ids"][:1].copy()
        ids[0] = np.arange(1, cfg.max_seq_length + 1)
        before = ref.forward(cfg, weights, ids)["causal_lm_logits"]
        ids[0, -1] = 40
        after = ref.forward(cfg, weights, ids)["causal_lm_logits"]
        np.testing.assert_array_equal(before[0, :-1], after[0, :-1])
        self.assertGreater(np.abs(before[0, -1] - after[0, -1]).max(), 0)

    def test_pad_positions_do_not_reach_other_tokens_through_attention(self):
        cfg = ref.load_config(MODELS / "tiny" / "bert_tiny.json")
        weights = ref.random_weights(cfg, 0)
        ids = np.full((1, cfg.max_seq_length), cfg.pad_id, dtype=np.int32)
        ids[0, :6] = np.arange(10, 16)
        types = np.zeros_like(ids)
        before = ref.forward(cfg, weights, ids, types)["sequence_output"]
        types[0, 6:] = 1  # only pad positions change
        after = ref.forward(cfg, weights, ids, types)["sequence_output"]
        np.testing.assert_allclose(before[0, :6], after[0, :6], atol=1e-6)
        self.assertGreater(np.abs(before[0, 6:] - after[0, 6:]).max(), 1e-3)


if __name__ == "__main__":
    unittest.main()

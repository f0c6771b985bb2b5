"""Checks that bench/pytorch_baseline.py computes what the reference computes.

Run with: /usr/bin/python3 -m unittest discover -s test/reference
"""

import contextlib
import io
import json
import sys
import unittest
from pathlib import Path

import numpy as np

import mixer_ref as ref

REPO_ROOT = Path(__file__).resolve().parents[2]
TINY = REPO_ROOT / "models" / "tiny"
sys.path.insert(0, str(REPO_ROOT / "bench"))

try:
    import torch
    import pytorch_baseline as baseline
except ImportError:  # torch is optional for the reference itself
    torch = None


def log_softmax(x: np.ndarray) -> np.ndarray:
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


@unittest.skipIf(torch is None, "torch is not installed")
class BaselineMatchesReferenceTest(unittest.TestCase):
    def setUp(self):
        torch.set_num_threads(1)

    def build(self, name: str):
        cfg = ref.load_config(TINY / name)
        weights = ref.random_weights(cfg, seed=4)
        model = baseline.MixerModel(cfg)
        model.load(weights)
        batch = ref.random_batch(cfg, 3, seed=5)
        ids = torch.from_numpy(batch["input_ids"]).long()
        types = torch.from_numpy(batch["type_ids"]).long()
        return cfg, weights, model, batch, ids, types

    def test_inference_outputs(self):
        for name in ("bert_tiny.json", "sparse_mixer_tiny.json",
                     "fast_sparse_mixer_tiny.json", "fnet_tiny.json",
                     "hartley_tiny.json"):
            with self.subTest(model=name):
                cfg, weights, model, batch, ids, types = self.build(name)
                model.eval()
                with torch.no_grad():
                    out = model(ids, types, mlm=True)
                expected = ref.forward(cfg, weights, **batch)
                ok, lines = ref.compare_tensors(
                    {k: v.numpy() for k, v in out.items()},
                    {k: expected[k] for k in out}, rtol=1e-4)
                self.assertEqual(set(out), {"sequence_output", "pooled_output",
                                            "mlm_logits"})
                self.assertTrue(ok, "\n".join(lines))

    def test_pretraining_loss_and_step(self):
        cfg, weights, model, batch, ids, types = self.build(
            "sparse_mixer_tiny.json")
        expected = ref.forward(cfg, weights, **batch)
        positions = np.array([[0, 3], [1, 2], [5, 6]])
        labels = np.array([[7, 8], [9, 10], [11, 12]])
        nsp_labels = np.array([1, 0, 1])
        rows = np.arange(3)[:, None]
        mlm = -log_softmax(expected["mlm_logits"][rows, positions]
                           .astype(np.float64))
        nsp = -log_softmax(expected["nsp_logits"].astype(np.float64))
        want = (np.take_along_axis(mlm, labels[..., None], -1).mean()
                + nsp[np.arange(3), nsp_labels].mean())
        model.train()  # train and eval capacity factors are equal here
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        loss = model.pretraining_loss(ids, types, torch.from_numpy(positions),
                                      torch.from_numpy(labels),
                                      torch.from_numpy(nsp_labels))
        self.assertAlmostEqual(loss.item(), want, places=4)
        loss.backward()
        optimizer.step()
        kernel = "encoder/expert_1/intermediate/kernel"
        self.assertGreater(np.abs(model.params[kernel].detach().numpy()
                                  - weights[kernel]).max(), 0.0)

    def test_bf16_autocast_stays_near_fp32(self):
        # The GPU benchmark's bf16 mode, run on the CPU: the same model under
        # autocast, within bf16 rounding of the fp32 reference.
        for name in ("bert_tiny.json", "sparse_mixer_tiny.json"):
            with self.subTest(model=name):
                cfg, weights, model, batch, ids, types = self.build(name)
                model.eval()
                with torch.no_grad(), torch.autocast("cpu",
                                                     dtype=torch.bfloat16):
                    out = model(ids, types)["sequence_output"].float()
                want = ref.forward(cfg, weights, **batch)["sequence_output"]
                error = np.linalg.norm(out.numpy() - want) / \
                    np.linalg.norm(want)
                # bf16 keeps 8 bits of mantissa: the products did round, by
                # about 2^-9 per element.
                self.assertLess(error, 2e-2)
                self.assertGreater(error, 1e-4)

    def test_unsupported_models_are_rejected(self):
        for name in ("circulant_tiny.json", "tokens_choose_tiny.json",
                     "sigma_moe_tiny.json"):
            with self.subTest(model=name), self.assertRaises(ValueError):
                baseline.MixerModel(ref.load_config(TINY / name))

    def test_benchmark_record(self):
        stdout = io.StringIO()
        with contextlib.redirect_stdout(stdout):
            baseline.main([str(TINY / "bert_tiny.json"), "--batch", "2",
                           "--seq", "10", "--runs", "2", "--warmup", "1",
                           "--threads", "1", "--blas", "system"])
        record = json.loads(stdout.getvalue())
        self.assertEqual((record["model"], record["mode"], record["batch"]),
                         ("bert_tiny", "inference", 2))
        self.assertEqual(len(record["runs_ms_per_example"]), 2)
        self.assertGreater(record["ms_per_example"], 0.0)
        self.assertEqual((record["device"], record["dtype"],
                          record["compiled"]), ("cpu", "fp32", False))


if __name__ == "__main__":
    unittest.main()

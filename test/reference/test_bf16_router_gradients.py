"""Checks bench/bf16_router_gradients.py, the measurement behind the backward
figures of docs/parameters.md ("The bfloat16 router").

Run with: /usr/bin/python3 -m unittest discover -s test/reference
"""

import contextlib
import io
import sys
import unittest
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "bench"))

try:
    import torch  # noqa: F401
    import bf16_router_gradients as measure
except ImportError:  # torch is optional for the reference itself
    measure = None


@unittest.skipIf(measure is None, "torch is not installed")
class Bf16RouterGradientsTest(unittest.TestCase):
    def test_float32_backward_is_near_the_bfloat16_one(self):
        # mixer's float32 backward and bfloat16 autograd agree to about the
        # documented percent, and are not the same computation.
        with contextlib.redirect_stdout(io.StringIO()):
            rel = measure.backward_differences(tokens=128, seeds=3)
        for name, values in rel.items():
            with self.subTest(gradient=name):
                self.assertLess(max(values), 5e-2)
                self.assertGreater(min(values), 1e-5)


if __name__ == "__main__":
    unittest.main()

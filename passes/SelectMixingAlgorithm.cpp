//===- SelectMixingAlgorithm.cpp - FFT or matmul mixing by cost -----------===//

#include "dialects/mixer/VerifyUtils.h"
#include "passes/Passes.h"

#include <cmath>

namespace mixer {
#define GEN_PASS_DEF_MIXERSELECTMIXINGALGORITHM
#include "passes/Passes.h.inc"
} // namespace mixer

using namespace mlir;
using namespace mixer::graph;

namespace {

/// Per-target relative cost of an FFT flop against a GEMM flop. On CPUs FFTs
/// run far below GEMM efficiency (memory-bound butterflies, strided passes);
/// measured on 2-core AVX-512 machines, a factor of 4 reproduces where the
/// FFT starts to win for circulant mixing.
double fftFlopCost(StringRef target) { return target == "cuda" ? 1.0 : 4.0; }

/// Flops of the complex FFTs over an [rows, cols] plane: a 2-D transform and
/// its inverse when `roundTrip`, counted as 5 n log2 n each.
double fftFlops(double rows, double cols, bool roundTrip) {
  double n = rows * cols;
  return (roundTrip ? 2.0 : 1.0) * 5.0 * n * std::log2(std::max(n, 2.0));
}

/// Flops of the dense product Y = A_s X A_h with [seq, width] X.
double denseMixFlops(double seq, double width) {
  return 2.0 * (seq * seq * width + seq * width * width);
}

MixAlgorithm cheaper(double fftCost, double matmulCost) {
  return fftCost <= matmulCost ? MixAlgorithm::fft : MixAlgorithm::matmul;
}

struct SelectMixingAlgorithmPass
    : mixer::impl::MixerSelectMixingAlgorithmBase<SelectMixingAlgorithmPass> {
  using MixerSelectMixingAlgorithmBase::MixerSelectMixingAlgorithmBase;

  void runOnOperation() override {
    if (target != "cpu" && target != "cuda") {
      getOperation().emitError()
          << "unknown target '" << target << "' (expected cpu or cuda)";
      return signalPassFailure();
    }
    double fftCost = fftFlopCost(target);
    getOperation().walk([&](SpectralMixOp op) {
      if (op.getAlgorithm() != MixAlgorithm::automatic)
        return;
      ArrayRef<int64_t> shape = shapeOf(op.getInput());
      // The DFT as matmuls multiplies a real input by complex matrices.
      double matmul = 2.0 * denseMixFlops(shape[1], shape[2]);
      op.setAlgorithm(
          cheaper(fftCost * fftFlops(shape[1], shape[2], false), matmul));
    });
    getOperation().walk([&](StructuredMixOp op) {
      if (op.getAlgorithm() != MixAlgorithm::automatic)
        return;
      ArrayRef<int64_t> shape = shapeOf(op.getInput());
      // Toeplitz products run as circulant products of twice the size.
      double scale = op.getToeplitz() ? 2.0 : 1.0;
      double fft =
          fftFlops(scale * shape[1], scale * shape[2], /*roundTrip=*/true);
      op.setAlgorithm(
          cheaper(fftCost * fft, denseMixFlops(shape[1], shape[2])));
    });
  }
};

} // namespace

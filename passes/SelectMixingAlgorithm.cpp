//===- SelectMixingAlgorithm.cpp - FFT or matmul mixing by cost -----------===//

#include "dialects/mixer/VerifyUtils.h"
#include "passes/Passes.h"
#include "runtime/support/TargetInfo.h"

#include <cmath>

namespace mixer {
#define GEN_PASS_DEF_MIXERSELECTMIXINGALGORITHM
#include "passes/Passes.h.inc"
} // namespace mixer

using namespace mlir;
using namespace mixer::graph;

namespace {

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

/// The cost of one example's mixing by each algorithm, in a target's units.
struct MixCosts {
  double fft = 0;
  double matmul = 0;
};

/// The shape of one mixing: [seq, width] per example, whether the dense
/// products are complex (the DFT as real matrices: twice the flops and
/// matrices), whether the FFT path is a round trip (circulant products), and
/// the factor of the circulant embedding (2 for Toeplitz).
struct MixShape {
  double seq, width;
  bool complexMatrices;
  bool roundTrip;
  double embedding;
};

/// Flops, an FFT flop weighted `fftFlopWeight` GEMM flops (the CPU).
MixCosts flopCosts(const MixShape &m, const mixer::MixingCostModel &model) {
  double scale = m.complexMatrices ? 2.0 : 1.0;
  return {model.fftFlopWeight *
              fftFlops(m.embedding * m.seq, m.embedding * m.width, m.roundTrip),
          scale * denseMixFlops(m.seq, m.width)};
}

/// Seconds by a roofline summed per path (the GPU), time = flops /
/// throughput + bytes / bandwidth. The FFT (cuFFT, complex fp32
/// whatever the storage precision) moves 16 bytes per complex element per
/// pass, one pass per axis and transform plus the pointwise product of a
/// round trip, and reads and writes the real input and output once. The dense
/// products read X, write and reread the intermediate (complex: real and
/// imaginary halves) and write Y; the mixing matrices stay in L2 across the
/// batch. fp32 GEMMs run on the FP32 pipes (keeping fp32 results; no TF32),
/// bf16 GEMMs on tensor cores.
MixCosts rooflineCosts(const MixShape &m, const mixer::MixingCostModel &model,
                       bool bf16) {
  double element = bf16 ? 2.0 : 4.0;
  double plane = m.seq * m.width;
  double n = m.embedding * m.embedding * plane;
  double passes = m.roundTrip ? 5.0 : 2.0;
  double fft =
      fftFlops(m.embedding * m.seq, m.embedding * m.width, m.roundTrip) /
          model.fftRate +
      (passes * 16.0 * n + 2.0 * element * plane) / model.bandwidth;
  double scale = m.complexMatrices ? 2.0 : 1.0;
  double matmul = scale * denseMixFlops(m.seq, m.width) /
                      (bf16 ? model.gemmBf16Rate : model.gemmFp32Rate) +
                  element * (2.0 + 2.0 * scale) * plane / model.bandwidth;
  return {fft, matmul};
}

MixAlgorithm cheaper(const MixCosts &costs) {
  return costs.fft <= costs.matmul ? MixAlgorithm::fft : MixAlgorithm::matmul;
}

struct SelectMixingAlgorithmPass
    : mixer::impl::MixerSelectMixingAlgorithmBase<SelectMixingAlgorithmPass> {
  using MixerSelectMixingAlgorithmBase::MixerSelectMixingAlgorithmBase;

  void runOnOperation() override {
    const mixer::TargetInfo *info = mixer::findTarget(target);
    if (!info) {
      getOperation().emitError()
          << "unknown target '" << target << "' (expected "
          << mixer::targetNames(" or ") << ")";
      return signalPassFailure();
    }
    if (precision != "fp32" && precision != "bf16") {
      getOperation().emitError()
          << "unknown precision '" << precision << "' (expected fp32 or bf16)";
      return signalPassFailure();
    }
    const mixer::MixingCostModel &model = info->mixingCosts;
    auto costs = [&](const MixShape &shape) {
      return model.isRoofline()
                 ? rooflineCosts(shape, model, precision == "bf16")
                 : flopCosts(shape, model);
    };
    getOperation().walk([&](SpectralMixOp op) {
      if (op.getAlgorithm() != MixAlgorithm::automatic)
        return;
      ArrayRef<int64_t> shape = shapeOf(op.getInput());
      // The DFT as matmuls multiplies a real input by complex matrices.
      op.setAlgorithm(cheaper(costs({double(shape[1]), double(shape[2]),
                                     /*complexMatrices=*/true,
                                     /*roundTrip=*/false, 1.0})));
    });
    getOperation().walk([&](StructuredMixOp op) {
      if (op.getAlgorithm() != MixAlgorithm::automatic)
        return;
      ArrayRef<int64_t> shape = shapeOf(op.getInput());
      // Toeplitz products run as circulant products of twice the size.
      op.setAlgorithm(cheaper(
          costs({double(shape[1]), double(shape[2]), /*complexMatrices=*/false,
                 /*roundTrip=*/true, op.getToeplitz() ? 2.0 : 1.0})));
    });
  }
};

} // namespace

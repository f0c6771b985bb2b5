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

/// CPU: flops, an FFT flop weighted 4 times a GEMM flop. FFTs run far below
/// GEMM efficiency (memory-bound butterflies, strided passes); measured on
/// 2-core AVX-512 machines, a factor of 4 reproduces where the FFT starts to
/// win for circulant mixing.
MixCosts cpuCosts(const MixShape &m) {
  double scale = m.complexMatrices ? 2.0 : 1.0;
  return {4.0 *
              fftFlops(m.embedding * m.seq, m.embedding * m.width, m.roundTrip),
          scale * denseMixFlops(m.seq, m.width)};
}

/// GPU (an H100-class device): seconds by a roofline summed per path, time =
/// flops / throughput + bytes / bandwidth. The FFT (cuFFT, complex fp32
/// whatever the storage precision) moves 16 bytes per complex element per
/// pass, one pass per axis and transform plus the pointwise product of a
/// round trip, and reads and writes the real input and output once. The dense
/// products read X, write and reread the intermediate (complex: real and
/// imaginary halves) and write Y; the mixing matrices stay in L2 across the
/// batch. fp32 GEMMs run on the FP32 pipes (keeping fp32 results; no TF32),
/// bf16 GEMMs on tensor cores.
MixCosts cudaCosts(const MixShape &m, bool bf16) {
  constexpr double kBandwidth = 3.0e12;      // bytes/s of HBM
  constexpr double kFftRate = 20.0e12;       // flop/s cuFFT sustains
  constexpr double kGemmFp32Rate = 50.0e12;  // flop/s, FP32 pipes
  constexpr double kGemmBf16Rate = 600.0e12; // flop/s, tensor cores
  double element = bf16 ? 2.0 : 4.0;
  double plane = m.seq * m.width;
  double n = m.embedding * m.embedding * plane;
  double passes = m.roundTrip ? 5.0 : 2.0;
  double fft =
      fftFlops(m.embedding * m.seq, m.embedding * m.width, m.roundTrip) /
          kFftRate +
      (passes * 16.0 * n + 2.0 * element * plane) / kBandwidth;
  double scale = m.complexMatrices ? 2.0 : 1.0;
  double matmul = scale * denseMixFlops(m.seq, m.width) /
                      (bf16 ? kGemmBf16Rate : kGemmFp32Rate) +
                  element * (2.0 + 2.0 * scale) * plane / kBandwidth;
  return {fft, matmul};
}

MixAlgorithm cheaper(const MixCosts &costs) {
  return costs.fft <= costs.matmul ? MixAlgorithm::fft : MixAlgorithm::matmul;
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
    if (precision != "fp32" && precision != "bf16") {
      getOperation().emitError()
          << "unknown precision '" << precision << "' (expected fp32 or bf16)";
      return signalPassFailure();
    }
    auto costs = [&](const MixShape &shape) {
      return target == "cuda" ? cudaCosts(shape, precision == "bf16")
                              : cpuCosts(shape);
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

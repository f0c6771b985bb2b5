//===- TargetInfo.h - What each compilation target can do -------*- C++ -*-===//
//
// One description per target (cpu, cuda) of what its backend implements, for
// the compiler passes that adapt a plan to its target: which activations the
// dense kernel fuses into its GEMM epilogue (mixer-fuse-dense-activation),
// whether the experts kernels gather their rows (mixrt-fuse-expert-gather),
// which kernels take bf16 activations (mixrt-assign-precision, mixc),
// and the constants of the mixing-algorithm cost model
// (mixer-select-mixing-algorithm). Unit tests of each backend check these
// claims against the backend's kernel table.
//
//===----------------------------------------------------------------------===//

#ifndef MIXER_RUNTIME_SUPPORT_TARGETINFO_H
#define MIXER_RUNTIME_SUPPORT_TARGETINFO_H

#include <initializer_list>
#include <string>
#include <string_view>

namespace mixer {

/// The constants the mixing-algorithm selection weighs FFT against matmul
/// mixing with. Without a bandwidth the cost is in flops, an FFT flop counting
/// `fftFlopWeight` GEMM flops; with one it is a roofline in seconds, flops /
/// rate + bytes / bandwidth per path.
struct MixingCostModel {
  double fftFlopWeight = 1.0;
  double bandwidth = 0.0;    ///< bytes/s of device memory
  double fftRate = 0.0;      ///< flop/s the FFT library sustains
  double gemmFp32Rate = 0.0; ///< flop/s of fp32 products
  double gemmBf16Rate = 0.0; ///< flop/s of bf16 products

  constexpr bool isRoofline() const { return bandwidth > 0.0; }
};

struct TargetInfo {
  std::string_view name;
  /// The activations (ActivationKinds other than none) that the dense kernel
  /// applies in its GEMM epilogue.
  std::initializer_list<std::string_view> denseEpilogues;
  /// Whether the experts kernels read their rows from the token matrix
  /// through the routing (`gather = true`) instead of a dispatched copy.
  bool expertsGather;
  /// Whether the target runs bf16 plans (`--precision bf16`).
  bool bf16;
  /// The kernels of a bf16 plan that compute their products in bf16 and may
  /// read and write bf16 activations: each such step is marked `bf16`, and an
  /// activation is stored in bf16 only between two of them. Empty: every
  /// kernel takes bf16 activations and picks its variant from their dtypes.
  std::initializer_list<std::string_view> bf16Kernels;
  /// Whether bf16 training steps are supported (`--train --precision bf16`).
  bool bf16Training;
  MixingCostModel mixingCosts;

  /// Whether `kernel` takes bf16 activations in a bf16 plan.
  constexpr bool takesBf16(std::string_view kernel) const {
    if (bf16Kernels.size() == 0)
      return bf16;
    for (std::string_view name : bf16Kernels)
      if (name == kernel)
        return true;
    return false;
  }

  /// Whether the dense kernel fuses the activation `kind`.
  constexpr bool fusesDenseActivation(std::string_view kind) const {
    for (std::string_view fused : denseEpilogues)
      if (fused == kind)
        return true;
    return false;
  }
};

inline constexpr TargetInfo kTargets[] = {
    // oneDNN GEMMs with every activation applied to the rows they produce.
    // bf16 plans run the products of the dense layers, the experts,
    // attention and linear mixing as oneDNN bf16 matmuls (AVX512_BF16 or
    // AMX), everything else in fp32.
    // FFTs run far below GEMM efficiency (memory-bound butterflies, strided
    // passes); measured on 2-core AVX-512 machines, a weight of 4 reproduces
    // where the FFT starts to win for circulant mixing.
    {"cpu",
     {"gelu", "tanh", "relu", "gelu_erf"},
     /*expertsGather=*/false,
     /*bf16=*/true,
     /*bf16Kernels=*/{"dense", "experts", "attention", "linear_mix"},
     /*bf16Training=*/false,
     {/*fftFlopWeight=*/4.0}},
    // cuBLASLt has a GELU epilogue (and none for tanh or ReLU); the grouped
    // experts gather in their operand loads. The roofline of an H100-class
    // device: HBM bandwidth, cuFFT, the FP32 pipes (fp32 results, no TF32)
    // and bf16 tensor cores.
    {"cuda",
     {"gelu"},
     /*expertsGather=*/true,
     /*bf16=*/true,
     /*bf16Kernels=*/{},
     /*bf16Training=*/true,
     {/*fftFlopWeight=*/1.0, /*bandwidth=*/3.0e12, /*fftRate=*/20.0e12,
      /*gemmFp32Rate=*/50.0e12, /*gemmBf16Rate=*/600.0e12}},
};

/// The target named `name`, or null.
constexpr const TargetInfo *findTarget(std::string_view name) {
  for (const TargetInfo &target : kTargets)
    if (target.name == name)
      return &target;
  return nullptr;
}

/// The target names joined by `separator`: "cpu, cuda".
inline std::string targetNames(std::string_view separator) {
  std::string names;
  for (const TargetInfo &target : kTargets) {
    if (!names.empty())
      names += separator;
    names += target.name;
  }
  return names;
}

} // namespace mixer

#endif // MIXER_RUNTIME_SUPPORT_TARGETINFO_H

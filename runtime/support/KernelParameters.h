//===- KernelParameters.h - Typed kernel attributes --------------*- C++
//-*-===//
//
// The attribute values of plan kernels in the form every backend computes
// with: the enumerations behind the string attributes of Kernels.def
// (ActivationKinds, PoolModes, MixAlgorithms, Routings) and the AdamW
// hyper-parameters. The step checks of runtime/exec read them from a step; the
// CPU and CUDA kernels take them as arguments.
//
//===----------------------------------------------------------------------===//

#ifndef MIXER_RUNTIME_SUPPORT_KERNELPARAMETERS_H
#define MIXER_RUNTIME_SUPPORT_KERNELPARAMETERS_H

#include "runtime/support/Status.h"

#include <cmath>
#include <cstdint>
#include <sstream>
#include <utility>

namespace mixer {

/// Pointwise activation applied by `activation` and fused into `dense`.
/// Gelu is the tanh approximation, GeluErf the exact x * Phi(x).
enum class Activation : int32_t {
  None = 0,
  Gelu = 1,
  Tanh = 2,
  Relu = 3,
  GeluErf = 4
};

/// Routing algorithm of an MoE layer.
enum class Routing : int32_t {
  ExpertsChoose = 0, ///< each expert takes its top-C tokens of the group
  TokensChoose = 1,  ///< each token takes its top-k experts, capacity-limited
  SigmoidTopK = 2,   ///< sigma-MoE: sigmoid gates, top-k, dropless
};

/// How `pool` reduces the sequence of each example to one row.
enum class PoolMode : int32_t {
  Cls = 0,  ///< the row at position 0
  Mean = 1, ///< the mean of the rows whose token is not padding
};

/// How a spectral/structured mixing layer is computed.
enum class MixAlgorithm : int32_t { Fft = 0, Matmul = 1 };

/// Hyper-parameters of AdamW; the defaults are the pre-training recipe's.
struct AdamWConfig {
  double b1 = 0.9;           ///< decay of the first moment
  double b2 = 0.999;         ///< decay of the second moment
  double eps = 1e-6;         ///< added to sqrt(v_hat), outside the root
  double weightDecay = 0.01; ///< decoupled, multiplies the parameter
};

/// Success when b1 and b2 lie in [0, 1) (the bias corrections divide by
/// 1 - b^t), eps is positive and weightDecay is finite and non-negative.
inline Status validateAdamW(const AdamWConfig &config) {
  auto fail = [](const char *name, double value, const char *requirement) {
    std::ostringstream os;
    os << "adamw: " << name << " " << value << " " << requirement;
    return Status::error(os.str());
  };
  // Written so that NaN fails every check.
  if (!(config.b1 >= 0.0 && config.b1 < 1.0))
    return fail("b1", config.b1, "is not in [0, 1)");
  if (!(config.b2 >= 0.0 && config.b2 < 1.0))
    return fail("b2", config.b2, "is not in [0, 1)");
  if (!(config.eps > 0.0 && std::isfinite(config.eps)))
    return fail("eps", config.eps, "is not positive and finite");
  if (!(config.weightDecay >= 0.0 && std::isfinite(config.weightDecay)))
    return fail("weight_decay", config.weightDecay,
                "is not non-negative and finite");
  return Status::success();
}

/// A read-only run of f32 values: (first element, element count).
using ConstValues = std::pair<const float *, int64_t>;
/// A writable run of f32 values: (first element, element count).
using Values = std::pair<float *, int64_t>;

} // namespace mixer

#endif // MIXER_RUNTIME_SUPPORT_KERNELPARAMETERS_H

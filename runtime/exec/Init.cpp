//===- Init.cpp - Deterministic parameter initialisation ------------------===//

#include "runtime/exec/Init.h"

#include <cmath>

namespace mixer::exec {

namespace {

/// Standard deviation of a standard normal truncated at +-2.
constexpr double kTruncatedStd = 0.87962566103423978;

constexpr double kTwoPi = 6.283185307179586476925286766559;

/// The generator of one parameter. Counter words: 0-1 the position in the
/// tensor, 2 the parameter index, 3 the attempt (truncated normal).
struct Stream {
  PhiloxKey key;
  uint32_t index;

  Stream(uint64_t seed, uint64_t paramIndex)
      : key{static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32)},
        index(static_cast<uint32_t>(paramIndex)) {}

  /// Four standard normals for `position`, by Box-Muller on four uniforms
  /// in (0, 1).
  std::array<double, 4> normals(uint64_t position, uint32_t attempt) const {
    PhiloxCounter bits =
        philox4x32({static_cast<uint32_t>(position),
                    static_cast<uint32_t>(position >> 32), index, attempt},
                   key);
    std::array<double, 4> u;
    for (int i = 0; i < 4; ++i)
      u[i] = (static_cast<double>(bits[i]) + 0.5) * 0x1p-32;
    std::array<double, 4> z;
    for (int i = 0; i < 4; i += 2) {
      double radius = std::sqrt(-2.0 * std::log(u[i]));
      double angle = kTwoPi * u[i + 1];
      z[i] = radius * std::cos(angle);
      z[i + 1] = radius * std::sin(angle);
    }
    return z;
  }
};

void fillNormal(const Stream &stream, double stddev, float *data,
                int64_t numel) {
  int64_t blocks = (numel + 3) / 4;
#pragma omp parallel for schedule(static)
  for (int64_t block = 0; block < blocks; ++block) {
    std::array<double, 4> z = stream.normals(block, 0);
    for (int64_t lane = 0; lane < 4 && block * 4 + lane < numel; ++lane)
      data[block * 4 + lane] = static_cast<float>(stddev * z[lane]);
  }
}

/// Rejection sampling per element: attempt a of element i uses counter
/// (i, a), so every element stays independent of the others.
void fillTruncatedNormal(const Stream &stream, double stddev, float *data,
                         int64_t numel) {
  double scale = stddev / kTruncatedStd;
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < numel; ++i) {
    for (uint32_t attempt = 0;; ++attempt) {
      std::array<double, 4> z = stream.normals(i, attempt);
      const double *accepted = nullptr;
      for (const double &candidate : z) {
        if (std::fabs(candidate) <= 2.0) {
          accepted = &candidate;
          break;
        }
      }
      if (accepted) {
        data[i] = static_cast<float>(scale * *accepted);
        break;
      }
    }
  }
}

/// Population standard deviation, summed in a fixed order.
double standardDeviation(const float *data, int64_t numel) {
  if (numel == 0)
    return 0.0;
  double sum = 0.0;
  for (int64_t i = 0; i < numel; ++i)
    sum += data[i];
  double mean = sum / numel, squares = 0.0;
  for (int64_t i = 0; i < numel; ++i)
    squares += (data[i] - mean) * (data[i] - mean);
  return std::sqrt(squares / numel);
}

/// Every row (last axis) to unit L2 norm, then the whole tensor rescaled to
/// the standard deviation it had before.
void renormRows(float *data, int64_t numel, int64_t cols) {
  double before = standardDeviation(data, numel);
  int64_t rows = cols > 0 ? numel / cols : 0;
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    float *row = data + r * cols;
    double squares = 0.0;
    for (int64_t c = 0; c < cols; ++c)
      squares += static_cast<double>(row[c]) * row[c];
    if (squares > 0.0) {
      double inverse = 1.0 / std::sqrt(squares);
      for (int64_t c = 0; c < cols; ++c)
        row[c] = static_cast<float>(row[c] * inverse);
    }
  }
  double after = standardDeviation(data, numel);
  if (after > 0.0) {
    double factor = before / after;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < numel; ++i)
      data[i] = static_cast<float>(data[i] * factor);
  }
}

} // namespace

void initTensor(const InitSpec &spec, uint64_t seed, uint64_t index,
                const std::vector<int64_t> &shape, float *data) {
  int64_t numel = 1;
  for (int64_t dim : shape)
    numel *= dim;
  Stream stream(seed, index);
  switch (spec.kind) {
  case InitKind::Zeros:
  case InitKind::Ones: {
    float value = spec.kind == InitKind::Ones ? 1.0f : 0.0f;
    for (int64_t i = 0; i < numel; ++i)
      data[i] = value;
    return;
  }
  case InitKind::Normal:
    fillNormal(stream, spec.stddev, data, numel);
    return;
  case InitKind::TruncatedNormal:
    fillTruncatedNormal(stream, spec.stddev, data, numel);
    return;
  case InitKind::NormalRowRenorm:
    fillNormal(stream, spec.stddev, data, numel);
    renormRows(data, numel, shape.empty() ? 1 : shape.back());
    return;
  }
}

io::HostTensor initParameter(const Plan &plan, size_t index, uint64_t seed) {
  const ParamInfo &param = plan.params[index];
  io::HostTensor tensor;
  tensor.name = param.name;
  tensor.dtype = io::DType::F32;
  // A sharded parameter is drawn whole, as the one-process plan draws it.
  tensor.shape = param.globalShape.empty() ? param.shape : param.globalShape;
  tensor.data.resize(tensor.numel() * sizeof(float));
  initTensor(param.init, seed, index, tensor.shape, tensor.as<float>());
  return tensor;
}

std::vector<io::HostTensor> initParameters(const Plan &plan, uint64_t seed) {
  std::vector<io::HostTensor> tensors;
  tensors.reserve(plan.params.size());
  for (size_t i = 0; i < plan.params.size(); ++i)
    tensors.push_back(initParameter(plan, i, seed));
  return tensors;
}

} // namespace mixer::exec

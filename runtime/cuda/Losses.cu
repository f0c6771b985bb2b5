//===- Losses.cu - Row softmax and softmax cross-entropy ------------------===//
//
// One block per row. The cross-entropy keeps each row's loss in double and
// adds the rows in row order in a final single-block kernel, so the total
// does not depend on scheduling.
//
//===----------------------------------------------------------------------===//

#include "runtime/cuda/Common.cuh"

namespace mixer::cuda {
namespace {

using namespace detail;

/// Row maximum and sum of exp(x - max) by a kBlockThreads block.
template <typename T>
__device__ __forceinline__ float2 expStats(const T *x, int64_t cols,
                                           float *scratch) {
  float maximum = -INFINITY;
  for (int64_t i = threadIdx.x; i < cols; i += kBlockThreads)
    maximum = fmaxf(maximum, load(x, i));
  maximum = blockMax(maximum, scratch);
  float sum = 0.0f;
  for (int64_t i = threadIdx.x; i < cols; i += kBlockThreads)
    sum += expf(load(x, i) - maximum);
  return make_float2(maximum, blockSum(sum, scratch));
}

template <typename T>
__global__ void __launch_bounds__(kBlockThreads)
    softmaxKernel(const T *x, T *y, int64_t cols) {
  __shared__ float scratch[kBlockWarps];
  const T *xRow = x + int64_t(blockIdx.x) * cols;
  T *yRow = y + int64_t(blockIdx.x) * cols;
  float2 stats = expStats(xRow, cols, scratch);
  float inverse = 1.0f / stats.y;
  for (int64_t i = threadIdx.x; i < cols; i += kBlockThreads)
    store(yRow, i, expf(load(xRow, i) - stats.x) * inverse);
}

template <typename T>
__global__ void __launch_bounds__(kBlockThreads)
    softmaxBackwardKernel(const T *y, const T *dy, T *dx, int64_t cols) {
  __shared__ float scratch[kBlockWarps];
  int64_t offset = int64_t(blockIdx.x) * cols;
  float dot = 0.0f;
  for (int64_t i = threadIdx.x; i < cols; i += kBlockThreads)
    dot += load(y, offset + i) * load(dy, offset + i);
  dot = blockSum(dot, scratch);
  for (int64_t i = threadIdx.x; i < cols; i += kBlockThreads)
    store(dx, offset + i, load(y, offset + i) * (load(dy, offset + i) - dot));
}

/// One row of the cross-entropy: rowLoss[r] and, when dlogits is not null,
/// its gradient row.
template <typename T>
__global__ void __launch_bounds__(kBlockThreads)
    crossEntropyKernel(const T *logits, const int32_t *labels,
                       const float *weights, T *dlogits, double *rowLoss,
                       int64_t classes, float lossScale,
                       const float *deviceScale, IdCheck check) {
  __shared__ float scratch[kBlockWarps];
  int64_t row = blockIdx.x;
  const T *x = logits + row * classes;
  T *grad = dlogits ? dlogits + row * classes : nullptr;
  int32_t label = labels[row];
  if (label == -1 || !idInRange(check, row, label, classes)) {
    // -1 is ignored; any other label is invalid and poisons the loss.
    if (threadIdx.x == 0)
      rowLoss[row] =
          label == -1 ? 0.0 : __longlong_as_double(0x7ff8000000000000ll);
    if (grad)
      for (int64_t i = threadIdx.x; i < classes; i += kBlockThreads)
        store(grad, i, 0.0f);
    return;
  }
  // Read before any thread may overwrite it (dlogits may alias logits).
  float labelLogit = load(x, label);
  float weight = weights ? weights[row] : 1.0f;
  float2 stats = expStats(x, classes, scratch);
  if (threadIdx.x == 0)
    rowLoss[row] =
        weight * (log(static_cast<double>(stats.y)) + stats.x - labelLogit);
  if (!grad)
    return;
  float gradScale = (deviceScale ? *deviceScale : lossScale) * weight;
  float factor = gradScale / stats.y;
  for (int64_t i = threadIdx.x; i < classes; i += kBlockThreads) {
    float g = expf(load(x, i) - stats.x) * factor;
    store(grad, i, i == label ? g - gradScale : g);
  }
}

/// *loss = the row losses added in row order (in double), rounded to float.
__global__ void __launch_bounds__(kBlockThreads)
    sumRowsKernel(const double *rowLoss, int64_t rows, float *loss) {
  __shared__ double scratch[kBlockWarps];
  double sum = 0.0;
  for (int64_t r = threadIdx.x; r < rows; r += kBlockThreads)
    sum += rowLoss[r];
  sum = blockSum(sum, scratch);
  if (threadIdx.x == 0)
    *loss = static_cast<float>(sum);
}

Status checkRows(const char *kernel, int64_t rows, int64_t cols,
                 const char *colsName) {
  Status s = requireNonNegative(kernel, "rows", rows);
  if (s.ok() && rows > 0x7fffffff)
    return Status::error(std::string(kernel) + ": " + std::to_string(rows) +
                         " rows exceed the grid limit");
  return s.ok() ? requireNonNegative(kernel, colsName, cols) : s;
}

template <typename T>
Status softmaxImpl(const T *x, T *y, int64_t rows, int64_t cols,
                   cudaStream_t stream) {
  Status s = checkRows("softmax", rows, cols, "cols");
  if (!s.ok() || rows == 0 || cols == 0)
    return s;
  softmaxKernel<<<static_cast<unsigned>(rows), kBlockThreads, 0, stream>>>(
      device(x), device(y), cols);
  return launchStatus("softmax");
}

template <typename T>
Status softmaxBackwardImpl(const T *y, const T *dy, T *dx, int64_t rows,
                           int64_t cols, cudaStream_t stream) {
  Status s = checkRows("softmax_backward", rows, cols, "cols");
  if (!s.ok() || rows == 0 || cols == 0)
    return s;
  softmaxBackwardKernel<<<static_cast<unsigned>(rows), kBlockThreads, 0,
                          stream>>>(device(y), device(dy), device(dx), cols);
  return launchStatus("softmax_backward");
}

template <typename T>
Status crossEntropyImpl(const T *logits, const int32_t *labels,
                        const float *weights, T *dlogits, float *loss,
                        int64_t rows, int64_t classes, float lossScale,
                        const float *deviceScale, cudaStream_t stream,
                        IdCheck check) {
  const char *kernel = "softmax_cross_entropy";
  Status s = checkRows(kernel, rows, classes, "classes");
  if (!s.ok())
    return s;
  if (classes == 0 && rows > 0)
    return Status::error(std::string(kernel) + ": no classes");
  StreamBuffer rowLoss(rows * sizeof(double), stream);
  if (!rowLoss.error().empty())
    return Status::error(std::string(kernel) + ": " + rowLoss.error());
  if (rows > 0) {
    crossEntropyKernel<<<static_cast<unsigned>(rows), kBlockThreads, 0,
                         stream>>>(device(logits), labels, weights,
                                   device(dlogits), rowLoss.as<double>(),
                                   classes, lossScale, deviceScale, check);
    if (!(s = launchStatus(kernel)).ok())
      return s;
  }
  if (!loss)
    return Status::success();
  sumRowsKernel<<<1, kBlockThreads, 0, stream>>>(rowLoss.as<double>(), rows,
                                                 loss);
  return launchStatus(kernel);
}

} // namespace

Status softmax(const float *x, float *y, int64_t rows, int64_t cols,
               cudaStream_t stream) {
  return softmaxImpl(x, y, rows, cols, stream);
}

Status softmax(const Bf16 *x, Bf16 *y, int64_t rows, int64_t cols,
               cudaStream_t stream) {
  return softmaxImpl(x, y, rows, cols, stream);
}

Status softmaxBackward(const float *y, const float *dy, float *dx, int64_t rows,
                       int64_t cols, cudaStream_t stream) {
  return softmaxBackwardImpl(y, dy, dx, rows, cols, stream);
}

Status softmaxBackward(const Bf16 *y, const Bf16 *dy, Bf16 *dx, int64_t rows,
                       int64_t cols, cudaStream_t stream) {
  return softmaxBackwardImpl(y, dy, dx, rows, cols, stream);
}

Status softmaxCrossEntropy(const float *logits, const int32_t *labels,
                           const float *weights, float *dlogits, float *loss,
                           int64_t rows, int64_t classes, float lossScale,
                           cudaStream_t stream, IdCheck check) {
  return crossEntropyImpl(logits, labels, weights, dlogits, loss, rows, classes,
                          lossScale, nullptr, stream, check);
}

Status softmaxCrossEntropy(const Bf16 *logits, const int32_t *labels,
                           const float *weights, Bf16 *dlogits, float *loss,
                           int64_t rows, int64_t classes, float lossScale,
                           cudaStream_t stream, IdCheck check) {
  return crossEntropyImpl(logits, labels, weights, dlogits, loss, rows, classes,
                          lossScale, nullptr, stream, check);
}

Status softmaxCrossEntropyGrad(const float *logits, const int32_t *labels,
                               const float *weights, const float *lossScale,
                               float *dlogits, int64_t rows, int64_t classes,
                               cudaStream_t stream, IdCheck check) {
  return crossEntropyImpl(logits, labels, weights, dlogits, nullptr, rows,
                          classes, 1.0f, lossScale, stream, check);
}

Status softmaxCrossEntropyGrad(const Bf16 *logits, const int32_t *labels,
                               const float *weights, const float *lossScale,
                               Bf16 *dlogits, int64_t rows, int64_t classes,
                               cudaStream_t stream, IdCheck check) {
  return crossEntropyImpl(logits, labels, weights, dlogits, nullptr, rows,
                          classes, 1.0f, lossScale, stream, check);
}

} // namespace mixer::cuda

//===- Routing.cu - Router softmax and the three routing algorithms -------===//
//
// Experts-choose: one block per (expert, group) computes the router softmax
// of the group's tokens for its expert, then sorts (probability, token) keys
// in shared memory and keeps the first `capacity`.
//
// Tokens-choose and sigma-MoE place a sequence of (token, choice) items into
// per-expert buffers in sequence order (a stable counting sort): every warp
// owns a contiguous run of the sequence, counts its items per expert
// (__match_any_sync groups the lanes that chose the same expert), the counts
// are scanned in warp order, and a second pass writes each item at its
// expert's running position. Nothing depends on scheduling.
//
// Ties follow the CPU kernels: top-k prefers the lower expert index, the
// experts-choose and batch-prioritised orders the lower token index; -0 and
// +0 compare equal.
//
//===----------------------------------------------------------------------===//

#include "runtime/cuda/Common.cuh"

#include <algorithm>
#include <initializer_list>
#include <tuple>

namespace mixer::cuda {
namespace {

using namespace detail;

/// Threads of the routing blocks.
constexpr int kRouteThreads = 512;
constexpr int kRouteWarps = kRouteThreads / 32;

/// Sorts n (a power of two) keys in shared memory into descending order
/// (bitonic network). Starts and ends with a block barrier.
__device__ void sortDescending(uint64_t *keys, int n) {
  __syncthreads();
  for (int k = 2; k <= n; k <<= 1)
    for (int j = k >> 1; j > 0; j >>= 1) {
      for (int i = threadIdx.x; i < n; i += kRouteThreads) {
        int partner = i ^ j;
        if (partner <= i)
          continue;
        uint64_t a = keys[i], b = keys[partner];
        if ((i & k) == 0 ? a < b : a > b) {
          keys[i] = b;
          keys[partner] = a;
        }
      }
      __syncthreads();
    }
}

/// The index of the (r+1)-th largest of value(0 .. n), ties to the lower
/// index: r + 1 rounds of "largest key below the previous one".
template <typename Value>
__device__ int rankedChoice(Value value, int n, int r) {
  uint64_t bound = ~uint64_t(0), best = 0;
  for (int round = 0; round <= r; ++round) {
    best = 0;
    for (int e = 0; e < n; ++e) {
      uint64_t key = rankKey(value(e), e);
      if (key < bound && key > best)
        best = key;
    }
    bound = best;
  }
  return static_cast<int>(rankKeyIndex(best));
}

/// Places the items 0 .. length of a sequence into per-expert buffers in
/// sequence order: place(s, e, position) is called once per item s with its
/// expert e = expertOf(s) and position = base[e] + the number of earlier
/// items of expert e. `counts` is shared memory for kRouteWarps * experts
/// ints and `base` for experts ints; when `offsets` is not null, base[e] is
/// the number of items of lower experts and offsets[0 .. experts] receives
/// the buffer boundaries, otherwise base[e] = 0.
template <typename ExpertOf, typename Place>
__device__ void placeStable(int length, int experts, int *counts, int *base,
                            int32_t *offsets, ExpertOf expertOf, Place place) {
  int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  unsigned lowerLanes = (1u << lane) - 1u;
  int perWarp = (length + kRouteWarps - 1) / kRouteWarps;
  int begin = min(length, warp * perWarp);
  int end = min(length, begin + perWarp);
  int *warpCounts = counts + warp * experts;
  for (int i = threadIdx.x; i < kRouteWarps * experts; i += kRouteThreads)
    counts[i] = 0;
  __syncthreads();
  for (int chunk = begin; chunk < end; chunk += 32) {
    int s = chunk + lane;
    int e = s < end ? expertOf(s) : -1;
    unsigned peers = __match_any_sync(0xffffffffu, e);
    if (e >= 0 && (peers & lowerLanes) == 0)
      warpCounts[e] += __popc(peers);
    __syncwarp();
  }
  __syncthreads();
  // Exclusive scan over the warps, per expert.
  for (int e = threadIdx.x; e < experts; e += kRouteThreads) {
    int run = 0;
    for (int w = 0; w < kRouteWarps; ++w) {
      int count = counts[w * experts + e];
      counts[w * experts + e] = run;
      run += count;
    }
    base[e] = run;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    int run = 0;
    for (int e = 0; e < experts; ++e) {
      int total = base[e];
      base[e] = offsets ? run : 0;
      if (offsets)
        offsets[e] = run;
      run += total;
    }
    if (offsets)
      offsets[experts] = run;
  }
  __syncthreads();
  for (int chunk = begin; chunk < end; chunk += 32) {
    int s = chunk + lane;
    int e = s < end ? expertOf(s) : -1;
    unsigned peers = __match_any_sync(0xffffffffu, e);
    if (e >= 0)
      place(s, e, base[e] + warpCounts[e] + __popc(peers & lowerLanes));
    __syncwarp();
    if (e >= 0 && (peers & lowerLanes) == 0)
      warpCounts[e] += __popc(peers);
    __syncwarp();
  }
}

/// Element e of the softmax of `row` (max-subtracted).
__device__ float rowSoftmax(const float *row, int experts, int e) {
  float maximum = -INFINITY;
  for (int j = 0; j < experts; ++j)
    maximum = fmaxf(maximum, row[j]);
  float sum = 0.0f;
  for (int j = 0; j < experts; ++j)
    sum += expf(row[j] - maximum);
  return expf(row[e] - maximum) / sum;
}

/// Block (e, g): the router softmax of group g's tokens for expert e (or the
/// given probabilities without logits), then expert e's top-capacity tokens
/// of the group.
__global__ void __launch_bounds__(kRouteThreads)
    expertsChooseKernel(const float *logits, float *probs, int32_t *tokens,
                        float *gates, int32_t *offsets, int64_t groups,
                        int tokensPerGroup, int experts, int capacity,
                        int sortSize) {
  extern __shared__ uint64_t keys[];
  int e = blockIdx.x;
  int64_t g = blockIdx.y;
  int64_t firstToken = g * tokensPerGroup;
  for (int t = threadIdx.x; t < sortSize; t += kRouteThreads) {
    uint64_t key = 0;
    if (t < tokensPerGroup) {
      float *at = probs + (firstToken + t) * experts + e;
      float p =
          logits ? rowSoftmax(logits + (firstToken + t) * experts, experts, e)
                 : *at;
      if (logits)
        *at = p;
      key = rankKey(p, t);
    }
    keys[t] = key;
  }
  sortDescending(keys, sortSize);
  int64_t item = int64_t(e) * groups + g;
  for (int c = threadIdx.x; c < capacity; c += kRouteThreads) {
    uint64_t key = keys[c];
    tokens[item * capacity + c] =
        static_cast<int32_t>(firstToken + rankKeyIndex(key));
    gates[item * capacity + c] = fromOrderedBits(key >> 32);
  }
  if (blockIdx.x == 0 && blockIdx.y == 0)
    for (int i = threadIdx.x; i <= experts; i += kRouteThreads)
      offsets[i] = static_cast<int32_t>(i * groups * capacity);
}

/// Block g: tokens-choose routing of group g.
__global__ void __launch_bounds__(kRouteThreads)
    tokensChooseKernel(const float *probs, int32_t *tokens, float *gates,
                       int32_t *offsets, int64_t groups, int tokensPerGroup,
                       int experts, int k, int capacity, int sortSize) {
  extern __shared__ uint64_t keys[]; // sortSize keys, then the counts
  int *counts = reinterpret_cast<int *>(keys + sortSize);
  int *base = counts + kRouteWarps * experts;
  int64_t g = blockIdx.x;
  int64_t firstToken = g * tokensPerGroup;
  const float *groupProbs = probs + firstToken * experts;
  for (int i = threadIdx.x; i < experts * capacity; i += kRouteThreads) {
    int slot = (int64_t(i / capacity) * groups + g) * capacity + i % capacity;
    tokens[slot] = -1;
    gates[slot] = 0.0f;
  }
  // Batch-prioritised: tokens by descending top-1 probability, stable.
  bool prioritized = sortSize > 0;
  for (int t = threadIdx.x; t < sortSize; t += kRouteThreads) {
    uint64_t key = 0;
    if (t < tokensPerGroup) {
      float top = -INFINITY;
      for (int e = 0; e < experts; ++e)
        top = fmaxf(top, groupProbs[int64_t(t) * experts + e]);
      key = rankKey(top, t);
    }
    keys[t] = key;
  }
  if (prioritized)
    sortDescending(keys, sortSize);
  __syncthreads();
  // Item s is choice s / T of the token at priority s % T.
  auto tokenOf = [=](int s) {
    int p = s % tokensPerGroup;
    return prioritized ? static_cast<int>(rankKeyIndex(keys[p])) : p;
  };
  auto expertOf = [=](int s) {
    const float *row = groupProbs + int64_t(tokenOf(s)) * experts;
    return rankedChoice([=](int e) { return row[e]; }, experts,
                        s / tokensPerGroup);
  };
  auto place = [=](int s, int e, int position) {
    if (position >= capacity)
      return;
    int t = tokenOf(s);
    int slot = (int64_t(e) * groups + g) * capacity + position;
    tokens[slot] = static_cast<int32_t>(firstToken + t);
    gates[slot] = groupProbs[int64_t(t) * experts + e];
  };
  placeStable(k * tokensPerGroup, experts, counts, base, nullptr, expertOf,
              place);
  if (g == 0)
    for (int i = threadIdx.x; i <= experts; i += kRouteThreads)
      offsets[i] = static_cast<int32_t>(i * groups * capacity);
}

__device__ __forceinline__ float sigmoid(float x) {
  return 1.0f / (1.0f + expf(-x));
}

/// One block: sigma-MoE routing of every token; item s is choice s % k of
/// token s / k, so each expert's entries come out in token order.
__global__ void __launch_bounds__(kRouteThreads)
    sigmoidTopKKernel(const float *logits, int32_t *tokens, float *gates,
                      int32_t *offsets, int64_t numTokens, int experts, int k) {
  extern __shared__ int counts[];
  int *base = counts + kRouteWarps * experts;
  auto expertOf = [=](int s) {
    const float *row = logits + int64_t(s / k) * experts;
    return rankedChoice([=](int e) { return sigmoid(row[e]); }, experts, s % k);
  };
  auto place = [=](int s, int e, int position) {
    tokens[position] = s / k;
    gates[position] = sigmoid(logits[int64_t(s / k) * experts + e]);
  };
  placeStable(static_cast<int>(numTokens) * k, experts, counts, base, offsets,
              expertOf, place);
}

/// Fails unless every (name, value) lies in [lo, hi].
Status requireRange(
    const char *kernel,
    std::initializer_list<std::tuple<const char *, int64_t, int64_t, int64_t>>
        checks) {
  for (auto [what, value, lo, hi] : checks)
    if (value < lo || value > hi)
      return Status::error(std::string(kernel) + ": " + what + " " +
                           std::to_string(value) + " is outside [" +
                           std::to_string(lo) + ", " + std::to_string(hi) +
                           "]");
  return Status::success();
}

/// The smallest power of two >= n (1 for n <= 1).
int powerOfTwoAtLeast(int64_t n) {
  int p = 1;
  while (p < n)
    p <<= 1;
  return p;
}

/// The counts and bases of placeStable, in bytes.
size_t placementBytes(int64_t experts) {
  return (kRouteWarps + 1) * experts * sizeof(int);
}

constexpr int64_t kMaxInt = 0x7fffffff;
/// Largest group the 64-bit sort keys and int token counters allow.
constexpr int64_t kMaxGroup = 1 << 24;

} // namespace

Status routeExpertsChoose(const float *logits, float *probs, int32_t *tokens,
                          float *gates, int32_t *offsets, int64_t groups,
                          int64_t tokensPerGroup, int64_t experts,
                          int64_t capacity, cudaStream_t stream) {
  const char *kernel = "route_experts_choose";
  Status s =
      requireRange(kernel, {{"groups", groups, 0, 65535},
                            {"tokens_per_group", tokensPerGroup, 0, kMaxGroup},
                            {"experts", experts, 1, kMaxInt},
                            {"capacity", capacity, 0, tokensPerGroup}});
  if (!s.ok())
    return s;
  if (groups * tokensPerGroup * experts > kMaxInt)
    return Status::error(std::string(kernel) +
                         ": more than 2^31 router values");
  if (groups == 0)
    return Status::success();
  int sortSize = powerOfTwoAtLeast(tokensPerGroup);
  size_t bytes = sortSize * sizeof(uint64_t);
  if (!(s = allowSharedMemory(
            reinterpret_cast<const void *>(expertsChooseKernel), bytes, kernel,
            "tokens_per_group " + std::to_string(tokensPerGroup)))
           .ok())
    return s;
  dim3 grid(static_cast<unsigned>(experts), static_cast<unsigned>(groups));
  expertsChooseKernel<<<grid, kRouteThreads, bytes, stream>>>(
      logits, probs, tokens, gates, offsets, groups,
      static_cast<int>(tokensPerGroup), static_cast<int>(experts),
      static_cast<int>(capacity), sortSize);
  return launchStatus(kernel);
}

Status routeTokensChoose(const float *probs, int32_t *tokens, float *gates,
                         int32_t *offsets, int64_t groups,
                         int64_t tokensPerGroup, int64_t experts, int64_t k,
                         int64_t capacity, bool batchPrioritized,
                         cudaStream_t stream) {
  const char *kernel = "route_tokens_choose";
  Status s =
      requireRange(kernel, {{"groups", groups, 0, kMaxInt},
                            {"tokens_per_group", tokensPerGroup, 0, kMaxGroup},
                            {"experts", experts, 1, kMaxGroup},
                            {"k", k, 0, experts},
                            {"capacity", capacity, 0, kMaxInt}});
  if (!s.ok())
    return s;
  if (groups * std::max(tokensPerGroup * experts, experts * capacity) > kMaxInt)
    return Status::error(std::string(kernel) +
                         ": more than 2^31 router values or slots");
  if (groups == 0)
    return Status::success();
  int sortSize = batchPrioritized ? powerOfTwoAtLeast(tokensPerGroup) : 0;
  size_t bytes = sortSize * sizeof(uint64_t) + placementBytes(experts);
  if (!(s = allowSharedMemory(
            reinterpret_cast<const void *>(tokensChooseKernel), bytes, kernel,
            "tokens_per_group " + std::to_string(tokensPerGroup) +
                " with experts " + std::to_string(experts)))
           .ok())
    return s;
  tokensChooseKernel<<<static_cast<unsigned>(groups), kRouteThreads, bytes,
                       stream>>>(probs, tokens, gates, offsets, groups,
                                 static_cast<int>(tokensPerGroup),
                                 static_cast<int>(experts), static_cast<int>(k),
                                 static_cast<int>(capacity), sortSize);
  return launchStatus(kernel);
}

Status routeSigmoidTopK(const float *logits, int32_t *tokens, float *gates,
                        int32_t *offsets, int64_t numTokens, int64_t experts,
                        int64_t k, cudaStream_t stream) {
  const char *kernel = "route_sigmoid_topk";
  Status s = requireRange(kernel, {{"tokens", numTokens, 0, kMaxInt},
                                   {"experts", experts, 1, kMaxGroup},
                                   {"k", k, 0, experts}});
  if (!s.ok())
    return s;
  if (numTokens * std::max(k, experts) > kMaxInt)
    return Status::error(std::string(kernel) +
                         ": more than 2^31 router values or entries");
  size_t bytes = placementBytes(experts);
  if (!(s = allowSharedMemory(reinterpret_cast<const void *>(sigmoidTopKKernel),
                              bytes, kernel,
                              "experts " + std::to_string(experts)))
           .ok())
    return s;
  sigmoidTopKKernel<<<1, kRouteThreads, bytes, stream>>>(
      logits, tokens, gates, offsets, numTokens, static_cast<int>(experts),
      static_cast<int>(k));
  return launchStatus(kernel);
}

} // namespace mixer::cuda

//===- TestUtil.h - Helpers of the CPU kernel tests -------------*- C++ -*-===//
//
// Random inputs, tolerance checks against the double-precision reference
// kernels, and a scoped OpenMP thread count.
//
//===----------------------------------------------------------------------===//

#ifndef MIXER_TEST_UNIT_CPU_TESTUTIL_H
#define MIXER_TEST_UNIT_CPU_TESTUTIL_H

#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace mixer::cpu::test {

/// Default tolerance of fp32 kernels against the double references: relative
/// 1e-5 with a floor at the reference's RMS (see expectClose).
constexpr double kRelTol = 1e-5;

/// n uniform values in [lo, hi).
inline std::vector<float> randomFloats(int64_t n, uint32_t seed,
                                       float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> values(n);
  for (float &v : values)
    v = dist(rng);
  return values;
}

/// n values drawn from {0, 1/levels, ..., (levels-1)/levels}: exact ties are
/// frequent.
inline std::vector<float> gridFloats(int64_t n, uint32_t seed, int levels) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> dist(0, levels - 1);
  std::vector<float> values(n);
  for (float &v : values)
    v = static_cast<float>(dist(rng)) / static_cast<float>(levels);
  return values;
}

/// Elementwise |actual - expected| <= rtol * (|expected| + rms(expected)):
/// relative error, with the tensor's RMS as the floor for entries near zero
/// (sums that cancel carry the rounding error of their terms, not of their
/// result).
inline void expectClose(const std::vector<float> &actual,
                        const std::vector<float> &expected, double rtol,
                        const std::string &what) {
  ASSERT_EQ(actual.size(), expected.size()) << what;
  double squares = 0.0;
  for (float e : expected)
    squares += static_cast<double>(e) * e;
  double rms = expected.empty() ? 0.0 : std::sqrt(squares / expected.size());
  int failures = 0;
  for (size_t i = 0; i < actual.size(); ++i) {
    double bound = rtol * (std::fabs(expected[i]) + rms);
    double error = std::fabs(static_cast<double>(actual[i]) - expected[i]);
    if (!(error <= bound) && failures++ < 5)
      ADD_FAILURE() << what << ": element " << i << " is " << actual[i]
                    << ", expected " << expected[i] << " (error " << error
                    << " > " << bound << ")";
  }
  EXPECT_EQ(failures, 0) << what << ": mismatching elements";
}

/// Bitwise equality of two float vectors.
inline void expectBitwiseEqual(const std::vector<float> &a,
                               const std::vector<float> &b,
                               const std::string &what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0)
      << what << ": results differ bitwise";
}

/// Sets the OpenMP thread count for the scope.
class ScopedThreads {
public:
  explicit ScopedThreads(int threads) : saved(omp_get_max_threads()) {
    omp_set_num_threads(threads);
  }
  ~ScopedThreads() { omp_set_num_threads(saved); }

private:
  int saved;
};

/// Runs `compute(out)` with 1 and with 2 threads and checks that both give
/// the same bits.
template <typename Compute>
void expectThreadCountIndependent(int64_t size, Compute &&compute,
                                  const std::string &what) {
  std::vector<float> one(size, NAN), two(size, NAN);
  {
    ScopedThreads threads(1);
    compute(one.data());
  }
  {
    ScopedThreads threads(2);
    compute(two.data());
  }
  expectBitwiseEqual(one, two, what);
}

} // namespace mixer::cpu::test

#endif // MIXER_TEST_UNIT_CPU_TESTUTIL_H

//===- profile_steps.cpp - Time every step of an artifact -----------------===//
//
// mixer-profile A.mxa [--iters N] [--warmup N] [--steps] [--json]
//
// Runs an artifact (inference or training, for any target) on drawn weights
// and inputs and times every step on its own: the per-kernel breakdown behind
// the figures of `mixer-run bench`. The plan runs on the executor of its
// target (target::createExecutor), which tells a step observer before and
// after each step; a CUDA executor then runs the steps one at a time and
// reports each one's time on the device, which is the wall time kept for it.
// Per step the median over the timed runs of its wall time and of the
// process's CPU time (every thread; robust on a shared machine when run on
// one thread) is kept; steps are then summed by kernel name, with the
// GFLOP/s of the matrix products for the GEMM kernels (nominal counts: the
// backward of a product counts twice its forward, recomputation is not
// counted). Inputs are drawn per name so that training plans get valid
// values: masked-LM positions in [0, seq), sentence labels in {0, 1}, token
// ids in [0, vocab), the learning rate 1e-4, step and seed 0.
//
//===----------------------------------------------------------------------===//

#include "runtime/exec/Init.h"
#include "runtime/exec/Plan.h"
#include "runtime/exec/PlanExecutor.h"
#include "runtime/target/Executors.h"
#include "runtime/train/Trainer.h"

#include <nlohmann/json.hpp>

#include <sys/resource.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

using namespace mixer;

namespace {

using Clock = std::chrono::steady_clock;

[[noreturn]] void fail(const std::string &message) {
  std::fprintf(stderr, "mixer-profile: %s\n", message.c_str());
  std::exit(1);
}

template <typename T> T check(Expected<T> value) {
  if (!value)
    fail(value.takeStatus().message());
  return std::move(*value);
}

void check(Status status) {
  if (!status)
    fail(status.message());
}

/// Draws one input as its name asks.
io::HostTensor drawInput(const exec::Plan &plan, const exec::InputInfo &input,
                         std::mt19937 &rng) {
  io::HostTensor tensor;
  tensor.name = input.name;
  tensor.dtype = input.dtype;
  tensor.shape = input.shape;
  tensor.data.resize(input.numel * 4);
  auto *ints = tensor.as<int32_t>();
  auto *floats = tensor.as<float>();
  auto uniformInts = [&](int32_t lo, int32_t hi) {
    std::uniform_int_distribution<int32_t> dist(lo, hi);
    for (int64_t i = 0; i < input.numel; ++i)
      ints[i] = dist(rng);
  };
  const std::string &name = input.name;
  if (input.dtype == io::DType::F32) {
    std::uniform_real_distribution<float> dist(0.0f, 1.0f);
    for (int64_t i = 0; i < input.numel; ++i)
      floats[i] = name == "learning_rate" ? 1e-4f : dist(rng);
  } else if (name == "masked_lm_positions") {
    uniformInts(0, static_cast<int32_t>(plan.seq - 1));
  } else if (name == "input_ids" || name == "masked_lm_ids") {
    uniformInts(0, static_cast<int32_t>(plan.vocabSize - 1));
  } else if (name.size() >= 6 &&
             name.compare(name.size() - 6, 6, "labels") == 0) {
    uniformInts(0, 1);
  } else {
    std::fill(ints, ints + input.numel, 0);
  }
  return tensor;
}

int64_t parseFlag(int argc, char **argv, const char *flag, int64_t fallback) {
  for (int i = 2; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], flag) == 0)
      return std::atoll(argv[i + 1]);
  return fallback;
}

bool hasFlag(int argc, char **argv, const char *flag) {
  for (int i = 2; i < argc; ++i)
    if (std::strcmp(argv[i], flag) == 0)
      return true;
  return false;
}

double millisecondsSince(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start)
      .count();
}

/// CPU time of the whole process (every thread), in milliseconds.
double cpuMilliseconds() {
  timespec now;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &now);
  return now.tv_sec * 1e3 + now.tv_nsec / 1e6;
}

int64_t numel(const exec::Plan &plan, int64_t value) {
  return plan.values[value].numel;
}

int64_t lastDim(const exec::Plan &plan, int64_t value) {
  return plan.values[value].shape.back();
}

/// Nominal floating-point operations of the matrix products of a step: a
/// backward counts twice its forward; recomputation is not counted. Zero for
/// kernels without matrix products.
double nominalFlops(const exec::Plan &plan, const exec::Step &step) {
  Kernel k = step.kernel;
  const std::vector<int64_t> &in = step.operands;
  auto dims = [&](int64_t value) { return plan.values[value].shape; };
  if (k == Kernel::Dense)
    return 2.0 * numel(plan, step.results[0]) * lastDim(plan, in[0]);
  if (k == Kernel::DenseWeightGrad)
    return 2.0 * numel(plan, in[1]) * lastDim(plan, in[0]);
  if (k == Kernel::Experts || k == Kernel::ExpertsGrad) {
    std::vector<int64_t> w1 = dims(in[3]);
    double forward = 4.0 * dims(in[0])[0] * w1[1] * w1[2];
    return k == Kernel::Experts ? forward : 2 * forward;
  }
  if (k == Kernel::LinearMix || k == Kernel::LinearMixGrad) {
    std::vector<int64_t> x = dims(in[0]);
    double forward = 2.0 * x[0] * x[1] * x[2] * (x[1] + x[2]);
    return k == Kernel::LinearMix ? forward : 2 * forward;
  }
  if (k == Kernel::Attention || k == Kernel::AttentionGrad) {
    std::vector<int64_t> q = dims(in[0]);
    double forward = 4.0 * q[0] * q[1] * q[1] * q[2];
    return k == Kernel::Attention ? forward : 2 * forward;
  }
  return 0.0;
}

/// Keeps the wall and CPU time of every step of the recorded runs.
class StepTimer : public exec::StepObserver {
public:
  explicit StepTimer(size_t steps) : wall(steps), cpu(steps) {}

  /// Whether the runs that follow are recorded (not warm-up runs).
  bool recording = false;
  std::vector<std::vector<double>> wall, cpu;

  void beforeStep(size_t index) override {
    start = Clock::now();
    cpuStart = cpuMilliseconds();
  }
  void afterStep(size_t index,
                 std::optional<double> deviceMilliseconds) override {
    if (!recording)
      return;
    cpu[index].push_back(cpuMilliseconds() - cpuStart);
    wall[index].push_back(
        deviceMilliseconds.value_or(millisecondsSince(start)));
  }

private:
  Clock::time_point start;
  double cpuStart = 0;
};

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  size_t n = values.size();
  return n % 2 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
}

} // namespace

int main(int argc, char **argv) {
  if (argc < 2 || argv[1][0] == '-') {
    std::fprintf(stderr, "usage: mixer-profile A.mxa [--iters N] [--warmup N] "
                         "[--steps] [--json]\n");
    return 2;
  }
  int64_t iters = std::max<int64_t>(1, parseFlag(argc, argv, "--iters", 3));
  int64_t warmup = parseFlag(argc, argv, "--warmup", 1);
  exec::Plan plan = check(exec::Plan::load(argv[1]));

  std::unique_ptr<exec::PlanExecutor> executor =
      check(target::createExecutor(plan));
  check(executor->bindParams(exec::initParameters(plan, 0), "drawn weights",
                             false));
  if (!plan.state.empty())
    check(executor->bindState(train::zeroOptimizerState(plan),
                              "optimizer state", false));
  std::mt19937 rng(0);
  std::vector<io::HostTensor> inputs;
  for (const exec::InputInfo &input : plan.inputs)
    inputs.push_back(drawInput(plan, input, rng));
  check(executor->bindInputs(inputs, "drawn inputs", false));

  size_t numSteps = plan.steps.size();
  StepTimer timer(numSteps);
  executor->setObserver(&timer);
  std::vector<double> totals;
  for (int64_t run = 0; run < warmup + iters; ++run) {
    timer.recording = run >= warmup;
    Clock::time_point runStart = Clock::now();
    check(executor->run());
    if (timer.recording)
      totals.push_back(millisecondsSince(runStart));
  }
  const std::vector<std::vector<double>> &wall = timer.wall, &cpu = timer.cpu;
  int64_t scratchBytes = executor->getScratchBytes();

  struct KernelTotal {
    std::string name;
    double wallMs = 0, cpuMs = 0, flops = 0;
    int steps = 0;
  };
  std::map<std::string, KernelTotal> byKernel;
  for (size_t i = 0; i < numSteps; ++i) {
    std::string name(kernelName(plan.steps[i].kernel));
    KernelTotal &entry = byKernel[name];
    entry.name = name;
    entry.wallMs += median(wall[i]);
    entry.cpuMs += median(cpu[i]);
    entry.flops += nominalFlops(plan, plan.steps[i]);
    entry.steps += 1;
  }
  std::vector<KernelTotal> sorted;
  for (const auto &entry : byKernel)
    sorted.push_back(entry.second);
  std::sort(sorted.begin(), sorted.end(),
            [](const KernelTotal &a, const KernelTotal &b) {
              return a.wallMs > b.wallMs;
            });
  double total = median(totals);
  struct rusage usage;
  getrusage(RUSAGE_SELF, &usage);
  int64_t rss = static_cast<int64_t>(usage.ru_maxrss) * 1024;

  if (hasFlag(argc, argv, "--steps")) {
    std::printf("step  kernel                      ms  GFLOP/s  shapes "
                "(operands -> results) attrs\n");
    for (size_t i = 0; i < numSteps; ++i) {
      const exec::Step &step = plan.steps[i];
      double ms = median(wall[i]);
      double flops = nominalFlops(plan, step);
      std::string shapes;
      for (int64_t value : step.operands)
        shapes +=
            value < 0 ? "- " : io::formatShape(plan.values[value].shape) + " ";
      shapes += "->";
      for (int64_t value : step.results)
        shapes += " " + io::formatShape(plan.values[value].shape);
      for (const auto &[name, attr] : step.attrs)
        if (const bool *flag = std::get_if<bool>(&attr))
          shapes += " " + name + "=" + (*flag ? "true" : "false");
      std::printf("%4zu  %-24s %7.2f %8.1f  %s\n", i,
                  std::string(kernelName(step.kernel)).c_str(), ms,
                  flops > 0 ? flops / (ms / 1e3) / 1e9 : 0.0, shapes.c_str());
    }
  }
  if (hasFlag(argc, argv, "--json")) {
    nlohmann::json kernels = nlohmann::json::array();
    for (const KernelTotal &k : sorted)
      kernels.push_back({{"kernel", k.name},
                         {"ms", k.wallMs},
                         {"cpu_ms", k.cpuMs},
                         {"gflop", k.flops / 1e9},
                         {"steps", k.steps}});
    nlohmann::json out = {{"model", plan.model},
                          {"mode", plan.mode},
                          {"batch", plan.batch},
                          {"ms_per_batch", total},
                          {"arena_bytes", plan.arenaBytes},
                          {"scratch_bytes", scratchBytes},
                          {"rss_bytes", rss},
                          {"kernels", kernels}};
    std::cout << out.dump() << "\n";
    return 0;
  }
  std::printf("%s (%s): %.1f ms per batch (median of %lld), arena %.1f MiB, "
              "scratch %.1f MiB, peak RSS %.1f MiB\n",
              plan.model.c_str(), plan.mode.c_str(), total,
              static_cast<long long>(iters), plan.arenaBytes / 1048576.0,
              scratchBytes / 1048576.0, rss / 1048576.0);
  std::printf("  %-28s %10s %6s %10s %8s %6s\n", "kernel", "wall ms", "share",
              "cpu ms", "GFLOP/s", "steps");
  for (const KernelTotal &k : sorted) {
    std::printf("  %-28s %10.1f %5.1f%% %10.1f", k.name.c_str(), k.wallMs,
                100.0 * k.wallMs / total, k.cpuMs);
    if (k.flops > 0)
      std::printf(" %8.1f", k.flops / (k.wallMs / 1e3) / 1e9);
    else
      std::printf(" %8s", "");
    std::printf(" %6d\n", k.steps);
  }
  return 0;
}

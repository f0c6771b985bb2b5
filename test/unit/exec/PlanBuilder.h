//===- PlanBuilder.h - Hand-written plans for the executor tests -*- C++
//-*-===//
//
// Builds small plan JSONs value by value (arena values get the next 64-byte
// aligned offset unless placed explicitly), writes them as artifacts into a
// temporary directory, and makes random host tensors.
//
//===----------------------------------------------------------------------===//

#ifndef MIXER_TEST_UNIT_EXEC_PLANBUILDER_H
#define MIXER_TEST_UNIT_EXEC_PLANBUILDER_H

#include "runtime/cpu/Executor.h"
#include "runtime/exec/Plan.h"
#include "runtime/io/Container.h"
#include "runtime/io/Tensor.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

namespace mixer::exec::test {

using json = nlohmann::json;

/// A directory under /tmp removed with everything in it at destruction.
class TempDir {
public:
  TempDir() {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "mixer-exec-XXXXXX").string();
    std::vector<char> buffer(pattern.begin(), pattern.end());
    buffer.push_back('\0');
    path = mkdtemp(buffer.data());
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  std::string file(const std::string &name) const {
    return (std::filesystem::path(path) / name).string();
  }

  std::string path;
};

inline int64_t numElements(const std::vector<int64_t> &shape) {
  int64_t n = 1;
  for (int64_t dim : shape)
    n *= dim;
  return n;
}

/// Builds a plan; value ids are returned by the adders.
class PlanBuilder {
public:
  PlanBuilder(int64_t batch = 2, int64_t seq = 3) {
    plan = {{"format_version", kPlanFormatVersion},
            {"compiler_version", "0.1.0"},
            {"model", "tiny"},
            {"target", "cpu"},
            {"mode", "inference"},
            {"batch", batch},
            {"seq", seq},
            {"pad_id", 0},
            {"vocab_size", 5},
            {"arena_bytes", 0},
            {"forward_steps", 0},
            {"heads", json::object()},
            {"flops", 1000.0},
            {"params", json::array()},
            {"inputs", json::array()},
            {"outputs", json::array()},
            {"values", json::array()},
            {"steps", json::array()}};
  }

  int64_t param(const std::string &name, const std::vector<int64_t> &shape,
                json init = {{"kind", "normal"}, {"stddev", 1.0}}) {
    int64_t index = plan["params"].size();
    plan["params"].push_back(
        {{"name", name}, {"shape", shape}, {"dtype", "F32"}, {"init", init}});
    return value({{"storage", "param"}, {"index", index}}, shape, "F32");
  }

  int64_t input(const std::string &name, const std::vector<int64_t> &shape,
                bool optional = false, const std::string &dtype = "I32") {
    int64_t index = plan["inputs"].size();
    plan["inputs"].push_back({{"name", name},
                              {"shape", shape},
                              {"dtype", dtype},
                              {"optional", optional}});
    return value({{"storage", "input"}, {"index", index}}, shape, dtype);
  }

  /// An optimizer state tensor; the first one makes this a training plan
  /// with the given schedule.
  int64_t state(const std::string &name, const std::vector<int64_t> &shape) {
    if (!plan.contains("state")) {
      plan["mode"] = "train";
      plan["state"] = json::array();
      plan["training"] = {
          {"learning_rate", 1e-3}, {"warmup_steps", 0}, {"total_steps", 10}};
    }
    int64_t index = plan["state"].size();
    plan["state"].push_back({{"name", name},
                             {"shape", shape},
                             {"dtype", "F32"},
                             {"init", {{"kind", "zeros"}}}});
    return value({{"storage", "state"}, {"index", index}}, shape, "F32");
  }

  /// An arena value at `offset`, or at the next free aligned offset.
  int64_t arena(const std::vector<int64_t> &shape,
                const std::string &dtype = "F32", int64_t offset = -1) {
    int64_t bytes = numElements(shape) * 4;
    if (offset < 0)
      offset = next;
    next = std::max(next, (offset + bytes + 63) / 64 * 64);
    plan["arena_bytes"] =
        std::max<int64_t>(plan["arena_bytes"].get<int64_t>(), offset + bytes);
    return value({{"storage", "arena"}, {"offset", offset}}, shape, dtype);
  }

  /// Another shape over the storage of value `source`.
  int64_t view(int64_t source, const std::vector<int64_t> &shape) {
    json entry = plan["values"][source];
    entry["shape"] = shape;
    plan["values"].push_back(entry);
    return plan["values"].size() - 1;
  }

  void step(const std::string &kernel, const std::vector<int64_t> &operands,
            const std::vector<int64_t> &results, json attrs = json::object()) {
    plan["steps"].push_back({{"kernel", kernel},
                             {"operands", operands},
                             {"results", results},
                             {"attrs", attrs}});
  }

  /// An output; the forward pass extends to the last step writing it.
  void output(const std::string &name, int64_t value) {
    plan["outputs"].push_back({{"name", name}, {"value", value}});
    const json &steps = plan["steps"];
    for (size_t i = 0; i < steps.size(); ++i)
      for (const json &result : steps[i]["results"])
        if (result == value)
          plan["forward_steps"] =
              std::max<int64_t>(plan["forward_steps"].get<int64_t>(), i + 1);
  }

  json plan;

private:
  int64_t value(json entry, const std::vector<int64_t> &shape,
                const std::string &dtype) {
    entry["shape"] = shape;
    entry["dtype"] = dtype;
    plan["values"].push_back(entry);
    return plan["values"].size() - 1;
  }

  int64_t next = 0;
};

/// Writes `plan` (or any header text) as an artifact container.
inline std::string writeArtifact(const TempDir &dir, const std::string &name,
                                 const std::string &header) {
  std::string path = dir.file(name);
  Status status = io::writeContainer(path, {header, ""});
  EXPECT_TRUE(status.ok()) << status.message();
  return path;
}

/// A float tensor of uniform values in [lo, hi).
inline io::HostTensor randomTensor(const std::string &name,
                                   const std::vector<int64_t> &shape,
                                   uint32_t seed, float lo = -1.0f,
                                   float hi = 1.0f) {
  io::HostTensor tensor;
  tensor.name = name;
  tensor.dtype = io::DType::F32;
  tensor.shape = shape;
  tensor.data.resize(numElements(shape) * sizeof(float));
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  for (int64_t i = 0; i < numElements(shape); ++i)
    tensor.as<float>()[i] = dist(rng);
  return tensor;
}

/// An integer tensor (I32 or I64) holding `values`.
inline io::HostTensor intTensor(const std::string &name,
                                const std::vector<int64_t> &shape,
                                const std::vector<int64_t> &values,
                                io::DType dtype = io::DType::I32) {
  io::HostTensor tensor;
  tensor.name = name;
  tensor.dtype = dtype;
  tensor.shape = shape;
  tensor.data.resize(values.size() * io::dtypeSize(dtype));
  for (size_t i = 0; i < values.size(); ++i) {
    if (dtype == io::DType::I64)
      tensor.as<int64_t>()[i] = values[i];
    else
      tensor.as<int32_t>()[i] = static_cast<int32_t>(values[i]);
  }
  return tensor;
}

/// The plan every executor test starts from: embed -> layer_norm -> dense
/// with GELU, B = 2, S = 3, V = 5, De = 4, TV = 2, N = 3. Values 0-6 are the
/// parameters, 7-8 the inputs (type_ids optional), 9-11 the arena values;
/// 328 arena bytes.
inline json embedNormDensePlan() {
  PlanBuilder b;
  int64_t word = b.param("embedder/word", {5, 4});
  int64_t pos = b.param("embedder/position", {1, 3, 4});
  int64_t type = b.param("embedder/type", {2, 4});
  int64_t scale = b.param("norm/scale", {4}, {{"kind", "ones"}});
  int64_t bias = b.param("norm/bias", {4}, {{"kind", "zeros"}});
  int64_t w = b.param("dense/kernel", {4, 3});
  int64_t wb = b.param("dense/bias", {3}, {{"kind", "zeros"}});
  int64_t ids = b.input("input_ids", {2, 3});
  int64_t typeIds = b.input("type_ids", {2, 3}, /*optional=*/true);
  int64_t e = b.arena({2, 3, 4});
  int64_t h = b.arena({2, 3, 4});
  int64_t y = b.arena({2, 3, 3});
  b.step("embed", {ids, typeIds, word, pos, type}, {e});
  b.step("layer_norm", {e, -1, scale, bias}, {h}, {{"epsilon", 1e-6}});
  b.step("dense", {h, w, wb}, {y},
         {{"activation", "gelu"}, {"transpose_w", false}});
  b.output("y", y);
  return b.plan;
}

/// Parses `b`'s plan, whose steps stand alone: they read arena values that no
/// step of theirs writes. `fill` steps in front write every arena value for
/// the loader's def-before-use check and are taken out again.
inline Plan parseStandalone(const PlanBuilder &b) {
  nlohmann::json text = b.plan;
  nlohmann::json &steps = text["steps"];
  size_t fills = 0;
  for (size_t id = 0; id < text["values"].size(); ++id)
    if (text["values"][id]["storage"] == "arena")
      steps.insert(steps.begin() + fills++,
                   nlohmann::json{{"kernel", "fill"},
                                  {"operands", nlohmann::json::array()},
                                  {"results", nlohmann::json::array({id})},
                                  {"attrs", {{"value", 0.0}}}});
  Expected<Plan> plan = Plan::fromJson(text.dump(), "tiny.mxa");
  EXPECT_TRUE(plan.ok()) << plan.message();
  if (!plan.ok())
    return Plan();
  plan->steps.erase(plan->steps.begin(), plan->steps.begin() + fills);
  return *plan;
}

/// A `target` plan of one dense step x [6, 4] -> y [6, 5] with `activation`
/// (TargetInfo's claims against each backend's table).
inline PlanBuilder denseWithActivation(const std::string &target,
                                       const std::string &activation) {
  PlanBuilder b;
  b.plan["target"] = target;
  int64_t w = b.param("w", {4, 5});
  int64_t x = b.arena({6, 4});
  int64_t y = b.arena({6, 5});
  b.step("dense", {x, w, -1}, {y},
         {{"activation", activation}, {"transpose_w", false}});
  b.output("y", y);
  return b;
}

inline std::vector<float> floats(const io::HostTensor &tensor) {
  return std::vector<float>(tensor.as<float>(),
                            tensor.as<float>() + tensor.numel());
}

/// Elementwise |actual - expected| <= tol * (1 + |expected|).
inline void expectNear(const std::vector<float> &actual,
                       const std::vector<double> &expected, double tol,
                       const std::string &what) {
  ASSERT_EQ(actual.size(), expected.size()) << what;
  for (size_t i = 0; i < actual.size(); ++i)
    ASSERT_NEAR(actual[i], expected[i], tol * (1.0 + std::abs(expected[i])))
        << what << " at element " << i;
}

/// Random tensors in [lo, hi) for every parameter of `plan`, in plan order.
inline std::vector<io::HostTensor> randomParams(const json &plan, uint32_t seed,
                                                float lo = -1.0f,
                                                float hi = 1.0f) {
  std::vector<io::HostTensor> params;
  for (const json &param : plan["params"])
    params.push_back(randomTensor(param["name"],
                                  param["shape"].get<std::vector<int64_t>>(),
                                  seed++, lo, hi));
  return params;
}

/// Parses, prepares, binds and runs `plan`; returns its outputs (none after
/// a reported failure).
inline std::vector<io::HostTensor>
execute(const json &plan, std::vector<io::HostTensor> params,
        const std::vector<io::HostTensor> &inputs) {
  Expected<Plan> parsed = Plan::fromJson(plan.dump(), "test.mxa");
  if (!parsed) {
    ADD_FAILURE() << parsed.message();
    return {};
  }
  Expected<cpu::Executor> executor = cpu::Executor::create(*parsed);
  if (!executor) {
    ADD_FAILURE() << executor.message();
    return {};
  }
  for (Status status :
       {executor->bindParams(std::move(params), "params"),
        executor->bindInputs(inputs, "inputs"), executor->run()}) {
    if (!status.ok()) {
      ADD_FAILURE() << status.message();
      return {};
    }
  }
  return executor->outputs();
}

} // namespace mixer::exec::test

#endif // MIXER_TEST_UNIT_EXEC_PLANBUILDER_H

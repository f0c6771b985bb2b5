//===- Binding.cpp - Matching named tensors to a plan's tables ------------===//

#include "runtime/exec/Binding.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <memory>
#include <unordered_map>

namespace mixer::exec {

namespace {

/// Messages beyond this many are summarised as a count.
constexpr size_t kMaxProblems = 10;

std::string describe(const std::vector<int64_t> &shape, io::DType dtype) {
  return io::formatShape(shape) + " " + io::dtypeName(dtype);
}

/// One error listing every problem on its own line, each naming `source`.
Status problemsError(const std::string &source,
                     const std::vector<std::string> &problems) {
  std::string message;
  for (size_t i = 0; i < problems.size() && i < kMaxProblems; ++i)
    message += (i ? "\n" : "") + source + ": " + problems[i];
  if (problems.size() > kMaxProblems)
    message += "\n" + source + ": ... and " +
               std::to_string(problems.size() - kMaxProblems) +
               " more problems";
  return Status::error(message);
}

/// Indexes `tensors` by name; a name used twice is a problem.
std::unordered_map<std::string, size_t>
indexByName(const std::vector<io::HostTensor> &tensors,
            std::vector<std::string> &problems) {
  std::unordered_map<std::string, size_t> byName;
  for (size_t i = 0; i < tensors.size(); ++i)
    if (!byName.emplace(tensors[i].name, i).second)
      problems.push_back("tensor '" + tensors[i].name + "' appears twice");
  return byName;
}

/// Lists the tensors nobody used as problems, naming what was expected.
void reportExtra(const std::vector<io::HostTensor> &tensors,
                 const std::vector<bool> &used, const char *expected,
                 std::vector<std::string> &problems) {
  for (size_t i = 0; i < tensors.size(); ++i)
    if (!used[i])
      problems.push_back("unexpected tensor '" + tensors[i].name + "' " +
                         describe(tensors[i].shape, tensors[i].dtype) +
                         ": the artifact has no " + expected + " of that name");
}

/// What a filter knows of one table entry.
struct Expectation {
  std::vector<int64_t> shape;
  io::DType dtype;
  /// The most bytes a tensor of this name can hold and still be bound.
  int64_t maxBytes;
};

io::TensorFilter
expectationFilter(std::unordered_map<std::string, Expectation> expectations,
                  const std::string &source, bool allowExtra,
                  const std::string &noun) {
  int64_t largest = 0, total = 0;
  for (const auto &[name, expectation] : expectations) {
    largest = std::max(largest, expectation.maxBytes);
    total += expectation.maxBytes;
  }
  auto kept = std::make_shared<int64_t>(0);
  return [=](const io::HostTensor &header) -> Expected<bool> {
    // Saturates: a reader may hand over a shape whose size overflows.
    int64_t bytes = io::dtypeSize(header.dtype);
    for (int64_t dim : header.shape)
      bytes = dim != 0 && bytes > std::numeric_limits<int64_t>::max() / dim
                  ? std::numeric_limits<int64_t>::max()
                  : bytes * dim;
    std::string claim = describe(header.shape, header.dtype) + " (" +
                        std::to_string(bytes) + " bytes)";
    auto it = expectations.find(header.name);
    if (it == expectations.end()) {
      if (allowExtra)
        return false;
      if (bytes > largest)
        return problemsError(source, {"unexpected tensor '" + header.name +
                                      "' " + claim + ": the artifact has no " +
                                      noun + " of that name"});
    } else if (bytes > it->second.maxBytes) {
      return problemsError(
          source, {noun + " '" + header.name + "' has shape " + claim +
                   " but the artifact expects " +
                   describe(it->second.shape, it->second.dtype)});
    }
    *kept += bytes;
    if (*kept > 2 * total)
      return problemsError(source,
                           {"holds more than twice the " +
                            std::to_string(total) + " bytes of the artifact's " +
                            noun + "s; not read further"});
    return true;
  };
}

} // namespace

io::TensorFilter tableFilter(const std::vector<ParamInfo> &table,
                             const std::string &source, bool allowExtra,
                             const std::string &noun) {
  std::unordered_map<std::string, Expectation> expectations;
  for (const ParamInfo &entry : table) {
    // A file holds a sharded parameter whole.
    int64_t shards =
        entry.globalShape.empty()
            ? 1
            : entry.globalShape[0] / std::max<int64_t>(entry.shape[0], 1);
    expectations[entry.name] = {
        entry.globalShape.empty() ? entry.shape : entry.globalShape,
        entry.dtype, shards * entry.numel * io::dtypeSize(entry.dtype)};
  }
  return expectationFilter(std::move(expectations), source, allowExtra, noun);
}

namespace {

/// Keeps rows [part·rows, (part + 1)·rows) of `tensor`'s axis 0 when it has
/// `parts`·rows of them.
void keepRows(io::HostTensor &tensor, int64_t rows, int64_t parts,
              int64_t part) {
  if (tensor.shape.empty() || tensor.shape[0] != rows * parts || parts == 1)
    return;
  size_t rowBytes = tensor.data.size() / std::max<int64_t>(tensor.shape[0], 1);
  tensor.data.erase(tensor.data.begin() + (part + 1) * rows * rowBytes,
                    tensor.data.end());
  tensor.data.erase(tensor.data.begin(),
                    tensor.data.begin() + part * rows * rowBytes);
  tensor.shape[0] = rows;
}

} // namespace

void takeTableShards(const Plan &plan, const std::vector<ParamInfo> &table,
                     std::vector<io::HostTensor> &tensors, int64_t worldRank) {
  for (io::HostTensor &tensor : tensors)
    for (const ParamInfo &entry : table)
      if (entry.name == tensor.name && !entry.globalShape.empty() &&
          tensor.shape == entry.globalShape) {
        bool expert = entry.shardGroup == "ep";
        keepRows(tensor, entry.shape[0], expert ? plan.mesh.ep : plan.mesh.dp,
                 expert ? worldRank % plan.mesh.ep : worldRank / plan.mesh.ep);
      }
}

void takeShards(const Plan &plan, std::vector<io::HostTensor> &params,
                std::vector<io::HostTensor> &inputs, int64_t worldRank) {
  int64_t world = plan.mesh.world();
  takeTableShards(plan, plan.params, params, worldRank);
  for (io::HostTensor &tensor : inputs)
    for (const InputInfo &input : plan.inputs)
      if (input.name == tensor.name && !input.shape.empty())
        keepRows(tensor, input.shape[0], world, worldRank);
}

io::TensorFilter paramsFilter(const Plan &plan, const std::string &source,
                              bool allowExtra) {
  return tableFilter(plan.params, source, allowExtra, kParameterNoun);
}

io::TensorFilter inputFilter(const Plan &plan, const std::string &source,
                             bool allowExtra) {
  std::unordered_map<std::string, Expectation> expectations;
  // A parallel plan's input file holds the global batch.
  int64_t world = plan.mesh.world();
  for (const InputInfo &input : plan.inputs) {
    io::DType widest =
        input.dtype == io::DType::I32 ? io::DType::I64 : input.dtype;
    std::vector<int64_t> shape = input.shape;
    if (!shape.empty())
      shape[0] *= world;
    expectations[input.name] = {shape, input.dtype,
                                world * input.numel * io::dtypeSize(widest)};
  }
  return expectationFilter(std::move(expectations), source, allowExtra,
                           "input");
}

Status bindTable(const std::vector<ParamInfo> &table,
                 std::vector<io::HostTensor> tensors, const std::string &source,
                 bool allowExtra, const std::string &noun,
                 std::vector<io::HostTensor> &bound) {
  std::vector<std::string> problems;
  std::unordered_map<std::string, size_t> byName =
      indexByName(tensors, problems);
  std::vector<bool> used(tensors.size());
  std::vector<io::HostTensor> matched(table.size());
  for (size_t i = 0; i < table.size(); ++i) {
    const ParamInfo &entry = table[i];
    auto it = byName.find(entry.name);
    if (it == byName.end()) {
      problems.push_back("missing " + noun + " '" + entry.name + "' " +
                         describe(entry.shape, entry.dtype));
      continue;
    }
    used[it->second] = true;
    io::HostTensor &tensor = tensors[it->second];
    std::string prefix = noun + " '" + entry.name + "' ";
    if (tensor.dtype != entry.dtype)
      problems.push_back(prefix + "has dtype " + io::dtypeName(tensor.dtype) +
                         " but the artifact expects " +
                         io::dtypeName(entry.dtype));
    else if (tensor.shape != entry.shape)
      problems.push_back(prefix + "has shape " + io::formatShape(tensor.shape) +
                         " but the artifact expects " +
                         io::formatShape(entry.shape));
    else if (tensor.data.size() !=
             static_cast<size_t>(entry.numel) * sizeof(float))
      problems.push_back(prefix + "holds " +
                         std::to_string(tensor.data.size()) + " bytes but " +
                         describe(entry.shape, entry.dtype) + " needs " +
                         std::to_string(entry.numel * sizeof(float)));
    else
      matched[i] = std::move(tensor);
  }
  if (!allowExtra)
    reportExtra(tensors, used, noun.c_str(), problems);
  if (!problems.empty())
    return problemsError(source, problems);
  bound = std::move(matched);
  return Status::success();
}

Status bindInputBuffers(const Plan &plan,
                        const std::vector<io::HostTensor> &tensors,
                        const std::string &source, bool allowExtra,
                        std::vector<std::vector<int32_t>> &buffers) {
  std::vector<std::string> problems;
  std::unordered_map<std::string, size_t> byName =
      indexByName(tensors, problems);
  std::vector<bool> used(tensors.size());
  for (size_t i = 0; i < plan.inputs.size(); ++i) {
    const InputInfo &input = plan.inputs[i];
    std::vector<int32_t> &buffer = buffers[i];
    auto it = byName.find(input.name);
    if (it == byName.end()) {
      if (input.optional)
        std::fill(buffer.begin(), buffer.end(), 0);
      else
        problems.push_back("missing input '" + input.name + "' " +
                           describe(input.shape, input.dtype));
      continue;
    }
    used[it->second] = true;
    const io::HostTensor &tensor = tensors[it->second];
    std::string prefix = "input '" + input.name + "' ";
    bool wide = input.dtype == io::DType::I32 && tensor.dtype == io::DType::I64;
    if (tensor.dtype != input.dtype && !wide) {
      problems.push_back(prefix + "has dtype " + io::dtypeName(tensor.dtype) +
                         " but the artifact expects " +
                         io::dtypeName(input.dtype));
      continue;
    }
    if (tensor.shape != input.shape) {
      problems.push_back(prefix + "has shape " + io::formatShape(tensor.shape) +
                         " but the artifact expects " +
                         io::formatShape(input.shape));
      continue;
    }
    if (tensor.data.size() !=
        static_cast<size_t>(input.numel) * io::dtypeSize(tensor.dtype)) {
      problems.push_back(prefix + "holds " +
                         std::to_string(tensor.data.size()) +
                         " bytes, which does not match its shape");
      continue;
    }
    if (!wide) {
      std::memcpy(buffer.data(), tensor.data.data(), tensor.data.size());
      continue;
    }
    const int64_t *values = tensor.as<int64_t>();
    for (int64_t j = 0; j < input.numel; ++j) {
      if (values[j] < std::numeric_limits<int32_t>::min() ||
          values[j] > std::numeric_limits<int32_t>::max()) {
        problems.push_back(prefix + "holds " + std::to_string(values[j]) +
                           " at element " + std::to_string(j) +
                           ", outside the int32 range");
        break;
      }
      buffer[j] = static_cast<int32_t>(values[j]);
    }
  }
  if (!allowExtra)
    reportExtra(tensors, used, "input", problems);
  if (!problems.empty())
    return problemsError(source, problems);
  return Status::success();
}

} // namespace mixer::exec

//===- Executor.cpp - Runs an execution plan on the CPU -------------------===//

#include "runtime/exec/Executor.h"

#include "runtime/cpu/Kernels.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <new>
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

/// Maps `bytes` of zeroed, page-aligned memory with every page populated
/// (faster than touching them one fault at a time, and it keeps page faults
/// out of the first run); false when out of memory.
bool allocate(int64_t bytes, MappedMemory &memory) {
  if (bytes == 0)
    return true;
  void *mapped = mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  if (mapped == MAP_FAILED)
    return false;
  memory = MappedMemory(static_cast<uint8_t *>(mapped),
                        Unmapper{static_cast<size_t>(bytes)});
  return true;
}

/// Matches `tensors` to the entries of `table` by name, checking dtype and
/// shape; on success `bound` holds them in table order. `noun` names an
/// entry in messages ("parameter", "state tensor").
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

/// Index of the last step that writes the storage of an output, or -1.
int64_t lastOutputWriter(const Plan &plan) {
  auto sameBytes = [&](int64_t a, int64_t b) {
    const ValueInfo &x = plan.values[a], &y = plan.values[b];
    if (x.storage != y.storage)
      return false;
    if (x.storage != StorageKind::Arena)
      return x.index == y.index;
    return x.offset < y.offset + y.bytes && y.offset < x.offset + x.bytes;
  };
  int64_t last = -1;
  for (size_t i = 0; i < plan.steps.size(); ++i)
    for (int64_t result : plan.steps[i].results)
      for (const OutputInfo &output : plan.outputs)
        if (sameBytes(result, output.value))
          last = static_cast<int64_t>(i);
  return last;
}

} // namespace

void Unmapper::operator()(uint8_t *memory) const { munmap(memory, size); }

Expected<Executor> Executor::create(const Plan &plan) {
  Executor executor;
  executor.plan = plan;
  if (!allocate(plan.arenaBytes, executor.arena))
    return Status::error(plan.path + ": cannot allocate the arena of " +
                         std::to_string(plan.arenaBytes) + " bytes");
  for (const InputInfo &input : plan.inputs)
    executor.inputBuffers.emplace_back(input.numel, 0);

  executor.pointers.assign(numSlots(plan), nullptr);
  for (size_t i = 0; i < plan.values.size(); ++i) {
    const ValueInfo &value = plan.values[i];
    if (value.storage == StorageKind::Arena)
      executor.pointers[i] = executor.arena.get() + value.offset;
    else if (value.storage == StorageKind::Input)
      executor.pointers[i] = executor.inputBuffers[value.index].data();
  }

  int64_t scratchBytes = 0;
  executor.steps.reserve(plan.steps.size());
  for (size_t i = 0; i < plan.steps.size(); ++i) {
    Expected<StepFunction> step = prepareStep(plan, i, scratchBytes);
    if (!step)
      return step.takeStatus();
    executor.steps.push_back(std::move(*step));
  }
  if (!allocate(scratchBytes, executor.scratch))
    return Status::error(plan.path + ": cannot allocate " +
                         std::to_string(scratchBytes) +
                         " bytes of kernel scratch");
  executor.pointers[scratchSlot(plan)] = executor.scratch.get();
  executor.forwardSteps = lastOutputWriter(plan) + 1;
  return executor;
}

Status Executor::bindParams(std::vector<io::HostTensor> tensors,
                            const std::string &source, bool allowExtra) {
  paramsBound = false;
  if (Status status = bindTable(plan.params, std::move(tensors), source,
                                allowExtra, "parameter", paramTensors);
      !status)
    return status;
  for (size_t i = 0; i < plan.values.size(); ++i)
    if (plan.values[i].storage == StorageKind::Param)
      pointers[i] = paramTensors[plan.values[i].index].data.data();
  paramsBound = true;
  return Status::success();
}

Status Executor::bindState(std::vector<io::HostTensor> tensors,
                           const std::string &source, bool allowExtra) {
  stateBound = false;
  if (Status status = bindTable(plan.state, std::move(tensors), source,
                                allowExtra, "state tensor", stateTensors);
      !status)
    return status;
  for (size_t i = 0; i < plan.values.size(); ++i)
    if (plan.values[i].storage == StorageKind::State)
      pointers[i] = stateTensors[plan.values[i].index].data.data();
  stateBound = true;
  return Status::success();
}

Status Executor::bindInputs(const std::vector<io::HostTensor> &tensors,
                            const std::string &source, bool allowExtra) {
  inputsBound = false;
  std::vector<std::string> problems;
  std::unordered_map<std::string, size_t> byName =
      indexByName(tensors, problems);
  std::vector<bool> used(tensors.size());
  for (size_t i = 0; i < plan.inputs.size(); ++i) {
    const InputInfo &input = plan.inputs[i];
    std::vector<int32_t> &buffer = inputBuffers[i];
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
  inputsBound = true;
  return Status::success();
}

Status Executor::run() { return runSteps(steps.size()); }

Status Executor::runForward() { return runSteps(forwardSteps); }

Status Executor::runSteps(size_t count) {
  if (!paramsBound)
    return Status::error(plan.path + ": the parameters are not bound");
  if (!inputsBound)
    return Status::error(plan.path + ": the inputs are not bound");
  if (!stateBound && !plan.state.empty())
    return Status::error(plan.path + ": the optimizer state is not bound");
  size_t i = 0;
  auto stepError = [&](const std::string &message) {
    return Status::error(describeStep(plan, i) + ": " + message);
  };
  try {
    for (; i < count; ++i)
      steps[i](pointers.data());
  } catch (const cpu::KernelError &error) {
    return stepError(error.message);
  } catch (const std::bad_alloc &) {
    return stepError("out of memory");
  }
  return Status::success();
}

std::vector<io::HostTensor> Executor::outputs() const {
  std::vector<io::HostTensor> tensors;
  tensors.reserve(plan.outputs.size());
  for (const OutputInfo &output : plan.outputs) {
    const ValueInfo &value = plan.values[output.value];
    io::HostTensor tensor;
    tensor.name = output.name;
    tensor.dtype = value.dtype;
    tensor.shape = value.shape;
    tensor.data.resize(value.bytes);
    // Parameter outputs before bindParams have no storage yet.
    if (value.bytes > 0 && pointers[output.value])
      std::memcpy(tensor.data.data(), pointers[output.value], value.bytes);
    tensors.push_back(std::move(tensor));
  }
  return tensors;
}

} // namespace mixer::exec

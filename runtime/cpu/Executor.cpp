//===- Executor.cpp - Runs an execution plan on the CPU -------------------===//

#include "runtime/cpu/Executor.h"
#include "runtime/comm/InProcess.h"
#include "runtime/cpu/Kernels.h"
#include "runtime/exec/Binding.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <new>
#include <unordered_map>

namespace mixer::cpu {

namespace {

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

} // namespace

void Unmapper::operator()(uint8_t *memory) const { munmap(memory, size); }

Expected<Executor> Executor::create(const exec::Plan &plan,
                                    comm::Communicator *world,
                                    bool bf16Products) {
  if (plan.target != "cpu")
    return Status::error(plan.path + ": the plan targets '" + plan.target +
                         "'; this executor runs 'cpu' plans");
  if (plan.precision == "bf16" && !bf16Products)
    return Status::error(plan.path +
                         ": a bf16 plan needs a CPU with bf16 products "
                         "(AVX512_BF16 or AMX) and this one has none; "
                         "compile the model with --precision fp32");
  Executor executor;
  executor.plan = plan;
  if (!world) {
    executor.ownWorld = std::move(comm::createInProcessWorld(1).front());
    world = executor.ownWorld.get();
  }
  if (world->size() != plan.mesh.world())
    return Status::error(plan.path + " needs " +
                         std::to_string(plan.mesh.world()) + " ranks (dp " +
                         std::to_string(plan.mesh.dp) + " × ep " +
                         std::to_string(plan.mesh.ep) + "); the world has " +
                         std::to_string(world->size()));
  Expected<comm::MeshGroups> mesh =
      comm::splitMesh(*world, plan.mesh.dp, plan.mesh.ep, plan.path + ": mesh");
  if (!mesh)
    return mesh.takeStatus();
  executor.meshGroups = std::move(*mesh);
  executor.groups = {world, executor.meshGroups.ep.get(),
                     executor.meshGroups.edp.get()};
  if (!allocate(plan.arenaBytes, executor.arena))
    return Status::error(plan.path + ": cannot allocate the arena of " +
                         std::to_string(plan.arenaBytes) + " bytes");
  for (const exec::InputInfo &input : plan.inputs)
    executor.inputBuffers.emplace_back(input.numel, 0);

  executor.pointers.assign(exec::numSlots(plan), nullptr);
  for (size_t i = 0; i < plan.values.size(); ++i) {
    const exec::ValueInfo &value = plan.values[i];
    if (value.storage == exec::StorageKind::Arena)
      executor.pointers[i] = executor.arena.get() + value.offset;
    else if (value.storage == exec::StorageKind::Input)
      executor.pointers[i] = executor.inputBuffers[value.index].data();
  }

  int64_t scratchBytes = 0;
  executor.steps.reserve(plan.steps.size());
  for (size_t i = 0; i < plan.steps.size(); ++i) {
    Expected<StepFunction> step =
        prepareStep(plan, i, scratchBytes, executor.groups);
    if (!step)
      return step.takeStatus();
    executor.steps.push_back(std::move(*step));
  }
  if (!allocate(scratchBytes, executor.scratch))
    return Status::error(plan.path + ": cannot allocate " +
                         std::to_string(scratchBytes) +
                         " bytes of kernel scratch");
  executor.pointers[exec::scratchSlot(plan)] = executor.scratch.get();
  executor.forwardSteps = plan.forwardSteps;
  return executor;
}

Status Executor::bindParams(std::vector<io::HostTensor> tensors,
                            const std::string &source, bool allowExtra) {
  paramsBound = false;
  if (Status status =
          exec::bindTable(plan.params, std::move(tensors), source, allowExtra,
                          exec::kParameterNoun, paramTensors);
      !status)
    return status;
  for (size_t i = 0; i < plan.values.size(); ++i)
    if (plan.values[i].storage == exec::StorageKind::Param)
      pointers[i] = paramTensors[plan.values[i].index].data.data();
  try {
    for (const StepFunction &step : steps)
      if (step.bindParams)
        step.bindParams(pointers.data());
  } catch (const KernelError &error) {
    return Status::error(source + ": " + error.message);
  }
  paramsBound = true;
  return Status::success();
}

Status Executor::bindState(std::vector<io::HostTensor> tensors,
                           const std::string &source, bool allowExtra) {
  stateBound = false;
  if (Status status =
          exec::bindTable(plan.state, std::move(tensors), source, allowExtra,
                          exec::kStateNoun, stateTensors);
      !status)
    return status;
  for (size_t i = 0; i < plan.values.size(); ++i)
    if (plan.values[i].storage == exec::StorageKind::State)
      pointers[i] = stateTensors[plan.values[i].index].data.data();
  stateBound = true;
  return Status::success();
}

Status Executor::bindInputs(const std::vector<io::HostTensor> &tensors,
                            const std::string &source, bool allowExtra) {
  inputsBound = false;
  if (Status status = exec::bindInputBuffers(plan, tensors, source, allowExtra,
                                             inputBuffers);
      !status)
    return status;
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
    return Status::error(exec::describeStep(plan, i) + ": " + message);
  };
  try {
    for (; i < count; ++i) {
      if (stepObserver)
        stepObserver->beforeStep(i);
      steps[i](pointers.data());
      if (stepObserver)
        stepObserver->afterStep(i, std::nullopt);
    }
  } catch (const KernelError &error) {
    return stepError(error.message);
  } catch (const std::bad_alloc &) {
    return stepError("out of memory");
  }
  return Status::success();
}

std::vector<io::HostTensor> Executor::outputs() const {
  std::vector<io::HostTensor> tensors;
  tensors.reserve(plan.outputs.size());
  for (const exec::OutputInfo &output : plan.outputs) {
    const exec::ValueInfo &value = plan.values[output.value];
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

} // namespace mixer::cpu

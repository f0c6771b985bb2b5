//===- Executor.cpp - Runs a cuda plan on a GPU ---------------------------===//

#include "runtime/cuda/Executor.h"

#include "runtime/exec/Binding.h"
#include "runtime/exec/SlotLayout.h"

#include <cuda_runtime.h>

namespace mixer::cuda {

namespace {

std::string errorText(cudaError_t error) {
  return std::string(cudaGetErrorName(error)) + ": " +
         cudaGetErrorString(error);
}

/// cudaMalloc of `bytes` (none for 0); false when the device is out of
/// memory or unusable.
cudaError_t allocate(int64_t bytes, void *&memory) {
  memory = nullptr;
  return bytes > 0 ? cudaMalloc(&memory, bytes) : cudaSuccess;
}

} // namespace

Status checkDevice() {
  int count = 0;
  cudaError_t error = cudaGetDeviceCount(&count);
  if (error != cudaSuccess)
    return Status::error("no CUDA device (cudaGetDeviceCount: " +
                         std::string(cudaGetErrorString(error)) + ")");
  if (count == 0)
    return Status::error("no CUDA device (cudaGetDeviceCount: 0 devices)");
  return Status::success();
}

Status idFaultStatus(const exec::Plan &plan, const IdFault &fault) {
  if (fault.step == 0)
    return Status::success();
  size_t index = static_cast<size_t>(fault.step - 1);
  std::string what = "an id is outside its table";
  if (index >= plan.steps.size())
    return Status::error(plan.path + ": " + what);
  const exec::Step &step = plan.steps[index];
  size_t operand = static_cast<size_t>(fault.operand);
  if (operand < step.operands.size() && step.operands[operand] >= 0) {
    // The element's index in the operand's dimensions, last fastest.
    const std::vector<int64_t> &shape =
        plan.values[step.operands[operand]].shape;
    std::vector<int64_t> element(shape.size());
    int64_t rest = fault.position;
    for (size_t d = shape.size(); d-- > 0;) {
      element[d] = shape[d] > 0 ? rest % shape[d] : 0;
      rest = shape[d] > 0 ? rest / shape[d] : 0;
    }
    std::string at;
    for (int64_t i : element)
      at += (at.empty() ? "" : ",") + std::to_string(i);
    what = std::string(step.info().operand(operand).name) + "[" + at +
           "] = " + std::to_string(fault.id) + " is outside [0, " +
           std::to_string(fault.limit) + ")";
  }
  return Status::error(exec::describeStep(plan, index) + ": " + what);
}

Status Executor::cudaFailure(const std::string &what, int error) const {
  return Status::error(plan.path + ": " + what + ": " +
                       errorText(static_cast<cudaError_t>(error)));
}

Expected<std::unique_ptr<Executor>> Executor::create(const exec::Plan &plan,
                                                     ExecutorOptions options) {
  if (plan.target != "cuda")
    return Status::error(plan.path + ": the plan targets '" + plan.target +
                         "'; the CUDA executor runs 'cuda' plans");
  std::unique_ptr<Executor> executor(new Executor());
  executor->plan = plan;
  executor->options = options;
  int64_t &scratchBytes = executor->scratchBytes;
  for (size_t i = 0; i < plan.steps.size(); ++i) {
    Expected<DeviceStep> step = prepareDeviceStep(plan, i, scratchBytes);
    if (!step)
      return step.takeStatus();
    executor->steps.push_back(std::move(*step));
  }
  if (Status status = checkDevice(); !status)
    return Status::error(plan.path + ": " + status.message());

  Executor &e = *executor;
  if (cudaError_t error =
          cudaStreamCreateWithFlags(&e.stream, cudaStreamNonBlocking);
      error != cudaSuccess)
    return e.cudaFailure("cannot create a stream", error);
  e.gemm = std::make_unique<GemmContext>(e.stream);
  // Not inside the first run's graph capture.
  if (Status status = e.gemm->prepare(); !status)
    return Status::error(plan.path + ": " + status.message());
  if (cudaError_t error = allocate(plan.arenaBytes, e.arena);
      error != cudaSuccess)
    return e.cudaFailure("cannot allocate the arena of " +
                             std::to_string(plan.arenaBytes) + " bytes",
                         error);
  if (cudaError_t error = allocate(scratchBytes, e.scratch);
      error != cudaSuccess)
    return e.cudaFailure("cannot allocate " + std::to_string(scratchBytes) +
                             " bytes of kernel scratch",
                         error);
  void *fault = nullptr;
  if (cudaError_t error = allocate(sizeof(IdFault), fault);
      error != cudaSuccess)
    return e.cudaFailure("cannot allocate the id fault record", error);
  e.idFault = static_cast<IdFault *>(fault);
  if (cudaError_t error = cudaMallocHost(&fault, sizeof(IdFault));
      error != cudaSuccess)
    return e.cudaFailure("cannot allocate the id fault record", error);
  e.hostIdFault = static_cast<IdFault *>(fault);
  for (const exec::InputInfo &input : plan.inputs) {
    e.hostInputs.emplace_back(input.numel, 0);
    void *buffer;
    if (cudaError_t error = allocate(input.numel * 4, buffer);
        error != cudaSuccess)
      return e.cudaFailure("cannot allocate input '" + input.name + "'", error);
    e.inputBuffers.push_back(buffer);
  }

  e.device.assign(exec::numSlots(plan), nullptr);
  e.host.assign(exec::numSlots(plan), nullptr);
  for (size_t i = 0; i < plan.values.size(); ++i) {
    const exec::ValueInfo &value = plan.values[i];
    if (value.storage == exec::StorageKind::Arena) {
      e.device[i] = static_cast<uint8_t *>(e.arena) + value.offset;
    } else if (value.storage == exec::StorageKind::Input) {
      e.device[i] = e.inputBuffers[value.index];
      e.host[i] = e.hostInputs[value.index].data();
    }
  }
  e.device[exec::scratchSlot(plan)] = e.scratch;
  e.forwardSteps = plan.forwardSteps;
  // The steps' own device resources, made before the first run's capture.
  LaunchContext context{e.device.data(), e.host.data(), e.stream, e.gemm.get(),
                        e.idFault};
  for (size_t i = 0; i < e.steps.size(); ++i)
    if (Status status = e.steps[i].setup(context); !status)
      return Status::error(exec::describeStep(plan, i) + ": " +
                           status.message());
  return executor;
}

Executor::~Executor() {
  dropGraphs();
  for (cudaEvent_t event : {stepStart, stepEnd})
    if (event)
      cudaEventDestroy(event);
  // The steps' cuFFT plans and matrices and the cuBLASLt handle before the
  // stream they serve.
  steps.clear();
  gemm.reset();
  for (std::vector<void *> *buffers :
       {&inputBuffers, &paramBuffers, &stateBuffers})
    for (void *buffer : *buffers)
      cudaFree(buffer);
  cudaFree(arena);
  cudaFree(scratch);
  cudaFree(idFault);
  cudaFreeHost(hostIdFault);
  if (stream)
    cudaStreamDestroy(stream);
}

Status Executor::upload(const std::vector<io::HostTensor> &tensors,
                        exec::StorageKind storage,
                        std::vector<void *> &buffers) {
  for (void *buffer : buffers)
    cudaFree(buffer);
  buffers.assign(tensors.size(), nullptr);
  for (size_t i = 0; i < tensors.size(); ++i) {
    const io::HostTensor &tensor = tensors[i];
    if (cudaError_t error = allocate(tensor.data.size(), buffers[i]);
        error != cudaSuccess)
      return cudaFailure("cannot allocate '" + tensor.name + "'", error);
    if (cudaError_t error =
            cudaMemcpy(buffers[i], tensor.data.data(), tensor.data.size(),
                       cudaMemcpyHostToDevice);
        error != cudaSuccess)
      return cudaFailure("cannot upload '" + tensor.name + "'", error);
  }
  for (size_t i = 0; i < plan.values.size(); ++i)
    if (plan.values[i].storage == storage)
      device[i] = buffers[plan.values[i].index];
  dropGraphs();
  return Status::success();
}

void Executor::dropGraphs() {
  for (CapturedGraph *captured : {&graph, &forwardGraph}) {
    if (captured->exec)
      cudaGraphExecDestroy(captured->exec);
    captured->exec = nullptr;
  }
}

Status Executor::bindParams(std::vector<io::HostTensor> tensors,
                            const std::string &source, bool allowExtra) {
  paramsBound = false;
  std::vector<io::HostTensor> bound;
  if (Status status = exec::bindTable(plan.params, std::move(tensors), source,
                                      allowExtra, exec::kParameterNoun, bound);
      !status)
    return status;
  if (Status status = upload(bound, exec::StorageKind::Param, paramBuffers);
      !status)
    return status;
  paramsBound = true;
  return Status::success();
}

Status Executor::bindState(std::vector<io::HostTensor> tensors,
                           const std::string &source, bool allowExtra) {
  stateBound = false;
  std::vector<io::HostTensor> bound;
  if (Status status = exec::bindTable(plan.state, std::move(tensors), source,
                                      allowExtra, exec::kStateNoun, bound);
      !status)
    return status;
  if (Status status = upload(bound, exec::StorageKind::State, stateBuffers);
      !status)
    return status;
  stateBound = true;
  return Status::success();
}

Status Executor::bindInputs(const std::vector<io::HostTensor> &tensors,
                            const std::string &source, bool allowExtra) {
  inputsBound = false;
  if (Status status =
          exec::bindInputBuffers(plan, tensors, source, allowExtra, hostInputs);
      !status)
    return status;
  inputsBound = true;
  return Status::success();
}

std::vector<int32_t> Executor::scalarInputs() const {
  std::vector<int32_t> scalars;
  for (size_t i = 0; i < plan.inputs.size(); ++i)
    if (plan.inputs[i].numel == 1)
      scalars.push_back(hostInputs[i][0]);
  return scalars;
}

Status Executor::enqueueSteps(size_t count) {
  LaunchContext context{device.data(), host.data(), stream, gemm.get(),
                        idFault};
  for (size_t i = 0; i < count; ++i) {
    if (stepObserver)
      if (Status status = beginObservedStep(i); !status)
        return status;
    context.step = i;
    if (Status status = steps[i](context); !status)
      return Status::error(exec::describeStep(plan, i) + ": " +
                           status.message());
    if (stepObserver)
      if (Status status = endObservedStep(i); !status)
        return status;
  }
  return Status::success();
}

Status Executor::beginObservedStep(size_t index) {
  for (cudaEvent_t *event : {&stepStart, &stepEnd})
    if (!*event)
      if (cudaError_t error = cudaEventCreate(event); error != cudaSuccess)
        return cudaFailure("cannot create the step events", error);
  stepObserver->beforeStep(index);
  if (cudaError_t error = cudaEventRecord(stepStart, stream);
      error != cudaSuccess)
    return cudaFailure(
        "cannot record the start of " + exec::describeStep(plan, index), error);
  return Status::success();
}

Status Executor::endObservedStep(size_t index) {
  float milliseconds = 0;
  cudaError_t error = cudaEventRecord(stepEnd, stream);
  if (error == cudaSuccess)
    error = cudaEventSynchronize(stepEnd);
  if (error == cudaSuccess)
    error = cudaEventElapsedTime(&milliseconds, stepStart, stepEnd);
  if (error != cudaSuccess)
    return cudaFailure("running " + exec::describeStep(plan, index) + " failed",
                       error);
  stepObserver->afterStep(index, milliseconds);
  return Status::success();
}

Status Executor::captureGraph(size_t count, CapturedGraph &replay) {
  if (cudaError_t error =
          cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal);
      error != cudaSuccess)
    return cudaFailure("cannot capture the steps", error);
  Status enqueued = enqueueSteps(count);
  cudaGraph_t captured = nullptr;
  cudaError_t error = cudaStreamEndCapture(stream, &captured);
  if (!enqueued) {
    if (captured)
      cudaGraphDestroy(captured);
    return enqueued;
  }
  if (error != cudaSuccess)
    return cudaFailure("capturing the steps failed", error);
  replay.scalars = scalarInputs();
  // New scalar inputs (a training step's step, learning rate, seed) change
  // only kernel arguments: updating the instantiated graph in place is much
  // cheaper than instantiating it again, which stays the fallback.
  if (replay.exec) {
    cudaGraphExecUpdateResultInfo update;
    if (cudaGraphExecUpdate(replay.exec, captured, &update) == cudaSuccess) {
      cudaGraphDestroy(captured);
      return Status::success();
    }
    // Refused (e.g. by the pool allocations of some steps): clear the error
    // it leaves and instantiate afresh.
    cudaGetLastError();
    cudaGraphExecDestroy(replay.exec);
    replay.exec = nullptr;
  }
  error = cudaGraphInstantiate(&replay.exec, captured, 0);
  cudaGraphDestroy(captured);
  if (error != cudaSuccess)
    return cudaFailure("cannot instantiate the graph of the steps", error);
  return Status::success();
}

Status Executor::run() { return runSteps(steps.size(), graph); }

Status Executor::runForward() { return runSteps(forwardSteps, forwardGraph); }

Status Executor::runSteps(size_t count, CapturedGraph &replay) {
  if (!paramsBound)
    return Status::error(plan.path + ": the parameters are not bound");
  if (!inputsBound)
    return Status::error(plan.path + ": the inputs are not bound");
  if (!stateBound && !plan.state.empty())
    return Status::error(plan.path + ": the optimizer state is not bound");
  for (size_t i = 0; i < plan.inputs.size(); ++i)
    if (cudaError_t error = cudaMemcpyAsync(
            inputBuffers[i], hostInputs[i].data(), hostInputs[i].size() * 4,
            cudaMemcpyHostToDevice, stream);
        error != cudaSuccess)
      return cudaFailure("cannot upload input '" + plan.inputs[i].name + "'",
                         error);
  if (cudaError_t error = cudaMemsetAsync(idFault, 0, sizeof(IdFault), stream);
      error != cudaSuccess)
    return cudaFailure("cannot clear the id fault record", error);
  // Observed steps run one at a time, each timed on its own.
  if (options.cudaGraph && !stepObserver) {
    if (!replay.exec || replay.scalars != scalarInputs())
      if (Status status = captureGraph(count, replay); !status)
        return status;
    if (cudaError_t error = cudaGraphLaunch(replay.exec, stream);
        error != cudaSuccess)
      return cudaFailure("cannot launch the graph of the steps", error);
  } else if (Status status = enqueueSteps(count); !status) {
    return status;
  }
  cudaError_t error = cudaMemcpyAsync(hostIdFault, idFault, sizeof(IdFault),
                                      cudaMemcpyDeviceToHost, stream);
  if (error == cudaSuccess)
    error = cudaStreamSynchronize(stream);
  if (error != cudaSuccess)
    return cudaFailure("running the steps failed", error);
  return idFaultStatus(plan, *hostIdFault);
}

std::vector<io::HostTensor> Executor::outputs() const {
  std::vector<io::HostTensor> tensors;
  for (const exec::OutputInfo &output : plan.outputs) {
    const exec::ValueInfo &value = plan.values[output.value];
    io::HostTensor tensor;
    tensor.name = output.name;
    tensor.dtype = value.dtype;
    tensor.shape = value.shape;
    tensor.data.assign(value.bytes, 0);
    // Parameter outputs before bindParams have no storage yet.
    if (value.bytes > 0 && device[output.value])
      cudaMemcpy(tensor.data.data(), device[output.value], value.bytes,
                 cudaMemcpyDeviceToHost);
    tensors.push_back(std::move(tensor));
  }
  return tensors;
}

Expected<std::vector<io::HostTensor>>
Executor::download(const std::vector<exec::ParamInfo> &table,
                   const std::vector<void *> &buffers) const {
  std::vector<io::HostTensor> tensors;
  tensors.reserve(buffers.size());
  for (size_t i = 0; i < buffers.size(); ++i) {
    const exec::ParamInfo &entry = table[i];
    io::HostTensor tensor;
    tensor.name = entry.name;
    tensor.dtype = entry.dtype;
    tensor.shape = entry.shape;
    tensor.data.resize(entry.numel * io::dtypeSize(entry.dtype));
    if (cudaError_t error =
            cudaMemcpyAsync(tensor.data.data(), buffers[i], tensor.data.size(),
                            cudaMemcpyDeviceToHost, stream);
        error != cudaSuccess)
      return cudaFailure("cannot copy '" + entry.name + "' to the host", error);
    tensors.push_back(std::move(tensor));
  }
  if (cudaError_t error = cudaStreamSynchronize(stream); error != cudaSuccess)
    return cudaFailure("copying tensors to the host failed", error);
  return tensors;
}

Expected<std::vector<io::HostTensor>> Executor::copyParams() const {
  return download(plan.params, paramBuffers);
}

Expected<std::vector<io::HostTensor>> Executor::copyState() const {
  return download(plan.state, stateBuffers);
}

} // namespace mixer::cuda

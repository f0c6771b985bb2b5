//===- Nccl.cpp - Collectives on CUDA buffers through NCCL ----------------===//

#include "runtime/comm/Nccl.h"

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <algorithm>
#include <thread>

namespace mixer::comm {

namespace {

std::string cudaText(cudaError_t error) {
  return std::string(cudaGetErrorName(error)) + " (" +
         cudaGetErrorString(error) + ")";
}

std::string ncclText(ncclResult_t result, ncclComm_t comm) {
  std::string text = ncclGetErrorString(result);
  if (const char *last = ncclGetLastError(comm); last && *last)
    text += std::string(": ") + last;
  return text;
}

/// Waits until a non-blocking NCCL communicator has finished what it was
/// asked (ncclInProgress no longer); "" or the reason it failed.
std::string settle(ncclComm_t comm, Clock::time_point deadline,
                   bool &timedOut) {
  timedOut = false;
  while (true) {
    ncclResult_t state = ncclSuccess;
    if (ncclResult_t r = ncclCommGetAsyncError(comm, &state); r != ncclSuccess)
      return ncclText(r, comm);
    if (state == ncclSuccess)
      return "";
    if (state != ncclInProgress)
      return ncclText(state, comm);
    if (Clock::now() >= deadline) {
      timedOut = true;
      return "";
    }
    std::this_thread::yield();
  }
}

bool ncclTypeOf(io::DType dtype, ncclDataType_t &type) {
  switch (dtype) {
  case io::DType::F32:
    type = ncclFloat32;
    return true;
  case io::DType::BF16:
    type = ncclBfloat16;
    return true;
  case io::DType::F64:
    type = ncclFloat64;
    return true;
  case io::DType::I32:
    type = ncclInt32;
    return true;
  case io::DType::I64:
    type = ncclInt64;
    return true;
  default:
    return false;
  }
}

class NcclCommunicator final : public Communicator {
public:
  NcclCommunicator(int rank, std::vector<int> worldRanks, std::string name,
                   const Options &options, ncclComm_t comm, cudaStream_t stream)
      : Communicator(rank, std::move(worldRanks), std::move(name), options),
        comm(comm), stream(stream) {}
  ~NcclCommunicator() override {
    if (comm)
      ncclCommAbort(comm);
  }

  Status allReduceSum(const void *send, void *recv, size_t count,
                      io::DType dtype, std::string_view step) override;

protected:
  Status transfer(const std::vector<Message> &sends,
                  const std::vector<Message> &recvs,
                  const Deadline &deadline) override;
  Status transferHost(const std::vector<Message> &sends,
                      const std::vector<Message> &recvs,
                      const Deadline &deadline) override;
  Status copyLocal(void *dst, const void *src, size_t bytes) override;
  Status zero(void *dst, size_t bytes) override;
  Expected<std::unique_ptr<Communicator>>
  createGroup(const std::vector<int> &members, int color, int key,
              std::string name, const Deadline &deadline) override;

private:
  /// Waits for the enqueued operations; aborts the communicator at the
  /// deadline.
  Status complete(const Deadline &deadline);

  ncclComm_t comm;
  cudaStream_t stream;
};

Status NcclCommunicator::complete(const Deadline &deadline) {
  if (!comm)
    return failure(deadline, "the NCCL communicator was aborted");
  bool timedOut = false;
  while (true) {
    std::string error = settle(comm, deadline.at, timedOut);
    if (!error.empty())
      return failure(deadline, error);
    if (!timedOut) {
      cudaError_t state = cudaStreamQuery(stream);
      if (state == cudaSuccess)
        return Status::success();
      if (state != cudaErrorNotReady)
        return failure(deadline, cudaText(state));
      if (Clock::now() < deadline.at) {
        std::this_thread::yield();
        continue;
      }
    }
    // NCCL cannot say which peer is missing: name every one.
    ncclCommAbort(comm);
    comm = nullptr;
    std::vector<int> peers;
    for (int p = 0; p < size(); ++p)
      if (p != rank())
        peers.push_back(p);
    return timeoutError(deadline, peers);
  }
}

Status NcclCommunicator::transfer(const std::vector<Message> &sends,
                                  const std::vector<Message> &recvs,
                                  const Deadline &deadline) {
  if (!comm)
    return failure(deadline, "the NCCL communicator was aborted");
  if (!sends.empty() || !recvs.empty()) {
    ncclGroupStart();
    for (const Message &m : recvs)
      ncclRecv(m.data, m.bytes, ncclUint8, m.peer, comm, stream);
    for (const Message &m : sends)
      ncclSend(m.data, m.bytes, ncclUint8, m.peer, comm, stream);
    ncclResult_t r = ncclGroupEnd();
    if (r != ncclSuccess && r != ncclInProgress)
      return failure(deadline, ncclText(r, comm));
  }
  return complete(deadline);
}

Status NcclCommunicator::transferHost(const std::vector<Message> &sends,
                                      const std::vector<Message> &recvs,
                                      const Deadline &deadline) {
  // Small control data: stage it through one device buffer.
  size_t total = 0;
  for (const auto *list : {&sends, &recvs})
    for (const Message &m : *list)
      total += m.bytes;
  void *staging = nullptr;
  if (total && cudaMalloc(&staging, total) != cudaSuccess)
    return failure(deadline, "cannot allocate " + std::to_string(total) +
                                 " bytes of device memory");
  std::vector<Message> deviceSends, deviceRecvs;
  size_t at = 0;
  cudaError_t error = cudaSuccess;
  for (const Message &m : sends) {
    void *device = static_cast<char *>(staging) + at;
    if (error == cudaSuccess)
      error = cudaMemcpyAsync(device, m.data, m.bytes, cudaMemcpyHostToDevice,
                              stream);
    deviceSends.push_back(Message{m.peer, device, m.bytes});
    at += m.bytes;
  }
  for (const Message &m : recvs) {
    deviceRecvs.push_back(
        Message{m.peer, static_cast<char *>(staging) + at, m.bytes});
    at += m.bytes;
  }
  Status status = error == cudaSuccess
                      ? transfer(deviceSends, deviceRecvs, deadline)
                      : failure(deadline, cudaText(error));
  for (size_t i = 0; status.ok() && i < recvs.size(); ++i)
    if (cudaError_t e = cudaMemcpy(recvs[i].data, deviceRecvs[i].data,
                                   recvs[i].bytes, cudaMemcpyDeviceToHost);
        e != cudaSuccess)
      status = failure(deadline, cudaText(e));
  cudaFree(staging);
  return status;
}

Status NcclCommunicator::copyLocal(void *dst, const void *src, size_t bytes) {
  cudaError_t error =
      cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream);
  return error == cudaSuccess ? Status::success()
                              : Status::error(cudaText(error));
}

Status NcclCommunicator::zero(void *dst, size_t bytes) {
  cudaError_t error = cudaMemsetAsync(dst, 0, bytes, stream);
  if (error == cudaSuccess)
    error = cudaStreamSynchronize(stream);
  return error == cudaSuccess ? Status::success()
                              : Status::error(cudaText(error));
}

Status NcclCommunicator::allReduceSum(const void *send, void *recv,
                                      size_t count, io::DType dtype,
                                      std::string_view step) {
  Deadline deadline;
  Clock::time_point start;
  if (Status s = begin("all_reduce", step, deadline, start); !s)
    return s;
  ncclDataType_t type;
  if (!ncclTypeOf(dtype, type))
    return finish(failure(deadline, std::string("cannot sum ") +
                                        io::dtypeName(dtype) +
                                        " values (F32, BF16, F64, I32, I64)"),
                  start);
  if (!comm)
    return finish(failure(deadline, "the NCCL communicator was aborted"),
                  start);
  ncclResult_t r =
      ncclAllReduce(send, recv, count, type, ncclSum, comm, stream);
  if (r != ncclSuccess && r != ncclInProgress)
    return finish(failure(deadline, ncclText(r, comm)), start);
  return finish(complete(deadline), start);
}

Expected<std::unique_ptr<Communicator>>
NcclCommunicator::createGroup(const std::vector<int> &members, int color,
                              int key, std::string name,
                              const Deadline &deadline) {
  if (!comm)
    return failure(deadline, "the NCCL communicator was aborted");
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  ncclComm_t group = nullptr;
  ncclResult_t r = ncclCommSplit(comm, color, key, &group, &config);
  if (r != ncclSuccess && r != ncclInProgress)
    return failure(deadline, ncclText(r, comm));
  bool timedOut = false;
  std::string error = settle(group, deadline.at, timedOut);
  if (!error.empty() || timedOut) {
    ncclCommAbort(group);
    return failure(deadline,
                   timedOut ? "the NCCL split did not finish in time" : error);
  }
  int index = static_cast<int>(
      std::find(members.begin(), members.end(), rank()) - members.begin());
  return std::unique_ptr<Communicator>(std::make_unique<NcclCommunicator>(
      index, worldRanksOf(members), std::move(name), options(), group, stream));
}

} // namespace

Expected<std::unique_ptr<Communicator>>
createNcclCommunicator(Communicator &bootstrap, void *stream,
                       std::string_view step) {
  int devices = 0;
  if (cudaError_t e = cudaGetDeviceCount(&devices); e != cudaSuccess)
    return Status::error("no CUDA device (cudaGetDeviceCount: " + cudaText(e) +
                         ") for the NCCL communicator");
  ncclUniqueId id{};
  if (bootstrap.rank() == 0)
    if (ncclResult_t r = ncclGetUniqueId(&id); r != ncclSuccess)
      return Status::error(std::string("ncclGetUniqueId: ") +
                           ncclGetErrorString(r));
  if (Status s = bootstrap.broadcast(&id, sizeof id, 0, step); !s)
    return s;
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  ncclComm_t comm = nullptr;
  ncclResult_t r = ncclCommInitRankConfig(&comm, bootstrap.size(), id,
                                          bootstrap.rank(), &config);
  if (r != ncclSuccess && r != ncclInProgress)
    return Status::error(std::string(step) +
                         ": ncclCommInitRankConfig: " + ncclText(r, comm));
  bool timedOut = false;
  std::string error =
      settle(comm, Clock::now() + bootstrap.options().deadline, timedOut);
  if (!error.empty() || timedOut) {
    ncclCommAbort(comm);
    return Status::error(std::string(step) + ": NCCL initialisation " +
                         (timedOut ? "did not finish in time" : error));
  }
  std::vector<int> ranks;
  for (int p = 0; p < bootstrap.size(); ++p)
    ranks.push_back(bootstrap.worldRank(p));
  return std::unique_ptr<Communicator>(std::make_unique<NcclCommunicator>(
      bootstrap.rank(), ranks, bootstrap.name(), bootstrap.options(), comm,
      static_cast<cudaStream_t>(stream)));
}

} // namespace mixer::comm

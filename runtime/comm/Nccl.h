//===- Nccl.h - Collectives on CUDA buffers through NCCL --------*- C++ -*-===//
//
// A communicator whose buffers are CUDA device memory, one GPU per rank
// (NCCL refuses two ranks on one device). It is bootstrapped over a host
// communicator: rank 0 draws NCCL's unique id and broadcasts it. The NCCL
// communicator is non-blocking, so every operation is polled against the
// collective's deadline and the communicator is aborted when it passes.
//
// Collectives are enqueued on the given stream and complete before each call
// returns. The all-reduce is ncclAllReduce: NCCL's order of summation (it
// depends on the algorithm and the message size), not rank order.
//
//===----------------------------------------------------------------------===//

#ifndef MIXER_RUNTIME_COMM_NCCL_H
#define MIXER_RUNTIME_COMM_NCCL_H

#include "runtime/comm/Communicator.h"

#include <memory>
#include <string_view>

namespace mixer::comm {

/// A communicator over the ranks of `bootstrap` on the current CUDA device,
/// enqueueing on `stream` (a cudaStream_t; null for the default stream).
/// Collective over `bootstrap`; inherits its options and group name.
Expected<std::unique_ptr<Communicator>>
createNcclCommunicator(Communicator &bootstrap, void *stream,
                       std::string_view step);

} // namespace mixer::comm

#endif // MIXER_RUNTIME_COMM_NCCL_H

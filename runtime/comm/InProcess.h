//===- InProcess.h - Collectives between threads of one process -*- C++ -*-===//
//
// A world of communicators that live in one process and move bytes with
// memcpy: the ranks are threads. Unit tests of collectives and of the kernels
// that use them run on it without mpirun.
//
//===----------------------------------------------------------------------===//

#ifndef MIXER_RUNTIME_COMM_INPROCESS_H
#define MIXER_RUNTIME_COMM_INPROCESS_H

#include "runtime/comm/Communicator.h"

#include <functional>
#include <memory>
#include <vector>

namespace mixer::comm {

/// The `size` ranks of a new in-process world; each communicator must be
/// used by one thread at a time.
std::vector<std::unique_ptr<Communicator>>
createInProcessWorld(int size, const Options &options = Options());

/// Runs `body` on `size` threads, thread r with rank r of a new in-process
/// world, and returns when every thread has returned.
void runInProcess(int size, const Options &options,
                  const std::function<void(Communicator &)> &body);

} // namespace mixer::comm

#endif // MIXER_RUNTIME_COMM_INPROCESS_H

//===- Mpi.h - Collectives between processes under mpirun -------*- C++ -*-===//
//
// The communicator of a job started by mpirun (Open MPI): host buffers,
// non-blocking point-to-point messages polled against the collective's
// deadline, so a peer that stops answering is named instead of waited for.
// A peer that dies ends the whole job: mpirun notices the exit, names the
// rank and kills the others.
//
//===----------------------------------------------------------------------===//

#ifndef MIXER_RUNTIME_COMM_MPI_H
#define MIXER_RUNTIME_COMM_MPI_H

#include "runtime/comm/Communicator.h"

#include <memory>

namespace mixer::comm {

/// The world of this MPI job. Initialises MPI (MPI_THREAD_FUNNELED: one
/// thread calls the collectives) unless it already is, and finalises it when
/// the last communicator of the world and its groups is destroyed.
/// abort() is MPI_Abort on MPI_COMM_WORLD.
Expected<std::unique_ptr<Communicator>>
createMpiWorld(const Options &options = Options());

} // namespace mixer::comm

#endif // MIXER_RUNTIME_COMM_MPI_H

//===- Communicator.h - Collectives between the ranks of a job --*- C++ -*-===//
//
// The backend-neutral interface every collective of an expert- or
// data-parallel run goes through: rank and size, sub-groups, all-to-all with
// equal and with ragged blocks, all-reduce, all-gather, broadcast and barrier.
//
// Every collective takes a step label (e.g. "steps[57] (all_to_all)") and has
// a deadline: when a peer does not take part in time, the call fails with a
// message that names the label, the group and the peers it still waits for,
// instead of hanging. A group is unusable after a failure. Blocks larger than
// the chunk limit travel as several messages (MPI counts are `int`).
//
// The collectives are written once, here, on top of one backend primitive
// (`transfer`: a set of point-to-point messages completed together, or an
// error at the deadline), so every backend moves the same bytes and sums in
// the same order: an all-reduce adds the ranks' values in rank order, and its
// result does not depend on the backend or the message sizes.
//
// Backends: runtime/comm/InProcess.h (threads of one process, for tests),
// runtime/comm/Mpi.h (processes under mpirun), runtime/comm/Nccl.h (CUDA
// buffers, one GPU per rank).
//
//===----------------------------------------------------------------------===//

#ifndef MIXER_RUNTIME_COMM_COMMUNICATOR_H
#define MIXER_RUNTIME_COMM_COMMUNICATOR_H

#include "runtime/io/Tensor.h"
#include "runtime/support/Status.h"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mixer::comm {

using Clock = std::chrono::steady_clock;

/// The largest message one MPI call can describe: counts are `int`.
constexpr size_t kMaxChunkBytes = size_t(1) << 30;

/// Settings of a communicator. Every rank of a group must use the same ones
/// (the chunk limit decides the messages both sides expect).
struct Options {
  /// How long one collective may take, from its call to its completion.
  std::chrono::milliseconds deadline = std::chrono::seconds(300);
  /// The largest message between two ranks, at most kMaxChunkBytes; a
  /// larger block goes as several messages in order.
  size_t chunkBytes = kMaxChunkBytes;
};

/// What a communicator has done since it was created.
struct Stats {
  int64_t collectives = 0; ///< completed collective calls
  int64_t messages = 0;    ///< messages to other ranks (chunks)
  int64_t bytesSent = 0;   ///< bytes sent to other ranks (not to itself)
  double seconds = 0;      ///< wall time spent inside collectives
};

/// One message of a transfer: `bytes` bytes to or from group rank `peer`.
struct Message {
  int peer;
  void *data;
  size_t bytes;
};

/// The end of one collective and what its error names.
struct Deadline {
  Clock::time_point at;
  std::string_view step; ///< the caller's label
  std::string_view op;   ///< the collective ("all_to_all", ...)
};

/// The element types an all-reduce accepts: F32, BF16 (summed in f32 and
/// rounded once, to nearest even), F64, I32 and I64 (two's complement sums
/// that wrap).
bool isReducible(io::DType dtype);

/// How a process was started, from the launcher's environment
/// (OMPI_COMM_WORLD_SIZE/RANK of Open MPI's mpirun, or PMI_SIZE/PMI_RANK).
struct Launch {
  int worldSize = 1;
  int worldRank = 0;
};
/// The launch of this process; nullopt when no launcher variable is set.
std::optional<Launch> detectLaunch();

class Communicator {
public:
  virtual ~Communicator();
  Communicator(const Communicator &) = delete;
  Communicator &operator=(const Communicator &) = delete;

  /// This process's rank in the group, 0 <= rank < size.
  int rank() const { return myRank; }
  int size() const { return static_cast<int>(worldRanks.size()); }
  /// The group's name in messages ("world", "ep", ...).
  const std::string &name() const { return groupName; }
  /// The world rank of group rank `r`.
  int worldRank(int r) const { return worldRanks[r]; }

  const Options &options() const { return settings; }
  /// Changes the deadline and chunk limit; every rank must do the same.
  Status setOptions(const Options &options);
  const Stats &stats() const { return counters; }

  /// Block p of `send` (`bytesPerPeer` bytes at p * bytesPerPeer) goes to rank
  /// p; the block from rank p lands at p * bytesPerPeer of `recv`. `send` and
  /// `recv` must not overlap.
  Status allToAll(const void *send, void *recv, size_t bytesPerPeer,
                  std::string_view step);

  /// Ragged all-to-all of rows of `rowBytes` bytes. `sendRows[p]` rows go to
  /// rank p, the blocks packed in rank order in `send`. The counts travel
  /// first: `recvRows[p]` receives how many rows rank p sends, and the rows
  /// land packed in rank order in `recv`, which holds `recvCapacityRows` rows;
  /// rows past the received ones are zeroed. Receiving more rows than the
  /// capacity is an error.
  Status allToAllV(const void *send, const int64_t *sendRows, void *recv,
                   int64_t recvCapacityRows, int64_t *recvRows, size_t rowBytes,
                   std::string_view step);

  /// `recv[p * bytes, (p + 1) * bytes)` receives rank p's `bytes` bytes.
  Status allGather(const void *send, void *recv, size_t bytes,
                   std::string_view step);

  /// Every rank's `buffer` receives the root's.
  Status broadcast(void *buffer, size_t bytes, int root, std::string_view step);

  /// Element-wise sum over the group of `count` elements of `dtype` (see
  /// isReducible), the same bits on every rank; `send == recv` runs in place.
  /// The default adds the ranks' values in rank order (a reduce-scatter, then
  /// an all-gather).
  virtual Status allReduceSum(const void *send, void *recv, size_t count,
                              io::DType dtype, std::string_view step);

  /// Returns once every rank of the group has called it.
  Status barrier(std::string_view step);

  /// A sub-group of the ranks that pass the same `color` (>= 0), ranked by
  /// (`key`, rank). Collective over this group; the sub-group inherits the
  /// options.
  Expected<std::unique_ptr<Communicator>>
  split(int color, int key, std::string name, std::string_view step);

  /// Ends the whole job with `code` (MPI_Abort under mpirun), for a failure
  /// after which the other ranks could wait forever.
  [[noreturn]] virtual void abort(int code);

protected:
  Communicator(int rank, std::vector<int> worldRanks, std::string name,
               const Options &options);

  /// Sends every message of `sends` and receives every one of `recvs`
  /// (messages between two ranks arrive in order), returning when all are
  /// complete, or an error from timeoutError at the deadline. Messages are
  /// at most the chunk limit and never addressed to this rank.
  virtual Status transfer(const std::vector<Message> &sends,
                          const std::vector<Message> &recvs,
                          const Deadline &deadline) = 0;
  /// Like transfer, for small host buffers the collectives use for
  /// themselves (counts, split colors); a backend on device memory sends them
  /// another way.
  virtual Status transferHost(const std::vector<Message> &sends,
                              const std::vector<Message> &recvs,
                              const Deadline &deadline);
  /// Copies `bytes` bytes of this rank's own block.
  virtual Status copyLocal(void *dst, const void *src, size_t bytes);
  /// Sets `bytes` bytes of a receive buffer to zero.
  virtual Status zero(void *dst, size_t bytes);
  /// The backend's sub-group of `members` (parent ranks, in their new
  /// order), after every rank has agreed on them.
  virtual Expected<std::unique_ptr<Communicator>>
  createGroup(const std::vector<int> &members, int color, int key,
              std::string name, const Deadline &deadline) = 0;

  /// The error of a collective that waited past its deadline for `peers`
  /// (group ranks).
  Status timeoutError(const Deadline &deadline,
                      const std::vector<int> &peers) const;
  /// The error of a collective that failed in the backend.
  Status failure(const Deadline &deadline, const std::string &reason) const;
  /// The world ranks of `members` (group ranks).
  std::vector<int> worldRanksOf(const std::vector<int> &members) const;
  /// Starts a collective `op` (sets its deadline): refuses it when the group
  /// has failed.
  Status begin(std::string_view op, std::string_view step, Deadline &deadline,
               Clock::time_point &start);
  /// Records a completed or failed collective.
  Status finish(Status status, Clock::time_point start);

private:
  /// One block per peer: bytes at an offset of the send and receive buffers.
  struct Blocks {
    std::vector<size_t> sendOffsets, sendBytes, recvOffsets, recvBytes;
    explicit Blocks(int size);
  };
  /// Moves the blocks (chunked), copying this rank's own block locally.
  Status exchange(const void *send, void *recv, const Blocks &blocks,
                  const Deadline &deadline, bool host);

  int myRank;
  std::vector<int> worldRanks;
  std::string groupName;
  Options settings;
  Stats counters;
  std::optional<std::string> failed; ///< the first failure
  std::vector<uint8_t> scratch;      ///< the all-reduce's received shares
};

/// The groups of a `dp x ep` mesh over a world of dp * ep ranks: world rank
/// r = d * ep + j is rank j of expert group d (contiguous ranks) and rank d of
/// expert-data group j (ranks j, ep + j, ...).
struct MeshGroups {
  std::unique_ptr<Communicator> ep, edp;
};
Expected<MeshGroups> splitMesh(Communicator &world, int dp, int ep,
                               std::string_view step);

/// Joins the ranks' parts of `tensor` along axis 0: every rank's `tensor`
/// (of the same shape) is gathered in rank order and the parts of ranks
/// 0 .. parts - 1 of `group` are kept, so every rank ends with the same
/// tensor, `parts` times as long along axis 0.
Status gatherParts(Communicator &group, io::HostTensor &tensor, int parts,
                   std::string_view step);

} // namespace mixer::comm

#endif // MIXER_RUNTIME_COMM_COMMUNICATOR_H

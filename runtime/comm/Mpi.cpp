//===- Mpi.cpp - Collectives between processes under mpirun ---------------===//

#include "runtime/comm/Mpi.h"

#include <mpi.h>

#include <algorithm>
#include <cstdio>
#include <set>
#include <thread>

namespace mixer::comm {

namespace {

std::string mpiError(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(code, text, &length);
  return std::string(text, length);
}

/// MPI itself: finalised with the last communicator when this process
/// initialised it.
struct Session {
  bool owned = false;
  int tagBound = 32767;
  ~Session() {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (owned && !finalized)
      MPI_Finalize();
  }
};

class MpiCommunicator final : public Communicator {
public:
  MpiCommunicator(int rank, std::vector<int> worldRanks, std::string name,
                  const Options &options, MPI_Comm comm,
                  std::shared_ptr<Session> session)
      : Communicator(rank, std::move(worldRanks), std::move(name), options),
        comm(comm), session(std::move(session)) {}
  ~MpiCommunicator() override { MPI_Comm_free(&comm); }

  [[noreturn]] void abort(int code) override {
    std::fflush(stdout);
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, code);
    Communicator::abort(code);
  }

protected:
  Status transfer(const std::vector<Message> &sends,
                  const std::vector<Message> &recvs,
                  const Deadline &deadline) override;
  Expected<std::unique_ptr<Communicator>>
  createGroup(const std::vector<int> &members, int color, int key,
              std::string name, const Deadline &deadline) override;

private:
  MPI_Comm comm;
  std::shared_ptr<Session> session;
  int64_t sequence = 0; ///< transfers so far: their tags
};

Status MpiCommunicator::transfer(const std::vector<Message> &sends,
                                 const std::vector<Message> &recvs,
                                 const Deadline &deadline) {
  // Each transfer has its own tag, so ranks that disagree on the sequence of
  // collectives time out naming each other instead of mixing messages.
  int tag = static_cast<int>(sequence++ % (int64_t(session->tagBound) + 1));
  std::vector<MPI_Request> requests;
  std::vector<int> peers;
  auto cancel = [&] {
    for (MPI_Request &r : requests)
      if (r != MPI_REQUEST_NULL) {
        MPI_Cancel(&r);
        MPI_Request_free(&r);
      }
  };
  auto post = [&](const Message &m, bool receive) -> Status {
    MPI_Request request;
    int count = static_cast<int>(m.bytes); // at most kMaxChunkBytes
    int rc =
        receive
            ? MPI_Irecv(m.data, count, MPI_BYTE, m.peer, tag, comm, &request)
            : MPI_Isend(m.data, count, MPI_BYTE, m.peer, tag, comm, &request);
    if (rc != MPI_SUCCESS) {
      cancel();
      return failure(deadline, mpiError(rc));
    }
    requests.push_back(request);
    peers.push_back(m.peer);
    return Status::success();
  };
  for (const Message &m : recvs)
    if (Status s = post(m, true); !s)
      return s;
  for (const Message &m : sends)
    if (Status s = post(m, false); !s)
      return s;
  std::vector<int> completed(requests.size());
  size_t remaining = requests.size();
  // Open MPI progresses only inside MPI calls, and a large message moves in
  // fragments that need both sides to poll: poll without sleeping for the
  // first kSpin of the wait, then sleep a little longer each time (up to
  // 1 ms) so that a rank waiting for a slow peer leaves it the core.
  constexpr auto kSpin = std::chrono::milliseconds(50);
  auto spinUntil = Clock::now() + kSpin;
  auto pause = std::chrono::microseconds(0);
  while (remaining) {
    int count = 0;
    int rc = MPI_Testsome(static_cast<int>(requests.size()), requests.data(),
                          &count, completed.data(), MPI_STATUSES_IGNORE);
    if (rc != MPI_SUCCESS) {
      cancel();
      return failure(deadline, mpiError(rc));
    }
    if (count == MPI_UNDEFINED)
      break;
    remaining -= count;
    if (count > 0) {
      spinUntil = Clock::now() + kSpin;
      pause = std::chrono::microseconds(0);
      continue;
    }
    if (Clock::now() >= deadline.at) {
      std::set<int> silent;
      for (size_t i = 0; i < requests.size(); ++i)
        if (requests[i] != MPI_REQUEST_NULL)
          silent.insert(peers[i]);
      cancel();
      return timeoutError(deadline,
                          std::vector<int>(silent.begin(), silent.end()));
    }
    if (Clock::now() < spinUntil) {
      std::this_thread::yield();
      continue;
    }
    std::this_thread::sleep_for(pause);
    pause = std::min(std::chrono::microseconds(1000),
                     pause * 2 + std::chrono::microseconds(20));
  }
  return Status::success();
}

Expected<std::unique_ptr<Communicator>>
MpiCommunicator::createGroup(const std::vector<int> &members, int color,
                             int key, std::string name,
                             const Deadline &deadline) {
  // Every rank has answered the agreement on colors within the deadline, so
  // the blocking split below only waits for ranks that are running.
  MPI_Comm group;
  if (int rc = MPI_Comm_split(comm, color, key, &group); rc != MPI_SUCCESS)
    return failure(deadline, mpiError(rc));
  MPI_Comm_set_errhandler(group, MPI_ERRORS_RETURN);
  int index = static_cast<int>(
      std::find(members.begin(), members.end(), rank()) - members.begin());
  return std::unique_ptr<Communicator>(std::make_unique<MpiCommunicator>(
      index, worldRanksOf(members), std::move(name), options(), group,
      session));
}

} // namespace

Expected<std::unique_ptr<Communicator>> createMpiWorld(const Options &options) {
  auto session = std::make_shared<Session>();
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) {
    int provided = 0;
    if (int rc =
            MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
        rc != MPI_SUCCESS)
      return Status::error("cannot initialise MPI: " + mpiError(rc));
    session->owned = true;
  }
  MPI_Comm comm;
  if (int rc = MPI_Comm_dup(MPI_COMM_WORLD, &comm); rc != MPI_SUCCESS)
    return Status::error("cannot duplicate MPI_COMM_WORLD: " + mpiError(rc));
  MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN);
  int *bound = nullptr, found = 0;
  MPI_Comm_get_attr(MPI_COMM_WORLD, MPI_TAG_UB, &bound, &found);
  if (found && bound)
    session->tagBound = *bound;
  int rank = 0, size = 1;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  std::vector<int> ranks(size);
  for (int r = 0; r < size; ++r)
    ranks[r] = r;
  auto world = std::make_unique<MpiCommunicator>(rank, ranks, "world",
                                                 Options(), comm, session);
  if (Status s = world->setOptions(options); !s)
    return s;
  return std::unique_ptr<Communicator>(std::move(world));
}

} // namespace mixer::comm

//===- InProcess.cpp - Collectives between threads of one process ---------===//

#include "runtime/comm/InProcess.h"

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <thread>

namespace mixer::comm {

namespace {

/// A message a rank has posted and a peer has not yet copied.
struct Posted {
  const void *data;
  size_t bytes;
  bool taken = false;
};

/// What the ranks of one group share: a mailbox per (destination, source)
/// pair and the sub-groups made by split.
struct Shared {
  explicit Shared(int size) : size(size), boxes(size * size) {}
  int size;
  std::mutex mutex;
  std::condition_variable changed;
  /// boxes[dst * size + src]: messages from src to dst in the order posted.
  std::vector<std::deque<std::shared_ptr<Posted>>> boxes;
  /// The sub-groups, by (split number, color).
  std::map<std::pair<int64_t, int>, std::shared_ptr<Shared>> groups;
};

class InProcessCommunicator final : public Communicator {
public:
  InProcessCommunicator(int rank, std::vector<int> worldRanks, std::string name,
                        const Options &options, std::shared_ptr<Shared> shared)
      : Communicator(rank, std::move(worldRanks), std::move(name), options),
        shared(std::move(shared)) {}

protected:
  Status transfer(const std::vector<Message> &sends,
                  const std::vector<Message> &recvs,
                  const Deadline &deadline) override;
  Expected<std::unique_ptr<Communicator>>
  createGroup(const std::vector<int> &members, int color, int key,
              std::string name, const Deadline &deadline) override;

private:
  std::shared_ptr<Shared> shared;
  int64_t splits = 0; ///< split calls so far (the same on every rank)
};

Status InProcessCommunicator::transfer(const std::vector<Message> &sends,
                                       const std::vector<Message> &recvs,
                                       const Deadline &deadline) {
  int me = rank(), n = size();
  std::unique_lock<std::mutex> lock(shared->mutex);
  std::vector<std::shared_ptr<Posted>> mine;
  for (const Message &m : sends) {
    mine.push_back(std::make_shared<Posted>(Posted{m.data, m.bytes}));
    shared->boxes[m.peer * n + me].push_back(mine.back());
  }
  shared->changed.notify_all();
  // Withdraws what no peer has copied: the buffers end with this call.
  auto withdraw = [&] {
    for (const Message &m : sends) {
      auto &box = shared->boxes[m.peer * n + me];
      box.erase(std::remove_if(box.begin(), box.end(),
                               [&](const std::shared_ptr<Posted> &p) {
                                 return std::find(mine.begin(), mine.end(),
                                                  p) != mine.end();
                               }),
                box.end());
    }
  };
  size_t received = 0; // receives done; each peer's in order
  std::vector<bool> done(recvs.size(), false);
  while (true) {
    std::set<int> blocked; // peers with an earlier receive still pending
    for (size_t i = 0; i < recvs.size(); ++i) {
      const Message &m = recvs[i];
      if (done[i] || blocked.count(m.peer))
        continue;
      auto &box = shared->boxes[me * n + m.peer];
      if (box.empty()) {
        blocked.insert(m.peer);
        continue;
      }
      std::shared_ptr<Posted> front = box.front();
      box.pop_front();
      if (front->bytes != m.bytes) {
        withdraw();
        return failure(deadline, "rank " + std::to_string(worldRank(m.peer)) +
                                     " sent " + std::to_string(front->bytes) +
                                     " bytes where " + std::to_string(m.bytes) +
                                     " were expected");
      }
      std::memcpy(m.data, front->data, m.bytes);
      front->taken = true;
      done[i] = true;
      ++received;
      shared->changed.notify_all();
    }
    bool delivered = std::all_of(mine.begin(), mine.end(),
                                 [](const auto &p) { return p->taken; });
    if (received == recvs.size() && delivered)
      return Status::success();
    if (shared->changed.wait_until(lock, deadline.at) ==
            std::cv_status::timeout &&
        Clock::now() >= deadline.at) {
      std::set<int> silent(blocked.begin(), blocked.end());
      for (size_t i = 0; i < recvs.size(); ++i)
        if (!done[i])
          silent.insert(recvs[i].peer);
      for (size_t i = 0; i < sends.size(); ++i)
        if (!mine[i]->taken)
          silent.insert(sends[i].peer);
      withdraw();
      return timeoutError(deadline,
                          std::vector<int>(silent.begin(), silent.end()));
    }
  }
}

Expected<std::unique_ptr<Communicator>>
InProcessCommunicator::createGroup(const std::vector<int> &members, int color,
                                   int, std::string name, const Deadline &) {
  std::shared_ptr<Shared> group;
  {
    std::lock_guard<std::mutex> lock(shared->mutex);
    auto &slot = shared->groups[{splits++, color}];
    if (!slot)
      slot = std::make_shared<Shared>(static_cast<int>(members.size()));
    group = slot;
  }
  int index = static_cast<int>(
      std::find(members.begin(), members.end(), rank()) - members.begin());
  return std::unique_ptr<Communicator>(std::make_unique<InProcessCommunicator>(
      index, worldRanksOf(members), std::move(name), options(),
      std::move(group)));
}

} // namespace

std::vector<std::unique_ptr<Communicator>>
createInProcessWorld(int size, const Options &options) {
  auto shared = std::make_shared<Shared>(size);
  std::vector<int> ranks(size);
  for (int r = 0; r < size; ++r)
    ranks[r] = r;
  std::vector<std::unique_ptr<Communicator>> world;
  for (int r = 0; r < size; ++r)
    world.push_back(std::make_unique<InProcessCommunicator>(r, ranks, "world",
                                                            options, shared));
  return world;
}

void runInProcess(int size, const Options &options,
                  const std::function<void(Communicator &)> &body) {
  std::vector<std::unique_ptr<Communicator>> world =
      createInProcessWorld(size, options);
  std::vector<std::thread> threads;
  for (int r = 0; r < size; ++r)
    threads.emplace_back([&, r] { body(*world[r]); });
  for (std::thread &t : threads)
    t.join();
}

} // namespace mixer::comm

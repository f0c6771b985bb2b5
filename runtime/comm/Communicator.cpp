//===- Communicator.cpp - Collectives on one transfer primitive -----------===//

#include "runtime/comm/Communicator.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace mixer::comm {

namespace {

/// Start of rank p's share of `count` elements split over `size` ranks.
size_t shareBegin(size_t count, int p, int size) {
  return static_cast<size_t>(static_cast<unsigned __int128>(count) * p / size);
}

float bf16ToFloat(uint16_t bits) {
  uint32_t word = static_cast<uint32_t>(bits) << 16;
  float value;
  std::memcpy(&value, &word, sizeof value);
  return value;
}

/// Nearest bfloat16, ties to even; NaN stays a (quiet) NaN.
uint16_t floatToBf16(float value) {
  uint32_t word;
  std::memcpy(&word, &value, sizeof word);
  if ((word & 0x7fffffffu) > 0x7f800000u)
    return static_cast<uint16_t>((word | 0x00400000u) >> 16);
  return static_cast<uint16_t>((word + 0x7fffu + ((word >> 16) & 1u)) >> 16);
}

/// out[i] = sum over b of blocks[b * n + i], added in block order in the
/// accumulator type `Acc`; `load`/`store` convert between the element type
/// `T` and `Acc`.
template <typename T, typename Acc, typename Load, typename Store>
void sumInOrder(const uint8_t *blocks, int count, size_t n, uint8_t *out,
                Load load, Store store) {
  auto *in = reinterpret_cast<const T *>(blocks);
  auto *y = reinterpret_cast<T *>(out);
  for (size_t i = 0; i < n; ++i) {
    Acc acc = load(in[i]);
    for (int b = 1; b < count; ++b)
      acc += load(in[b * n + i]);
    y[i] = store(acc);
  }
}

template <typename T, typename Acc>
void sumPlain(const uint8_t *blocks, int count, size_t n, uint8_t *out) {
  sumInOrder<T, Acc>(
      blocks, count, n, out, [](T v) { return static_cast<Acc>(v); },
      [](Acc v) { return static_cast<T>(v); });
}

void sumBlocks(const uint8_t *blocks, int count, size_t n, io::DType dtype,
               uint8_t *out) {
  switch (dtype) {
  case io::DType::F32:
    return sumPlain<float, float>(blocks, count, n, out);
  case io::DType::F64:
    return sumPlain<double, double>(blocks, count, n, out);
  case io::DType::I32:
    return sumPlain<uint32_t, uint32_t>(blocks, count, n, out);
  case io::DType::I64:
    return sumPlain<uint64_t, uint64_t>(blocks, count, n, out);
  case io::DType::BF16:
    return sumInOrder<uint16_t, float>(blocks, count, n, out, bf16ToFloat,
                                       floatToBf16);
  default:
    break;
  }
}

std::string formatSeconds(std::chrono::milliseconds duration) {
  char text[32];
  std::snprintf(text, sizeof text, "%g s", duration.count() / 1000.0);
  return text;
}

std::optional<int> environmentInt(const char *name) {
  const char *text = std::getenv(name);
  if (!text || !*text)
    return std::nullopt;
  char *end = nullptr;
  long value = std::strtol(text, &end, 10);
  if (*end || value < 0 || value > (1 << 30))
    return std::nullopt;
  return static_cast<int>(value);
}

} // namespace

bool isReducible(io::DType dtype) {
  switch (dtype) {
  case io::DType::F32:
  case io::DType::BF16:
  case io::DType::F64:
  case io::DType::I32:
  case io::DType::I64:
    return true;
  default:
    return false;
  }
}

std::optional<Launch> detectLaunch() {
  for (auto [sizeName, rankName] :
       {std::pair{"OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK"},
        std::pair{"PMI_SIZE", "PMI_RANK"}}) {
    std::optional<int> size = environmentInt(sizeName);
    std::optional<int> rank = environmentInt(rankName);
    if (size && rank && *size >= 1 && *rank < *size)
      return Launch{*size, *rank};
  }
  return std::nullopt;
}

Communicator::Communicator(int rank, std::vector<int> worldRanks,
                           std::string name, const Options &options)
    : myRank(rank), worldRanks(std::move(worldRanks)),
      groupName(std::move(name)), settings(options) {}

Communicator::~Communicator() = default;

Communicator::Blocks::Blocks(int size)
    : sendOffsets(size, 0), sendBytes(size, 0), recvOffsets(size, 0),
      recvBytes(size, 0) {}

Status Communicator::setOptions(const Options &options) {
  if (options.chunkBytes == 0 || options.chunkBytes > kMaxChunkBytes)
    return Status::error("chunk limit " + std::to_string(options.chunkBytes) +
                         " is not in [1, " + std::to_string(kMaxChunkBytes) +
                         "] bytes");
  if (options.deadline.count() <= 0)
    return Status::error("the collective deadline must be positive");
  settings = options;
  return Status::success();
}

std::vector<int>
Communicator::worldRanksOf(const std::vector<int> &members) const {
  std::vector<int> ranks;
  for (int m : members)
    ranks.push_back(worldRanks[m]);
  return ranks;
}

Status Communicator::timeoutError(const Deadline &deadline,
                                  const std::vector<int> &peers) const {
  std::string names;
  for (int p : peers)
    names += (names.empty() ? "" : ", ") + std::to_string(worldRanks[p]);
  bool one = peers.size() == 1;
  return Status::error(std::string(deadline.step) + " (" +
                       std::string(deadline.op) + ", group '" + groupName +
                       "'): rank " + std::to_string(worldRanks[myRank]) +
                       " heard nothing from rank" + (one ? " " : "s ") + names +
                       " within " + formatSeconds(settings.deadline) +
                       (one ? "; it may have died or stopped"
                            : "; they may have died or stopped"));
}

Status Communicator::failure(const Deadline &deadline,
                             const std::string &reason) const {
  return Status::error(std::string(deadline.step) + " (" +
                       std::string(deadline.op) + ", group '" + groupName +
                       "'): rank " + std::to_string(worldRanks[myRank]) + ": " +
                       reason);
}

Status Communicator::begin(std::string_view op, std::string_view step,
                           Deadline &deadline, Clock::time_point &start) {
  start = Clock::now();
  deadline = Deadline{start + settings.deadline, step, op};
  if (failed)
    return failure(
        deadline, "the group is unusable after an earlier failure: " + *failed);
  return Status::success();
}

Status Communicator::finish(Status status, Clock::time_point start) {
  counters.seconds +=
      std::chrono::duration<double>(Clock::now() - start).count();
  if (status.ok())
    ++counters.collectives;
  else if (!failed)
    failed = status.message();
  return status;
}

Status Communicator::transferHost(const std::vector<Message> &sends,
                                  const std::vector<Message> &recvs,
                                  const Deadline &deadline) {
  return transfer(sends, recvs, deadline);
}

Status Communicator::copyLocal(void *dst, const void *src, size_t bytes) {
  std::memcpy(dst, src, bytes);
  return Status::success();
}

Status Communicator::exchange(const void *send, void *recv,
                              const Blocks &blocks, const Deadline &deadline,
                              bool host) {
  std::vector<Message> sends, recvs;
  auto addChunks = [&](std::vector<Message> &messages, int peer, void *data,
                       size_t bytes) {
    for (size_t at = 0; at < bytes; at += settings.chunkBytes)
      messages.push_back(Message{peer, static_cast<uint8_t *>(data) + at,
                                 std::min(settings.chunkBytes, bytes - at)});
  };
  auto *in = static_cast<uint8_t *>(const_cast<void *>(send));
  auto *out = static_cast<uint8_t *>(recv);
  for (int p = 0; p < size(); ++p) {
    if (p == myRank)
      continue;
    addChunks(sends, p, in + blocks.sendOffsets[p], blocks.sendBytes[p]);
    addChunks(recvs, p, out + blocks.recvOffsets[p], blocks.recvBytes[p]);
  }
  if (size_t own = blocks.sendBytes[myRank]) {
    void *dst = out + blocks.recvOffsets[myRank];
    const void *src = in + blocks.sendOffsets[myRank];
    if (host)
      std::memcpy(dst, src, own);
    else if (Status s = copyLocal(dst, src, own); !s)
      return failure(deadline, s.message());
  }
  counters.messages += static_cast<int64_t>(sends.size());
  for (const Message &m : sends)
    counters.bytesSent += static_cast<int64_t>(m.bytes);
  return host ? transferHost(sends, recvs, deadline)
              : transfer(sends, recvs, deadline);
}

Status Communicator::allToAll(const void *send, void *recv, size_t bytesPerPeer,
                              std::string_view step) {
  Deadline deadline;
  Clock::time_point start;
  if (Status s = begin("all_to_all", step, deadline, start); !s)
    return s;
  Blocks blocks(size());
  for (int p = 0; p < size(); ++p) {
    blocks.sendOffsets[p] = blocks.recvOffsets[p] = p * bytesPerPeer;
    blocks.sendBytes[p] = blocks.recvBytes[p] = bytesPerPeer;
  }
  return finish(exchange(send, recv, blocks, deadline, false), start);
}

Status Communicator::allToAllV(const void *send, const int64_t *sendRows,
                               void *recv, int64_t recvCapacityRows,
                               int64_t *recvRows, size_t rowBytes,
                               std::string_view step) {
  Deadline deadline;
  Clock::time_point start;
  if (Status s = begin("all_to_all_v", step, deadline, start); !s)
    return s;
  int n = size();
  for (int p = 0; p < n; ++p)
    if (sendRows[p] < 0)
      return finish(failure(deadline, "negative row count " +
                                          std::to_string(sendRows[p]) +
                                          " for rank " +
                                          std::to_string(worldRanks[p])),
                    start);
  // The counts first: an equal all-to-all of one int64 per rank.
  std::vector<int64_t> counts(n);
  Blocks countBlocks(n);
  for (int p = 0; p < n; ++p) {
    countBlocks.sendOffsets[p] = countBlocks.recvOffsets[p] = p * 8;
    countBlocks.sendBytes[p] = countBlocks.recvBytes[p] = 8;
  }
  if (Status s = exchange(sendRows, counts.data(), countBlocks, deadline, true);
      !s)
    return finish(std::move(s), start);
  int64_t total = 0;
  for (int64_t c : counts)
    total += c;
  if (total > recvCapacityRows)
    return finish(failure(deadline, "receives " + std::to_string(total) +
                                        " rows but the buffer holds " +
                                        std::to_string(recvCapacityRows)),
                  start);
  std::copy(counts.begin(), counts.end(), recvRows);
  Blocks blocks(n);
  size_t sendAt = 0, recvAt = 0;
  for (int p = 0; p < n; ++p) {
    blocks.sendOffsets[p] = sendAt;
    blocks.sendBytes[p] = static_cast<size_t>(sendRows[p]) * rowBytes;
    blocks.recvOffsets[p] = recvAt;
    blocks.recvBytes[p] = static_cast<size_t>(counts[p]) * rowBytes;
    sendAt += blocks.sendBytes[p];
    recvAt += blocks.recvBytes[p];
  }
  if (Status s = exchange(send, recv, blocks, deadline, false); !s)
    return finish(std::move(s), start);
  size_t tail = static_cast<size_t>(recvCapacityRows - total) * rowBytes;
  Status zeroed = tail ? zero(static_cast<uint8_t *>(recv) + recvAt, tail)
                       : Status::success();
  return finish(
      zeroed ? std::move(zeroed) : failure(deadline, zeroed.message()), start);
}

Status Communicator::zero(void *dst, size_t bytes) {
  std::memset(dst, 0, bytes);
  return Status::success();
}

Status Communicator::allGather(const void *send, void *recv, size_t bytes,
                               std::string_view step) {
  Deadline deadline;
  Clock::time_point start;
  if (Status s = begin("all_gather", step, deadline, start); !s)
    return s;
  Blocks blocks(size());
  for (int p = 0; p < size(); ++p) {
    blocks.recvOffsets[p] = p * bytes;
    blocks.sendBytes[p] = blocks.recvBytes[p] = bytes;
  }
  return finish(exchange(send, recv, blocks, deadline, false), start);
}

Status Communicator::broadcast(void *buffer, size_t bytes, int root,
                               std::string_view step) {
  Deadline deadline;
  Clock::time_point start;
  if (Status s = begin("broadcast", step, deadline, start); !s)
    return s;
  if (root < 0 || root >= size())
    return finish(failure(deadline, "broadcast root " + std::to_string(root) +
                                        " outside the group of " +
                                        std::to_string(size())),
                  start);
  Blocks blocks(size());
  if (myRank == root) {
    for (int p = 0; p < size(); ++p)
      blocks.sendBytes[p] = p == root ? 0 : bytes;
  } else {
    blocks.recvBytes[root] = bytes;
  }
  return finish(exchange(buffer, buffer, blocks, deadline, false), start);
}

Status Communicator::allReduceSum(const void *send, void *recv, size_t count,
                                  io::DType dtype, std::string_view step) {
  Deadline deadline;
  Clock::time_point start;
  if (Status s = begin("all_reduce", step, deadline, start); !s)
    return s;
  if (!isReducible(dtype))
    return finish(failure(deadline, std::string("cannot sum ") +
                                        io::dtypeName(dtype) +
                                        " values (F32, BF16, F64, I32, I64)"),
                  start);
  size_t elem = static_cast<size_t>(io::dtypeSize(dtype));
  auto *in = static_cast<const uint8_t *>(send);
  auto *out = static_cast<uint8_t *>(recv);
  if (in != out && in < out + count * elem && out < in + count * elem)
    return finish(failure(deadline, "send and receive buffers overlap"), start);
  int n = size();
  size_t mine = shareBegin(count, myRank, n);
  size_t mineCount = shareBegin(count, myRank + 1, n) - mine;
  // Reduce-scatter: rank p receives everyone's share p and sums it.
  // Kept between calls: no page faults for a repeated all-reduce.
  std::vector<uint8_t> &shares = scratch;
  shares.resize(n * mineCount * elem);
  Blocks scatter(n), gather(n);
  for (int p = 0; p < n; ++p) {
    size_t begin = shareBegin(count, p, n);
    size_t bytes = (shareBegin(count, p + 1, n) - begin) * elem;
    scatter.sendOffsets[p] = begin * elem;
    scatter.sendBytes[p] = bytes;
    scatter.recvOffsets[p] = p * mineCount * elem;
    scatter.recvBytes[p] = mineCount * elem;
    if (p == myRank)
      continue;
    gather.sendOffsets[p] = mine * elem;
    gather.sendBytes[p] = mineCount * elem;
    gather.recvOffsets[p] = begin * elem;
    gather.recvBytes[p] = bytes;
  }
  if (Status s = exchange(send, shares.data(), scatter, deadline, false); !s)
    return finish(std::move(s), start);
  sumBlocks(shares.data(), n, mineCount, dtype, out + mine * elem);
  // All-gather of the summed shares.
  return finish(exchange(recv, recv, gather, deadline, false), start);
}

Status Communicator::barrier(std::string_view step) {
  Deadline deadline;
  Clock::time_point start;
  if (Status s = begin("barrier", step, deadline, start); !s)
    return s;
  int n = size();
  std::vector<uint8_t> tokens(n, 1), received(n);
  Blocks blocks(n);
  for (int p = 0; p < n; ++p) {
    blocks.sendOffsets[p] = blocks.recvOffsets[p] = p;
    blocks.sendBytes[p] = blocks.recvBytes[p] = p == myRank ? 0 : 1;
  }
  return finish(
      exchange(tokens.data(), received.data(), blocks, deadline, true), start);
}

Expected<std::unique_ptr<Communicator>>
Communicator::split(int color, int key, std::string name,
                    std::string_view step) {
  Deadline deadline;
  Clock::time_point start;
  if (Status s = begin("split", step, deadline, start); !s)
    return s;
  if (color < 0)
    return finish(
        failure(deadline, "negative split color " + std::to_string(color)),
        start);
  int n = size();
  int64_t mine[2] = {color, key};
  std::vector<int64_t> all(2 * n);
  Blocks blocks(n);
  for (int p = 0; p < n; ++p) {
    blocks.recvOffsets[p] = p * sizeof mine;
    blocks.sendBytes[p] = blocks.recvBytes[p] = sizeof mine;
  }
  if (Status s = exchange(mine, all.data(), blocks, deadline, true); !s)
    return finish(std::move(s), start);
  std::vector<int> members;
  for (int p = 0; p < n; ++p)
    if (all[2 * p] == color)
      members.push_back(p);
  std::stable_sort(members.begin(), members.end(), [&](int a, int b) {
    return all[2 * a + 1] < all[2 * b + 1];
  });
  auto group = createGroup(members, color, key, std::move(name), deadline);
  if (!group)
    return finish(group.takeStatus(), start);
  (void)finish(Status::success(), start);
  return group;
}

void Communicator::abort(int code) {
  std::fflush(stdout);
  std::fflush(stderr);
  std::_Exit(code);
}

Expected<MeshGroups> splitMesh(Communicator &world, int dp, int ep,
                               std::string_view step) {
  if (dp < 1 || ep < 1 || static_cast<int64_t>(dp) * ep != world.size())
    return Status::error("a dp " + std::to_string(dp) + " x ep " +
                         std::to_string(ep) + " mesh does not fit a world of " +
                         std::to_string(world.size()) + " ranks");
  int r = world.rank();
  auto epGroup = world.split(r / ep, r % ep, "ep", step);
  if (!epGroup)
    return epGroup.takeStatus();
  auto edpGroup = world.split(r % ep, r / ep, "edp", step);
  if (!edpGroup)
    return edpGroup.takeStatus();
  return MeshGroups{std::move(*epGroup), std::move(*edpGroup)};
}

Status gatherParts(Communicator &group, io::HostTensor &tensor, int parts,
                   std::string_view step) {
  if (parts < 1 || parts > group.size() || tensor.shape.empty())
    return Status::error(
        std::string(step) + ": cannot join " + std::to_string(parts) +
        " parts of a tensor of " + std::to_string(tensor.shape.size()) +
        " dimensions over " + std::to_string(group.size()) + " ranks");
  std::vector<uint8_t> all(tensor.data.size() * group.size());
  if (Status s = group.allGather(tensor.data.data(), all.data(),
                                 tensor.data.size(), step);
      !s)
    return s;
  all.resize(tensor.data.size() * parts);
  tensor.data = std::move(all);
  tensor.shape[0] *= parts;
  return Status::success();
}

} // namespace mixer::comm

//===- ConformanceCases.cpp - What every communicator must do -------------===//

#include "ConformanceCases.h"

#include "runtime/cpu/ReferenceKernels.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <thread>

namespace mixer::comm::test {

namespace {

using ::testing::HasSubstr;

/// Byte i of the block rank `src` sends to rank `dst`.
uint8_t pattern(int src, int dst, size_t i) {
  return static_cast<uint8_t>(src * 37 + dst * 11 + i * 5 + i / 251);
}

/// A deterministic 64-bit value for (rank, element).
uint64_t mix(int rank, size_t i) {
  uint64_t z = (static_cast<uint64_t>(rank) << 40) + i + 0x9e3779b97f4a7c15u;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
  return z ^ (z >> 31);
}

/// A value of modest size with a fraction, so sums round.
double realValue(int rank, size_t i) {
  return (static_cast<double>(mix(rank, i) % 20001) - 10000.0) / 7.0;
}

uint16_t bf16Bits(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, 4);
  return static_cast<uint16_t>(bits >> 16);
}

float bf16Value(uint16_t bits) {
  uint32_t word = static_cast<uint32_t>(bits) << 16;
  float value;
  std::memcpy(&value, &word, 4);
  return value;
}

/// Rank `rank`'s `count` elements of `dtype`.
std::vector<uint8_t> reduceInput(io::DType dtype, int rank, size_t count) {
  std::vector<uint8_t> bytes(count * io::dtypeSize(dtype));
  for (size_t i = 0; i < count; ++i) {
    double real = realValue(rank, i);
    uint64_t bits = mix(rank, i);
    switch (dtype) {
    case io::DType::F32:
      reinterpret_cast<float *>(bytes.data())[i] = static_cast<float>(real);
      break;
    case io::DType::BF16:
      reinterpret_cast<uint16_t *>(bytes.data())[i] =
          bf16Bits(static_cast<float>(real));
      break;
    case io::DType::F64:
      reinterpret_cast<double *>(bytes.data())[i] = real / 3.0;
      break;
    case io::DType::I32: // the whole range: sums wrap
      reinterpret_cast<uint32_t *>(bytes.data())[i] =
          static_cast<uint32_t>(bits);
      break;
    default:
      reinterpret_cast<uint64_t *>(bytes.data())[i] = bits;
      break;
    }
  }
  return bytes;
}

/// The sum over `ranks` ranks, added in rank order: the contract.
std::vector<uint8_t> reduceExpected(io::DType dtype, int ranks, size_t count) {
  std::vector<std::vector<uint8_t>> inputs;
  for (int r = 0; r < ranks; ++r)
    inputs.push_back(reduceInput(dtype, r, count));
  std::vector<uint8_t> bytes(count * io::dtypeSize(dtype));
  for (size_t i = 0; i < count; ++i) {
    auto at = [&](auto *type, int r) {
      return reinterpret_cast<const std::remove_pointer_t<decltype(type)> *>(
          inputs[r].data())[i];
    };
    switch (dtype) {
    case io::DType::F32: {
      float acc = at((float *)nullptr, 0);
      for (int r = 1; r < ranks; ++r)
        acc += at((float *)nullptr, r);
      reinterpret_cast<float *>(bytes.data())[i] = acc;
      break;
    }
    case io::DType::BF16: {
      float acc = bf16Value(at((uint16_t *)nullptr, 0));
      for (int r = 1; r < ranks; ++r)
        acc += bf16Value(at((uint16_t *)nullptr, r));
      float rounded;
      cpu::reference::roundToBf16(&acc, &rounded, 1);
      reinterpret_cast<uint16_t *>(bytes.data())[i] = bf16Bits(rounded);
      break;
    }
    case io::DType::F64: {
      double acc = at((double *)nullptr, 0);
      for (int r = 1; r < ranks; ++r)
        acc += at((double *)nullptr, r);
      reinterpret_cast<double *>(bytes.data())[i] = acc;
      break;
    }
    case io::DType::I32: {
      uint32_t acc = 0;
      for (int r = 0; r < ranks; ++r)
        acc += at((uint32_t *)nullptr, r);
      reinterpret_cast<uint32_t *>(bytes.data())[i] = acc;
      break;
    }
    default: {
      uint64_t acc = 0;
      for (int r = 0; r < ranks; ++r)
        acc += at((uint64_t *)nullptr, r);
      reinterpret_cast<uint64_t *>(bytes.data())[i] = acc;
      break;
    }
    }
  }
  return bytes;
}

/// An equal all-to-all of `bytes` bytes per peer, checked byte by byte.
void expectAllToAll(Communicator &c, size_t bytes) {
  int n = c.size(), me = c.rank();
  std::vector<uint8_t> send(n * bytes), recv(n * bytes, 0xab);
  for (int p = 0; p < n; ++p)
    for (size_t i = 0; i < bytes; ++i)
      send[p * bytes + i] = pattern(me, p, i);
  Status s = c.allToAll(send.data(), recv.data(), bytes, "equal");
  ASSERT_TRUE(s.ok()) << s.message();
  for (int p = 0; p < n; ++p)
    for (size_t i = 0; i < bytes; ++i)
      ASSERT_EQ(recv[p * bytes + i], pattern(p, me, i))
          << "byte " << i << " from rank " << p << " of " << bytes;
}

/// A ragged all-to-all where rank s sends rows(s, d) rows to rank d, checked
/// row by row, with `spare` rows of capacity beyond what arrives.
void expectRagged(Communicator &c, int64_t (*rows)(int, int, int),
                  size_t rowBytes, int64_t spare) {
  int n = c.size(), me = c.rank();
  std::vector<int64_t> sendRows(n), recvRows(n, -1);
  int64_t sendTotal = 0, recvTotal = 0;
  for (int p = 0; p < n; ++p) {
    sendRows[p] = rows(me, p, n);
    sendTotal += sendRows[p];
    recvTotal += rows(p, me, n);
  }
  std::vector<uint8_t> send(sendTotal * rowBytes);
  size_t at = 0;
  for (int p = 0; p < n; ++p)
    for (int64_t k = 0; k < sendRows[p]; ++k)
      for (size_t i = 0; i < rowBytes; ++i)
        send[at++] = pattern(me, p, k * rowBytes + i);
  int64_t capacity = recvTotal + spare;
  std::vector<uint8_t> recv(capacity * rowBytes, 0xab);
  Status s = c.allToAllV(send.data(), sendRows.data(), recv.data(), capacity,
                         recvRows.data(), rowBytes, "ragged");
  ASSERT_TRUE(s.ok()) << s.message();
  at = 0;
  for (int p = 0; p < n; ++p) {
    ASSERT_EQ(recvRows[p], rows(p, me, n)) << "rows from rank " << p;
    for (int64_t k = 0; k < recvRows[p]; ++k)
      for (size_t i = 0; i < rowBytes; ++i)
        ASSERT_EQ(recv[at++], pattern(p, me, k * rowBytes + i))
            << "row " << k << " from rank " << p;
  }
  for (; at < recv.size(); ++at)
    ASSERT_EQ(recv[at], 0) << "byte " << at << " past the received rows";
}

void expectAllReduce(Communicator &c, io::DType dtype, size_t count,
                     bool inPlace) {
  std::vector<uint8_t> send = reduceInput(dtype, c.rank(), count);
  std::vector<uint8_t> recv(send.size(), 0xab);
  uint8_t *out = inPlace ? send.data() : recv.data();
  Status s = c.allReduceSum(send.data(), out, count, dtype, "sum");
  ASSERT_TRUE(s.ok()) << s.message();
  std::vector<uint8_t> expected = reduceExpected(dtype, c.size(), count);
  // std::equal, unlike memcmp, takes the empty buffers of count 0.
  EXPECT_TRUE(std::equal(expected.begin(), expected.end(), out))
      << io::dtypeName(dtype) << " x " << count << (inPlace ? " in place" : "")
      << " differs from the sum in rank order";
}

} // namespace

Options conformanceOptions() {
  Options options;
  options.deadline = std::chrono::seconds(60);
  return options;
}

void checkRankAndSize(Communicator &world) {
  EXPECT_GE(world.rank(), 0);
  EXPECT_LT(world.rank(), world.size());
  EXPECT_EQ(world.name(), "world");
  std::vector<int32_t> ranks(world.size(), -1);
  int32_t mine = world.rank();
  Status s = world.allGather(&mine, ranks.data(), sizeof mine, "ranks");
  ASSERT_TRUE(s.ok()) << s.message();
  for (int p = 0; p < world.size(); ++p) {
    EXPECT_EQ(ranks[p], p);
    EXPECT_EQ(world.worldRank(p), p);
  }
}

void checkEqualAllToAll(Communicator &world) {
  for (size_t bytes : {size_t(0), size_t(1), size_t(13), size_t(4096)})
    expectAllToAll(world, bytes);
}

void checkRaggedAllToAll(Communicator &world) {
  // Zero counts on some pairs (every third), the rank's own block included.
  auto rows = [](int s, int d, int) -> int64_t { return (s + 2 * d) % 3; };
  expectRagged(world, rows, 12, 0);
  expectRagged(world, rows, 12, 5);
  // Nothing at all.
  expectRagged(
      world, [](int, int, int) -> int64_t { return 0; }, 8, 3);
}

void checkRaggedOneSender(Communicator &world) {
  // Rank 0 sends everything, the others nothing; then the last rank receives
  // everything from everyone.
  expectRagged(
      world, [](int s, int d, int) -> int64_t { return s == 0 ? 5 + d : 0; },
      16, 2);
  expectRagged(
      world,
      [](int s, int d, int n) -> int64_t { return d == n - 1 ? 3 + s : 0; }, 4,
      0);
}

void checkAllReduce(Communicator &world) {
  for (io::DType dtype : {io::DType::F32, io::DType::BF16, io::DType::F64,
                          io::DType::I32, io::DType::I64}) {
    for (size_t count : {size_t(0), size_t(1), size_t(7), size_t(1000)})
      expectAllReduce(world, dtype, count, false);
    expectAllReduce(world, dtype, 1001, true);
  }
  // Another type is refused by name, on every rank before it communicates:
  // the group is unusable afterwards, so use one of its own.
  auto group = world.split(0, world.rank(), "refused", "split");
  ASSERT_TRUE(group.ok()) << group.message();
  uint8_t byte = 0;
  Status s = (*group)->allReduceSum(&byte, &byte, 1, io::DType::U8, "sum u8");
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(s.message(), HasSubstr("sum u8 (all_reduce, group 'refused')"));
  EXPECT_THAT(s.message(), HasSubstr("cannot sum U8 values"));
}

void checkGatherBroadcastBarrier(Communicator &world) {
  int n = world.size(), me = world.rank();
  std::vector<uint8_t> mine(37), all(37 * n);
  for (size_t i = 0; i < mine.size(); ++i)
    mine[i] = pattern(me, 0, i);
  Status s = world.allGather(mine.data(), all.data(), mine.size(), "gather");
  ASSERT_TRUE(s.ok()) << s.message();
  for (int p = 0; p < n; ++p)
    for (size_t i = 0; i < mine.size(); ++i)
      ASSERT_EQ(all[p * mine.size() + i], pattern(p, 0, i));
  for (int root = 0; root < n; ++root) {
    std::vector<uint8_t> buffer(100, 0);
    if (me == root)
      for (size_t i = 0; i < buffer.size(); ++i)
        buffer[i] = pattern(root, 1, i);
    s = world.broadcast(buffer.data(), buffer.size(), root, "broadcast");
    ASSERT_TRUE(s.ok()) << s.message();
    for (size_t i = 0; i < buffer.size(); ++i)
      ASSERT_EQ(buffer[i], pattern(root, 1, i)) << "root " << root;
  }
  s = world.barrier("barrier");
  EXPECT_TRUE(s.ok()) << s.message();
}

void checkGatherParts(Communicator &world) {
  int n = world.size(), me = world.rank();
  // Every part count: the tensors of the first `parts` ranks, joined.
  for (int parts = 1; parts <= n; ++parts) {
    io::HostTensor tensor;
    tensor.name = "t";
    tensor.dtype = io::DType::F32;
    tensor.shape = {2, 3};
    tensor.data.resize(24);
    for (size_t i = 0; i < tensor.data.size(); ++i)
      tensor.data[i] = pattern(me, parts, i);
    Status s = gatherParts(world, tensor, parts, "parts");
    ASSERT_TRUE(s.ok()) << s.message();
    ASSERT_EQ(tensor.shape, (std::vector<int64_t>{2 * parts, 3}));
    ASSERT_EQ(tensor.data.size(), 24u * parts);
    for (int p = 0; p < parts; ++p)
      for (size_t i = 0; i < 24; ++i)
        ASSERT_EQ(tensor.data[p * 24 + i], pattern(p, parts, i));
  }
}

void checkMeshGroups(Communicator &world) {
  int n = world.size(), r = world.rank();
  for (int ep = 1; ep <= n; ++ep) {
    if (n % ep)
      continue;
    int dp = n / ep;
    auto mesh = splitMesh(world, dp, ep, "mesh");
    ASSERT_TRUE(mesh.ok()) << mesh.message();
    Communicator &epGroup = *mesh->ep, &edpGroup = *mesh->edp;
    EXPECT_EQ(epGroup.name(), "ep");
    EXPECT_EQ(edpGroup.name(), "edp");
    ASSERT_EQ(epGroup.size(), ep);
    ASSERT_EQ(edpGroup.size(), dp);
    EXPECT_EQ(epGroup.rank(), r % ep);
    EXPECT_EQ(edpGroup.rank(), r / ep);
    for (int k = 0; k < ep; ++k)
      EXPECT_EQ(epGroup.worldRank(k), (r / ep) * ep + k);
    for (int k = 0; k < dp; ++k)
      EXPECT_EQ(edpGroup.worldRank(k), k * ep + r % ep);
    // Collectives stay inside each group.
    for (Communicator *group : {&epGroup, &edpGroup}) {
      int64_t mine = r, sum = 0, expected = 0;
      Status s = group->allReduceSum(&mine, &sum, 1, io::DType::I64, "sum");
      ASSERT_TRUE(s.ok()) << s.message();
      for (int k = 0; k < group->size(); ++k)
        expected += group->worldRank(k);
      EXPECT_EQ(sum, expected) << "group " << group->name() << " of a dp " << dp
                               << " x ep " << ep << " mesh";
      std::vector<int32_t> send(group->size(), r), recv(group->size(), -1);
      s = group->allToAll(send.data(), recv.data(), sizeof(int32_t), "ids");
      ASSERT_TRUE(s.ok()) << s.message();
      for (int k = 0; k < group->size(); ++k)
        EXPECT_EQ(recv[k], group->worldRank(k));
    }
  }
  auto wrong = splitMesh(world, 3, n, "mesh");
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(wrong.message(), "a dp 3 x ep " + std::to_string(n) +
                                 " mesh does not fit a world of " +
                                 std::to_string(n) + " ranks");
}

void checkChunking(Communicator &world) {
  int n = world.size();
  Options saved = world.options(), small = saved;
  small.chunkBytes = 64;
  ASSERT_TRUE(world.setOptions(small).ok());
  Stats before = world.stats();
  expectAllToAll(world, 1000); // 16 messages to each peer
  EXPECT_EQ(world.stats().messages - before.messages, 16 * (n - 1));
  EXPECT_EQ(world.stats().bytesSent - before.bytesSent, 1000 * (n - 1));
  expectRagged(
      world, [](int s, int d, int) -> int64_t { return 3 + s + 2 * d; }, 24, 1);
  expectAllReduce(world, io::DType::F64, 1000, false);
  small.chunkBytes = 7;
  ASSERT_TRUE(world.setOptions(small).ok());
  before = world.stats();
  expectAllToAll(world, 100); // 15 messages to each peer
  EXPECT_EQ(world.stats().messages - before.messages, 15 * (n - 1));
  ASSERT_TRUE(world.setOptions(saved).ok());
  small.chunkBytes = kMaxChunkBytes + 1;
  Status s = world.setOptions(small);
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(s.message(), HasSubstr("is not in [1, 1073741824] bytes"));
}

void checkDeadline(Communicator &world) {
  using namespace std::chrono;
  int n = world.size(), me = world.rank(), late = n - 1;
  Status s = world.barrier("before");
  ASSERT_TRUE(s.ok()) << s.message();
  auto group = world.split(0, me, "late", "split");
  ASSERT_TRUE(group.ok()) << group.message();
  Options options = (*group)->options();
  options.deadline = milliseconds(1000);
  ASSERT_TRUE((*group)->setOptions(options).ok());
  std::vector<uint8_t> send(8 * n, 1), recv(8 * n);
  if (me == late && n > 1) {
    // Sleeps past the deadline and skips the collective.
    std::this_thread::sleep_for(milliseconds(2500));
  } else {
    auto start = Clock::now();
    s = (*group)->allToAll(send.data(), recv.data(), 8, "steps[7] (test)");
    double seconds = duration<double>(Clock::now() - start).count();
    if (n == 1) {
      EXPECT_TRUE(s.ok()) << s.message();
    } else {
      ASSERT_FALSE(s.ok());
      EXPECT_EQ(s.message(),
                "steps[7] (test) (all_to_all, group 'late'): rank " +
                    std::to_string(me) + " heard nothing from rank " +
                    std::to_string(late) +
                    " within 1 s; it may have died or stopped");
      EXPECT_GE(seconds, 1.0);
      EXPECT_LT(seconds, 30.0);
      // The group stays failed.
      int64_t value = 1;
      s = (*group)->allReduceSum(&value, &value, 1, io::DType::I64,
                                 "steps[8] (test)");
      ASSERT_FALSE(s.ok());
      EXPECT_THAT(
          s.message(),
          HasSubstr("steps[8] (test) (all_reduce, group 'late'): rank " +
                    std::to_string(me) +
                    ": the group is unusable after an earlier "
                    "failure: steps[7] (test)"));
    }
  }
  s = world.barrier("after");
  EXPECT_TRUE(s.ok()) << s.message();
}

} // namespace mixer::comm::test

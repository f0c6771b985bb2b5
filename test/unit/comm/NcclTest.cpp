//===- NcclTest.cpp - The NCCL communicator on one GPU --------------------===//
//
// One rank (NCCL puts at most one rank on a GPU), bootstrapped over an
// in-process world: the collectives on device buffers against host
// expectations, with guard bytes behind every result so that a wrong element
// size shows. Without a GPU the binary exits 77 (skipped).
//
//===----------------------------------------------------------------------===//

#include "runtime/comm/Nccl.h"
#include "runtime/comm/InProcess.h"

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cstring>

namespace mixer::comm::test {
namespace {

/// A device buffer of `bytes` bytes (plus 64 guard bytes) filled with `fill`.
struct DeviceBuffer {
  explicit DeviceBuffer(size_t bytes, uint8_t fill = 0xab) : bytes(bytes) {
    EXPECT_EQ(cudaMalloc(&data, bytes + 64), cudaSuccess);
    EXPECT_EQ(cudaMemset(data, fill, bytes + 64), cudaSuccess);
  }
  ~DeviceBuffer() { cudaFree(data); }
  void upload(const std::vector<uint8_t> &host) {
    ASSERT_EQ(
        cudaMemcpy(data, host.data(), host.size(), cudaMemcpyHostToDevice),
        cudaSuccess);
  }
  /// The contents and the guard bytes.
  std::vector<uint8_t> download() const {
    std::vector<uint8_t> host(bytes + 64);
    EXPECT_EQ(
        cudaMemcpy(host.data(), data, host.size(), cudaMemcpyDeviceToHost),
        cudaSuccess);
    return host;
  }
  void *data = nullptr;
  size_t bytes;
};

std::vector<uint8_t> bytesOf(size_t n) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i)
    v[i] = static_cast<uint8_t>(i * 7 + 3);
  return v;
}

void expectGuard(const std::vector<uint8_t> &host, size_t bytes) {
  for (size_t i = bytes; i < host.size(); ++i)
    ASSERT_EQ(host[i], 0xab) << "guard byte " << i - bytes << " overwritten";
}

class NcclOneRank : public ::testing::Test {
protected:
  void SetUp() override {
    bootstrap = createInProcessWorld(1);
    auto created = createNcclCommunicator(*bootstrap[0], nullptr, "nccl init");
    ASSERT_TRUE(created.ok()) << created.message();
    comm = std::move(*created);
  }
  std::vector<std::unique_ptr<Communicator>> bootstrap;
  std::unique_ptr<Communicator> comm;
};

TEST_F(NcclOneRank, AllToAllCopiesTheOwnBlock) {
  std::vector<uint8_t> input = bytesOf(1000);
  DeviceBuffer send(1000), recv(1000);
  send.upload(input);
  Status s = comm->allToAll(send.data, recv.data, 1000, "a2a");
  ASSERT_TRUE(s.ok()) << s.message();
  std::vector<uint8_t> out = recv.download();
  EXPECT_EQ(std::memcmp(out.data(), input.data(), 1000), 0);
  expectGuard(out, 1000);
}

TEST_F(NcclOneRank, RaggedAllToAllZeroesTheSpareRows) {
  std::vector<uint8_t> input = bytesOf(3 * 16);
  DeviceBuffer send(3 * 16), recv(5 * 16);
  send.upload(input);
  int64_t rows = 3, received = -1;
  Status s =
      comm->allToAllV(send.data, &rows, recv.data, 5, &received, 16, "a2av");
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(received, 3);
  std::vector<uint8_t> out = recv.download();
  EXPECT_EQ(std::memcmp(out.data(), input.data(), 48), 0);
  for (size_t i = 48; i < 80; ++i)
    ASSERT_EQ(out[i], 0) << "spare byte " << i;
  expectGuard(out, 80);
}

TEST_F(NcclOneRank, AllReduceEveryDTypeKeepsItsSize) {
  for (io::DType dtype : {io::DType::F32, io::DType::BF16, io::DType::F64,
                          io::DType::I32, io::DType::I64}) {
    size_t count = 257, bytes = count * io::dtypeSize(dtype);
    std::vector<uint8_t> input = bytesOf(bytes);
    DeviceBuffer send(bytes), recv(bytes);
    send.upload(input);
    Status s = comm->allReduceSum(send.data, recv.data, count, dtype, "sum");
    ASSERT_TRUE(s.ok()) << s.message();
    std::vector<uint8_t> out = recv.download();
    EXPECT_EQ(std::memcmp(out.data(), input.data(), bytes), 0)
        << io::dtypeName(dtype);
    expectGuard(out, bytes);
  }
}

TEST_F(NcclOneRank, SplitBarrierAndBroadcast) {
  auto group = comm->split(0, 0, "ep", "split");
  ASSERT_TRUE(group.ok()) << group.message();
  EXPECT_EQ((*group)->size(), 1);
  EXPECT_EQ((*group)->name(), "ep");
  Status s = (*group)->barrier("barrier");
  EXPECT_TRUE(s.ok()) << s.message();
  DeviceBuffer buffer(100);
  s = (*group)->broadcast(buffer.data, 100, 0, "broadcast");
  EXPECT_TRUE(s.ok()) << s.message();
}

} // namespace
} // namespace mixer::comm::test

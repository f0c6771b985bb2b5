//===- PlanFuzzer.cpp - Fuzzes the artifact container and plan loader -----===//
//
// The input is a whole .mxa file for Plan::load: the container reader, then
// the plan parser and validator. A plan it accepts goes on to the CPU
// executor's create(), which checks every step against its kernel; a small
// plan create() accepts is run once on zero weights and inputs, which must
// not touch memory outside its buffers. Mutated files rarely keep a valid
// CRC-64, so, built with MIXER_FUZZ_FIX_CHECKSUM, the harness first
// overwrites the last 8 bytes with the checksum of the others: the validators
// behind the checksum are then what gets fuzzed.
//
//===----------------------------------------------------------------------===//

#include "runtime/cpu/Executor.h"
#include "runtime/exec/Plan.h"
#include "runtime/io/Container.h"
#include "test/fuzz/FuzzSupport.h"

namespace {

using mixer::fuzz::checkErrorNames;
using mixer::fuzz::fail;
using mixer::fuzz::kFixChecksum;
namespace cpu = mixer::cpu;
namespace exec = mixer::exec;
namespace io = mixer::io;

/// The most bytes of arena, weights, state and inputs together of a plan the
/// harness runs: larger ones would spend the fuzzing time in the kernels.
constexpr int64_t kMaxRunBytes = int64_t(1) << 20;

/// Overwrites the trailing checksum field with the CRC-64 of what precedes
/// it (little-endian, as the container stores it).
void fixChecksum(std::string &bytes) {
  constexpr size_t kChecksumBytes = 8;
  if (bytes.size() < kChecksumBytes)
    return;
  size_t covered = bytes.size() - kChecksumBytes;
  uint64_t crc = io::crc64(bytes.data(), covered);
  for (size_t i = 0; i < kChecksumBytes; ++i)
    bytes[covered + i] = static_cast<char>((crc >> (8 * i)) & 0xFF);
}

/// Zero tensors of the entries of a plan table (parameters, state, inputs),
/// adding their bytes to `total`; false once `total` exceeds kMaxRunBytes.
template <typename Entry>
bool zeros(const std::vector<Entry> &table, int64_t &total,
           std::vector<io::HostTensor> &tensors) {
  for (const Entry &entry : table) {
    int64_t bytes = entry.numel * io::dtypeSize(entry.dtype);
    if (__builtin_add_overflow(total, bytes, &total) || total > kMaxRunBytes)
      return false;
    io::HostTensor &tensor = tensors.emplace_back();
    tensor.name = entry.name;
    tensor.dtype = entry.dtype;
    tensor.shape = entry.shape;
    tensor.data.assign(bytes, 0);
  }
  return true;
}

void createAndRun(const exec::Plan &plan) {
  auto executor = cpu::Executor::create(plan);
  if (!executor) {
    checkErrorNames(plan.path, executor.message());
    return;
  }
  int64_t total = plan.arenaBytes;
  std::vector<io::HostTensor> params, state, inputs;
  if (!zeros(plan.params, total, params) || !zeros(plan.state, total, state) ||
      !zeros(plan.inputs, total, inputs))
    return;
  // Tensors of the plan's own names, shapes and dtypes must bind.
  for (mixer::Status s : {executor->bindParams(std::move(params), "zeros"),
                          executor->bindState(std::move(state), "zeros"),
                          executor->bindInputs(inputs, "zeros")})
    if (!s)
      fail("the plan's own tensors do not bind: " + s.message());
  if (mixer::Status s = executor->run(); !s)
    checkErrorNames(plan.path, s.message());
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  std::string bytes(reinterpret_cast<const char *>(data), size);
  if (kFixChecksum)
    fixChecksum(bytes);
  std::string path = mixer::fuzz::scratchPath("plan.mxa");
  mixer::fuzz::writeBytes(path, bytes);
  auto plan = exec::Plan::load(path);
  if (!plan)
    checkErrorNames(path, plan.message());
  else if (plan->target == "cpu")
    createAndRun(*plan);
  return 0;
}

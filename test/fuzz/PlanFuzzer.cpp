//===- PlanFuzzer.cpp - Fuzzes the artifact container and plan loader -----===//
//
// The input is a whole .mxa file for Plan::load: the container reader, then
// the plan parser and validator. Mutated files rarely keep a valid CRC-64,
// so, built with MIXER_FUZZ_FIX_CHECKSUM, the harness first overwrites the
// last 8 bytes with the checksum of the others: the validator behind the
// checksum is then what gets fuzzed.
//
//===----------------------------------------------------------------------===//

#include "runtime/exec/Plan.h"
#include "runtime/io/Container.h"
#include "test/fuzz/FuzzSupport.h"

namespace {

#ifdef MIXER_FUZZ_FIX_CHECKSUM
constexpr bool kFixChecksum = true;
#else
constexpr bool kFixChecksum = false;
#endif

/// Overwrites the trailing checksum field with the CRC-64 of what precedes
/// it (little-endian, as the container stores it).
void fixChecksum(std::string &bytes) {
  constexpr size_t kChecksumBytes = 8;
  if (bytes.size() < kChecksumBytes)
    return;
  size_t covered = bytes.size() - kChecksumBytes;
  uint64_t crc = mixer::io::crc64(bytes.data(), covered);
  for (size_t i = 0; i < kChecksumBytes; ++i)
    bytes[covered + i] = static_cast<char>((crc >> (8 * i)) & 0xFF);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  std::string bytes(reinterpret_cast<const char *>(data), size);
  if (kFixChecksum)
    fixChecksum(bytes);
  std::string path = mixer::fuzz::scratchPath("plan.mxa");
  mixer::fuzz::writeBytes(path, bytes);
  auto plan = mixer::exec::Plan::load(path);
  if (!plan)
    mixer::fuzz::checkErrorNames(path, plan.message());
  return 0;
}

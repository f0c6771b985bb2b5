//===- CheckpointFuzzer.cpp - Fuzzes the checkpoint record reader ---------===//
//
// A fixture checkpoint directory holds one step saved by saveCheckpoint; the
// input replaces that step's state.json, and loadCheckpoint reads the
// directory. The record checksums itself, so mutated records rarely get past
// that check; built with MIXER_FUZZ_FIX_CHECKSUM, the harness first sets
// "record_crc64" of an input that is a JSON object to the checksum of the
// rest, and fuzzes what the reader checks behind it. The fixture's own
// record is offered as the seed.
//
//===----------------------------------------------------------------------===//

#include "runtime/io/Container.h"
#include "runtime/io/JsonDepth.h"
#include "runtime/io/TensorFiles.h"
#include "runtime/train/Checkpoint.h"
#include "test/fuzz/FuzzSupport.h"

#include <cstring>

namespace {

using mixer::fuzz::fail;
using mixer::fuzz::kFixChecksum;
namespace train = mixer::train;

constexpr int64_t kStep = 1;

std::string checkpointDir() { return mixer::fuzz::scratchPath("checkpoint"); }

std::string recordPath() {
  return checkpointDir() + "/step_" + std::to_string(kStep) + "/state.json";
}

mixer::io::HostTensor tensor(const std::string &name,
                             std::vector<float> values) {
  mixer::io::HostTensor t;
  t.name = name;
  t.shape = {static_cast<int64_t>(values.size())};
  t.data.resize(values.size() * sizeof(float));
  std::memcpy(t.data.data(), values.data(), t.data.size());
  return t;
}

/// The record with "record_crc64" set as Checkpoint.h defines it: the CRC-64
/// of the compact JSON form of the other fields. Text the reader refuses
/// before its checksum (not a JSON object, nested too deep to print) stays.
std::string withRecordChecksum(const std::string &text) {
  if (!mixer::io::checkJsonDepth(text, "the record"))
    return text;
  auto record =
      nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!record.is_object())
    return text;
  record.erase("record_crc64");
  std::string rest = record.dump();
  record["record_crc64"] =
      mixer::io::formatChecksum(mixer::io::crc64(rest.data(), rest.size()));
  return record.dump();
}

} // namespace

extern "C" int LLVMFuzzerInitialize(int *, char ***) {
  train::TrainingState state;
  state.step = kStep;
  state.params = {tensor("dense/kernel", {1.5f, -2.0f})};
  state.optimizerState = {tensor("m/dense/kernel", {0.25f, 0.5f})};
  state.progress = {{"seed", 7}, {"data", {{"epoch", 0}, {"line", 3}}}};
  if (mixer::Status s = train::saveCheckpoint(checkpointDir(), state); !s)
    fail("cannot save the fixture checkpoint: " + s.message());
  auto record = mixer::io::readFile(recordPath());
  if (!record)
    fail(record.message());
  mixer::fuzz::offerSeed("state.json", *record);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  std::string text(reinterpret_cast<const char *>(data), size);
  if (kFixChecksum)
    text = withRecordChecksum(text);
  mixer::fuzz::writeBytes(recordPath(), text);
  auto state = train::loadCheckpoint(checkpointDir());
  if (!state)
    mixer::fuzz::checkErrorNames(checkpointDir(), state.message());
  else if (state->step != kStep)
    fail("the checkpoint of step_" + std::to_string(kStep) + " loads as step " +
         std::to_string(state->step));
  return 0;
}

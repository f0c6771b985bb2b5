//===- CheckpointTest.cpp - Crash-safe training checkpoints ---------------===//
//
// Crashes are simulated by building the on-disk state a crash at that point
// leaves behind; corruption by truncating files or flipping bytes.
//
//===----------------------------------------------------------------------===//

#include "runtime/train/Checkpoint.h"

#include "runtime/io/Container.h"
#include "runtime/io/TensorFiles.h"
#include "test/unit/io/IOTestUtil.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>

namespace mixer::train {
namespace {

namespace fs = std::filesystem;
using io::DType;
using io::test::expectSameTensor;
using io::test::makeTensor;
using io::test::patternTensor;
using io::test::readBytes;
using io::test::writeBytes;

/// A state whose tensors and progress differ from step to step. The tensor
/// names are not sorted, so that their order is checked too.
TrainingState makeState(int64_t step) {
  int seed = static_cast<int>(step);
  TrainingState state;
  state.step = step;
  state.params = {
      patternTensor("word_embeddings/embedding", DType::F32, {5, 3}, seed),
      makeTensor<float>("encoder_0/bias", DType::F32, {2}, {1.5f, -0.0f}),
      patternTensor("classifier/kernel", DType::F32, {3, 2}, seed + 1)};
  state.optimizerState = {patternTensor("m/word_embeddings/embedding",
                                        DType::F32, {5, 3}, seed + 2),
                          patternTensor("v/word_embeddings/embedding",
                                        DType::F32, {5, 3}, seed + 3),
                          makeTensor<int32_t>("count", DType::I32, {}, {seed})};
  state.progress = {
      {"model", "sparse-mixer-base"},
      {"seed", 42},
      {"rng_counter", 18446744073709551615ull},
      {"data", {{"shard", "train-00003"}, {"offset", 123456789012 + step}}},
      {"tokens", 1.25e9 * static_cast<double>(step)},
      {"loss", 0.1 + static_cast<double>(step)},
      {"artifact_crc64", "0x995dc9bbdf1939fa"}};
  return state;
}

void expectSameTensors(const std::vector<io::HostTensor> &actual,
                       const std::vector<io::HostTensor> &expected) {
  ASSERT_EQ(actual.size(), expected.size());
  for (size_t i = 0; i < actual.size(); ++i)
    expectSameTensor(actual[i], expected[i]);
}

void expectSameState(const TrainingState &actual,
                     const TrainingState &expected) {
  EXPECT_EQ(actual.step, expected.step);
  expectSameTensors(actual.params, expected.params);
  expectSameTensors(actual.optimizerState, expected.optimizerState);
  EXPECT_EQ(actual.progress, expected.progress);
}

class CheckpointTest : public io::test::TempDirTest {
protected:
  std::string ckpt() const { return file("ckpt"); }
  std::string inCkpt(const std::string &name) const {
    return ckpt() + "/" + name;
  }
  void save(int64_t step, int keepLast = 3) {
    Status s = saveCheckpoint(ckpt(), makeState(step), keepLast);
    ASSERT_TRUE(s.ok()) << s.message();
  }
  std::vector<std::string> ckptListing() const {
    std::vector<std::string> names;
    for (const auto &entry : fs::directory_iterator(ckpt()))
      names.push_back(entry.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  }
  std::vector<int64_t> steps() const {
    auto steps = listCheckpoints(ckpt());
    EXPECT_TRUE(steps.ok()) << steps.message();
    return steps.ok() ? *steps : std::vector<int64_t>{};
  }
  /// The message of a load that must fail.
  std::string loadError(std::optional<int64_t> step = {}) const {
    auto state = loadCheckpoint(ckpt(), step);
    EXPECT_FALSE(state.ok());
    return state.ok() ? "" : state.message();
  }
  void expectLoads(int64_t expectedStep, std::optional<int64_t> step = {}) {
    auto state = loadCheckpoint(ckpt(), step);
    ASSERT_TRUE(state.ok()) << state.message();
    expectSameState(*state, makeState(expectedStep));
  }
  std::string hint100() const {
    return "; step_100 is the newest intact one (resume from it with "
           "--resume-step "
           "100)";
  }
};

TEST_F(CheckpointTest, RoundTripsBitExactly) {
  save(100);
  EXPECT_EQ(ckptListing(), (std::vector<std::string>{"latest", "step_100"}));
  EXPECT_EQ(readBytes(inCkpt("latest")), "step_100\n");
  std::vector<std::string> files;
  for (const auto &entry : fs::directory_iterator(inCkpt("step_100")))
    files.push_back(entry.path().filename().string());
  std::sort(files.begin(), files.end());
  EXPECT_EQ(files,
            (std::vector<std::string>{"optimizer.safetensors",
                                      "params.safetensors", "state.json"}));
  expectLoads(100);

  // The parameters are an ordinary weights file for inference.
  auto weights = io::readSafetensors(inCkpt("step_100/params.safetensors"));
  ASSERT_TRUE(weights.ok()) << weights.message();
  expectSameTensors(*weights, makeState(100).params);
}

TEST_F(CheckpointTest, StateJsonRecordsSizesAndChecksums) {
  save(7);
  std::string params = readBytes(inCkpt("step_7/params.safetensors"));
  std::string optimizer = readBytes(inCkpt("step_7/optimizer.safetensors"));
  auto record = nlohmann::json::parse(readBytes(inCkpt("step_7/state.json")));
  EXPECT_EQ(record["step"], 7);
  EXPECT_EQ(record["progress"], makeState(7).progress);
  auto expectDigest = [&](const char *name, const std::string &bytes) {
    char crc[19];
    std::snprintf(
        crc, sizeof crc, "0x%016llx",
        static_cast<unsigned long long>(io::crc64(bytes.data(), bytes.size())));
    EXPECT_EQ(record["files"][name]["bytes"], bytes.size()) << name;
    EXPECT_EQ(record["files"][name]["crc64"], crc) << name;
  };
  expectDigest("params.safetensors", params);
  expectDigest("optimizer.safetensors", optimizer);
}

TEST_F(CheckpointTest, LatestFollowsTheNewestSaveAndOlderStepsStayLoadable) {
  save(100);
  save(200);
  EXPECT_EQ(readBytes(inCkpt("latest")), "step_200\n");
  EXPECT_EQ(steps(), (std::vector<int64_t>{100, 200}));
  expectLoads(200);
  expectLoads(100, 100);
  expectLoads(200, 200);
}

TEST_F(CheckpointTest, KeepsOnlyTheNewestSteps) {
  for (int64_t step : {1, 2, 3, 4})
    save(step, /*keepLast=*/2);
  EXPECT_EQ(ckptListing(),
            (std::vector<std::string>{"latest", "step_3", "step_4"}));
  expectLoads(4);
  expectLoads(3, 3);
  save(5, /*keepLast=*/1);
  EXPECT_EQ(ckptListing(), (std::vector<std::string>{"latest", "step_5"}));
}

TEST_F(CheckpointTest, PruningLeavesNewerStepsOfAnAbandonedRunAlone) {
  // Resumed from step 100 while steps 200 and 300 exist: saving 150 points
  // latest at it, prunes below it, and keeps the newer ones.
  for (int64_t step : {50, 100, 200, 300})
    save(step);
  save(150, /*keepLast=*/2);
  EXPECT_EQ(steps(), (std::vector<int64_t>{100, 150, 200, 300}));
  EXPECT_EQ(readBytes(inCkpt("latest")), "step_150\n");
  expectLoads(150);
}

TEST_F(CheckpointTest, RefusesATruncatedFileAndNamesTheNewestIntactStep) {
  save(100);
  save(200);
  std::string params = inCkpt("step_200/params.safetensors");
  uint64_t size = fs::file_size(params);
  fs::resize_file(params, size - 10);
  EXPECT_EQ(loadError(), params + ": truncated (state.json records " +
                             std::to_string(size) + " bytes, the file has " +
                             std::to_string(size - 10) +
                             "): the checkpoint is corrupt" + hint100());
  expectLoads(100, 100);
}

TEST_F(CheckpointTest, RefusesAFileThatGrew) {
  save(100);
  std::string optimizer = inCkpt("step_100/optimizer.safetensors");
  uint64_t size = fs::file_size(optimizer);
  writeBytes(optimizer, readBytes(optimizer) + "x");
  EXPECT_EQ(loadError(), optimizer + ": size mismatch (state.json records " +
                             std::to_string(size) + " bytes, the file has " +
                             std::to_string(size + 1) +
                             "): the checkpoint is corrupt; no older intact "
                             "checkpoint exists in " +
                             ckpt());
}

TEST_F(CheckpointTest, RefusesAFlippedByte) {
  save(100);
  save(200);
  std::string optimizer = inCkpt("step_200/optimizer.safetensors");
  std::string bytes = readBytes(optimizer);
  uint64_t before = io::crc64(bytes.data(), bytes.size());
  bytes[bytes.size() - 3] ^= 0x10;
  uint64_t after = io::crc64(bytes.data(), bytes.size());
  writeBytes(optimizer, bytes);
  char expected[160];
  std::snprintf(expected, sizeof expected,
                ": checksum mismatch (state.json records 0x%016llx, file has "
                "0x%016llx): the checkpoint is corrupt",
                static_cast<unsigned long long>(before),
                static_cast<unsigned long long>(after));
  EXPECT_EQ(loadError(), optimizer + expected + hint100());
  EXPECT_EQ(loadError(200), optimizer + expected + hint100());
}

TEST_F(CheckpointTest, RefusesAnEditedStateRecord) {
  // A changed byte in the progress record is caught by state.json's own
  // checksum: progress is restored exactly or not at all.
  save(100);
  save(200);
  std::string state = inCkpt("step_200/state.json");
  std::string text = readBytes(state);
  size_t at = text.find("sparse-mixer-base");
  ASSERT_NE(at, std::string::npos);
  text[at + 16] = 'x';
  writeBytes(state, text);
  std::string message = loadError();
  EXPECT_EQ(message.rfind(state + ": checksum mismatch (the record says 0x", 0),
            0u)
      << message;
  EXPECT_NE(message.find("): the checkpoint is corrupt" + hint100()),
            std::string::npos)
      << message;
}

TEST_F(CheckpointTest, RefusesAMissingOrUnreadableStateRecord) {
  save(100);
  save(200);
  std::string state = inCkpt("step_200/state.json");
  std::string text = readBytes(state);
  fs::remove(state);
  EXPECT_EQ(loadError(),
            state + ": missing: the checkpoint is corrupt" + hint100());
  writeBytes(state, text.substr(0, text.size() / 2));
  EXPECT_EQ(loadError(), state +
                             ": not a JSON object: the checkpoint is corrupt" +
                             hint100());
}

TEST_F(CheckpointTest, RefusesAnotherFormatVersion) {
  save(100);
  save(200);
  std::string state = inCkpt("step_200/state.json");
  std::string text = readBytes(state);
  size_t at = text.find("\"version\": 1");
  ASSERT_NE(at, std::string::npos);
  text.replace(at, 12, "\"version\": 2");
  writeBytes(state, text);
  EXPECT_EQ(loadError(), state +
                             ": checkpoint format version 2 is not "
                             "supported by this build (supports 1)" +
                             hint100());
}

TEST_F(CheckpointTest, RefusesARecordOfAnotherStepOrFormat) {
  save(50);
  save(100);
  // A step directory renamed by hand.
  fs::rename(inCkpt("step_100"), inCkpt("step_150"));
  std::string state = inCkpt("step_150/state.json");
  std::string hint50 = "; step_50 is the newest intact one (resume from it "
                       "with --resume-step 50)";
  EXPECT_EQ(loadError(150), state +
                                ": records step 100 but lies in step_150: "
                                "the checkpoint is corrupt" +
                                hint50);

  writeBytes(state, "{\"format\": \"other\", \"version\": 1}");
  EXPECT_EQ(loadError(150),
            state + ": not a mixer checkpoint record (format \"other\")" +
                hint50);

  // A well-formed record (its record_crc64 is the CRC-64 of its compact
  // form without that key) whose digest of the parameter file is malformed:
  // "0x0" is not 16 hex digits.
  nlohmann::json record = {
      {"format", "mixer-checkpoint"},
      {"version", 1},
      {"step", 150},
      {"files", {{"params.safetensors", {{"bytes", 8}, {"crc64", "0x0"}}}}},
      {"progress", nullptr}};
  std::string compact = record.dump();
  char crc[19];
  std::snprintf(crc, sizeof crc, "0x%016llx",
                static_cast<unsigned long long>(
                    io::crc64(compact.data(), compact.size())));
  record["record_crc64"] = crc;
  writeBytes(state, record.dump());
  EXPECT_EQ(loadError(150), state +
                                ": no valid size and crc64 for "
                                "'params.safetensors': the checkpoint is "
                                "corrupt" +
                                hint50);
}

TEST_F(CheckpointTest, RefusesARecordNestedTooDeep) {
  // Checksumming the record prints it, recursing once per level: deep
  // enough, that would exhaust the stack.
  save(100);
  save(200);
  std::string state = inCkpt("step_200/state.json");
  writeBytes(state, "{\"format\": \"mixer-checkpoint\", \"progress\": " +
                        std::string(100000, '[') + std::string(100000, ']') +
                        "}");
  EXPECT_EQ(loadError(), state +
                             ": the record nests arrays and objects deeper "
                             "than 256 levels (at byte offset 298): the "
                             "checkpoint is corrupt" +
                             hint100());
}

TEST_F(CheckpointTest, RefusesAMissingTensorFile) {
  save(100);
  std::string params = inCkpt("step_100/params.safetensors");
  fs::remove(params);
  EXPECT_EQ(loadError(), params +
                             ": missing: the checkpoint is corrupt; no "
                             "older intact checkpoint exists in " +
                             ckpt());
}

TEST_F(CheckpointTest, IgnoresAndCleansUpAStaleTemporaryDirectory) {
  save(100);
  save(200);
  // What a crash in the middle of saving step 300 leaves: a half-written
  // temporary directory and a temporary of `latest`.
  std::string stale = inCkpt(".step_300.tmp-999999999");
  ASSERT_TRUE(fs::create_directory(stale));
  writeBytes(stale + "/params.safetensors", "half");
  writeBytes(inCkpt("latest.tmp.999999999.0"), "step_3");
  EXPECT_EQ(steps(), (std::vector<int64_t>{100, 200}));
  expectLoads(200);

  save(300);
  EXPECT_EQ(ckptListing(), (std::vector<std::string>{"latest", "step_100",
                                                     "step_200", "step_300"}));
  expectLoads(300);
}

TEST_F(CheckpointTest, CrashBetweenRenameAndLatestKeepsThePreviousStep) {
  // The step directory is committed but `latest` still names the previous
  // step: the previous step is the one loaded.
  save(100);
  save(200);
  writeBytes(inCkpt("latest"), "step_100\n");
  expectLoads(100);
  EXPECT_EQ(steps(), (std::vector<int64_t>{100, 200}));

  // The resumed run saves step 200 again, replacing the earlier one.
  TrainingState again = makeState(200);
  again.progress["loss"] = 0.5;
  again.params[0].data[0] ^= 0xFF;
  Status s = saveCheckpoint(ckpt(), again);
  ASSERT_TRUE(s.ok()) << s.message();
  auto loaded = loadCheckpoint(ckpt());
  ASSERT_TRUE(loaded.ok()) << loaded.message();
  expectSameState(*loaded, again);
  EXPECT_EQ(ckptListing(),
            (std::vector<std::string>{"latest", "step_100", "step_200"}));
}

TEST_F(CheckpointTest, ResavingReplacesACorruptStep) {
  save(100);
  save(200);
  fs::resize_file(inCkpt("step_200/params.safetensors"), 16);
  EXPECT_FALSE(loadCheckpoint(ckpt()).ok());
  expectLoads(100, 100);
  save(200);
  expectLoads(200);
}

TEST_F(CheckpointTest, WithoutLatestLoadsTheNewestIntactStep) {
  // A crash after the first step directory was renamed into place but
  // before `latest` was written: that step is whole, and it is loaded.
  save(100);
  fs::remove(inCkpt("latest"));
  expectLoads(100);

  // Without `latest`, a corrupt newer step is passed over.
  save(200);
  fs::remove(inCkpt("latest"));
  fs::resize_file(inCkpt("step_200/params.safetensors"), 16);
  expectLoads(100);

  fs::resize_file(inCkpt("step_100/params.safetensors"), 16);
  EXPECT_EQ(loadError(), inCkpt("latest") +
                             ": no such file, and no intact checkpoint "
                             "exists in " +
                             ckpt());
}

TEST_F(CheckpointTest, RemovesWhatInterruptedSavesLeft) {
  save(100);
  std::string stale = inCkpt(".step_200.tmp-999999999");
  ASSERT_TRUE(fs::create_directory(stale));
  writeBytes(stale + "/params.safetensors", "half");
  writeBytes(inCkpt("latest.tmp.999999999.0"), "step_2");
  removeInterruptedSaves(ckpt());
  EXPECT_EQ(ckptListing(), (std::vector<std::string>{"latest", "step_100"}));
}

TEST_F(CheckpointTest, RefusesALatestPointerThatNamesNoStep) {
  save(100);
  writeBytes(inCkpt("latest"), "step_01\n");
  EXPECT_EQ(loadError(), inCkpt("latest") +
                             ": names 'step_01', not a checkpoint directory "
                             "step_<N>" +
                             hint100());
  writeBytes(inCkpt("latest"), "step_400\n");
  EXPECT_EQ(loadError(),
            inCkpt("step_400") + ": no such checkpoint" + hint100());
}

TEST_F(CheckpointTest, RefusesAStepThatDoesNotExist) {
  save(100);
  save(200);
  EXPECT_EQ(loadError(150),
            inCkpt("step_150") + ": no such checkpoint" + hint100());
  EXPECT_EQ(loadError(50), inCkpt("step_50") +
                               ": no such checkpoint; no older intact "
                               "checkpoint exists in " +
                               ckpt());
  EXPECT_EQ(loadError(-1), ckpt() + ": no checkpoint of negative step -1");
}

TEST_F(CheckpointTest, RefusesADirectoryThatDoesNotExist) {
  std::string missing = file("nowhere");
  auto state = loadCheckpoint(missing);
  ASSERT_FALSE(state.ok());
  EXPECT_EQ(state.message(), missing + ": no such checkpoint directory");
  auto listed = listCheckpoints(missing);
  ASSERT_FALSE(listed.ok());
  EXPECT_EQ(listed.message(), missing + ": no such checkpoint directory");
}

TEST_F(CheckpointTest, CreatesMissingParentDirectories) {
  std::string nested = file("runs/a/ckpt/");
  Status s = saveCheckpoint(nested, makeState(3));
  ASSERT_TRUE(s.ok()) << s.message();
  auto state = loadCheckpoint(nested);
  ASSERT_TRUE(state.ok()) << state.message();
  expectSameState(*state, makeState(3));
}

TEST_F(CheckpointTest, RefusesAnUnwritableTarget) {
  // A file where the checkpoint directory should be.
  writeBytes(ckpt(), "not a directory");
  Status s = saveCheckpoint(ckpt(), makeState(1));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.message(), ckpt() + ": exists and is not a directory, so no "
                                  "checkpoint can be saved in it");
  EXPECT_EQ(readBytes(ckpt()), "not a directory");
  auto listed = listCheckpoints(ckpt());
  ASSERT_FALSE(listed.ok());
  EXPECT_EQ(listed.message(), ckpt() + ": not a directory");

  // A file where the step directory should be: nothing changes.
  fs::remove(ckpt());
  save(1);
  writeBytes(inCkpt("step_2"), "in the way");
  s = saveCheckpoint(ckpt(), makeState(2));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.message(),
            inCkpt("step_2") + ": exists and is not a checkpoint directory");
  EXPECT_EQ(ckptListing(),
            (std::vector<std::string>{"latest", "step_1", "step_2"}));
  expectLoads(1);
}

TEST_F(CheckpointTest, RefusesInvalidArguments) {
  Status s = saveCheckpoint(ckpt(), makeState(-1));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.message(),
            ckpt() + ": cannot save a checkpoint of negative step -1");
  s = saveCheckpoint(ckpt(), makeState(1), 0);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.message(), ckpt() + ": keep_last 0 must be at least 1");
  EXPECT_FALSE(fs::exists(ckpt()));
}

TEST_F(CheckpointTest, AFailedSaveLeavesNoTemporaryAndKeepsLatest) {
  save(1);
  // A duplicate tensor name makes the parameter file unwritable.
  TrainingState bad = makeState(2);
  bad.params.push_back(bad.params.front());
  Status s = saveCheckpoint(ckpt(), bad);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("params.safetensors: tensor name "
                             "'word_embeddings/embedding' is used twice"),
            std::string::npos)
      << s.message();
  EXPECT_EQ(ckptListing(), (std::vector<std::string>{"latest", "step_1"}));
  expectLoads(1);
}

TEST_F(CheckpointTest, ListsOnlyStepDirectories) {
  save(10);
  save(9);
  ASSERT_TRUE(fs::create_directory(inCkpt("step_x")));
  ASSERT_TRUE(fs::create_directory(inCkpt("step_010")));
  ASSERT_TRUE(fs::create_directory(inCkpt(".step_11.tmp-1")));
  writeBytes(inCkpt("step_12"), "a file");
  EXPECT_EQ(steps(), (std::vector<int64_t>{9, 10}));
}

} // namespace
} // namespace mixer::train

//===- Checkpoint.cpp - Crash-safe training checkpoints -------------------===//

#include "runtime/train/Checkpoint.h"

#include "runtime/io/Container.h"
#include "runtime/io/JsonDepth.h"
#include "runtime/io/TensorFiles.h"

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <fcntl.h>
#include <filesystem>
#include <system_error>
#include <unistd.h>

namespace mixer::train {

namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

constexpr const char *kParamsFile = "params.safetensors";
constexpr const char *kOptimizerFile = "optimizer.safetensors";
constexpr const char *kStateFile = "state.json";
constexpr const char *kLatestFile = "latest";
constexpr const char *kStepPrefix = "step_";
/// Temporary directories are ".step_<N>.tmp-<pid>"; writeFileAtomic leaves
/// "latest.tmp.<pid>.<n>" behind when a crash interrupts it.
constexpr const char *kTempPrefix = ".step_";
constexpr const char *kTempMarker = ".tmp-";
constexpr const char *kLatestTempPrefix = "latest.tmp.";
constexpr const char *kFormat = "mixer-checkpoint";
constexpr int kFormatVersion = 1;
/// state.json's checksum of its own other fields.
constexpr const char *kRecordChecksumKey = "record_crc64";
constexpr const char *kCorrupt = ": the checkpoint is corrupt";

/// The size and CRC-64 of a file's bytes.
struct Digest {
  uint64_t bytes = 0;
  uint64_t crc = 0;
};

std::string join(const std::string &dir, const std::string &name) {
  return (fs::path(dir) / name).string();
}

std::string stepName(int64_t step) {
  return kStepPrefix + std::to_string(step);
}

std::string temporaryName(int64_t step) {
  return kTempPrefix + std::to_string(step) + kTempMarker +
         std::to_string(::getpid());
}

/// The step of a canonical "step_<N>" name (decimal, no sign, no leading
/// zero), or nothing.
std::optional<int64_t> parseStepName(const std::string &name) {
  std::string prefix = kStepPrefix;
  if (name.compare(0, prefix.size(), prefix) != 0)
    return std::nullopt;
  std::string digits = name.substr(prefix.size());
  // At most 18 digits always fit in int64.
  if (digits.empty() || digits.size() > 18 ||
      (digits.size() > 1 && digits[0] == '0') ||
      !std::all_of(digits.begin(), digits.end(),
                   [](char c) { return c >= '0' && c <= '9'; }))
    return std::nullopt;
  return std::stoll(digits);
}

/// Parses io::formatChecksum()'s form back.
std::optional<uint64_t> parseHex(const Json &value) {
  if (!value.is_string())
    return std::nullopt;
  const std::string &text = value.get_ref<const std::string &>();
  if (text.size() != 18 || text.compare(0, 2, "0x") != 0 ||
      !std::all_of(text.begin() + 2, text.end(), [](char c) {
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
      }))
    return std::nullopt;
  return std::stoull(text.substr(2), nullptr, 16);
}

Status error(const std::string &path, const std::string &what) {
  return Status::error(path + ": " + what);
}

std::string errnoText(int err) { return std::generic_category().message(err); }

/// Reads `path` in blocks, without holding it in memory.
Expected<Digest> digestFile(const std::string &path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return error(path, "cannot open: " + errnoText(errno));
  Digest digest;
  std::vector<char> buffer(1 << 20);
  while (true) {
    ssize_t n = ::read(fd, buffer.data(), buffer.size());
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      int err = errno;
      ::close(fd);
      return error(path, "cannot read: " + errnoText(err));
    }
    if (n == 0)
      break;
    digest.crc = io::crc64(buffer.data(), static_cast<size_t>(n), digest.crc);
    digest.bytes += static_cast<uint64_t>(n);
  }
  ::close(fd);
  return digest;
}

/// The CRC-64 of `record`'s compact form without its own checksum.
uint64_t recordChecksum(Json record) {
  record.erase(kRecordChecksumKey);
  std::string text = record.dump();
  return io::crc64(text.data(), text.size());
}

/// Whether `name` is a leftover of an interrupted save.
bool isTemporary(const std::string &name) {
  return (name.rfind(kTempPrefix, 0) == 0 &&
          name.find(kTempMarker) != std::string::npos) ||
         name.rfind(kLatestTempPrefix, 0) == 0;
}

/// Succeeds when `dir` is a directory, creating it (and making its entry
/// durable) if it does not exist.
Status prepareDirectory(const std::string &dir) {
  std::error_code ec;
  fs::file_status status = fs::status(dir, ec);
  if (fs::exists(status)) {
    if (!fs::is_directory(status))
      return error(dir, "exists and is not a directory, so no checkpoint can "
                        "be saved in it");
    return Status::success();
  }
  if (!fs::create_directories(dir, ec))
    return error(dir,
                 "cannot create the checkpoint directory: " + ec.message());
  fs::path path(dir);
  if (!path.has_filename())
    path = path.parent_path();
  std::string parent = path.parent_path().string();
  return io::syncDirectory(parent.empty() ? "." : parent);
}

/// Writes the tensor files and state.json (the last, recording the others'
/// digests) into `stepDir`.
Status writeStepFiles(const std::string &stepDir, const TrainingState &state) {
  Json files = Json::object();
  for (const auto &[name, tensors] :
       {std::pair{kParamsFile, &state.params},
        std::pair{kOptimizerFile, &state.optimizerState}}) {
    std::string path = join(stepDir, name);
    if (Status s = io::writeSafetensors(path, *tensors); !s)
      return s;
    auto digest = digestFile(path);
    if (!digest)
      return digest.takeStatus();
    files[name] = {{"bytes", digest->bytes},
                   {"crc64", io::formatChecksum(digest->crc)}};
  }
  std::string path = join(stepDir, kStateFile);
  Json record = {{"format", kFormat},
                 {"version", kFormatVersion},
                 {"step", state.step},
                 {"files", files},
                 {"progress", state.progress}};
  std::string text;
  try {
    record[kRecordChecksumKey] = io::formatChecksum(recordChecksum(record));
    text = record.dump(2) + "\n";
  } catch (const Json::exception &e) {
    return error(path, std::string("cannot serialise the progress record: ") +
                           e.what());
  }
  return io::writeFileAtomic(path, text);
}

/// Renames the complete temporary directory to `target`. An existing
/// checkpoint of the same step is exchanged with it atomically, so that
/// `target` names a whole checkpoint at every instant, then removed.
Status commitStepDirectory(const std::string &dir, const std::string &temp,
                           const std::string &target) {
  if (::rename(temp.c_str(), target.c_str()) == 0)
    return io::syncDirectory(dir);
  int err = errno;
  if (err != ENOTEMPTY && err != EEXIST)
    return error(target, "cannot rename '" + temp +
                             "' to the checkpoint: " + errnoText(err));
  if (::renameat2(AT_FDCWD, temp.c_str(), AT_FDCWD, target.c_str(),
                  RENAME_EXCHANGE) != 0)
    return error(target,
                 "cannot replace the existing checkpoint: " + errnoText(errno));
  if (Status s = io::syncDirectory(dir); !s)
    return s;
  std::error_code ec;
  fs::remove_all(temp, ec);
  return Status::success();
}

/// Removes the steps below `step` beyond the keepLast - 1 newest of them.
/// Each is first renamed to a temporary name, so that a crash halfway
/// through a removal leaves no partial checkpoint under a step name.
Status pruneOlderSteps(const std::string &dir, int64_t step, int keepLast) {
  auto steps = listCheckpoints(dir);
  if (!steps)
    return steps.takeStatus();
  std::vector<int64_t> older;
  for (int64_t s : *steps)
    if (s < step)
      older.push_back(s);
  size_t keepOlder = static_cast<size_t>(keepLast - 1);
  if (older.size() <= keepOlder)
    return Status::success();
  older.resize(older.size() - keepOlder);
  for (int64_t s : older) {
    std::string path = join(dir, stepName(s));
    std::string doomed = join(dir, temporaryName(s));
    std::string failure;
    if (::rename(path.c_str(), doomed.c_str()) != 0) {
      failure = errnoText(errno);
    } else {
      std::error_code ec;
      fs::remove_all(doomed, ec);
      if (ec)
        failure = ec.message();
    }
    if (!failure.empty())
      return error(path, "cannot remove this old checkpoint (" +
                             stepName(step) + " is saved): " + failure);
  }
  return io::syncDirectory(dir);
}

/// Checks `dir` for the readers: it must exist and be a directory.
Status checkReadableDirectory(const std::string &dir) {
  std::error_code ec;
  fs::file_status status = fs::status(dir, ec);
  if (!fs::exists(status))
    return error(dir, "no such checkpoint directory");
  if (!fs::is_directory(status))
    return error(dir, "not a directory");
  return Status::success();
}

/// The step `latest` names.
Expected<int64_t> readLatest(const std::string &dir) {
  std::string path = join(dir, kLatestFile);
  std::error_code ec;
  if (!fs::exists(path, ec))
    return error(path, "no such file, so no checkpoint was committed");
  auto text = io::readFile(path);
  if (!text)
    return text.takeStatus();
  std::string name = *text;
  while (!name.empty() && (name.back() == '\n' || name.back() == ' '))
    name.pop_back();
  std::optional<int64_t> step = parseStepName(name);
  if (!step)
    return error(path,
                 "names '" + name + "', not a checkpoint directory step_<N>");
  return *step;
}

/// Compares a tensor file with the size and CRC-64 state.json records.
Status verifyFile(const std::string &path, const Json &entry,
                  const std::string &recordPath) {
  Json bytes = entry.is_object() ? entry.value("bytes", Json()) : Json();
  std::optional<uint64_t> crc =
      parseHex(entry.is_object() ? entry.value("crc64", Json()) : Json());
  if (!bytes.is_number_unsigned() || !crc)
    return error(recordPath, "no valid size and crc64 for '" +
                                 fs::path(path).filename().string() + "'" +
                                 kCorrupt);
  std::error_code ec;
  if (!fs::exists(path, ec))
    return error(path, std::string("missing") + kCorrupt);
  auto digest = digestFile(path);
  if (!digest)
    return digest.takeStatus();
  uint64_t expected = bytes.get<uint64_t>();
  if (digest->bytes != expected)
    return error(path, std::string(digest->bytes < expected ? "truncated"
                                                            : "size mismatch") +
                           " (state.json records " + std::to_string(expected) +
                           " bytes, the file has " +
                           std::to_string(digest->bytes) + ")" + kCorrupt);
  if (digest->crc != *crc)
    return error(path, "checksum mismatch (state.json records " +
                           io::formatChecksum(*crc) + ", file has " +
                           io::formatChecksum(digest->crc) + ")" + kCorrupt);
  return Status::success();
}

/// Reads and checks state.json of `step`, then checks the tensor files
/// against it; returns the record.
Expected<Json> verifyStep(const std::string &dir, int64_t step) {
  std::string stepDir = join(dir, stepName(step));
  std::error_code ec;
  if (!fs::is_directory(stepDir, ec))
    return error(stepDir, "no such checkpoint");
  std::string path = join(stepDir, kStateFile);
  if (!fs::exists(path, ec))
    return error(path, std::string("missing") + kCorrupt);
  auto text = io::readFile(path);
  if (!text)
    return text.takeStatus();
  if (Status s = io::checkJsonDepth(*text, path + ": the record"); !s)
    return Status::error(s.message() + kCorrupt);
  Json record = Json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (!record.is_object())
    return error(path, std::string("not a JSON object") + kCorrupt);
  // The format and version come first: a newer format may keep its
  // checksum differently.
  Json format = record.value("format", Json());
  if (format != kFormat)
    return error(path, "not a mixer checkpoint record (format " +
                           format.dump() + ")");
  Json version = record.value("version", Json());
  if (version != kFormatVersion)
    return error(path, "checkpoint format version " + version.dump() +
                           " is not supported by this build (supports " +
                           std::to_string(kFormatVersion) + ")");
  std::optional<uint64_t> checksum =
      parseHex(record.value(kRecordChecksumKey, Json()));
  if (!checksum)
    return error(path,
                 std::string("no valid ") + kRecordChecksumKey + kCorrupt);
  if (uint64_t actual = recordChecksum(record); actual != *checksum)
    return error(path, "checksum mismatch (the record says " +
                           io::formatChecksum(*checksum) +
                           ", its content has " + io::formatChecksum(actual) +
                           ")" + kCorrupt);
  if (record.value("step", Json()) != step)
    return error(path, "records step " + record.value("step", Json()).dump() +
                           " but lies in " + stepName(step) + kCorrupt);
  Json files = record.value("files", Json());
  for (const char *name : {kParamsFile, kOptimizerFile})
    if (Status s = verifyFile(
            join(stepDir, name),
            files.is_object() ? files.value(name, Json()) : Json(), path);
        !s)
      return s;
  return record;
}

/// The newest intact step below `below` (any step when none is given),
/// phrased as the end of a refusal message.
std::string newestIntactHint(const std::string &dir,
                             std::optional<int64_t> below) {
  auto steps = listCheckpoints(dir);
  if (steps)
    for (auto it = steps->rbegin(); it != steps->rend(); ++it)
      if ((!below || *it < *below) && verifyStep(dir, *it))
        return "; " + stepName(*it) +
               " is the newest intact one (resume from it with --resume-step " +
               std::to_string(*it) + ")";
  return std::string("; no ") + (below ? "older " : "") +
         "intact checkpoint exists in " + dir;
}

/// Loads a verified step.
Expected<TrainingState> loadStep(const std::string &dir, int64_t step) {
  auto record = verifyStep(dir, step);
  if (!record)
    return record.takeStatus();
  std::string stepDir = join(dir, stepName(step));
  auto params = io::readSafetensors(join(stepDir, kParamsFile));
  if (!params)
    return params.takeStatus();
  auto optimizerState = io::readSafetensors(join(stepDir, kOptimizerFile));
  if (!optimizerState)
    return optimizerState.takeStatus();
  TrainingState state;
  state.step = step;
  state.params = std::move(*params);
  state.optimizerState = std::move(*optimizerState);
  state.progress = std::move((*record)["progress"]);
  return state;
}

/// Loads the newest intact step when no `latest` was ever committed: a save
/// interrupted between renaming its step into place and writing the first
/// `latest` leaves a whole checkpoint that nothing points to yet.
Expected<TrainingState> loadNewestIntact(const std::string &dir) {
  auto steps = listCheckpoints(dir);
  if (!steps)
    return steps.takeStatus();
  for (auto it = steps->rbegin(); it != steps->rend(); ++it)
    if (verifyStep(dir, *it))
      return loadStep(dir, *it);
  return error(join(dir, kLatestFile),
               "no such file, and no intact checkpoint exists in " + dir);
}

} // namespace

/// Removes the leftovers of interrupted saves. Failures are ignored: the
/// leftovers are never read, so they only cost disk space.
void removeInterruptedSaves(const std::string &dir) {
  std::error_code ec;
  std::vector<fs::path> stale;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end;
       it.increment(ec))
    if (isTemporary(it->path().filename().string()))
      stale.push_back(it->path());
  for (const fs::path &path : stale)
    fs::remove_all(path, ec);
}

Status saveCheckpoint(const std::string &dir, const TrainingState &state,
                      int keepLast) {
  if (state.step < 0)
    return error(dir, "cannot save a checkpoint of negative step " +
                          std::to_string(state.step));
  if (keepLast < 1)
    return error(dir, "keep_last " + std::to_string(keepLast) +
                          " must be at least 1");
  if (Status s = prepareDirectory(dir); !s)
    return s;
  removeInterruptedSaves(dir);

  std::string name = stepName(state.step);
  std::string target = join(dir, name);
  std::error_code ec;
  fs::file_status existing = fs::symlink_status(target, ec);
  if (fs::exists(existing) && !fs::is_directory(existing))
    return error(target, "exists and is not a checkpoint directory");

  std::string temp = join(dir, temporaryName(state.step));
  if (!fs::create_directory(temp, ec))
    return error(temp, "cannot create the temporary checkpoint directory: " +
                           (ec ? ec.message() : "it exists"));
  Status s = writeStepFiles(temp, state);
  if (s)
    s = commitStepDirectory(dir, temp, target);
  if (!s) {
    fs::remove_all(temp, ec);
    return s;
  }
  // Only a committed step may become the one to resume from.
  if (Status latest = io::writeFileAtomic(join(dir, kLatestFile), name + "\n");
      !latest)
    return latest;
  return pruneOlderSteps(dir, state.step, keepLast);
}

Expected<TrainingState> loadCheckpoint(const std::string &dir,
                                       std::optional<int64_t> step) {
  if (Status s = checkReadableDirectory(dir); !s)
    return s;
  if (step && *step < 0)
    return error(dir,
                 "no checkpoint of negative step " + std::to_string(*step));
  if (!step) {
    std::error_code ec;
    if (!fs::exists(join(dir, kLatestFile), ec))
      return loadNewestIntact(dir);
    auto latest = readLatest(dir);
    if (!latest)
      return Status::error(latest.message() + newestIntactHint(dir, {}));
    step = *latest;
  }
  auto state = loadStep(dir, *step);
  if (!state)
    return Status::error(state.message() + newestIntactHint(dir, *step));
  return state;
}

Expected<std::vector<int64_t>> listCheckpoints(const std::string &dir) {
  if (Status s = checkReadableDirectory(dir); !s)
    return s;
  std::vector<int64_t> steps;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end;
       it.increment(ec)) {
    std::optional<int64_t> step = parseStepName(it->path().filename().string());
    std::error_code kindError;
    if (step && it->is_directory(kindError))
      steps.push_back(*step);
  }
  if (ec)
    return error(dir, "cannot list the directory: " + ec.message());
  std::sort(steps.begin(), steps.end());
  return steps;
}

} // namespace mixer::train

//===- FuzzSupport.h - What the fuzz harnesses share ------------*- C++ -*-===//
//
// The readers under fuzz take file paths, so every harness writes its input
// into a per-process scratch directory (under TMPDIR; scripts/fuzz points it
// at a memory file system) and reads it from there. Beyond the sanitizers'
// reports, a harness fails on a broken promise of the readers: bad input
// must give an error whose message starts with the file it names.
//
//===----------------------------------------------------------------------===//

#ifndef MIXER_TEST_FUZZ_FUZZSUPPORT_H
#define MIXER_TEST_FUZZ_FUZZSUPPORT_H

#include <cstddef>
#include <cstdint>
#include <string>

namespace mixer::fuzz {

/// Whether the harness makes its input's checksum right before reading it,
/// so that what is checked behind the checksum gets fuzzed
/// (MIXER_FUZZ_FIX_CHECKSUM); internal to each harness, as it differs.
#ifdef MIXER_FUZZ_FIX_CHECKSUM
constexpr bool kFixChecksum = true;
#else
constexpr bool kFixChecksum = false;
#endif

/// The per-process scratch directory, created on first use and removed at
/// exit.
const std::string &scratchDir();

/// scratchDir()/`name`.
std::string scratchPath(const std::string &name);

/// Writes `bytes` to `path`, replacing it.
void writeBytes(const std::string &path, const std::string &bytes);

/// Writes the fuzz input to scratchDir()/`name`; returns the path.
std::string writeInput(const std::string &name, const uint8_t *data,
                       size_t size);

/// Reports a broken promise of the code under fuzz and aborts, which makes
/// libFuzzer save the input.
[[noreturn]] void fail(const std::string &what);

/// Fails unless `message`, an error of reading `path`, starts with `path`.
void checkErrorNames(const std::string &path, const std::string &message);

/// With MIXER_FUZZ_SEED_DIR set (scripts/fuzz does, once), writes `bytes`
/// there as `name`: a seed that only the harness itself can make, such as a
/// record matching its own fixture.
void offerSeed(const std::string &name, const std::string &bytes);

} // namespace mixer::fuzz

#endif // MIXER_TEST_FUZZ_FUZZSUPPORT_H

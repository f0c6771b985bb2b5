//===- TensorFiles.h - safetensors, .npy and .npz files ---------*- C++ -*-===//
//
// Readers validate everything a well-formed file promises (for safetensors the
// format's own rules: header size bounds, UTF-8 JSON, known dtypes, contiguous
// non-overlapping offsets covering the whole data section, byte sizes that
// match shapes, no duplicate names) and fail with a message naming the file
// and the offending tensor or byte offset. Writers are atomic: they write a
// temporary file in the same directory, fsync it and rename it over the
// target, so a crash never leaves a half-written file under the final name.
//
//===----------------------------------------------------------------------===//

#ifndef MIXER_RUNTIME_IO_TENSORFILES_H
#define MIXER_RUNTIME_IO_TENSORFILES_H

#include "runtime/io/Tensor.h"
#include "runtime/support/Status.h"

#include <functional>
#include <map>
#include <string>
#include <vector>

namespace mixer::io {

/// Decides from a tensor's header (its name, dtype and shape; no data yet),
/// before the data is copied or inflated, whether a reader keeps it: true
/// reads it, false leaves it out, an error stops the read. Callers that know
/// which shapes they can take refuse the rest here, so that a small file that
/// claims gigabytes is refused without allocating them.
using TensorFilter = std::function<Expected<bool>(const HostTensor &header)>;

/// Reads the tensors of a .safetensors file that `filter` keeps (all when it
/// is empty), in file order.
Expected<std::vector<HostTensor>>
readSafetensors(const std::string &path, const TensorFilter &filter = {});
/// Like readSafetensors, also returning the "__metadata__" entries.
Expected<std::vector<HostTensor>>
readSafetensors(const std::string &path,
                std::map<std::string, std::string> &metadata);
/// Writes tensors (and optional string metadata, the "__metadata__" entry).
Status
writeSafetensors(const std::string &path,
                 const std::vector<HostTensor> &tensors,
                 const std::map<std::string, std::string> &metadata = {});

/// Reads one .npy array (format 1.0-3.0, little-endian, C order, the dtypes
/// of DType); the tensor is named after the file stem.
Expected<HostTensor> readNpy(const std::string &path);
Status writeNpy(const std::string &path, const HostTensor &tensor);

/// Reads the arrays of an .npz archive (stored or deflated members) that
/// `filter` keeps, named after the member without ".npy"; a member is
/// inflated only after its header passed the filter.
Expected<std::vector<HostTensor>> readNpz(const std::string &path,
                                          const TensorFilter &filter = {});
/// Writes an uncompressed .npz archive (as numpy.savez does).
Status writeNpz(const std::string &path,
                const std::vector<HostTensor> &tensors);

/// Reads .safetensors, .npz or .npy, chosen by the file extension, keeping
/// what `filter` keeps.
Expected<std::vector<HostTensor>>
readTensorFile(const std::string &path, const TensorFilter &filter = {});
/// Writes .safetensors, .npz, or .npy (exactly one tensor) by extension.
Status writeTensorFile(const std::string &path,
                       const std::vector<HostTensor> &tensors);

/// Writes `bytes` to `path` atomically (temporary file, fsync, rename, fsync
/// of the directory); through a link, to the regular file it leads to. An
/// existing target that is not a regular file (a character device such as
/// /dev/null, a FIFO, /dev/stdout on a pipe) is written through, never
/// replaced.
Status writeFileAtomic(const std::string &path, const std::string &bytes);
/// Flushes a directory's entries (creations, renames) to disk.
Status syncDirectory(const std::string &dir);
/// Reads a whole file.
Expected<std::string> readFile(const std::string &path);

} // namespace mixer::io

#endif // MIXER_RUNTIME_IO_TENSORFILES_H

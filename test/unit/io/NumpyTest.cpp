//===- NumpyTest.cpp - .npy and .npz files, and numpy interoperability ----===//

#include "IOTestUtil.h"

#include "runtime/io/TensorFiles.h"

using namespace mixer::io;
using namespace mixer::io::test;
using mixer::Status;

namespace {

/// numpy's type codes and the DType each maps to.
struct NumpyType {
  const char *code;
  DType dtype;
};
const NumpyType kNumpyTypes[] = {
    {"f4", DType::F32}, {"f8", DType::F64}, {"i4", DType::I32},
    {"i8", DType::I64}, {"i2", DType::I16}, {"u2", DType::U16},
    {"u1", DType::U8},  {"i1", DType::I8},  {"b1", DType::Bool},
    {"f2", DType::F16}, {"u4", DType::U32}, {"u8", DType::U64},
};

template <typename T> std::vector<uint8_t> bytesOf(std::vector<T> values) {
  std::vector<uint8_t> bytes(values.size() * sizeof(T));
  std::memcpy(bytes.data(), values.data(), bytes.size());
  return bytes;
}

/// The bytes of numpy's arange(6).astype(code) (for bool: arange(6) % 2).
std::vector<uint8_t> arangeBytes(DType dtype) {
  switch (dtype) {
  case DType::Bool:
    return {0, 1, 0, 1, 0, 1};
  case DType::U8:
  case DType::I8:
    return {0, 1, 2, 3, 4, 5};
  case DType::I16:
  case DType::U16:
    return bytesOf<uint16_t>({0, 1, 2, 3, 4, 5});
  case DType::F16: // IEEE half bit patterns of 0..5
    return bytesOf<uint16_t>({0x0000, 0x3C00, 0x4000, 0x4200, 0x4400, 0x4500});
  case DType::I32:
  case DType::U32:
    return bytesOf<uint32_t>({0, 1, 2, 3, 4, 5});
  case DType::F32:
    return bytesOf<float>({0, 1, 2, 3, 4, 5});
  case DType::F64:
    return bytesOf<double>({0, 1, 2, 3, 4, 5});
  case DType::I64:
  case DType::U64:
    return bytesOf<uint64_t>({0, 1, 2, 3, 4, 5});
  default:
    ADD_FAILURE() << "numpy has no " << dtypeName(dtype);
    return {};
  }
}

HostTensor arangeTensor(const std::string &name, DType dtype) {
  HostTensor tensor;
  tensor.name = name;
  tensor.dtype = dtype;
  tensor.shape = {2, 3};
  tensor.data = arangeBytes(dtype);
  return tensor;
}

/// A hand-made .npy file of the given major version.
std::string npyBytes(int major, const std::string &header,
                     const std::string &data) {
  std::string bytes =
      std::string("\x93NUMPY", 6) + static_cast<char>(major) + '\0' +
      (major == 1 ? le<uint16_t>(header.size()) : le<uint32_t>(header.size()));
  return bytes + header + data;
}

const std::string kF32Pair("\x00\x00\x80\x3f\x00\x00\x00\x40", 8);

bool pythonAvailable() {
  static const bool available = pythonWithNumpyAvailable();
  return available;
}

#define SKIP_WITHOUT_NUMPY()                                                   \
  if (!pythonAvailable())                                                      \
  GTEST_SKIP() << kPython << " with numpy is not available"

class NumpyTest : public TempDirTest {
protected:
  void expectNpyError(const std::string &bytes, const std::string &substring) {
    std::string path = file("crafted.npy");
    writeBytes(path, bytes);
    auto result = readNpy(path);
    ASSERT_FALSE(result.ok()) << "expected an error containing: " << substring;
    EXPECT_NE(result.message().find(substring), std::string::npos)
        << result.message();
    EXPECT_EQ(result.message().rfind(path + ": ", 0), 0u) << result.message();
  }
  void expectNpzError(const std::string &path, const std::string &substring) {
    auto result = readNpz(path);
    ASSERT_FALSE(result.ok()) << "expected an error containing: " << substring;
    EXPECT_NE(result.message().find(substring), std::string::npos)
        << result.message();
  }
};

TEST_F(NumpyTest, NpyRoundTripsEveryNumpyDType) {
  for (const NumpyType &type : kNumpyTypes) {
    std::string path = file(std::string("t_") + type.code + ".npy");
    HostTensor tensor = arangeTensor(std::string("t_") + type.code, type.dtype);
    ASSERT_TRUE(writeNpy(path, tensor).ok()) << type.code;
    auto read = readNpy(path);
    ASSERT_TRUE(read.ok()) << read.message();
    expectSameTensor(*read, tensor);
  }
  HostTensor scalar = makeTensor<double>("scalar", DType::F64, {}, {2.5});
  ASSERT_TRUE(writeNpy(file("scalar.npy"), scalar).ok());
  auto read = readNpy(file("scalar.npy"));
  ASSERT_TRUE(read.ok()) << read.message();
  expectSameTensor(*read, scalar);
}

TEST_F(NumpyTest, WritesVersion1WithDataAlignedTo64) {
  std::string path = file("pair.npy");
  ASSERT_TRUE(
      writeNpy(path, makeTensor<float>("pair", DType::F32, {2}, {1.0f, 2.0f}))
          .ok());
  std::string dict =
      "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }";
  // 10 bytes of preamble + 57 + 60 spaces + '\n' = 128.
  EXPECT_EQ(readBytes(path),
            npyBytes(1, dict + std::string(60, ' ') + "\n", kF32Pair));

  ASSERT_TRUE(
      writeNpy(path, makeTensor<uint8_t>("m", DType::U8, {1, 2, 1}, {7, 8}))
          .ok());
  std::string bytes = readBytes(path);
  EXPECT_EQ(bytes.size(), 128u + 2);
  EXPECT_NE(bytes.find("'descr': '|u1', 'fortran_order': False, 'shape': "
                       "(1, 2, 1), }"),
            std::string::npos);
}

TEST_F(NumpyTest, ReadsVersions2And3AndPython2Headers) {
  std::string dict =
      "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }";
  for (int major : {2, 3}) {
    std::string path = file("v.npy");
    writeBytes(path, npyBytes(major, dict + "\n", kF32Pair));
    auto read = readNpy(path);
    ASSERT_TRUE(read.ok()) << read.message();
    EXPECT_EQ(read->name, "v");
    EXPECT_EQ(read->shape, (std::vector<int64_t>{2}));
    EXPECT_EQ(read->as<float>()[1], 2.0f);
  }
  std::string path = file("py2.npy");
  writeBytes(path, npyBytes(1,
                            "{\"descr\":\"<f4\",\"shape\":(1L,2L),"
                            "\"fortran_order\":False}\n",
                            kF32Pair));
  auto read = readNpy(path);
  ASSERT_TRUE(read.ok()) << read.message();
  EXPECT_EQ(read->shape, (std::vector<int64_t>{1, 2}));
}

TEST_F(NumpyTest, RejectsMalformedNpyFiles) {
  std::string dict =
      "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }";
  expectNpyError("PK\x03\x04 not npy", "not a .npy file (bad magic)");
  expectNpyError(npyBytes(4, dict, kF32Pair),
                 ".npy format version 4.0 is not supported");
  expectNpyError(npyBytes(1, dict, "").substr(0, 9),
                 "truncated: file has 9 bytes");
  expectNpyError(npyBytes(1, dict, "").substr(0, 40),
                 "truncated: header length is 57 bytes but only 30 bytes");
  expectNpyError(npyBytes(1, dict, kF32Pair.substr(0, 6)),
                 "truncated: shape [2] with dtype <f4 needs 8 bytes of data "
                 "but 6 follow the header");
  expectNpyError(npyBytes(1, dict, kF32Pair + "x"),
                 "trailing bytes: shape [2] with dtype <f4 needs 8 bytes");
  expectNpyError(
      npyBytes(1, "{'descr': '<f4', 'fortran_order': True, 'shape': (2,), }",
               kF32Pair),
      "Fortran-order arrays are not supported");
  expectNpyError(
      npyBytes(1, "{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }",
               kF32Pair),
      "dtype '>f4' is not supported (big-endian)");
  expectNpyError(
      npyBytes(1, "{'descr': '<c8', 'fortran_order': False, 'shape': (1,), }",
               kF32Pair),
      "dtype '<c8' is not supported (supported: little-endian");
  expectNpyError(npyBytes(1,
                          "{'descr': [('a', '<f4')], 'fortran_order': False, "
                          "'shape': (2,), }",
                          kF32Pair),
                 "structured dtypes are not supported");
  expectNpyError(npyBytes(1, "{'descr': '<f4', 'shape': (2,), }", kF32Pair),
                 "malformed header: missing key 'fortran_order'");
  expectNpyError(npyBytes(1,
                          "{'descr': '<f4', 'fortran_order': False, "
                          "'shape': (2, -1), }",
                          kF32Pair),
                 "malformed header: expected a tuple of non-negative integers");
  expectNpyError(npyBytes(1, "{'descr': '<f4' 'shape': (2,)}", kF32Pair),
                 "malformed header: expected ',' or '}' at header offset 16");
}

TEST_F(NumpyTest, NpyWriterRejectsDTypesNumpyLacks) {
  std::string path = file("b.npy");
  Status s = writeNpy(path, patternTensor("b", DType::BF16, {2}, 0));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.message(),
            path + ": tensor 'b' has dtype BF16, which numpy does not have");
  EXPECT_FALSE(std::filesystem::exists(path));
}

TEST_F(NumpyTest, NpzRoundTripsInOrder) {
  std::vector<HostTensor> tensors = {
      arangeTensor("encoder/layer_0/w", DType::F32),
      makeTensor<int64_t>("ids", DType::I64, {2}, {-1, 2}),
      makeTensor<double>("scalar", DType::F64, {}, {2.5}),
      patternTensor("empty", DType::F16, {0}, 0),
  };
  std::string path = file("all.npz");
  ASSERT_TRUE(writeNpz(path, tensors).ok());
  auto read = readNpz(path);
  ASSERT_TRUE(read.ok()) << read.message();
  ASSERT_EQ(read->size(), tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i)
    expectSameTensor((*read)[i], tensors[i]);

  Status s = writeNpz(path, {tensors[0], tensors[0]});
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.message(),
            path + ": tensor name 'encoder/layer_0/w' is used twice");
}

TEST_F(NumpyTest, RejectsCorruptArchives) {
  std::string path = file("a.npz");
  ASSERT_TRUE(
      writeNpz(path, {makeTensor<float>("x", DType::F32, {2}, {1.0f, 2.0f})})
          .ok());
  std::string good = readBytes(path);

  // The last data byte of the only member precedes the central directory.
  std::string flipped = good;
  size_t directory = flipped.find(std::string("PK\x01\x02", 4));
  ASSERT_NE(directory, std::string::npos);
  flipped[directory - 1] ^= 0x01;
  writeBytes(path, flipped);
  expectNpzError(path, "member 'x.npy': CRC-32 mismatch (stored 0x");

  writeBytes(path, "definitely not a zip archive");
  expectNpzError(path,
                 "not a ZIP archive (no end of central directory record)");

  // A ZIP64 end of central directory locator just before the end record.
  size_t end = good.rfind(std::string("PK\x05\x06", 4));
  writeBytes(path, good.substr(0, end) + std::string("PK\x06\x07", 4) +
                       std::string(16, '\0') + good.substr(end));
  expectNpzError(path, "the archive uses ZIP64 records, which are not "
                       "supported");

  // Entry counts of the end record (on this disk, in all) that disagree:
  // inconsistent, not a multi-disk archive.
  for (char onDisk : {'\x00', '\x02'}) {
    std::string miscounted = good;
    miscounted[end + 8] = onDisk;
    writeBytes(path, miscounted);
    expectNpzError(path, "the end record counts " +
                             std::to_string(int(onDisk)) +
                             " entries on its disk but 1 in all, in a "
                             "single-disk archive");
  }
  std::string otherDisk = good;
  otherDisk[end + 4] = '\x01';
  writeBytes(path, otherDisk);
  expectNpzError(path, "multi-disk ZIP archives are not supported");

  std::string badDirectory = good;
  badDirectory[directory + 3] = '\x09';
  writeBytes(path, badDirectory);
  expectNpzError(path, "central directory entry 0 at offset " +
                           std::to_string(directory) + " is malformed");
}

TEST_F(NumpyTest, RefusesSizesDeflateCannotReach) {
  // A deflated member recorded as 4 GiB in an archive of a few hundred
  // bytes: refused before anything of that size is allocated.
  std::string path = file("claims.npz");
  ASSERT_TRUE(
      writeNpz(path, {makeTensor<float>("x", DType::F32, {2}, {1.0f, 2.0f})})
          .ok());
  std::string bytes = readBytes(path);
  size_t directory = bytes.find(std::string("PK\x01\x02", 4));
  ASSERT_NE(directory, std::string::npos);
  bytes.replace(directory + 10, 2, le<uint16_t>(8));
  bytes.replace(directory + 24, 4, le<uint32_t>(0xFFFFFFFE));
  writeBytes(path, bytes);
  expectNpzError(path, ": member 'x.npy': 136 bytes of deflate data cannot "
                       "inflate to the 4294967294 bytes the central "
                       "directory records");
}

TEST_F(NumpyTest, FilterDecidesBeforeInflating) {
  SKIP_WITHOUT_NUMPY();
  ASSERT_TRUE(runPython(dir, R"(
import os, sys
import numpy as np
np.savez_compressed(os.path.join(sys.argv[1], 'zeros.npz'),
                    x=np.zeros((1 << 20,), 'f4'))
)"));
  // Corrupt the end of the deflate stream: only inflating all of it finds
  // out, so a filter that refuses or leaves the array out must be asked
  // before that.
  std::string path = file("zeros.npz");
  std::string bytes = readBytes(path);
  size_t directory = bytes.find(std::string("PK\x01\x02", 4));
  ASSERT_NE(directory, std::string::npos);
  bytes[directory - 8] ^= 0x5a;
  writeBytes(path, bytes);

  std::vector<HostTensor> seen;
  auto leftOut = readNpz(path, [&](const HostTensor &header) {
    seen.push_back(header);
    return mixer::Expected<bool>(false);
  });
  ASSERT_TRUE(leftOut.ok()) << leftOut.message();
  EXPECT_TRUE(leftOut->empty());
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].name, "x");
  EXPECT_EQ(seen[0].dtype, DType::F32);
  EXPECT_EQ(seen[0].shape, std::vector<int64_t>{1 << 20});
  EXPECT_TRUE(seen[0].data.empty());

  auto refused = readNpz(path, [&](const HostTensor &) {
    return mixer::Expected<bool>(Status::error("too large"));
  });
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.message(), "too large");

  auto kept = readNpz(path, [](const HostTensor &) { return true; });
  ASSERT_FALSE(kept.ok());
  EXPECT_EQ(kept.message().rfind(path + ": member 'x.npy': ", 0), 0u)
      << kept.message();
}

TEST_F(NumpyTest, FilterAppliesToEveryFormat) {
  HostTensor x = makeTensor<float>("x", DType::F32, {2}, {1.0f, 2.0f});
  HostTensor y = makeTensor<float>("y", DType::F32, {1}, {3.0f});
  auto onlyX = [](const HostTensor &header) -> mixer::Expected<bool> {
    return header.name == "x";
  };
  for (const char *name : {"t.safetensors", "t.npz"}) {
    std::string path = file(name);
    ASSERT_TRUE(writeTensorFile(path, {x, y}).ok());
    auto read = readTensorFile(path, onlyX);
    ASSERT_TRUE(read.ok()) << read.message();
    ASSERT_EQ(read->size(), 1u) << name;
    expectSameTensor(read->front(), x);
  }
  std::string path = file("y.npy");
  ASSERT_TRUE(writeTensorFile(path, {y}).ok());
  auto read = readTensorFile(path, onlyX);
  ASSERT_TRUE(read.ok()) << read.message();
  EXPECT_TRUE(read->empty());
}

TEST_F(NumpyTest, RejectsMembersThatAreNotArrays) {
  std::string path = file("m.npz");
  ASSERT_TRUE(
      writeNpz(path, {makeTensor<float>("x", DType::F32, {1}, {1})}).ok());
  std::string bytes = readBytes(path);
  // Rename the member "x.npy" to "x.txt" in the local and central headers.
  for (size_t at = bytes.find("x.npy"); at != std::string::npos;
       at = bytes.find("x.npy", at))
    bytes.replace(at, 5, "x.txt");
  writeBytes(path, bytes);
  expectNpzError(path, ": member 'x.txt': not a .npy array");
}

TEST_F(NumpyTest, ReadsFilesNumpyWrote) {
  SKIP_WITHOUT_NUMPY();
  ASSERT_TRUE(runPython(dir, R"(
import os, sys
import numpy as np
d = sys.argv[1]
a = np.arange(6).reshape(2, 3)
for code in ['f4', 'f8', 'i4', 'i8', 'i2', 'u2', 'u1', 'i1', 'f2', 'u4', 'u8']:
    np.save(os.path.join(d, 'np_' + code + '.npy'), a.astype(code))
np.save(os.path.join(d, 'np_b1.npy'), (a % 2).astype(bool))
np.save(os.path.join(d, 'scalar.npy'), np.float64(2.5))
np.save(os.path.join(d, 'fortran.npy'), np.asfortranarray(a.astype('f4')))
np.save(os.path.join(d, 'big.npy'), a.astype('>f4'))
for major in (2, 3):
    with open(os.path.join(d, 'v%d.npy' % major), 'wb') as f:
        np.lib.format.write_array(f, a.astype('f4'), version=(major, 0))
np.savez(os.path.join(d, 'stored.npz'), x=a.astype('f4'),
         ids=np.array([-1, 2], dtype='i8'))
np.savez_compressed(os.path.join(d, 'deflated.npz'), x=a.astype('f4'),
                    **{'enc/w': np.full((3,), 0.5, 'f8')})
)"));

  for (const NumpyType &type : kNumpyTypes) {
    std::string name = std::string("np_") + type.code;
    auto read = readNpy(file(name + ".npy"));
    ASSERT_TRUE(read.ok()) << read.message();
    expectSameTensor(*read, arangeTensor(name, type.dtype));
  }
  auto scalar = readNpy(file("scalar.npy"));
  ASSERT_TRUE(scalar.ok()) << scalar.message();
  expectSameTensor(*scalar,
                   makeTensor<double>("scalar", DType::F64, {}, {2.5}));
  for (const char *name : {"v2", "v3"}) {
    auto read = readNpy(file(std::string(name) + ".npy"));
    ASSERT_TRUE(read.ok()) << read.message();
    expectSameTensor(*read, arangeTensor(name, DType::F32));
  }

  auto fortran = readNpy(file("fortran.npy"));
  ASSERT_FALSE(fortran.ok());
  EXPECT_NE(fortran.message().find("Fortran-order arrays are not supported"),
            std::string::npos);
  auto big = readNpy(file("big.npy"));
  ASSERT_FALSE(big.ok());
  EXPECT_NE(big.message().find("'>f4' is not supported (big-endian)"),
            std::string::npos);

  auto stored = readNpz(file("stored.npz"));
  ASSERT_TRUE(stored.ok()) << stored.message();
  ASSERT_EQ(stored->size(), 2u);
  expectSameTensor((*stored)[0], arangeTensor("x", DType::F32));
  expectSameTensor((*stored)[1],
                   makeTensor<int64_t>("ids", DType::I64, {2}, {-1, 2}));

  auto deflated = readNpz(file("deflated.npz"));
  ASSERT_TRUE(deflated.ok()) << deflated.message();
  ASSERT_EQ(deflated->size(), 2u);
  expectSameTensor((*deflated)[0], arangeTensor("x", DType::F32));
  expectSameTensor((*deflated)[1], makeTensor<double>("enc/w", DType::F64, {3},
                                                      {0.5, 0.5, 0.5}));
}

TEST_F(NumpyTest, NumpyReadsFilesWeWrote) {
  SKIP_WITHOUT_NUMPY();
  for (const NumpyType &type : kNumpyTypes)
    ASSERT_TRUE(writeNpy(file(std::string("ours_") + type.code + ".npy"),
                         arangeTensor("t", type.dtype))
                    .ok());
  ASSERT_TRUE(
      writeNpz(file("ours.npz"),
               {arangeTensor("x", DType::F32),
                makeTensor<int64_t>("enc/ids", DType::I64, {2}, {-1, 2}),
                makeTensor<double>("scalar", DType::F64, {}, {2.5})})
          .ok());
  ASSERT_TRUE(runPython(dir, R"(
import os, sys
import numpy as np
d = sys.argv[1]
a = np.arange(6).reshape(2, 3)
for code in ['f4', 'f8', 'i4', 'i8', 'i2', 'u2', 'u1', 'i1', 'f2', 'u4', 'u8',
             'b1']:
    got = np.load(os.path.join(d, 'ours_' + code + '.npy'))
    want = (a % 2).astype(bool) if code == 'b1' else a.astype(code)
    assert got.dtype == want.dtype and got.shape == want.shape, code
    assert (got == want).all(), code
z = np.load(os.path.join(d, 'ours.npz'))
assert z.files == ['x', 'enc/ids', 'scalar'], z.files
assert z['x'].dtype == np.float32 and (z['x'] == a).all()
assert z['enc/ids'].dtype == np.int64 and z['enc/ids'].tolist() == [-1, 2]
assert z['scalar'].shape == () and z['scalar'] == 2.5
)")) << "numpy could not read the files (see its output above)";
}

TEST_F(NumpyTest, TensorFileDispatchesOnTheExtension) {
  std::vector<HostTensor> tensors = {arangeTensor("x", DType::F32)};
  for (const char *name : {"t.safetensors", "t.npz", "x.npy"}) {
    ASSERT_TRUE(writeTensorFile(file(name), tensors).ok()) << name;
    auto read = readTensorFile(file(name));
    ASSERT_TRUE(read.ok()) << read.message();
    ASSERT_EQ(read->size(), 1u);
    expectSameTensor(read->front(), tensors.front());
  }
  EXPECT_EQ(readBytes(file("t.npz")).substr(0, 2), "PK");
  EXPECT_EQ(readBytes(file("x.npy")).substr(1, 5), "NUMPY");

  Status s = writeTensorFile(file("two.npy"), {tensors[0], tensors[0]});
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.message(),
            file("two.npy") + ": a .npy file holds exactly one tensor, not 2");
  auto unknown = readTensorFile(file("t.bin"));
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.message(), file("t.bin") +
                                   ": unknown tensor file extension '.bin' "
                                   "(expected .safetensors, .npz or .npy)");
}

} // namespace

//===- SchemaTest.cpp - frontend/model.schema.json agrees with the parser -===//
//
// Runs validate_schema.py (Python jsonschema) over the model zoo and over the
// shared cases of ModelCases.h: every model validates, every invalid case the
// schema can express fails it (and the rest pass it, which documents exactly
// what only the parser checks).
//
//===----------------------------------------------------------------------===//

#include "frontend/ModelParser.h"

#include "test/unit/frontend/ModelCases.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

namespace mixer {
namespace {

namespace fs = std::filesystem;

const fs::path kSource = MIXER_SOURCE_DIR;

struct ScriptRun {
  int exitCode = -1;
  /// File -> "ok" or the schema's complaint.
  std::map<std::string, std::string> verdicts;
  std::string output;
};

std::string quote(const std::string &s) {
  std::string out = "'";
  for (char c : s)
    out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

ScriptRun validate(const std::vector<fs::path> &files) {
  std::string command =
      quote(MIXER_PYTHON3) + " " +
      quote((kSource / "test/unit/frontend/validate_schema.py").string()) +
      " " + quote((kSource / "frontend/model.schema.json").string());
  for (const fs::path &f : files)
    command += " " + quote(f.string());
  command += " 2>&1";
  ScriptRun run;
  FILE *pipe = popen(command.c_str(), "r");
  if (!pipe)
    return run;
  char buffer[4096];
  while (fgets(buffer, sizeof(buffer), pipe))
    run.output += buffer;
  int status = pclose(pipe);
  run.exitCode = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  size_t begin = 0;
  while (begin < run.output.size()) {
    size_t end = run.output.find('\n', begin);
    if (end == std::string::npos)
      end = run.output.size();
    std::string line = run.output.substr(begin, end - begin);
    begin = end + 1;
    if (line.rfind("ok ", 0) == 0) {
      run.verdicts[line.substr(3)] = "ok";
    } else if (line.rfind("invalid ", 0) == 0) {
      size_t colon = line.find(": ", 8);
      run.verdicts[line.substr(8, colon - 8)] = line.substr(colon + 2);
    }
  }
  return run;
}

/// Skips the test when Python or its jsonschema package is missing.
#define SKIP_WITHOUT_JSONSCHEMA(run)                                           \
  if ((run).exitCode == 3 || (run).exitCode == 127)                            \
  GTEST_SKIP() << "python3-jsonschema is not available to " MIXER_PYTHON3      \
                  " (apt-get install python3-jsonschema): "                    \
               << (run).output

TEST(SchemaTest, EveryModelValidates) {
  std::vector<fs::path> files;
  for (const auto &entry : fs::recursive_directory_iterator(kSource / "models"))
    if (entry.path().extension() == ".json")
      files.push_back(entry.path());
  ASSERT_FALSE(files.empty());
  ScriptRun run = validate(files);
  SKIP_WITHOUT_JSONSCHEMA(run);
  ASSERT_EQ(run.exitCode, 0) << run.output;
  for (const fs::path &f : files)
    EXPECT_EQ(run.verdicts[f.string()], "ok") << f;
}

class SchemaCasesTest : public testing::Test {
protected:
  void SetUp() override {
    dir = fs::path(testing::TempDir()) /
          ("mixer-schema-test-" + std::to_string(getpid()));
    fs::create_directories(dir);
  }
  void TearDown() override { fs::remove_all(dir); }

  fs::path write(const std::string &name, const std::string &text) {
    fs::path p = dir / (name + ".json");
    std::ofstream(p) << text;
    return p;
  }

  fs::path dir;
};

TEST_F(SchemaCasesTest, InvalidCasesFailSchemaWhereExpressible) {
  std::vector<fs::path> files;
  std::vector<const test::InvalidCase *> cases;
  for (const test::InvalidCase &c : test::kInvalidCases) {
    // The parser rejects every case; ModelParserTest checks the messages.
    EXPECT_FALSE(parseModelText(c.text, "m.json").ok()) << c.name;
    if (c.schema == test::SchemaVerdict::NotJson)
      continue;
    files.push_back(write(c.name, c.text));
    cases.push_back(&c);
  }
  ScriptRun run = validate(files);
  SKIP_WITHOUT_JSONSCHEMA(run);
  ASSERT_EQ(run.exitCode, 0) << run.output;
  for (size_t i = 0; i < files.size(); ++i) {
    const std::string &verdict = run.verdicts[files[i].string()];
    ASSERT_FALSE(verdict.empty()) << cases[i]->name << "\n" << run.output;
    if (cases[i]->schema == test::SchemaVerdict::Rejects)
      EXPECT_NE(verdict, "ok") << cases[i]->name;
    else
      EXPECT_EQ(verdict, "ok") << cases[i]->name;
  }
}

TEST_F(SchemaCasesTest, ValidCasesPassSchema) {
  std::vector<fs::path> files;
  for (const test::ValidCase &c : test::kValidCases)
    files.push_back(write(c.name, c.text));
  ScriptRun run = validate(files);
  SKIP_WITHOUT_JSONSCHEMA(run);
  ASSERT_EQ(run.exitCode, 0) << run.output;
  for (const fs::path &f : files)
    EXPECT_EQ(run.verdicts[f.string()], "ok") << f;
}

} // namespace
} // namespace mixer

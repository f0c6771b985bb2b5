//===- ModelJsonFuzzer.cpp - Fuzzes the model JSON parser -----------------===//
//
// The input is a model description; parseModelText must accept it or name
// the file in its diagnostics.
//
//===----------------------------------------------------------------------===//

#include "frontend/ModelParser.h"
#include "test/fuzz/FuzzSupport.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const std::string fileName = "model.json";
  auto model = mixer::parseModelText(
      std::string(reinterpret_cast<const char *>(data), size), fileName);
  if (!model)
    mixer::fuzz::checkErrorNames(fileName, model.message());
  return 0;
}

// Replays the fuzz corpora and the crashers found while fuzzing (issue 6,
// item 4) through the fuzz targets' own bodies, so every normal build checks
// that none of them crashes or breaks an invariant again.
#include <algorithm>
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <string>
#include <vector>

#include "config/yaml_doc.h"
#include "fuzz/fuzz_bodies.h"

namespace fs = std::filesystem;

namespace {

const fs::path kFuzzDir = fs::path(STACKFLIP_SOURCE_DIR) / "tests" / "fuzz";

std::vector<fs::path> files_in(const fs::path& dir) {
  std::vector<fs::path> out;
  if (fs::is_directory(dir))
    for (const auto& e : fs::directory_iterator(dir))
      if (e.is_regular_file() && e.path().filename().string()[0] != '.') out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

std::string read_all(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

using Body = std::string (*)(const uint8_t*, size_t);

void replay(const fs::path& file, Body body) {
  const std::string bytes = read_all(file);
  INFO(file.string());
  CHECK(body(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()) == "");
}

}  // namespace

TEST_CASE("issue 6: the loader fuzz corpus loads without crash and keeps its invariants") {
  const auto files = files_in(kFuzzDir / "corpus" / "loader");
  CHECK(files.size() > 10);
  for (const auto& f : files) replay(f, stackflip::fuzz::loader_body);
}

TEST_CASE("issue 6: the snapshot fuzz corpus parses without crash and round-trips") {
  const auto files = files_in(kFuzzDir / "corpus" / "snapshot");
  CHECK(files.size() > 5);
  for (const auto& f : files) replay(f, stackflip::fuzz::snapshot_body);
}

TEST_CASE("issue 6: inputs that once crashed a fuzzer are handled") {
  // Counted, so that a moved or emptied folder fails instead of passing with
  // nothing replayed (issue 12). Add a crasher: raise its count here.
  const std::map<std::string, size_t> kCrashers = {{"loader", 4}, {"snapshot", 2}};
  for (const auto& [target, count] : kCrashers) {
    const auto files = files_in(kFuzzDir / "crashers" / target);
    INFO(target);
    CHECK(files.size() == count);
    for (const auto& f : files)
      replay(f, target == "loader" ? stackflip::fuzz::loader_body : stackflip::fuzz::snapshot_body);
  }
}

TEST_CASE("issue 6: nested aliases (billion laughs) are refused, not expanded") {
  for (const char* name : {"loader/billion-laughs.yaml", "snapshot/billion-laughs.json"}) {
    INFO(name);
    auto doc = stackflip::parse_yaml_document(name, read_all(kFuzzDir / "crashers" / name));
    REQUIRE_FALSE(doc.ok());
    CHECK(doc.error().message.find("aliases expand to too many values") != std::string::npos);
  }
  // Ordinary use of anchors stays fine.
  auto ok = stackflip::parse_yaml_document("a.yaml", "base: &b {x: 1}\nuse: [*b, *b, *b]\n");
  REQUIRE(ok.ok());
  CHECK(ok->json["use"].Size() == 3);
}

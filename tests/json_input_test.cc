// json_input_test — hostile JSON is refused with a message, never a crash
// (issue 10, item 3).
#include "util/json_input.h"

#include <rapidjson/document.h>

#include <catch2/catch.hpp>
#include <string>

using namespace stackflip;

namespace {

std::string nested(int levels, char open = '[', char close = ']') {
  return std::string(levels, open) + std::string(levels, close);
}

}  // namespace

TEST_CASE("issue 10: 200,000 open brackets are refused at the depth limit, not a stack overflow") {
  rapidjson::Document doc;
  auto e = parse_json_input(std::string(200000, '['), doc);
  REQUIRE(e);
  CHECK(e->what == "nesting deeper than 64 levels (the limit for JSON input)");
  CHECK(e->offset == 64);  // the 65th bracket
  CHECK(e->message() == "offset 64: nesting deeper than 64 levels (the limit for JSON input)");
  CHECK(doc.IsNull());
}

TEST_CASE("issue 10: nesting up to the limit is read, one more level is refused") {
  rapidjson::Document doc;
  CHECK_FALSE(parse_json_input(nested(kMaxJsonDepth), doc));
  CHECK(doc.IsArray());
  CHECK(parse_json_input(nested(kMaxJsonDepth + 1), doc));
  std::string objects;
  for (int i = 0; i < kMaxJsonDepth + 1; ++i) objects += "{\"a\":";
  objects += "1" + std::string(kMaxJsonDepth + 1, '}');
  auto e = parse_json_input(objects, doc);
  REQUIRE(e);
  CHECK(e->what.find("nesting deeper than 64") == 0);
  CHECK(parse_json_input(nested(3), doc, JsonLimits{1 << 20, 2, false}));
  CHECK_FALSE(parse_json_input(nested(2), doc, JsonLimits{1 << 20, 2, false}));
}

TEST_CASE("issue 10: a document over the size cap is refused before it is read") {
  rapidjson::Document doc;
  std::string big = "[\"" + std::string(100, 'x') + "\"]";
  auto e = parse_json_input(big, doc, JsonLimits{64, kMaxJsonDepth, false});
  REQUIRE(e);
  CHECK(e->what == "larger than the 64 bytes limit (104 bytes)");
  CHECK_FALSE(parse_json_input(big, doc, JsonLimits{104, kMaxJsonDepth, false}));
  CHECK(format_byte_size(size_t{8} << 20) == "8 MiB");
  CHECK(format_byte_size(1536) == "1536 bytes");
}

TEST_CASE("syntax errors carry RapidJSON's reason and the byte offset") {
  rapidjson::Document doc;
  auto e = parse_json_input("{\"a\": [1, 2 3]}", doc);
  REQUIRE(e);
  CHECK(e->offset == 12);
  CHECK(e->what == "Missing a comma or ']' after an array element.");
  CHECK(parse_json_input("", doc));
  CHECK(parse_json_input("{} x", doc));
}

TEST_CASE("values read through the depth cap are the ones RapidJSON's own parse gives") {
  const char* text =
      R"({"s":"h\u00e9\n","i":-3,"u":4000000000,"big":-9000000000,"d":1.5,"t":true,"n":null,)"
      R"("a":[[],{},[1,{"k":"v"}]]})";
  rapidjson::Document mine, theirs;
  REQUIRE_FALSE(parse_json_input(text, mine));
  theirs.Parse(text);
  CHECK(mine == theirs);
  CHECK(std::string(mine["s"].GetString()) == "h\xC3\xA9\n");
}

TEST_CASE("trailing commas only when asked for") {
  rapidjson::Document doc;
  CHECK(parse_json_input("[1,2,]", doc));
  CHECK_FALSE(parse_json_input("{\"a\":[1,2,],}", doc, JsonLimits{1 << 20, 8, true}));
  CHECK(doc["a"].Size() == 2);
}

#include "util/json_input.h"

#include <rapidjson/encodedstream.h>
#include <rapidjson/error/en.h>
#include <rapidjson/memorystream.h>
#include <rapidjson/reader.h>

namespace stackflip {

namespace {

namespace rj = rapidjson;

// Forwards every event to the document being built and stops the reader
// (returns false, kParseErrorTermination) when a container would open past
// the limit.
class DepthCap {
 public:
  DepthCap(rj::Document& out, int max_depth) : out_(out), max_depth_(max_depth) {}
  bool exceeded() const { return exceeded_; }

  bool Null() { return out_.Null(); }
  bool Bool(bool b) { return out_.Bool(b); }
  bool Int(int i) { return out_.Int(i); }
  bool Uint(unsigned u) { return out_.Uint(u); }
  bool Int64(int64_t i) { return out_.Int64(i); }
  bool Uint64(uint64_t u) { return out_.Uint64(u); }
  bool Double(double d) { return out_.Double(d); }
  bool RawNumber(const char* s, rj::SizeType n, bool copy) { return out_.RawNumber(s, n, copy); }
  bool String(const char* s, rj::SizeType n, bool copy) { return out_.String(s, n, copy); }
  bool Key(const char* s, rj::SizeType n, bool copy) { return out_.Key(s, n, copy); }
  bool StartObject() { return open() && out_.StartObject(); }
  bool EndObject(rj::SizeType n) { return --depth_, out_.EndObject(n); }
  bool StartArray() { return open() && out_.StartArray(); }
  bool EndArray(rj::SizeType n) { return --depth_, out_.EndArray(n); }

 private:
  bool open() {
    if (++depth_ <= max_depth_) return true;
    exceeded_ = true;
    return false;
  }
  rj::Document& out_;
  int max_depth_;
  int depth_ = 0;
  bool exceeded_ = false;
};

template <unsigned kFlags>
rj::ParseResult read(std::string_view text, rj::Document& doc, DepthCap& cap) {
  rj::ParseResult result;
  auto generate = [&](rj::Document&) {
    rj::MemoryStream ms(text.data(), text.size());
    rj::EncodedInputStream<rj::UTF8<>, rj::MemoryStream> in(ms);
    rj::Reader reader;
    result = reader.Parse<kFlags | rj::kParseIterativeFlag>(in, cap);
    return !result.IsError();
  };
  doc.Populate(generate);
  return result;
}

}  // namespace

std::string JsonInputError::message() const {
  return "offset " + std::to_string(offset) + ": " + what;
}

std::string format_byte_size(size_t bytes) {
  if (bytes >= (size_t{1} << 20) && bytes % (size_t{1} << 20) == 0)
    return std::to_string(bytes >> 20) + " MiB";
  if (bytes >= (size_t{1} << 10) && bytes % (size_t{1} << 10) == 0)
    return std::to_string(bytes >> 10) + " KiB";
  return std::to_string(bytes) + " bytes";
}

std::optional<JsonInputError> parse_json_input(std::string_view text, rj::Document& doc,
                                               const JsonLimits& limits) {
  doc.SetNull();
  if (text.size() > limits.max_bytes)
    return JsonInputError{limits.max_bytes, "larger than the " +
                                                format_byte_size(limits.max_bytes) + " limit (" +
                                                std::to_string(text.size()) + " bytes)"};
  DepthCap cap(doc, limits.max_depth);
  rj::ParseResult r = limits.trailing_commas ? read<rj::kParseTrailingCommasFlag>(text, doc, cap)
                                             : read<rj::kParseNoFlags>(text, doc, cap);
  if (!r.IsError()) return std::nullopt;
  doc.SetNull();
  if (cap.exceeded())
    return JsonInputError{r.Offset(), "nesting deeper than " + std::to_string(limits.max_depth) +
                                          " levels (the limit for JSON input)"};
  return JsonInputError{r.Offset(), rj::GetParseError_En(r.Code())};
}

}  // namespace stackflip

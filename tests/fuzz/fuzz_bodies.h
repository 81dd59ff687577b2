// fuzz_bodies.h — what one fuzz input exercises, shared by the libFuzzer
// targets (loader_fuzz.cc, snapshot_fuzz.cc) and the corpus regression test
// (tests/fuzz_corpus_test.cc) so CI replays the corpus through the same code.
//
// Each body returns "" when the input was handled and every invariant held,
// else a description of the broken invariant. A crash, sanitizer report or
// uncaught exception is not caught here: the fuzzer and the test see it as is.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "config/diagnostics.h"
#include "config/loader.h"
#include "config/snapshot.h"

namespace stackflip::fuzz {

// YAML -> schema -> model. A result has a DesiredState exactly when it has no
// errors; every diagnostic names the file and formats to a non-empty line.
inline std::string loader_body(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  LoadResult r = load_desired_text("fuzz.yaml", text);
  if (r.desired.has_value() == !r.errors.empty())
    return r.desired ? "a DesiredState together with errors" : "no DesiredState and no error";
  for (const Diagnostic& d : r.errors) {
    if (d.mark.file != "fuzz.yaml") return "a diagnostic names file '" + d.mark.file + "'";
    if (d.message.empty()) return "a diagnostic without a message";
    if (format_diagnostic(d).rfind("fuzz.yaml:", 0) != 0)
      return "a diagnostic formats without its file";
  }
  std::string all = format_diagnostics(r.errors);
  if (r.errors.empty() != all.empty()) return "format_diagnostics lost the diagnostics";
  return "";
}

// Snapshot reader. When a snapshot parses, its canonical JSON must parse back
// to the same observed digest and the same canonical text (a fixpoint), and
// the pretty form must read back to the same digest too.
inline std::string snapshot_body(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  Result<ObservedState> r = parse_snapshot("fuzz.json", text);
  if (!r.ok()) return r.error().message.empty() ? "an error without a message" : "";
  const std::string canonical = snapshot_to_json(*r);
  const std::string digest = observed_digest(*r);
  Result<ObservedState> back = parse_snapshot("canonical.json", canonical);
  if (!back.ok())
    return "the canonical form does not parse: " + back.error().message + "\n" + canonical;
  if (observed_digest(*back) != digest)
    return "the canonical form has another digest:\n" + canonical;
  if (snapshot_to_json(*back) != canonical)
    return "the canonical form is not a fixpoint:\n" + canonical;
  Result<ObservedState> pretty = parse_snapshot("pretty.json", snapshot_to_json(*r, true));
  if (!pretty.ok()) return "the pretty form does not parse: " + pretty.error().message;
  if (observed_digest(*pretty) != digest) return "the pretty form has another digest";
  return "";
}

}  // namespace stackflip::fuzz

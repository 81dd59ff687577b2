// init_config.h — the pure half of `stackflip init` (init.h): what was
// observed of an existing pair → the text of a first stackflip.yaml, and
// what the operator must decide before committing it.
//
// The rule it follows: adopting a pair changes nothing. The config names the
// observed primary `active:`, states what differs from stackflip's defaults
// where the difference is harmless (a standby observed out of maintenance
// gets `maintenance: false`, the record's observed TTL is written), and marks
// with a `# DECIDE:` comment everything it could not settle from the facts
// (two primaries or none, a replica of a server not given, a record holding
// an address of no stack, a server or PowerDNS that did not answer, a zone
// not found). Then it loads its own text with the real loader and plans it
// against the same observation: a config that does not load is an error (a
// bug here), and any action the first plan would take that no DECIDE note
// explains becomes one, so "no decisions" always means "No changes".
//
// Every value that came from outside (flags, a server's answer, a DNS
// record's content, an error message) is written as a double-quoted YAML
// scalar with every byte outside printable ASCII escaped, or, in comments,
// with control and non-ASCII bytes as \xHH and its length bounded: the
// output is valid YAML that means what it says, whatever the input.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "config/diagnostics.h"
#include "core/model.h"

namespace stackflip {

// The modeline's default: the schema's own id.
constexpr const char* kInitSchemaUrl = "https://stackflip.dev/schema/stackflip.schema.json";

// One server given with --postgres, as it will be written, and what was seen.
struct InitStack {
  std::string name;          // matches the schema's name pattern; unique
  std::string dsn;           // without a password
  std::string password;      // a secret reference from the DSN, or ""
  std::string address;       // the stack's traffic address
  std::string address_from;  // how it was found, for a comment ("the DSN's host")
  StackObs obs;              // upstream names another InitStack
  bool observed = false;     // false: obs is empty (the config to observe with)
};

// Everything the config is written from.
struct InitFacts {
  std::string schema = kInitSchemaUrl;
  std::string group;
  std::string powerdns_url, api_key, password;  // password: the provider's reference or ""
  std::string record, record_type = "A";        // absolute name
  std::string zone;                             // absolute; found or guessed
  std::string zone_problem;                     // why `zone` is a guess; "" when found or given
  std::vector<InitStack> stacks;
  TrafficObs traffic;  // the record; records' `stack` name an InitStack
  bool traffic_observed = false;
  std::string observed_at;  // RFC 3339, for the header comment
};

struct InitOutput {
  std::string yaml;
  std::string active;
  // What the operator must decide, one sentence each (also in the YAML as
  // `# DECIDE:` comments); empty when the config adopts the pair as it is.
  std::vector<std::string> decide;
  // The actions the first plan would take ("maintenance.on standby: why").
  std::vector<std::string> first_plan;
  // The loaded config; absent, with `errors`, when the text does not load.
  std::optional<DesiredState> desired;
  std::vector<Diagnostic> errors;
};

// The config for `facts`. Pure but for the host policy, when one is
// installed: the loader checks the text against it (host_policy.h).
InitOutput write_init_config(const InitFacts& facts);

// The observation `facts` hold, in the shape plan reads (group facts.group).
ObservedState init_observation(const InitFacts& facts);

// --- helpers, exposed for tests

// `text` as a YAML double-quoted scalar: ASCII only (\", \\, \n, \xHH,
// \uXXXX, \UXXXXXXXX); invalid UTF-8 bytes become U+FFFD.
std::string yaml_quote(const std::string& text);
// `text` safe inside a `#` comment: printable ASCII kept, everything else
// \xHH, at most `max` bytes of input ("..." when cut).
std::string comment_safe(const std::string& text, size_t max = 240);
// A name (stack or group) as a mapping key or value: bare when YAML reads it
// as that string, quoted otherwise ("127-0-0-1", "null", "1e3" are quoted).
std::string yaml_name(const std::string& name);

}  // namespace stackflip

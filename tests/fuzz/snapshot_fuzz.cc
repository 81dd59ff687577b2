// libFuzzer target: the snapshot body of fuzz_bodies.h; a broken invariant aborts.
#include <cstdio>
#include <cstdlib>

#include "fuzz_bodies.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string broken = stackflip::fuzz::snapshot_body(data, size);
  if (!broken.empty()) {
    std::fprintf(stderr, "invariant broken: %s\n", broken.c_str());
    std::abort();
  }
  return 0;
}

#include <sys/stat.h>

#include "cli.h"

// Everything stackflip writes (the state store and its lock, the Git cache
// with its credential URL, saved plans, logs) is for its own user only:
// umask 077 before anything is created (issue 10). Existing files keep
// their modes. Child processes inherit it.
int main(int argc, char** argv) {
  umask(077);
  return stackflip::run_cli(argc, argv);
}

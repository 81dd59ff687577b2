// cli.h — the stackflip command line (DESIGN.md "CLI"): a table of
// subcommands, each a function of parsed options returning the exit code.
// Expected failures reach here as Fatal and become a message and exit 1.
#pragma once

#include <functional>
#include <string>

namespace CLI {
class App;
}

namespace stackflip {

int run_cli(int argc, char** argv);

// What `stackflip --version` prints: "stackflip 0.1.0 (commit 0123456789ab)",
// "-dirty" appended when the tree it was built from had uncommitted changes,
// "unknown" when it was not built from a Git checkout.
std::string version_line();

// Builds the command table exactly as run_cli() does and hands it to `visit`:
// the man page and the bash completion are generated from it
// (reconciler/doc/docgen.cc), so they list what --help lists.
void visit_cli(const std::function<void(const CLI::App&)>& visit);

}  // namespace stackflip

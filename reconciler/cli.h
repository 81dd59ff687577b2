// cli.h — the stackflip command line (DESIGN.md "CLI"): a table of
// subcommands, each a function of parsed options returning the exit code.
// Expected failures reach here as Fatal and become a message and exit 1.
#pragma once

namespace stackflip {

int run_cli(int argc, char** argv);

}  // namespace stackflip

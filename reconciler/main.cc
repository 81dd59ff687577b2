#include "cli.h"

int main(int argc, char** argv) { return stackflip::run_cli(argc, argv); }

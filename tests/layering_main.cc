// The layering check (ARCHITECTURE.md): tests/CMakeLists.txt links each of
// stackflip's libraries whole into an empty program together with only the
// libraries it may use. A call that crosses the layering the wrong way (the
// planner reaching for libcurl, a driver for the state store) is an undefined
// reference, and the build fails.
int main() { return 0; }

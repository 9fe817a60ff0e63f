// Writing outputs the way build tools expect: a regular file atomically
// (temporary file in the same folder, then rename), so a failing or
// interrupted run never leaves a partial file and a reader never sees half a
// file; through a symbolic link to its target; in place into a FIFO or a
// device node (`-o /dev/stdout` works); "-" means standard output.
#pragma once

#include <string>
#include <vector>

namespace ncd {

bool write_output(const std::string &path, const std::string &content, std::string &error);

// A Makefile rule `target: dep dep ...` with a phony rule per dependency, as
// `gcc -MD -MP` writes, so deleting an imported file does not break `make`.
std::string make_dependency_file(const std::string &target, const std::vector<std::string> &dependencies);

}  // namespace ncd

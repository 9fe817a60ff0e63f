// Search paths given as a colon-separated list (NCD_PATH, NCD_PLUGIN_PATH),
// read the way PATH is, except that empty entries are skipped rather than
// meaning the current folder.
#pragma once

#include <string>
#include <vector>

namespace ncd {

inline void append_path_list(const std::string &list, std::vector<std::string> &out) {
  size_t start = 0;
  while (start <= list.size()) {
    size_t end = list.find(':', start);
    if (end == std::string::npos) end = list.size();
    if (end > start) out.push_back(list.substr(start, end - start));
    start = end + 1;
  }
}

}  // namespace ncd

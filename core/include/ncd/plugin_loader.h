// Finding and loading plugins.
//
// Plugins are shared libraries named `ncd-plugin-*.so` (or any .so given by
// --plugin FILE) found, in order, in the build tree's plugin folder, the
// install's `<prefix>/lib/ncd/plugins`, and each folder of NCD_PLUGIN_PATH.
// Loading uses dlopen(RTLD_NOW | RTLD_LOCAL). Every failure (missing file, no
// entry point, wrong API version, duplicate name, a failing register callback)
// is an error naming the file; nothing is half-registered.
#pragma once

#include <string>
#include <vector>

#include "ncd/registry.h"

namespace ncd {

// The folders searched for plugins, in order.
std::vector<std::string> plugin_search_path();

// Loads one plugin file into `registry`; returns false with `error` set.
bool load_plugin(const std::string &path, Registry &registry, std::string &error);

// Loads every plugin found on the search path plus `extra` files; collects
// every error (loading continues past a bad plugin). Returns true when none failed.
bool load_plugins(Registry &registry, const std::vector<std::string> &extra, std::vector<std::string> &errors);

}  // namespace ncd

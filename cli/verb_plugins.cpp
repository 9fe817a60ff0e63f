// `ncd plugins [--json]`: what is loaded, from which file, providing what.
#include <iostream>
#include <nlohmann/json.hpp>

#include "common.h"
#include "ncd/plugin.h"
#include "verbs.h"

namespace ncd::cli {

Handler setup_plugins(CLI::App &command) {
  struct Options {
    bool json = false;
    std::vector<std::string> plugins;
  };
  auto options = std::make_shared<Options>();
  command.add_flag("--json", options->json, "Print as JSON");
  command.add_option("--plugin", options->plugins, "Load this plugin (a shared library) too")->type_name("FILE");
  return [options]() -> int {
    Registry *registry = load_registry(options->plugins);
    if (!registry) return kUserError;
    if (options->json) {
      nlohmann::json out{{"api_version", NCD_PLUGIN_API_VERSION}, {"plugins", nlohmann::json::array()}};
      for (const PluginRecord &plugin : registry->plugins()) {
        nlohmann::json provides = nlohmann::json::array();
        for (const auto &[kind, name] : plugin.provides) provides.push_back({{"kind", kind}, {"name", name}});
        out["plugins"].push_back({{"name", plugin.name},
                                  {"version", plugin.version},
                                  {"description", plugin.description},
                                  {"file", plugin.file},
                                  {"provides", provides}});
      }
      std::cout << out.dump(2) << "\n";
      return kSuccess;
    }
    std::cout << "plugin API version " << NCD_PLUGIN_API_VERSION << "\n";
    if (registry->plugins().empty()) std::cout << "no plugins loaded\n";
    for (const PluginRecord &plugin : registry->plugins()) {
      std::cout << plugin.name << " " << plugin.version << "  " << plugin.file << "\n";
      for (const auto &[kind, name] : plugin.provides) std::cout << "  " << kind << " " << name << "\n";
    }
    return kSuccess;
  };
}

}  // namespace ncd::cli

// The plugin ABI: how a shared library adds passes, renderers and backends.
//
// A plugin exports one C function, `ncd_plugin_entry`, returning a pointer to
// a static NcdPluginInfo. The loader checks `api_version` against
// NCD_PLUGIN_API_VERSION before touching anything else, then calls
// `register_plugin` with the registry. Plugins are C++ and compiled against
// these SDK headers with the same compiler family; the version integer is
// what keeps a stale plugin from being called through a changed interface.
//
// Rule: bump NCD_PLUGIN_API_VERSION whenever NcdPluginInfo, the Registry, the
// Pass/Renderer/Backend interfaces, any IR type they expose, or the op table
// (ncd/ops.h) changes layout or meaning (see docs/PLUGINS.md).
#pragma once

#define NCD_PLUGIN_API_VERSION 16
#define NCD_PLUGIN_ENTRY_SYMBOL "ncd_plugin_entry"

namespace ncd {
class Registry;
}

extern "C" {

struct NcdPluginInfo {
  int api_version;        // NCD_PLUGIN_API_VERSION at the plugin's build
  const char *name;       // unique among loaded plugins, e.g. "render-svg"
  const char *version;    // the plugin's own version, e.g. "1.0.0"
  const char *description;
  // Adds the plugin's passes, renderers and backends; returns 0 on success.
  int (*register_plugin)(ncd::Registry *registry);
};

typedef const NcdPluginInfo *(*NcdPluginEntry)(void);
}

// Defines the entry point. Use once per plugin:
//   NCD_PLUGIN(render_svg, "render-svg", "1.0.0", "SVG diagrams", register_fn)
#define NCD_PLUGIN(ID, NAME, VERSION, DESCRIPTION, REGISTER)                                \
  extern "C" __attribute__((visibility("default"))) const NcdPluginInfo *ncd_plugin_entry() { \
    static const NcdPluginInfo info{NCD_PLUGIN_API_VERSION, NAME, VERSION, DESCRIPTION, REGISTER}; \
    return &info;                                                                            \
  }

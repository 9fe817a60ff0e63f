// Registry: named passes, renderers and backends, with their origins.
#include "ncd/registry.h"

namespace ncd {

void Registry::begin_plugin(PluginRecord record) {
  current_ = std::move(record);
  loading_ = true;
  // A refused registration fails the plugin even when its callback ignores the refusal.
  last_error_.clear();
}

void Registry::end_plugin() {
  plugins_.push_back(current_);
  loading_ = false;
}

void Registry::abandon_plugin() {
  // Remove whatever the failed plugin managed to register.
  for (const auto &[kind, name] : current_.provides) {
    if (kind == "pass") passes_.erase(name);
    if (kind == "renderer") renderers_.erase(name);
    if (kind == "backend") backends_.erase(name);
    if (kind == "importer") importers_.erase(name);
    origin_.erase({kind, name});
  }
  loading_ = false;
}

bool Registry::claim(const std::string &kind, const std::string &name) {
  std::string from = loading_ ? current_.name : "ncd";
  auto key = std::make_pair(kind, name);
  auto it = origin_.find(key);
  if (it != origin_.end() && loading_ && it->second == from) {
    last_error_ = "duplicate " + kind + " '" + name + "': plugin '" + from + "' registers it twice";
    return false;
  }
  if (it != origin_.end()) {
    last_error_ = "duplicate " + kind + " '" + name + "': plugin '" + from + "' registers it, but plugin '" +
                  it->second + "' already did";
    return false;
  }
  if (name.empty()) {
    last_error_ = "plugin '" + from + "' registers a " + kind + " with an empty name";
    return false;
  }
  origin_[key] = from;
  if (loading_) current_.provides.push_back(key);
  return true;
}

bool Registry::add_pass(std::unique_ptr<Pass> pass) {
  if (!pass || !claim("pass", pass->name())) return false;
  std::string name = pass->name();
  passes_[name] = std::move(pass);
  return true;
}

bool Registry::add_renderer(std::unique_ptr<Renderer> renderer) {
  if (!renderer || !claim("renderer", renderer->name())) return false;
  std::string name = renderer->name();
  renderers_[name] = std::move(renderer);
  return true;
}

bool Registry::add_backend(std::unique_ptr<Backend> backend) {
  if (!backend || !claim("backend", backend->name())) return false;
  std::string name = backend->name();
  backends_[name] = std::move(backend);
  return true;
}

bool Registry::add_importer(std::unique_ptr<Importer> importer) {
  if (!importer || !claim("importer", importer->name())) return false;
  std::string name = importer->name();
  importers_[name] = std::move(importer);
  return true;
}

template <typename Map>
static auto *find_in(const Map &map, const std::string &name) {
  auto it = map.find(name);
  return it == map.end() ? nullptr : it->second.get();
}

Pass *Registry::pass(const std::string &name) const { return find_in(passes_, name); }
const Renderer *Registry::renderer(const std::string &name) const { return find_in(renderers_, name); }
const Backend *Registry::backend(const std::string &name) const { return find_in(backends_, name); }
const Importer *Registry::importer(const std::string &name) const { return find_in(importers_, name); }

const Importer *Registry::importer_for(const std::string &path) const {
  for (const auto &[name, importer] : importers_)
    for (const std::string &ending : importer->extensions())
      if (path.size() >= ending.size() && path.compare(path.size() - ending.size(), ending.size(), ending) == 0)
        return importer.get();
  return nullptr;
}

const Backend *Registry::planner_for(const HardwareProfile &hardware) const {
  for (const auto &[name, backend] : backends_)
    if (backend->plans_for(hardware)) return backend.get();
  return nullptr;
}

const Renderer *Registry::renderer_for_format(const std::string &format) const {
  // Prefer the renderer named after the format (svg for svg, dot for dot).
  if (auto *exact = renderer(format))
    for (const auto &supported : exact->formats())
      if (supported == format) return exact;
  for (const auto &[name, candidate] : renderers_)
    for (const auto &supported : candidate->formats())
      if (supported == format) return candidate.get();
  return nullptr;
}

template <typename Map>
static std::vector<std::string> names_of(const Map &map) {
  std::vector<std::string> out;
  for (const auto &[name, value] : map) out.push_back(name);
  return out;
}

std::vector<std::string> Registry::pass_names() const { return names_of(passes_); }
std::vector<std::string> Registry::renderer_names() const { return names_of(renderers_); }
std::vector<std::string> Registry::backend_names() const { return names_of(backends_); }
std::vector<std::string> Registry::importer_names() const { return names_of(importers_); }

std::string Registry::describe_miss(const std::string &kind, const std::string &name) const {
  std::vector<std::string> known = kind == "pass"       ? pass_names()
                                   : kind == "renderer" ? renderer_names()
                                   : kind == "importer" ? importer_names()
                                                        : backend_names();
  std::string suggestion = did_you_mean(name, known);  // "; did you mean 'x'?" or ""
  std::string out = "unknown " + kind + " '" + name + "'" + suggestion;
  if (known.empty()) return out + "; no " + kind + " plugins are loaded (see `ncd plugins`)";
  out += suggestion.empty() ? "; known: " : " known: ";
  for (size_t i = 0; i < known.size(); ++i) out += (i ? ", " : "") + known[i];
  return out;
}

}  // namespace ncd

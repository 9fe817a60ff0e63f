// Plugin discovery and loading through dlopen.
#include "ncd/plugin_loader.h"

#include <dlfcn.h>
#include <elf.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <vector>

#include "../support/path_list.h"
#include "ncd/plugin.h"

#ifndef NCD_INSTALL_PLUGIN_SUBDIR
#define NCD_INSTALL_PLUGIN_SUBDIR "lib/ncd/plugins"  // <prefix>-relative; CMake passes ${CMAKE_INSTALL_LIBDIR}/ncd/plugins
#endif

namespace fs = std::filesystem;

namespace ncd {

std::vector<std::string> plugin_search_path() {
  std::vector<std::string> out;
  std::error_code code;
  fs::path self = fs::read_symlink("/proc/self/exe", code);
  // A build tree's binary finds the plugins built beside it; an installed one finds <prefix>/lib/ncd/plugins.
  if (!code) {
    fs::path beside = self.parent_path().parent_path() / "plugins";
    if (fs::is_directory(beside, code)) out.push_back(beside.string());
    fs::path installed = self.parent_path().parent_path() / NCD_INSTALL_PLUGIN_SUBDIR;
    if (fs::is_directory(installed, code)) out.push_back(installed.string());
    fs::path plain = self.parent_path().parent_path() / "lib" / "ncd" / "plugins";
    if (plain != installed && fs::is_directory(plain, code)) out.push_back(plain.string());
  }
  if (const char *env = std::getenv("NCD_PLUGIN_PATH")) append_path_list(env, out);
  return out;
}

namespace {

// dlopen maps a library's segments without checking that the file holds them:
// a truncated library dies of SIGBUS inside the loader. So the ELF header and
// every loadable segment are checked against the file's size first.
bool check_elf(const std::string &path, std::string &error) {
  auto refuse = [&](const std::string &why) {
    error = "cannot load plugin '" + path + "': " + why;
    return false;
  };
  std::ifstream in(path, std::ios::binary);
  if (!in) return refuse(std::strerror(errno));
  std::error_code code;
  if (!fs::is_regular_file(path, code)) return refuse("not a regular file");
  uint64_t size = fs::file_size(path, code);
  if (code) return refuse(code.message());
  Elf64_Ehdr header{};
  if (size < sizeof header || !in.read(reinterpret_cast<char *>(&header), sizeof header) ||
      std::memcmp(header.e_ident, ELFMAG, SELFMAG) != 0)
    return refuse("not an ELF shared library");
  if (header.e_ident[EI_CLASS] != ELFCLASS64 || header.e_ident[EI_DATA] != ELFDATA2LSB || header.e_type != ET_DYN)
    return refuse("not a 64-bit little-endian ELF shared library");
  if (header.e_phentsize != sizeof(Elf64_Phdr) || header.e_phoff > size ||
      uint64_t(header.e_phnum) * sizeof(Elf64_Phdr) > size - header.e_phoff)
    return refuse("truncated or corrupt ELF file (program headers past its end)");
  std::vector<Elf64_Phdr> segments(header.e_phnum);
  in.seekg(static_cast<std::streamoff>(header.e_phoff));
  if (!in.read(reinterpret_cast<char *>(segments.data()), static_cast<std::streamsize>(segments.size() * sizeof(Elf64_Phdr))))
    return refuse("truncated or corrupt ELF file (program headers unreadable)");
  for (const auto &segment : segments)
    if (segment.p_type == PT_LOAD && (segment.p_offset > size || segment.p_filesz > size - segment.p_offset))
      return refuse("truncated ELF file (" + std::to_string(size) + " bytes; a segment needs " +
                    std::to_string(segment.p_offset + segment.p_filesz) + ")");
  return true;
}

}  // namespace

bool load_plugin(const std::string &path, Registry &registry, std::string &error) {
  std::error_code code;
  if (!fs::exists(path, code)) {
    error = "cannot load plugin '" + path + "': no such file";
    return false;
  }
  if (!check_elf(path, error)) return false;
  void *handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!handle) {
    const char *reason = dlerror();
    error = "cannot load plugin '" + path + "': " + (reason ? reason : "unknown dlopen error");
    return false;
  }
  dlerror();
  auto entry = reinterpret_cast<NcdPluginEntry>(dlsym(handle, NCD_PLUGIN_ENTRY_SYMBOL));
  if (!entry) {
    error = "plugin '" + path + "' has no entry point '" NCD_PLUGIN_ENTRY_SYMBOL "' (is it an ncd plugin?)";
    dlclose(handle);
    return false;
  }
  const NcdPluginInfo *info = entry();
  if (!info) {
    error = "plugin '" + path + "': its entry point returned no plugin information";
    dlclose(handle);
    return false;
  }
  if (info->api_version != NCD_PLUGIN_API_VERSION) {
    error = "plugin '" + path + "' was built for plugin API version " + std::to_string(info->api_version) +
            ", but this ncd supports version " + std::to_string(NCD_PLUGIN_API_VERSION) + "; rebuild the plugin";
    dlclose(handle);
    return false;
  }
  if (!info->name || !*info->name || !info->register_plugin) {
    error = "plugin '" + path + "' has no name or no register function";
    dlclose(handle);
    return false;
  }
  for (const PluginRecord &loaded : registry.plugins())
    if (loaded.name == info->name) {
      // The same file reached twice (search path and --plugin) is not an error.
      if (fs::equivalent(loaded.file, path, code)) {
        dlclose(handle);
        return true;
      }
      error = "duplicate plugin '" + std::string(info->name) + "': '" + path + "' and '" + loaded.file + "'";
      dlclose(handle);
      return false;
    }
  PluginRecord record{info->name, info->version ? info->version : "", info->description ? info->description : "",
                      fs::absolute(path, code).lexically_normal().string(), {}};
  registry.begin_plugin(record);
  int status = 0;
  try {
    status = info->register_plugin(&registry);
  } catch (const std::exception &exception) {
    registry.abandon_plugin();
    error = "plugin '" + path + "' failed to register: " + exception.what();
    return false;
  } catch (...) {
    registry.abandon_plugin();
    error = "plugin '" + path + "' failed to register: it threw an exception that is not a std::exception";
    return false;
  }
  if (status != 0 || !registry.last_error().empty()) {
    registry.abandon_plugin();
    error = "plugin '" + path + "' failed to register: " +
            (registry.last_error().empty() ? "status " + std::to_string(status) : registry.last_error());
    return false;
  }
  registry.end_plugin();
  // The library stays loaded for the life of the process: its objects live in the registry.
  return true;
}

bool load_plugins(Registry &registry, const std::vector<std::string> &extra, std::vector<std::string> &errors) {
  std::vector<std::string> files;
  std::set<std::string> seen;
  std::error_code code;
  for (const std::string &dir : plugin_search_path()) {
    std::vector<std::string> found;
    for (const auto &entry : fs::directory_iterator(dir, code)) {
      std::string name = entry.path().filename().string();
      if (name.rfind("ncd-plugin-", 0) == 0 && entry.path().extension() == ".so") found.push_back(entry.path().string());
    }
    std::sort(found.begin(), found.end());  // a stable order makes duplicate reports deterministic
    for (const auto &file : found) {
      // The first folder that provides a plugin file name wins (build tree before install).
      if (seen.insert(fs::path(file).filename().string()).second) files.push_back(file);
    }
  }
  for (const auto &file : extra) files.push_back(file);
  bool ok = true;
  for (const auto &file : files) {
    std::string error;
    if (!load_plugin(file, registry, error)) {
      errors.push_back(error);
      ok = false;
    }
  }
  return ok;
}

}  // namespace ncd

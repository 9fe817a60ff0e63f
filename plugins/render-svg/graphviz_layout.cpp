// Graphviz in process: agmemread (cgraph) parses the DOT, gvLayout runs dot,
// gvRenderData writes the chosen format into memory.
#include "graphviz_layout.h"

#include <graphviz/cgraph.h>
#include <graphviz/gvc.h>

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <cstdlib>
#include <set>

namespace ncd::render {
namespace {

// Graphviz reports problems through a global callback; collect them instead of printing.
std::string &messages() {
  static std::string text;
  return text;
}

int collect(char *message) {
  if (message) messages() += message;
  return 0;
}

// Which device plugin draws each format: the core SVG writer (text stays text), cairo for
// raster and PDF output.
std::string device_for(const std::string &format) {
  if (format == "svg") return "svg:svg:core";
  if (format == "png") return "png:cairo:cairo";
  if (format == "pdf") return "pdf:cairo:cairo";
  return format;
}

struct Session {
  Session() {
    messages().clear();
    previous_handler = agseterrf(collect);
    previous_level = agseterr(AGERR);  // warnings (font lookups and the like) are not errors
    context = gvContext();
  }
  ~Session() {
    if (graph) {
      if (laid_out) gvFreeLayout(context, graph);
      agclose(graph);
    }
    if (context) gvFreeContext(context);
    agseterr(previous_level);
    agseterrf(previous_handler);
  }
  // Names Graphviz lists for a plugin kind ("device": svg, png, ...; "render": svg, cairo, ...).
  std::vector<std::string> list(const char *kind) const {
    std::set<std::string> names;
    int count = 0;
    char **items = gvPluginList(context, kind, &count, nullptr);
    for (int i = 0; items && i < count; ++i) {
      std::string name = items[i];
      names.insert(name.substr(0, name.find(':')));
      std::free(items[i]);
    }
    std::free(items);
    return {names.begin(), names.end()};
  }
  agusererrf previous_handler = nullptr;
  agerrlevel_t previous_level = AGWARN;
  GVC_t *context = nullptr;
  Agraph_t *graph = nullptr;
  bool laid_out = false;
};

std::string trimmed(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  return text;
}

// A format is available when Graphviz has its device and the renderer that device needs.
bool available(const Session &session, const std::string &format) {
  std::string device = device_for(format);
  std::string name = device.substr(0, device.find(':'));
  size_t second = device.find(':');
  std::string renderer = second == std::string::npos ? "" : device.substr(second + 1, device.find(':', second + 1) - second - 1);
  auto devices = session.list("device");
  if (std::find(devices.begin(), devices.end(), name) == devices.end()) return false;
  if (renderer.empty()) return true;
  auto renderers = session.list("render");
  return std::find(renderers.begin(), renderers.end(), renderer) != renderers.end();
}

std::string parts_quote(const std::string &text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

}  // namespace

bool render_with(const std::string &dot, const char *engine, const std::string &format, std::string &output,
                 std::string &error);

bool graphviz_has_format(const std::string &format, std::vector<std::string> *list) {
  Session session;
  if (list) *list = session.list("device");
  return available(session, format);
}

bool graphviz_render(const std::string &dot, const std::string &format, std::string &output, std::string &error) {
  return render_with(dot, "dot", format, output, error);
}

bool graphviz_render_svg(const std::string &svg, double width, double height, const std::string &format,
                         std::string &output, std::string &error) {
  // Graphviz reads images from files: a private temporary one, removed before returning.
  char path[] = "/tmp/ncd-render-XXXXXX.svg";
  int fd = mkstemps(path, 4);
  if (fd < 0) {
    error = std::string("cannot create a temporary file: ") + std::strerror(errno);
    return false;
  }
  bool written = ::write(fd, svg.data(), svg.size()) == static_cast<ssize_t>(svg.size());
  ::close(fd);
  if (!written) {
    std::remove(path);
    error = "cannot write a temporary file";
    return false;
  }
  char size[64];
  std::snprintf(size, sizeof size, "width=%.4f, height=%.4f", width / 72.0, height / 72.0);
  std::string dot = std::string("graph drawing { graph [pad=0, margin=0, bgcolor=\"white\"]; ") +
                    "node [shape=none, label=\"\", margin=0, fixedsize=true, " + size + "]; " +
                    "picture [pos=\"0,0!\", imagescale=true, image=" + parts_quote(path) + "]; }";
  bool ok = render_with(dot, "neato", format, output, error);
  std::remove(path);
  return ok;
}

bool render_with(const std::string &dot, const char *engine, const std::string &format, std::string &output,
                 std::string &error) {
  Session session;
  if (!session.context) {
    error = "cannot start Graphviz: " + trimmed(messages());
    return false;
  }
  if (!available(session, format)) {
    error = "Graphviz here cannot write format '" + format + "'";
    if (format == "png" || format == "pdf")
      error += " (it needs Graphviz's cairo plugin, libgvplugin_pango from Debian's libgvc6 package)";
    return false;
  }
  session.graph = agmemread(dot.c_str());
  if (!session.graph) {
    error = "Graphviz rejected the drawing: " + trimmed(messages());
    return false;
  }
  // Bitmaps at 1.5 times Graphviz's 96 dpi, so that small wire labels stay legible.
  if (format == "png") agsafeset(session.graph, const_cast<char *>("dpi"), const_cast<char *>("144"), const_cast<char *>(""));
  if (gvLayout(session.context, session.graph, engine) != 0) {
    error = "Graphviz layout failed: " + trimmed(messages());
    return false;
  }
  session.laid_out = true;
  char *data = nullptr;
  unsigned int length = 0;
  if (gvRenderData(session.context, session.graph, device_for(format).c_str(), &data, &length) != 0 || !data) {
    error = "Graphviz could not render " + format + ": " + trimmed(messages());
    if (data) gvFreeRenderData(data);
    return false;
  }
  output.assign(data, length);
  gvFreeRenderData(data);
  return true;
}

}  // namespace ncd::render

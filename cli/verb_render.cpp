// `ncd render FILE [--diagram NAME] [-o OUT] [--format svg|dot|png|pdf] [--depth N] [--layout auto|ncd|dot]
// [--style full|paper] [--sizes] [--label-intermediates] [--legend] [--highlight KERNEL] [--direction lr|tb]`:
// draws a diagram as a neural circuit diagram through a renderer plugin.
//
// The format comes from --format, else from the extension of -o, else svg.
// Text formats (svg, dot) go to standard output unless -o is given; binary
// formats (png, pdf) need -o (`-o -` forces standard output).

#include <algorithm>
#include <iostream>
#include <set>

#include "common.h"
#include "ncd/diagnostics.h"
#include "verbs.h"

namespace ncd::cli {
namespace {

std::string extension_format(const std::string &path) {
  size_t slash = path.find_last_of('/');
  size_t dot = path.find_last_of('.');
  if (dot == std::string::npos || (slash != std::string::npos && dot < slash)) return "";
  std::string extension = path.substr(dot + 1);
  for (char &c : extension) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (extension == "gv") return "dot";
  return extension;
}

bool is_binary(const std::string &format) { return format == "png" || format == "pdf"; }

// The diagrams `diagram` calls, directly or through its callees, in order of first call.
void called_diagrams(const ir::Program &program, const ir::Diagram &diagram, std::vector<std::string> &names,
                     int depth = 0) {
  if (depth > 64) return;
  ir::for_each_op(diagram.body, [&](const ir::Op &op) {
    if (op.kind != ir::OpKind::Call) return;
    const ir::Diagram &callee = *program.diagrams.at(static_cast<size_t>(op.callee));
    if (std::find(names.begin(), names.end(), callee.name) != names.end()) return;
    names.push_back(callee.name);
    called_diagrams(program, callee, names, depth + 1);
  });
}

}  // namespace

Handler setup_render(CLI::App &command) {
  struct Options {
    std::string file;
    std::string diagram;
    std::string output;
    std::string format;
    std::string renderer;
    std::string title;
    int depth = -1;
    std::string layout = "auto";
    std::string style = "full";
    bool sizes = false, label_intermediates = false, legend = false;
    std::string highlight;
    std::string direction = "lr";
    FrontendOptions frontend;
  };
  auto options = std::make_shared<Options>();
  command.add_option("file", options->file, "The .ncd file")->required()->type_name("FILE");
  command.add_option("--diagram", options->diagram, "The diagram to draw (default: the file's only diagram)")
      ->type_name("NAME");
  command.add_option("-o,--output", options->output,
                     "Write here ('-': standard output); default: standard output for svg and dot")
      ->type_name("FILE");
  command.add_option("-f,--format", options->format, "svg, dot, png or pdf (default: from -o's extension, else svg)")
      ->type_name("FORMAT");
  command.add_option("--renderer", options->renderer, "Use this renderer plugin (default: the one for the format)")
      ->type_name("NAME");
  command.add_option("--depth", options->depth,
                     "Draw calls nested deeper than N as one folded box (0: fold every call; default: unfold all)")
      ->type_name("N")
      ->check(CLI::Range(0, 1 << 20));
  command.add_option("--title", options->title, "Title of the drawing (default: the diagram's name)")->type_name("TEXT");
  command
      .add_option("--layout", options->layout,
                  "ncd (ncd's own layout), dot (Graphviz's dot layout) or auto (the default: ncd's layout)")
      ->type_name("auto|ncd|dot")
      ->check(CLI::IsMember({"auto", "ncd", "dot"}));
  command.add_option("--style", options->style,
                     "full (every wire labelled axis(size), default) or paper (axis names only where wires start)")
      ->type_name("full|paper")
      ->check(CLI::IsMember({"full", "paper"}));
  command.add_flag("--sizes", options->sizes, "Write axis sizes on the wires in paper style too");
  command.add_flag("--label-intermediates", options->label_intermediates,
                   "Name every named intermediate value where its wires start (ncd layout)");
  command.add_flag("--legend", options->legend, "Draw the schedule's legend in paper style too");
  command
      .add_option("--highlight", options->highlight,
                  "Colour the calls of this kernel (a diagram the drawn one calls, e.g. a fused kernel of "
                  "`ncd optimize`)")
      ->type_name("KERNEL");
  command
      .add_option("--direction", options->direction,
                  "lr (data flows left to right, the default) or tb (top to bottom; ncd's layout)")
      ->type_name("lr|tb")
      ->check(CLI::IsMember({"lr", "tb"}));
  add_frontend_options(command, options->frontend);
  return [options]() -> int {
    if (options->direction == "tb" && options->layout == "dot") {
      std::cerr << "ncd: error: --direction tb needs ncd's layout; Graphviz's (--layout dot) draws left to right\n";
      return kUsageError;
    }
    std::string format = options->format;
    if (format.empty() && !options->output.empty() && options->output != "-")
      format = extension_format(options->output);
    if (format.empty()) format = "svg";
    Registry *registry = load_registry(options->frontend.plugins);
    if (!registry) return kUserError;
    const Renderer *renderer = nullptr;
    if (!options->renderer.empty()) {
      renderer = registry->renderer(options->renderer);
      if (!renderer) {
        std::cerr << "ncd: error: " << registry->describe_miss("renderer", options->renderer) << "\n";
        return kUserError;
      }
      bool supported = false;
      for (const auto &candidate : renderer->formats()) supported = supported || candidate == format;
      if (!supported) {
        std::string list;
        for (const auto &candidate : renderer->formats()) list += (list.empty() ? "" : ", ") + candidate;
        std::cerr << "ncd: error: renderer '" << options->renderer << "' cannot write format '" << format
                  << "'; it writes " << list << "\n";
        return kUserError;
      }
    } else {
      renderer = registry->renderer_for_format(format);
      if (!renderer) {
        std::set<std::string> known;
        for (const auto &name : registry->renderer_names())
          for (const auto &candidate : registry->renderer(name)->formats()) known.insert(candidate);
        std::vector<std::string> list(known.begin(), known.end());
        std::string suggestion = did_you_mean(format, list);
        std::cerr << "ncd: error: no renderer writes format '" << format << "'" << suggestion;
        if (list.empty()) {
          std::cerr << "; no renderer plugins are loaded (see `ncd plugins`)\n";
        } else {
          std::cerr << (suggestion.empty() ? "; known formats:" : " known formats:");
          for (size_t i = 0; i < list.size(); ++i) std::cerr << (i ? ", " : " ") << list[i];
          std::cerr << "\n";
        }
        return kUserError;
      }
    }
    std::string output = options->output.empty() ? "-" : options->output;
    if (is_binary(format) && options->output.empty()) {
      std::cerr << "ncd: error: format '" << format << "' is binary; name the output file with -o FILE (or -o - for standard output)\n";
      return kUsageError;
    }

    auto compilation = load_program(options->file, options->frontend);
    if (!compilation) return kUserError;
    const ir::Diagram *diagram = select_diagram(*compilation, options->diagram, true);
    if (!diagram) return kUserError;
    if (!options->highlight.empty()) {
      std::vector<std::string> kernels;
      called_diagrams(compilation->program, *diagram, kernels);
      if (std::find(kernels.begin(), kernels.end(), options->highlight) == kernels.end()) {
        std::string known;
        for (const auto &name : kernels) known += (known.empty() ? "" : ", ") + name;
        compilation->diagnostics.error(
            diagram->location, "--highlight: diagram '" + diagram->name + "' calls no kernel '" + options->highlight +
                                   "'" + did_you_mean(options->highlight, kernels) +
                                   (kernels.empty() ? " (it calls none)" : " (it calls " + known + ")"));
        print_diagnostics(*compilation);
        return kUserError;
      }
    }

    RenderOptions render_options;
    render_options.format = format;
    render_options.depth = options->depth;
    render_options.title = options->title;
    render_options.layout = options->layout;
    render_options.paper = options->style == "paper";
    render_options.sizes = options->sizes;
    render_options.label_intermediates = options->label_intermediates;
    render_options.legend = options->legend;
    render_options.highlight = options->highlight;
    render_options.direction = options->direction;
    std::string text, error;
    if (!renderer->render(compilation->program, *diagram, compilation->sources, render_options, text, error)) {
      std::cerr << "ncd: error: cannot render " << diagram->name << " as " << format << ": " << error << "\n";
      return kUserError;
    }
    if (!write_or_report(output, text)) return kUserError;
    if (!write_dependency_file(options->frontend, *compilation, options->file, output)) return kUserError;
    return kSuccess;
  };
}

}  // namespace ncd::cli

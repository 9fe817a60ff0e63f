// The `ncd` command: a table of verbs dispatched through CLI11.
//
// The real work runs on a thread with a large stack so that deeply nested (but
// legal) input never overflows it; every exception that escapes a verb is an
// internal error (exit 3), never a crash.
#include <pthread.h>

#include <algorithm>
#include <csignal>
#include <iostream>
#include <memory>

#include "common.h"
#include "verbs.h"

#ifndef NCD_VERSION
#define NCD_VERSION "0.0.0"
#endif

namespace ncd::cli {
namespace {

const Verb kVerbs[] = {
    {"check", "Parse, resolve and shape-check .ncd files", setup_check},
    {"fmt", "Print .ncd files in canonical form (-i rewrites, --check verifies)", setup_fmt},
    {"show", "Show the AST, the core IR, or the IR as JSON", setup_show},
    {"render", "Draw a diagram as a neural circuit diagram (SVG, DOT, PNG, PDF)", setup_render},
    {"plugins", "List the loaded plugins and what each provides", setup_plugins},
    {"cost", "FLOPs, bytes per memory level, roofline time and energy on a hardware profile", setup_cost},
    {"run", "Run a diagram on the CPU reference backend with .npy/safetensors data", setup_run},
    {"equiv", "Run two diagrams on the same random data and compare their outputs", setup_equiv},
    {"optimize", "Run a verified pass pipeline (fusion, online-softmax streaming, tiling) and write the result", setup_optimize},
    {"grad", "Derive the gradient of a diagram (reverse mode) as .ncd diagrams D_grad and D_train", setup_grad},
    {"emit", "Generate code for a diagram (--cuda: one self-contained .cu file)", setup_emit},
    {"import", "Read a model of another framework (ONNX) as an ncd program and its weights", setup_import},
    {"merge", "Merge checkpoints of a diagram's params (linear, slerp, task arithmetic, TIES, DARE)", setup_merge},
};

// gcc spells the dependency-file options with one dash (-MD -MF -MT); CLI11
// would read "-MD" as the short flags -M -D, so they are renamed before parsing.
std::vector<std::string> normalise_arguments(int argc, char **argv) {
  std::vector<std::string> out;
  for (int i = 1; i < argc; ++i) {
    std::string argument = argv[i];
    if (argument == "-MD" || argument == "-MF" || argument == "-MT") argument = "-" + argument;
    out.push_back(argument);
  }
  std::reverse(out.begin(), out.end());  // CLI11 takes the arguments in reverse order
  return out;
}

int run(int argc, char **argv) {
  // An unknown verb deserves its name and the closest known one, not a generic complaint.
  if (argc > 1 && argv[1][0] != '-') {
    std::vector<std::string> names;
    for (const Verb &verb : kVerbs) names.push_back(verb.name);
    if (std::find(names.begin(), names.end(), argv[1]) == names.end()) {
      std::string known;
      for (const auto &name : names) known += (known.empty() ? "" : ", ") + name;
      std::cerr << "ncd: error: unknown verb '" << argv[1] << "'" << did_you_mean(argv[1], names) << " (verbs: " << known
                << "; see ncd --help)\n";
      return kUsageError;
    }
  }
  CLI::App app{"ncd: neural circuit diagrams as software", "ncd"};
  app.set_version_flag("--version", "ncd " NCD_VERSION);
  app.require_subcommand(1);
  // One line in ncd's style, not CLI11's banner and the whole help text.
  app.failure_message([](const CLI::App *command, const CLI::Error &error) {
    std::string name = "ncd";
    for (const CLI::App *verb : command->get_subcommands({}))
      if (verb->parsed()) name += " " + verb->get_name();
    return "ncd: error: " + std::string(error.what()) + " (see `" + name + " --help`)\n";
  });
  std::vector<std::pair<CLI::App *, Handler>> handlers;
  for (const Verb &verb : kVerbs) {
    CLI::App *command = app.add_subcommand(verb.name, verb.help);
    handlers.push_back({command, verb.setup(*command)});
  }
  try {
    std::vector<std::string> arguments = normalise_arguments(argc, argv);
    app.parse(arguments);
  } catch (const CLI::ParseError &error) {
    int code = app.exit(error);
    return code == 0 ? kSuccess : kUsageError;
  }
  for (auto &[command, handler] : handlers)
    if (command->parsed()) return handler();
  return kUsageError;
}

struct ThreadArguments {
  int argc;
  char **argv;
  int result = kInternalError;
};

void *thread_main(void *raw) {
  auto *arguments = static_cast<ThreadArguments *>(raw);
  try {
    arguments->result = run(arguments->argc, arguments->argv);
  } catch (const std::exception &error) {
    std::cerr << "ncd: internal error: " << error.what() << "\n";
    arguments->result = kInternalError;
  } catch (...) {
    std::cerr << "ncd: internal error: unknown exception\n";
    arguments->result = kInternalError;
  }
  return nullptr;
}

}  // namespace
}  // namespace ncd::cli

int main(int argc, char **argv) {
  using namespace ncd::cli;
  std::ios::sync_with_stdio(false);
  // A file-size limit (`ulimit -f`) would kill ncd by SIGXFSZ mid-write, leaving a partial temporary
  // file; ignored, the write fails with EFBIG and the output code reports it and cleans up.
  signal(SIGXFSZ, SIG_IGN);
  ThreadArguments arguments{argc, argv};
  pthread_attr_t attributes;
  pthread_attr_init(&attributes);
  pthread_attr_setstacksize(&attributes, size_t{1} << 30);  // reserved, touched only when used
  pthread_t thread;
  if (pthread_create(&thread, &attributes, thread_main, &arguments) != 0) {
    thread_main(&arguments);
  } else {
    pthread_join(thread, nullptr);
  }
  pthread_attr_destroy(&attributes);
  std::cout.flush();
  return arguments.result;
}

// The registry: passes, renderers and backends by name.
//
// Plugins fill it through their register callback; verbs look things up by
// name. Names are unique per kind: a duplicate is refused with both origins
// named, and a miss lists the known names and the closest one.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "ncd/diagnostics.h"
#include "ncd/ir.h"
#include "ncd/kernel_plan.h"
#include "ncd/tensor.h"

namespace ncd {

// ---------------------------------------------------------------- passes

struct HardwareProfile;
struct ShardingPlan;

class Backend;

// What a pass sees besides the IR. Passes report problems to `diagnostics`,
// and what they did or declined, with source locations, through `note`.
struct PassContext {
  DiagnosticEngine *diagnostics = nullptr;
  const SourceManager *sources = nullptr;
  std::vector<std::string> *explain = nullptr;  // lines for --explain, when asked
  const HardwareProfile *hardware = nullptr;    // the profile of --hw, when the verb has one
  const Backend *planner = nullptr;             // the backend that builds kernels for `hardware`, if any
  std::string pass;                             // the running pass's name, set by the pass manager
  std::string argument;                         // its argument (`--passes NAME=ARGUMENT`), "" when none

  // Adds "FILE:LINE:COL: PASS: message" (or "PASS: message" without a location) to the explain log.
  void note(const SourceLocation &location, const std::string &message) const {
    if (!explain) return;
    std::string where = sources && location.valid() ? sources->describe(location) + ": " : std::string();
    explain->push_back(where + pass + ": " + message);
  }
};

struct PassResult {
  bool changed = false;
  std::string declined;  // why the pass did not apply where it could have (for --explain)
};

class Pass {
 public:
  virtual ~Pass() = default;
  virtual std::string name() const = 0;
  virtual std::string description() const = 0;
  // Preconditions are stated by each pass; the IR verifier runs after it.
  virtual PassResult run(ir::Program &program, ir::Diagram &diagram, PassContext &context) = 0;
  // Why `argument` (the text after `=` in `--passes NAME=ARGUMENT`) is not
  // one this pass takes, or "" when it is; checked before any pass runs. By
  // default a pass takes none.
  virtual std::string check_argument(const std::string &argument) const {
    return argument.empty() ? "" : "pass '" + name() + "' takes no argument, but is given '" + argument + "'";
  }
  // Whether the pass keeps what the diagram computes (up to rounding): an
  // inexact one (quantization) changes it by design, and `ncd optimize
  // --verify` then measures the change against --tolerance instead of
  // asking for equivalence.
  virtual bool exact(const std::string &argument) const {
    (void)argument;
    return true;
  }
};

// ---------------------------------------------------------------- renderers

struct RenderOptions {
  std::string format = "svg";  // one of the renderer's formats()
  int depth = -1;              // calls nested deeper than this are folded; -1: unfold all
  std::string title;
  std::string layout = "auto";     // "ncd": ncd's own layout (docs/RENDER.md); "dot": Graphviz's dot; "auto"
  bool paper = false;              // --style paper: axis names only where wires start, no sizes
  bool sizes = false;              // sizes on the wires even in paper style
  bool label_intermediates = false;
  bool legend = false;             // the schedule's legend in paper style (full style always has it)
  std::string highlight;           // a kernel (callee) whose calls are drawn in the highlight colour; "": none
  std::string direction = "lr";    // "lr": data flows left to right; "tb": top to bottom (ncd's layout)
};

class Renderer {
 public:
  virtual ~Renderer() = default;
  virtual std::string name() const = 0;
  virtual std::string description() const = 0;
  virtual std::vector<std::string> formats() const = 0;
  // Returns false (after setting `error`) when rendering fails.
  virtual bool render(const ir::Program &program, const ir::Diagram &diagram, const SourceManager &sources,
                      const RenderOptions &options, std::string &output, std::string &error) const = 0;
};

// ---------------------------------------------------------------- backends

struct ExecuteOptions {
  int threads = 0;               // worker threads; 0: one per core
  bool profile = false;          // report the time spent per op kind to `log`
  std::ostream *log = nullptr;   // where profiles and notes go (nullptr: nowhere)
  // Set to true when execute() fails for lack of memory (so that a caller can
  // tell that from a wrong program without reading the message).
  bool *out_of_memory = nullptr;
};

// A diagram to run with its data. Inputs are keyed by input name, params by
// their path (ncd/instantiate.h, docs/RUN.md); each tensor is in its value's
// declared axis order, with the concrete shape and the declared dtype.
struct ExecuteRequest {
  const ir::Program *program = nullptr;
  const ir::Diagram *diagram = nullptr;
  const std::map<std::string, Tensor> *inputs = nullptr;
  const std::map<std::string, Tensor> *params = nullptr;
  ExecuteOptions options;
  // When set, run as the plan shards the diagram: each device with the data
  // it holds, collectives between them (`ncd run --devices`, docs/SHARDING.md,
  // "Simulation"); the outputs assembled whole. Only the CPU reference does.
  const ShardingPlan *sharding = nullptr;
  // With `sharding`: run each device's own program instead (ncd/rank_program.h: the program
  // `ncd emit --cuda --nccl` prints), one thread per rank, reductions between them in memory
  // (`ncd run --devices N --ranks`). Only the CPU reference does.
  bool ranks = false;
};

// A diagram (or several, into one file) to generate code for. `options` are
// the backend's own (the CUDA backend: "harness", "arch"); `notes` collects
// lines for the user (fallbacks taken), each naming its source location.
// One file of a generated package: its name inside the package's folder and its text.
struct EmittedFile {
  std::string name;
  std::string text;
};

struct EmitRequest {
  const ir::Program *program = nullptr;
  std::vector<const ir::Diagram *> diagrams;
  const SourceManager *sources = nullptr;
  std::map<std::string, std::string> options;
  std::vector<std::string> *notes = nullptr;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;
  virtual std::string description() const = 0;
  // Whether this backend runs diagrams (a code generator does not).
  virtual bool can_execute() const { return false; }
  // Whether execute() honours ExecuteRequest::sharding (simulates a sharded run).
  virtual bool runs_sharded() const { return false; }
  // Runs the request and fills `outputs` by output name (declared axis order
  // and dtype). Returns false, after setting `error`, on failure.
  virtual bool execute(const ExecuteRequest &request, std::map<std::string, Tensor> &outputs, std::string &error) const {
    (void)request;
    (void)outputs;
    error = "backend '" + name() + "' does not run diagrams";
    return false;
  }
  // Whether this backend generates source code (ncd emit).
  virtual bool can_emit() const { return false; }
  // Writes the generated source to `output`. Returns false, after setting
  // `error`, on failure (an unknown option value, a diagram it cannot express).
  virtual bool emit(const EmitRequest &request, std::string &output, std::string &error) const {
    (void)request;
    (void)output;
    error = "backend '" + name() + "' does not generate code";
    return false;
  }
  // Writes a package of `kind` named `name` (`ncd emit --torch DIR`: kind
  // "torch", a Python package around the generated code; `name` is DIR's last
  // component) as files for the caller to put in one folder. Returns false,
  // after setting `error`, for a kind it does not write or as emit() does.
  virtual bool emit_package(const EmitRequest &request, const std::string &kind, const std::string &name,
                            std::vector<EmittedFile> &files, std::string &error) const {
    (void)request;
    (void)name;
    (void)files;
    error = "backend '" + this->name() + "' writes no " + kind + " packages";
    return false;
  }
  // Whether `options` (EmitRequest::options) are ones this backend knows, with
  // values it accepts; false, after setting `error`, when not. `ncd emit`
  // asks before it reads the program, so that a wrong option is a usage error.
  virtual bool check_options(const std::map<std::string, std::string> &options, std::string &error) const {
    (void)options;
    (void)error;
    return true;
  }
  // Whether this backend builds kernels for `hardware` (ncd/kernel_plan.h):
  // then `tile` and `ncd cost` ask it for the shape of every scheduled kernel.
  virtual bool plans_for(const HardwareProfile &hardware) const {
    (void)hardware;
    return false;
  }
  // The kernel this backend would build for the query, or nullopt after
  // setting `why` when it would run the kernel's operations separately.
  virtual std::optional<KernelShape> plan_kernel(const KernelQuery &query, std::string &why) const {
    (void)query;
    why = "backend '" + name() + "' does not plan kernels";
    return std::nullopt;
  }
};

// ---------------------------------------------------------------- importers
// `ncd import MODEL -o MODEL.ncd`: a model from another framework's file
// format (ONNX, ...) as ncd source and the weights it needs.
struct ImportRequest {
  std::string path;                                    // the model file, for messages
  std::string bytes;                                   // its contents (read by ncd, bounded)
  std::map<std::string, std::string> axis_names;       // --axis NAME=NEW: rename the axis the importer calls NAME
  std::string diagram;                                 // --diagram: the diagram's name ("" : the importer's choice)
};
struct ImportResult {
  std::string source;                                  // the .ncd text, `ncd fmt`-canonical
  std::vector<std::pair<std::string, Tensor>> weights;  // param path -> value, in declaration order
  std::vector<std::string> notes;                      // what the importer decided that a user should know
};

class Importer {
 public:
  virtual ~Importer() = default;
  virtual std::string name() const = 0;
  virtual std::string description() const = 0;
  // File name endings it reads (".onnx"); `ncd import` picks the importer by them.
  virtual std::vector<std::string> extensions() const = 0;
  // Returns false, after setting `error` (naming the node or part of the file
  // at fault), when the model cannot be imported; nothing is written then.
  virtual bool import_model(const ImportRequest &request, ImportResult &result, std::string &error) const = 0;
};

// ---------------------------------------------------------------- registry

struct PluginRecord {
  std::string name;
  std::string version;
  std::string description;
  std::string file;  // the shared library it came from
  std::vector<std::pair<std::string, std::string>> provides;  // (kind, name)
};

class Registry {
 public:
  // Each returns false (after reporting through last_error()) on a duplicate
  // name, and the plugin being loaded then fails to load.
  bool add_pass(std::unique_ptr<Pass> pass);
  bool add_renderer(std::unique_ptr<Renderer> renderer);
  bool add_backend(std::unique_ptr<Backend> backend);
  bool add_importer(std::unique_ptr<Importer> importer);

  Pass *pass(const std::string &name) const;
  const Renderer *renderer(const std::string &name) const;
  const Backend *backend(const std::string &name) const;
  const Importer *importer(const std::string &name) const;
  // The importer that reads files ending as `path` does, or nullptr.
  const Importer *importer_for(const std::string &path) const;
  // The first backend (by name) that plans kernels for `hardware`, or nullptr.
  const Backend *planner_for(const HardwareProfile &hardware) const;
  // Renderers able to produce `format`.
  const Renderer *renderer_for_format(const std::string &format) const;

  std::vector<std::string> pass_names() const;
  std::vector<std::string> renderer_names() const;
  std::vector<std::string> backend_names() const;
  std::vector<std::string> importer_names() const;

  // "unknown pass 'fsue'; did you mean 'fuse'? known passes: cse, dce, fuse"
  std::string describe_miss(const std::string &kind, const std::string &name) const;

  const std::vector<PluginRecord> &plugins() const { return plugins_; }
  // Set by a refused registration; cleared when a plugin starts loading.
  const std::string &last_error() const { return last_error_; }

  // Used by the loader around a plugin's register callback.
  void begin_plugin(PluginRecord record);
  void end_plugin();
  void abandon_plugin();

 private:
  bool claim(const std::string &kind, const std::string &name);
  std::map<std::string, std::unique_ptr<Pass>> passes_;
  std::map<std::string, std::unique_ptr<Renderer>> renderers_;
  std::map<std::string, std::unique_ptr<Backend>> backends_;
  std::map<std::string, std::unique_ptr<Importer>> importers_;
  std::map<std::pair<std::string, std::string>, std::string> origin_;  // (kind, name) -> plugin
  std::vector<PluginRecord> plugins_;
  PluginRecord current_;
  bool loading_ = false;
  std::string last_error_;
};

}  // namespace ncd

// `ncd emit --torch DIR`: a Python package around the generated .cu file
// (docs/TORCH.md). DIR/kernels.cu is the code `ncd emit --cuda` writes, plus
// ncd_error_string; DIR/__init__.py is the fixed runtime
// (device/torch_runtime.py: building with nvcc on first use, ctypes, the
// checks, outputs and workspace from torch's allocator, the current stream)
// followed by one table and one function per diagram, each registered as a
// torch.library custom op; DIR/README.md says how to call it. What the
// functions take comes from the host functions' own description
// (HarnessDiagram), so the package and the .cu cannot disagree.
#include <set>
#include <string>
#include <vector>

#include "codegen.h"
#include "device_code.h"

namespace ncd::cuda {
namespace {

const std::set<std::string> kPythonKeywords = {
    "False", "None",  "True",    "and",      "as",     "assert", "async",  "await",    "break",
    "class", "continue", "def",  "del",      "elif",   "else",   "except", "finally",  "for",
    "from",  "global", "if",     "import",   "in",     "is",     "lambda", "nonlocal", "not",
    "or",    "pass",  "raise",   "return",   "try",    "while",  "with",   "yield",    "match",
    "case",  "type"};

// A size expression of the generated code (`ncd_n.seq` terms) in Python, over the dict `n` of sizes by axis name.
std::string python_size(const detail::Sz &size, const HarnessDiagram &d, bool for_docs) {
  std::string code = size.code(), out;
  for (size_t i = 0; i < code.size();) {
    if (code.compare(i, 6, "ncd_n.") == 0) {
      size_t end = i + 6;
      while (end < code.size() && (std::isalnum(static_cast<unsigned char>(code[end])) || code[end] == '_')) ++end;
      const std::string member = code.substr(i, end - i);
      std::string axis = member.substr(6);
      for (const HarnessDiagram::Size &size : d.sizes)
        if (size.member == member) axis = size.axis;
      out += for_docs ? axis : "n[" + quoted(axis) + "]";
      i = end;
    } else {
      out += code[i++];
    }
  }
  return out;
}

std::string shape_lambda(const HarnessTensor &t, const HarnessDiagram &d) {
  std::string s = "lambda n: (";
  for (size_t i = 0; i < t.shape.size(); ++i) s += (i ? ", " : "") + python_size(t.shape[i], d, false);
  return s + (t.shape.size() == 1 ? ",)" : ")");
}

std::string shape_doc(const HarnessTensor &t, const HarnessDiagram &d) {
  std::string s = "[";
  for (size_t i = 0; i < t.shape.size(); ++i) s += (i ? ", " : "") + python_size(t.shape[i], d, true);
  return s + "]";
}

std::string dtype_text(ir::DType dtype) { return std::string(ir::dtype_name(dtype)); }

// A Python parameter name for an input: its own, unless Python or the function's other arguments take it.
std::string argument_name(const std::string &name) {
  if (kPythonKeywords.count(name) || name == "params" || name == "sizes") return name + "_";
  return name;
}

std::string diagram_code(const HarnessDiagram &d, const std::string &source) {
  const std::string table = "_" + d.name;
  std::string s = "\n\n" + table + " = _Diagram(\n    " + quoted(d.name) + ", " + quoted(d.function) + ",\n";
  auto tensors = [&](const char *what, const std::vector<HarnessTensor> &list) {
    s += std::string("    ") + what + "=[";
    for (const HarnessTensor &t : list)
      s += "\n        (" + quoted(t.name) + ", " + quoted(dtype_text(t.dtype)) + ", " + shape_lambda(t, d) + "),";
    s += list.empty() ? "],\n" : "\n    ],\n";
  };
  tensors("inputs", d.inputs);
  tensors("params", d.params);
  tensors("outputs", d.outputs);
  s += "    sizes=[";
  for (size_t k = 0; k < d.sizes.size(); ++k)
    s += std::string(k ? ", " : "") + "(" + quoted(d.sizes[k].axis) + ", " + std::to_string(d.sizes[k].tensor) + ", " +
         std::to_string(d.sizes[k].dim) + ")";
  s += "])\n";

  std::vector<std::string> names;
  for (const HarnessTensor &t : d.inputs) names.push_back(argument_name(t.name));
  std::string args, list;
  for (const std::string &name : names) {
    args += name + ", ";
    list += (list.empty() ? "" : ", ") + name;
  }
  s += "\n\ndef " + d.name + "(" + args + "params=None, *, sizes=None):\n";
  s += "    \"\"\"" + d.name + " of " + source + " on CUDA tensors (dense, row-major, 16-byte aligned).\n\n";
  for (const HarnessTensor &t : d.inputs)
    s += "    " + argument_name(t.name) + ": " + dtype_text(t.dtype) + " " + shape_doc(t, d) + "\n";
  if (d.params.empty()) {
    s += "    params: none\n";
  } else {
    s += "    params: a dict by these paths (docs/RUN.md's param names), or a list in this order:\n";
    for (const HarnessTensor &t : d.params)
      s += "        " + t.name + ": " + dtype_text(t.dtype) + " " + shape_doc(t, d) + "\n";
  }
  s += "    Returns";
  for (size_t i = 0; i < d.outputs.size(); ++i)
    s += std::string(i ? ", " : " ") + d.outputs[i].name + ": " + dtype_text(d.outputs[i].dtype) + " " +
         shape_doc(d.outputs[i], d);
  s += d.outputs.size() > 1 ? " (a tuple).\n" : ".\n";
  std::string carried, given;
  for (const HarnessDiagram::Size &size : d.sizes) {
    std::string &list = size.tensor >= 0 ? carried : given;
    list += (list.empty() ? "" : ", ") + size.axis;
  }
  if (!carried.empty()) s += "    Runtime sizes read from the inputs' shapes: " + carried + ".\n";
  if (!given.empty()) s += "    Runtime sizes no input carries, given as sizes={...}: " + given + ".\n";
  s += "    \"\"\"\n";
  s += "    params = _param_list(" + table + ", params)\n";
  s += "    extra = _extra_sizes(" + table + ", sizes)\n";
  s += "    _arguments(" + table + ", [" + list + "], params)\n";
  s += "    if " + table + "_op is not None:\n";
  s += "        return " + table + "_op(" + args + "params, extra)\n";
  s += "    return _run(" + table + ", [" + list + "], params, extra)\n";
  return s;
}

std::string registration(const HarnessDiagram &d) {
  std::string inputs;
  for (size_t i = 0; i < d.inputs.size(); ++i) inputs += (i ? ", " : "") + ("Tensor x" + std::to_string(i));
  std::string returns = d.outputs.size() == 1 ? "Tensor" : "(";
  if (d.outputs.size() != 1) {
    for (size_t i = 0; i < d.outputs.size(); ++i) returns += std::string(i ? ", " : "") + "Tensor";
    returns += ")";
  }
  return "_" + d.name + "_op = _register(_" + d.name + ", " + quoted(inputs) + ", " +
         quoted(returns) + ")\n";
}

}  // namespace

bool torch_package(const EmitRequest &request, const std::string &name, std::vector<EmittedFile> &files,
                   std::string &error) {
  auto identifier = [](const std::string &text) {
    if (text.empty() || std::isdigit(static_cast<unsigned char>(text[0]))) return false;
    for (char c : text)
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_') return false;
    return true;
  };
  if (!identifier(name) || kPythonKeywords.count(name)) {
    error = "--torch: '" + name + "' is no Python package name (letters, digits and _, not a keyword)";
    return false;
  }
  for (const auto &[key, value] : request.options)
    if (key == "harness") {
      error = "--torch writes no harness: leave out --harness";
      return false;
    }
  for (const ir::Diagram *diagram : request.diagrams)
    if (diagram->name[0] == '_' || diagram->name == "build" || kPythonKeywords.count(diagram->name)) {
      error = "--torch: diagram '" + diagram->name + "' cannot be a function of the package (a keyword, " +
              "'build', or a name starting with _)";
      return false;
    }
  std::string code;
  std::vector<HarnessDiagram> infos;
  if (!generate(request, code, error, &infos)) return false;
  code += "\n// For the Python package: the text of a status the host functions return.\n"
          "extern \"C\" const char *ncd_error_string(int status) {\n"
          "  return cudaGetErrorString(static_cast<cudaError_t>(status));\n}\n";
  std::string arch = "sm_80";
  for (const auto &[key, value] : request.options)
    if (key == "arch") arch = value;
  const std::string source = request.program->modules.at(0).path;
  std::string names;
  for (const HarnessDiagram &d : infos) names += (names.empty() ? "" : ", ") + d.name;

  std::string module = "\"\"\"" + name + ": CUDA kernels that `ncd emit --torch` generated from " + source + " (" +
                       arch + ").\n\nFunctions on CUDA tensors: " + names +
                       " (help() on each says what it takes).\nThe kernels are built with nvcc on first use "
                       "(NCD_NVCC, CUDA_HOME or PATH), or ahead with build().\nEach is also the custom op "
                       "torch.ops.ncd_" + name + ".NAME, which torch.compile keeps whole.\n\"\"\"\n";
  module += device::torch_runtime;
  module += "\n_PACKAGE = " + quoted(name) + "\n_NAMESPACE = " + quoted("ncd_" + name) + "\n_ARCH = " + quoted(arch) +
            "\n";
  for (const HarnessDiagram &d : infos) module += diagram_code(d, source);
  module += "\n\n_ALL = [";
  for (size_t i = 0; i < infos.size(); ++i) module += (i ? ", _" : "_") + infos[i].name;
  module += "]\n";
  // The dtype each param path is taken in, for load_params.
  module += "_PARAM_DTYPES = {p[0]: _DTYPES[p[1]] for d in _ALL for p in d.params}\n";
  for (const HarnessDiagram &d : infos) module += registration(d);
  module += "__all__ = [\"build\", \"load_params\"";
  for (const HarnessDiagram &d : infos) module += ", " + quoted(d.name);
  module += "]\n";

  const HarnessDiagram &first = infos.at(0);
  std::string arguments;
  for (const HarnessTensor &t : first.inputs) arguments += (arguments.empty() ? "" : ", ") + argument_name(t.name);
  if (!first.params.empty()) arguments += (arguments.empty() ? "" : ", ") + std::string("params");
  const std::string call = first.name + "(" + arguments + ")";
  std::string readme = "# " + name + "\n\nCUDA kernels generated by `ncd emit --torch` from `" + source + "` for " +
                       arch + ": " + names + ".\n\n```python\nimport sys; sys.path.insert(0, \"FOLDER\")  # the folder "
                       "that holds " + name + "/\nimport " + name + "\n" +
                       (first.params.empty() ? "" : "params = " + name + ".load_params(\"WEIGHTS.safetensors\")  # "
                                                    "by param path, on the GPU\n") +
                       "out = " + name + "." + call +
                       "  # CUDA tensors; nvcc builds the kernels on first use\n```\n\n`help(" + name + "." +
                       first.name + ")` lists what it takes: inputs with their dtypes and shapes, the params (a dict "
                       "by ncd's param paths: `load_params` reads the safetensors file `ncd import --weights` writes "
                       "and `ncd run --params` reads), the runtime sizes. Each "
                       "function is also the custom op `torch.ops.ncd_" + name + ".<name>`. Files: `kernels.cu` "
                       "(the generated code; `nvcc -shared` builds it into `_kernels.so`), `__init__.py`.\n";
  files.clear();
  files.push_back({"kernels.cu", code});
  files.push_back({"__init__.py", module});
  files.push_back({"README.md", readme});
  return true;
}

}  // namespace ncd::cuda

// `ncd equiv A.ncd B.ncd --diagram NAME [-D ...] [--seed N] [--rtol R] [--atol A]`:
// runs the diagram NAME of both files on the same random inputs and params
// and compares every output. Exit 0 when all are within tolerance, 1 when any
// differs (or the two diagrams do not have the same interface).
//
// The tolerance test is NumPy's allclose with A as the reference:
// |a - b| <= atol + rtol * |a| for every element (NaN matches NaN, infinities
// match themselves). Defaults follow the output's dtype (docs/RUN.md).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <limits>

#include "common.h"
#include "run_support.h"
#include "verbs.h"

namespace ncd::cli {
namespace {

struct Tolerance {
  double rtol, atol;
};

Tolerance default_tolerance(ir::DType dtype) {
  switch (dtype) {
    case ir::DType::F32: return {1e-4, 1e-5};
    case ir::DType::F16: return {1e-2, 1e-3};
    case ir::DType::BF16: return {2e-2, 1e-2};
    case ir::DType::F8E4M3: return {1.25e-1, 5e-2};
    case ir::DType::F8E5M2: return {2.5e-1, 1e-1};
    case ir::DType::I8: case ir::DType::I32: case ir::DType::Bool: return {0, 0};
  }
  return {1e-4, 1e-5};
}

std::string format_number(double x) {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%.3g", x);
  return buffer;
}

std::string index_text(int64_t linear, const std::vector<int64_t> &shape) {
  std::vector<int64_t> index(shape.size());
  for (size_t d = shape.size(); d-- > 0;) {
    index[d] = shape[d] ? linear % shape[d] : 0;
    linear = shape[d] ? linear / shape[d] : 0;
  }
  std::string out = "[";
  for (size_t d = 0; d < index.size(); ++d) out += (d ? ", " : "") + std::to_string(index[d]);
  return out + "]";
}

struct Side {
  const EquivSide *side = nullptr;
  std::vector<Slot> inputs, params;
};

bool same_slot(const Slot &a, const Slot &b) { return a.shape == b.shape && a.dtype == b.dtype && a.axis_names == b.axis_names; }

}  // namespace

int run_equiv(const EquivRequest &request, std::ostream &out) {
  std::unique_ptr<Compilation> compilations[2];
  EquivSide sides[2];
  const std::string files[2] = {request.a, request.b};
  for (int s = 0; s < 2; ++s) {
    compilations[s] = load_program(files[s], request.frontend);
    if (!compilations[s]) return kUserError;
    sides[s].file = files[s];
    sides[s].program = &compilations[s]->program;
    sides[s].diagram = select_diagram(*compilations[s], request.diagram, true);
    if (!sides[s].diagram) return kUserError;
  }
  return compare_diagrams(sides, request, out) == EquivVerdict::Equivalent ? kSuccess : kUserError;
}

EquivVerdict compare_diagrams(const EquivSide (&given)[2], const EquivRequest &request, std::ostream &out,
                              const std::string &random_label) {
  Side sides[2];
  std::string files[2];
  for (int s = 0; s < 2; ++s) {
    sides[s].side = &given[s];
    files[s] = given[s].file;
    if (!list_slots(*given[s].program, *given[s].diagram, sides[s].inputs, sides[s].params)) return EquivVerdict::Failed;
  }
  const Backend *backend = find_executor(request.backend, request.frontend.plugins);
  if (!backend) return EquivVerdict::Failed;
  // The interfaces must agree: inputs by name, shape and dtype; shared params likewise.
  bool ok = true;
  auto &A = sides[0], &B = sides[1];
  for (const Slot &a : A.inputs) {
    const Slot *match = nullptr;
    for (const Slot &b : B.inputs)
      if (b.name == a.name) match = &b;
    if (!match) {
      std::cerr << "ncd: error: " << files[1] << ": '" << B.side->diagram->name << "' has no input '" << a.name << "' ("
                << files[0] << " has " << a.describe() << ")\n";
      ok = false;
    } else if (!same_slot(a, *match)) {
      std::cerr << "ncd: error: " << files[1] << ": " << match->describe() << " differs from " << files[0] << "'s "
                << a.describe() << "\n";
      ok = false;
    }
  }
  for (const Slot &b : B.inputs) {
    bool found = false;
    for (const Slot &a : A.inputs) found = found || a.name == b.name;
    if (!found) {
      std::cerr << "ncd: error: " << files[0] << ": '" << A.side->diagram->name << "' has no input '" << b.name << "' ("
                << files[1] << " has " << b.describe() << ")\n";
      ok = false;
    }
  }
  for (const Slot &a : A.params)
    for (const Slot &b : B.params)
      if (a.name == b.name && !same_slot(a, b)) {
        std::cerr << "ncd: error: " << files[1] << ": " << b.describe() << " differs from " << files[0] << "'s "
                  << a.describe() << "\n";
        ok = false;
      }
  std::vector<std::string> outputs_a, outputs_b;
  for (int id : A.side->diagram->outputs) outputs_a.push_back(A.side->diagram->value(id).name);
  for (int id : B.side->diagram->outputs) outputs_b.push_back(B.side->diagram->value(id).name);
  {
    auto sa = outputs_a, sb = outputs_b;
    std::sort(sa.begin(), sa.end());
    std::sort(sb.begin(), sb.end());
    if (sa != sb) {
      auto join = [](const std::vector<std::string> &v) {
        std::string out;
        for (const auto &s : v) out += (out.empty() ? "" : ", ") + s;
        return out;
      };
      std::cerr << "ncd: error: the outputs differ: " << files[0] << " has " << join(outputs_a) << "; " << files[1]
                << " has " << join(outputs_b) << "\n";
      ok = false;
    }
  }
  if (!ok) return EquivVerdict::Failed;

  // One draw of the data: the inputs agree (checked above), and a param of the
  // same path gets the same tensor; only params B alone holds are drawn for it.
  RunData data[2];
  bool usage_error = false;
  if (!gather_data(A.inputs, A.params, {}, "", request.seed, data[0], usage_error, random_label))
    return data[0].out_of_memory ? EquivVerdict::OutOfMemory : EquivVerdict::Failed;
  const std::map<std::string, Tensor> *params[2] = {&data[0].params, &data[0].params};
  bool same_params = A.params.size() == B.params.size();
  for (const Slot &b : B.params) same_params = same_params && data[0].params.count(b.name);
  if (!same_params) {
    for (const Slot &b : B.params)
      if (auto it = data[0].params.find(b.name); it != data[0].params.end()) data[1].params.emplace(b.name, it->second);
    if (!gather_data({}, B.params, {}, "", request.seed, data[1], usage_error, random_label))
      return data[1].out_of_memory ? EquivVerdict::OutOfMemory : EquivVerdict::Failed;
    params[1] = &data[1].params;
  }
  std::map<std::string, Tensor> results[2];
  for (int s = 0; s < 2; ++s) {
    ExecuteRequest execute;
    execute.program = sides[s].side->program;
    execute.diagram = sides[s].side->diagram;
    execute.inputs = &data[0].inputs;
    execute.params = params[s];
    execute.options.threads = request.threads;
    bool out_of_memory = false;
    execute.options.out_of_memory = &out_of_memory;
    std::string error;
    if (!backend->execute(execute, results[s], error)) {
      std::cerr << "ncd: error: " << files[s] << ": running '" << sides[s].side->diagram->name << "': " << error << "\n";
      return out_of_memory ? EquivVerdict::OutOfMemory : EquivVerdict::Failed;
    }
  }

  int differing = 0;
  for (int id : A.side->diagram->outputs) {
    const ir::Value &va = A.side->diagram->value(id);
    const ir::Value *vb = nullptr;
    for (int other : B.side->diagram->outputs)
      if (B.side->diagram->value(other).name == va.name) vb = &B.side->diagram->value(other);
    const Tensor &ta = results[0].at(va.name);
    const Tensor &tb = results[1].at(va.name);
    auto names = [](const ir::Program &program, const ir::Value &value) {
      std::vector<std::string> out;
      for (int axis : value.axes) out.push_back(program.axis(axis).name);
      return out;
    };
    std::vector<std::string> na = names(*A.side->program, va), nb = names(*B.side->program, *vb);
    std::string label = va.name + " [";
    for (size_t d = 0; d < na.size(); ++d) label += (d ? ", " : "") + na[d] + "=" + std::to_string(ta.shape[d]);
    label += "] " + std::string(ir::dtype_name(va.dtype));
    // B's element for each of A's positions: the same axes by name, in any order.
    std::vector<int64_t> b_stride(na.size(), 0);
    bool aligned = na.size() == nb.size();
    if (aligned) {
      std::vector<int64_t> strides(nb.size(), 1);
      for (size_t d = nb.size(); d-- > 1;) strides[d - 1] = strides[d] * tb.shape[d];
      for (size_t d = 0; d < na.size() && aligned; ++d) {
        auto it = std::find(nb.begin(), nb.end(), na[d]);
        if (it == nb.end() || tb.shape[static_cast<size_t>(it - nb.begin())] != ta.shape[d]) aligned = false;
        else b_stride[d] = strides[static_cast<size_t>(it - nb.begin())];
      }
    }
    if (!aligned) {
      if (tb.shape == ta.shape) {
        std::vector<int64_t> strides(ta.shape.size(), 1);
        for (size_t d = ta.shape.size(); d-- > 1;) strides[d - 1] = strides[d] * ta.shape[d];
        b_stride = strides;
      } else {
        out << label << ": shapes differ: " << shape_text(ta.shape) << " vs " << shape_text(tb.shape)
                  << ": DIFFERS\n";
        ++differing;
        continue;
      }
    }
    Tolerance tol = default_tolerance(va.dtype);
    if (request.rtol >= 0) tol.rtol = request.rtol;
    if (request.atol >= 0) tol.atol = request.atol;
    double max_abs = 0, max_rel = 0;
    int64_t worst = -1, failures = 0;
    const int64_t n = ta.size();
    std::vector<int64_t> index(ta.shape.size(), 0);
    int64_t b_offset = 0;
    for (int64_t i = 0; i < n; ++i) {
      double a = ta.get_double(i), b = tb.get_double(b_offset);
      bool same = (std::isnan(a) && std::isnan(b)) || a == b;
      double abs_error = same ? 0 : std::fabs(a - b);
      if (std::isnan(abs_error)) abs_error = std::numeric_limits<double>::infinity();
      double scale = std::max(std::fabs(a), std::fabs(b));
      double rel_error = same ? 0 : (scale > 0 ? abs_error / scale : 0);
      if (!same && !(abs_error <= tol.atol + tol.rtol * std::fabs(a))) {
        ++failures;
        if (worst < 0) worst = i;
      }
      if (abs_error > max_abs) max_abs = abs_error;
      if (rel_error > max_rel) max_rel = rel_error;
      for (size_t d = index.size(); d-- > 0;) {
        if (++index[d] < ta.shape[d]) {
          b_offset += b_stride[d];
          break;
        }
        b_offset -= (ta.shape[d] - 1) * b_stride[d];
        index[d] = 0;
      }
    }
    out << label << ": max abs error " << format_number(max_abs) << ", max rel error " << format_number(max_rel)
              << " (rtol " << format_number(tol.rtol) << ", atol " << format_number(tol.atol) << "): ";
    if (failures) {
      ++differing;
      out << "DIFFERS at " << failures << " of " << n << " elements, first at " << index_text(worst, ta.shape)
                << ": " << ta.get_double(worst) << " vs ";
      // The same position in B.
      int64_t linear = worst, offset = 0;
      for (size_t d = ta.shape.size(); d-- > 0;) {
        offset += (linear % ta.shape[d]) * b_stride[d];
        linear /= ta.shape[d];
      }
      out << tb.get_double(offset) << "\n";
    } else {
      out << "ok\n";
    }
  }
  if (differing) {
    out << "not equivalent: " << differing << " of " << A.side->diagram->outputs.size() << " output"
              << (A.side->diagram->outputs.size() == 1 ? "" : "s") << " of '" << A.side->diagram->name << "' differ\n";
    return EquivVerdict::Differs;
  }
  out << "equivalent: " << A.side->diagram->outputs.size() << " output" << (A.side->diagram->outputs.size() == 1 ? "" : "s")
            << " of '" << A.side->diagram->name << "' within tolerance (seed " << request.seed << ")\n";
  return EquivVerdict::Equivalent;
}

Handler setup_equiv(CLI::App &command) {
  auto options = std::make_shared<EquivRequest>();
  command.add_option("a", options->a, "The reference .ncd file")->required()->type_name("A.ncd");
  command.add_option("b", options->b, "The .ncd file compared with it")->required()->type_name("B.ncd");
  command.add_option("--diagram", options->diagram, "The diagram to compare (required when a file has several)")
      ->type_name("NAME");
  command.add_option("--seed", options->seed, "Seed of the random inputs and params (default 1)")->type_name("N");
  command.add_option("--rtol", options->rtol, "Relative tolerance (default by dtype: f32 1e-4, bf16 2e-2, ...)")
      ->type_name("R");
  command.add_option("--atol", options->atol, "Absolute tolerance (default by dtype: f32 1e-5, bf16 1e-2, ...)")
      ->type_name("A");
  command.add_option("--backend", options->backend, "The backend that runs both")->type_name("NAME");
  command.add_option("--threads", options->threads, "Worker threads (default: one per core)")->type_name("N");
  add_frontend_options(command, options->frontend);
  return [options]() -> int { return run_equiv(*options, std::cout); };
}

}  // namespace ncd::cli

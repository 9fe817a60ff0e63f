// Comparing two compiled diagrams on one draw of random data, on a backend:
// what `ncd equiv` and `ncd optimize`'s verification share. The interfaces
// must agree; the figures per output (ncd/equiv.h) are printed to `out`.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <limits>

#include "common.h"
#include "ncd/equiv.h"
#include "param_conversion.h"
#include "run_support.h"

namespace ncd::cli {
namespace {

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
  auto converted = [&](const std::string &path) {
    if (request.conversions)
      for (const ParamConversion &conversion : *request.conversions)
        if (conversion.param == path) return true;
    return false;
  };
  for (const Slot &a : A.params)
    for (const Slot &b : B.params)
      if (a.name == b.name && !same_slot(a, b) && !converted(b.name)) {
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
  if (request.conversions && !request.conversions->empty()) {
    same_params = false;
    std::string error;
    if (!apply_conversions(*request.conversions, A.params, data[0].params, B.params, data[1].params, error)) {
      std::cerr << "ncd: error: " << files[1] << ": " << error << "\n";
      return EquivVerdict::Failed;
    }
  }
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
    Tolerance tol = default_tolerance(va.dtype);
    if (request.rtol >= 0) tol.rtol = request.rtol;
    if (request.atol >= 0) tol.atol = request.atol;
    const OutputDifference diff = compare_output(na, ta, nb, tb, tol);
    if (request.measured && !diff.shapes_differ) {
      // NaN compares false: a NaN difference must still be the largest.
      auto larger = [](double a, double b) { return std::isnan(b) || b > a ? b : a; };
      request.measured->max_abs = larger(request.measured->max_abs, diff.max_abs);
      request.measured->rel_l2 = larger(request.measured->rel_l2, diff.rel_l2);
    }
    if (diff.shapes_differ) {
      out << label << ": shapes differ: " << shape_text(ta.shape) << " vs " << shape_text(tb.shape) << ": DIFFERS\n";
      ++differing;
      continue;
    }
    if (request.max_rel_l2 >= 0) {
      out << label << ": relative L2 error " << format_number(diff.rel_l2) << ", max abs error "
          << format_number(diff.max_abs) << " (tolerance " << format_number(request.max_rel_l2) << "): ";
      if (!(diff.rel_l2 <= request.max_rel_l2)) {
        ++differing;
        out << "BEYOND\n";
      } else {
        out << "ok\n";
      }
      continue;
    }
    out << label << ": max abs error " << format_number(diff.max_abs) << ", max rel error "
        << format_number(diff.max_rel) << " (rtol " << format_number(tol.rtol) << ", atol " << format_number(tol.atol)
        << "): ";
    if (diff.failures) {
      ++differing;
      out << "DIFFERS at " << diff.failures << " of " << ta.size() << " elements, first at "
          << index_text(diff.first, ta.shape) << ": " << diff.a_value << " vs " << diff.b_value << "\n";
    } else {
      out << "ok\n";
    }
  }
  if (request.max_rel_l2 >= 0) {  // an inexact rewrite: measured, not called equivalent
    const size_t outputs = A.side->diagram->outputs.size();
    out << (differing ? std::to_string(differing) + " of " : std::string("all ")) << outputs << " output"
        << (outputs == 1 ? "" : "s") << " of '" << A.side->diagram->name << "' "
        << (differing ? "beyond" : "within") << " a relative L2 error of " << format_number(request.max_rel_l2)
        << " (seed " << request.seed << ")\n";
    return differing ? EquivVerdict::Differs : EquivVerdict::Equivalent;
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

}  // namespace ncd::cli

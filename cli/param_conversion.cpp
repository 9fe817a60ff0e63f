// Param conversions (param_conversion.h, docs/ADVISOR.md "Param conversions"):
// the published recipes that turn the input's params into a rewritten
// diagram's, applied to the verification's data. Tensors are addressed by axis
// name, so a conversion does not care in which order either side stores them.
//
// Preconditions: the slots describe the tensors of `input_values` (the
// verification's draw, at its sizes); every conversion came from
// make_conversion.
#include "param_conversion.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <set>

#include "ncd/diagnostics.h"

namespace ncd::cli {
namespace {

constexpr int kMaxSweeps = 100;
constexpr double kMaxSvdWork = 5e8;  // rows x columns x the smaller side (800^3): about a second per sweep

const Slot *find_slot(const std::vector<Slot> &slots, const std::string &path) {
  for (const Slot &slot : slots)
    if (slot.name == path) return &slot;
  return nullptr;
}

std::vector<std::string> slot_names(const std::vector<Slot> &slots) {
  std::vector<std::string> out;
  for (const Slot &slot : slots) out.push_back(slot.name);
  return out;
}

int64_t axis_size(const Slot &slot, const std::string &axis) {
  for (size_t d = 0; d < slot.axis_names.size(); ++d)
    if (slot.axis_names[d] == axis) return slot.shape[d];
  return -1;
}

std::string axes_text(const Slot &slot) {
  std::string out = "[";
  for (size_t d = 0; d < slot.axis_names.size(); ++d)
    out += (d ? ", " : "") + slot.axis_names[d] + "=" + std::to_string(slot.shape[d]);
  return out + "]";
}

// Row-major strides of `slot`'s tensor, by axis name.
std::map<std::string, int64_t> strides(const Slot &slot) {
  std::map<std::string, int64_t> out;
  int64_t stride = 1;
  for (size_t d = slot.axis_names.size(); d-- > 0;) {
    out[slot.axis_names[d]] = stride;
    stride *= slot.shape[d];
  }
  return out;
}

// Calls fn(index, offset) for every element of `slot` in row-major order; the
// offset is that element's position in a tensor of strides `other` (an axis
// of `slot` that `other` lacks contributes nothing).
template <typename Fn>
void for_each_element(const Slot &slot, const std::map<std::string, int64_t> &other, Fn &&fn) {
  const size_t rank = slot.shape.size();
  std::vector<int64_t> index(rank, 0), step(rank, 0);
  int64_t total = 1;
  for (size_t d = 0; d < rank; ++d) {
    total *= slot.shape[d];
    auto it = other.find(slot.axis_names[d]);
    step[d] = it == other.end() ? 0 : it->second;
  }
  int64_t offset = 0;
  for (int64_t i = 0; i < total; ++i) {
    fn(index, offset);
    for (size_t d = rank; d-- > 0;) {
      offset += step[d];
      if (++index[d] < slot.shape[d]) break;
      offset -= step[d] * slot.shape[d];
      index[d] = 0;
    }
  }
}

Tensor make_tensor(const Slot &slot, std::vector<double> values) {
  Tensor out = Tensor::zeros(slot.dtype, slot.shape);
  for (size_t i = 0; i < values.size(); ++i) out.values[i] = static_cast<float>(values[i]);
  convert_floats(out.values.data(), static_cast<int64_t>(out.values.size()), slot.dtype);
  return out;
}

// One SVD of a matrix view of a param, shared by its left and right factors.
struct Svd {
  std::vector<double> u, s, v;
};

// The truncated SVD of `from` viewed as a matrix: rows are the axes `rows`
// (in that order), columns the rest of `from`'s (in its order). Fills the
// factor the conversion asks for, laid out as `param`. `cache` holds the
// decompositions already computed, by source and row axes.
bool svd_factor(const ParamConversion &conversion, const Slot &from, const Tensor &value, const Slot &param,
                std::map<std::string, Svd> &cache, std::vector<double> &out, std::string &error) {
  const bool left = conversion.op == ParamConversion::Op::SvdLeft;
  std::vector<std::string> mine;  // the param's axes but the rank: rows (left) or columns (right)
  for (const std::string &axis : param.axis_names)
    if (axis != conversion.rank) mine.push_back(axis);
  for (const std::string &axis : mine)
    if (axis_size(from, axis) < 0 || axis_size(from, axis) != axis_size(param, axis)) {
      error = "axis '" + axis + "' of '" + param.name + "' " + axes_text(param) + " is not one of '" + from.name +
              "' " + axes_text(from) + " of the same size";
      return false;
    }
  std::vector<std::string> others;
  for (const std::string &axis : from.axis_names)
    if (std::find(mine.begin(), mine.end(), axis) == mine.end()) others.push_back(axis);
  if (mine.empty() || others.empty()) {
    error = "'" + param.name + "' " + axes_text(param) + " must hold some but not all of the axes of '" + from.name +
            "' " + axes_text(from) + ", and '" + conversion.rank + "'";
    return false;
  }
  const std::vector<std::string> &row_axes = left ? mine : others, &col_axes = left ? others : mine;
  Slot rows_slot, cols_slot;
  for (const std::string &axis : row_axes) {
    rows_slot.axis_names.push_back(axis);
    rows_slot.shape.push_back(axis_size(from, axis));
  }
  for (const std::string &axis : col_axes) {
    cols_slot.axis_names.push_back(axis);
    cols_slot.shape.push_back(axis_size(from, axis));
  }
  const int64_t m = std::accumulate(rows_slot.shape.begin(), rows_slot.shape.end(), int64_t{1}, std::multiplies<>());
  const int64_t n = std::accumulate(cols_slot.shape.begin(), cols_slot.shape.end(), int64_t{1}, std::multiplies<>());
  const int64_t rank = axis_size(param, conversion.rank);
  // Jacobi costs about rows x columns x the smaller side per sweep: verification shrinks the axes, but
  // one it cannot shrink may leave a matrix that would take minutes.
  if (static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(std::min(m, n)) > kMaxSvdWork) {
    error = "the " + std::to_string(m) + " x " + std::to_string(n) +
            " matrix is too large for the SVD at the verification's sizes (a smaller --verify-size)";
    return false;
  }
  if (rank > std::min(m, n)) {
    error = "rank '" + conversion.rank + "' = " + std::to_string(rank) + " exceeds min(" + std::to_string(m) + ", " +
            std::to_string(n) + "), the matrix's smaller side";
    return false;
  }
  std::string key = from.name;
  for (const std::string &axis : row_axes) key += "\n" + axis;
  Svd &svd = cache[key];
  if (svd.s.empty()) {
    const auto from_strides = strides(from);
    std::vector<int64_t> row_offsets, col_offsets;
    for_each_element(rows_slot, from_strides,
                     [&](const std::vector<int64_t> &, int64_t at) { row_offsets.push_back(at); });
    for_each_element(cols_slot, from_strides,
                     [&](const std::vector<int64_t> &, int64_t at) { col_offsets.push_back(at); });
    std::vector<double> matrix(static_cast<size_t>(m * n));
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) matrix[i * n + j] = value.get(row_offsets[i] + col_offsets[j]);
    thin_svd(matrix, m, n, svd.u, svd.s, svd.v);
  }
  const std::vector<double> &u = svd.u, &s = svd.s, &v = svd.v;
  const int64_t k = std::min(m, n);
  // The factor as [mine..., rank] in a scratch slot, then laid out as the param.
  Slot scratch;
  scratch.axis_names = mine;
  for (const std::string &axis : mine) scratch.shape.push_back(axis_size(from, axis));
  scratch.axis_names.push_back(conversion.rank);
  scratch.shape.push_back(rank);
  const std::vector<double> &vectors = left ? u : v;
  std::vector<double> factor;
  const int64_t count = left ? m : n;
  for (int64_t i = 0; i < count; ++i)
    for (int64_t r = 0; r < rank; ++r) factor.push_back(vectors[i * k + r] * std::sqrt(s[r]));
  out.assign(factor.size(), 0);
  size_t i = 0;
  for_each_element(param, strides(scratch), [&](const std::vector<int64_t> &, int64_t at) { out[i++] = factor[at]; });
  return true;
}

}  // namespace

const char *conversion_op_name(ParamConversion::Op op) {
  switch (op) {
    case ParamConversion::Op::Copy: return "copy";
    case ParamConversion::Op::Mean: return "mean";
    case ParamConversion::Op::SvdLeft: return "svd_left";
    case ParamConversion::Op::SvdRight: return "svd_right";
  }
  return "copy";
}

bool make_conversion(const std::map<std::string, std::string> &fields, ParamConversion &out, std::string &error) {
  auto field = [&](const char *name, std::string &into) {
    auto it = fields.find(name);
    if (it == fields.end() || it->second.empty()) {
      error = std::string("needs a string \"") + name + "\"";
      return false;
    }
    into = it->second;
    return true;
  };
  std::string op;
  if (!field("op", op)) return false;
  bool known = false;
  for (auto candidate : {ParamConversion::Op::Copy, ParamConversion::Op::Mean, ParamConversion::Op::SvdLeft,
                         ParamConversion::Op::SvdRight})
    if (op == conversion_op_name(candidate)) {
      out.op = candidate;
      known = true;
    }
  if (!known) {
    error = "has an unknown op \"" + op + "\" (ops: copy, mean, svd_left, svd_right)" +
            did_you_mean(op, {"copy", "mean", "svd_left", "svd_right"});
    return false;
  }
  if (!field("param", out.param) || !field("from", out.from)) return false;
  if (out.op == ParamConversion::Op::Mean) return field("axis", out.axis) && field("into", out.into);
  if (out.op == ParamConversion::Op::SvdLeft || out.op == ParamConversion::Op::SvdRight) return field("rank", out.rank);
  return true;
}

bool apply_conversions(const std::vector<ParamConversion> &conversions, const std::vector<Slot> &input_params,
                       const std::map<std::string, Tensor> &input_values, const std::vector<Slot> &candidate_params,
                       std::map<std::string, Tensor> &out, std::string &error) {
  std::set<std::string> done;
  std::map<std::string, Svd> svds;
  for (size_t c = 0; c < conversions.size(); ++c) {
    const ParamConversion &conversion = conversions[c];
    const std::string where = "params[" + std::to_string(c) + "] (\"" + conversion.param + "\"): ";
    const Slot *param = find_slot(candidate_params, conversion.param);
    if (!param) {
      error = where + "the candidate has no param '" + conversion.param + "'" +
              did_you_mean(conversion.param, slot_names(candidate_params));
      return false;
    }
    const Slot *from = find_slot(input_params, conversion.from);
    auto value = input_values.find(conversion.from);
    if (!from || value == input_values.end()) {
      error = where + "the input has no param '" + conversion.from + "'" +
              did_you_mean(conversion.from, slot_names(input_params));
      return false;
    }
    if (!done.insert(conversion.param).second) {
      error = where + "'" + conversion.param + "' is converted twice";
      return false;
    }
    if (param->axis_names.size() != param->shape.size() || from->axis_names.size() != from->shape.size()) {
      error = where + "a param of a repeat (stacked instances) cannot be converted";
      return false;
    }
    std::vector<double> values;
    const Tensor &source = value->second;
    switch (conversion.op) {
      case ParamConversion::Op::Copy: {
        std::multiset<std::string> a(param->axis_names.begin(), param->axis_names.end()),
            b(from->axis_names.begin(), from->axis_names.end());
        bool fits = a == b;
        for (const std::string &axis : param->axis_names)
          fits = fits && axis_size(*param, axis) == axis_size(*from, axis);
        if (!fits) {
          error = where + "'" + param->name + "' " + axes_text(*param) + " and '" + from->name + "' " +
                  axes_text(*from) + " differ in their axes";
          return false;
        }
        for_each_element(*param, strides(*from),
                         [&](const std::vector<int64_t> &, int64_t at) { values.push_back(source.get(at)); });
        break;
      }
      case ParamConversion::Op::Mean: {
        const int64_t whole = axis_size(*from, conversion.axis), groups = axis_size(*param, conversion.into);
        bool fits = whole > 0 && groups > 0 && whole % groups == 0 && axis_size(*param, conversion.axis) < 0 &&
                    param->axis_names.size() == from->axis_names.size();
        for (const std::string &axis : param->axis_names)
          fits = fits && (axis == conversion.into || axis_size(*from, axis) == axis_size(*param, axis));
        if (!fits) {
          error = where + "'" + param->name + "' " + axes_text(*param) + " must be '" + from->name + "' " +
                  axes_text(*from) + " with axis '" + conversion.axis + "' replaced by '" + conversion.into +
                  "', whose size divides it";
          return false;
        }
        // Group g pools the consecutive entries g*size ... (g+1)*size - 1 (Ainslie et al. 2023).
        const int64_t size = whole / groups;
        auto from_strides = strides(*from);
        const int64_t stride = from_strides.at(conversion.axis);
        size_t into_dim = 0;
        for (size_t d = 0; d < param->axis_names.size(); ++d)
          if (param->axis_names[d] == conversion.into) into_dim = d;
        for_each_element(*param, from_strides, [&](const std::vector<int64_t> &index, int64_t at) {
          double sum = 0;
          for (int64_t j = 0; j < size; ++j) sum += source.get(at + (index[into_dim] * size + j) * stride);
          values.push_back(sum / static_cast<double>(size));
        });
        break;
      }
      case ParamConversion::Op::SvdLeft:
      case ParamConversion::Op::SvdRight:
        if (axis_size(*param, conversion.rank) < 0 || axis_size(*from, conversion.rank) >= 0) {
          error = where + "'" + param->name + "' " + axes_text(*param) + " must have the rank axis '" +
                  conversion.rank + "', and '" + from->name + "' " + axes_text(*from) + " must not";
          return false;
        }
        if (!svd_factor(conversion, *from, source, *param, svds, values, error)) {
          error = where + error;
          return false;
        }
        break;
    }
    out[conversion.param] = make_tensor(*param, std::move(values));
  }
  return true;
}

void thin_svd(const std::vector<double> &a, int64_t m, int64_t n, std::vector<double> &u, std::vector<double> &s,
              std::vector<double> &v) {
  // One-sided Jacobi (Hestenes) on the columns of the taller orientation:
  // rotations make the columns of W = A V orthogonal, then W = U diag(s).
  // Columns are stored contiguously (col[j] holds column j), as the rotations read them.
  const bool transposed = n > m;
  const int64_t rows = transposed ? n : m, cols = transposed ? m : n;
  std::vector<std::vector<double>> col(static_cast<size_t>(cols), std::vector<double>(static_cast<size_t>(rows)));
  std::vector<std::vector<double>> rot(static_cast<size_t>(cols), std::vector<double>(static_cast<size_t>(cols), 0.0));
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) col[j][i] = transposed ? a[j * n + i] : a[i * n + j];
  for (int64_t j = 0; j < cols; ++j) rot[j][j] = 1;
  for (int sweep = 0; sweep < kMaxSweeps; ++sweep) {
    bool rotated = false;
    for (int64_t p = 0; p + 1 < cols; ++p)
      for (int64_t q = p + 1; q < cols; ++q) {
        double *x = col[p].data(), *y = col[q].data();
        double alpha = 0, beta = 0, gamma = 0;
        for (int64_t i = 0; i < rows; ++i) {
          alpha += x[i] * x[i];
          beta += y[i] * y[i];
          gamma += x[i] * y[i];
        }
        if (gamma == 0 || std::fabs(gamma) <= 1e-15 * std::sqrt(alpha * beta)) continue;
        rotated = true;
        const double zeta = (beta - alpha) / (2 * gamma);
        const double t = (zeta >= 0 ? 1.0 : -1.0) / (std::fabs(zeta) + std::sqrt(1 + zeta * zeta));
        const double c = 1 / std::sqrt(1 + t * t), sn = c * t;
        for (int64_t i = 0; i < rows; ++i) {
          const double xi = x[i], yi = y[i];
          x[i] = c * xi - sn * yi;
          y[i] = sn * xi + c * yi;
        }
        double *rx = rot[p].data(), *ry = rot[q].data();
        for (int64_t i = 0; i < cols; ++i) {
          const double xi = rx[i], yi = ry[i];
          rx[i] = c * xi - sn * yi;
          ry[i] = sn * xi + c * yi;
        }
      }
    if (!rotated) break;
  }
  std::vector<double> norms(static_cast<size_t>(cols));
  for (int64_t j = 0; j < cols; ++j) {
    double sum = 0;
    for (double x : col[j]) sum += x * x;
    norms[j] = std::sqrt(sum);
  }
  std::vector<int64_t> order(static_cast<size_t>(cols));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t x, int64_t y) { return norms[x] > norms[y]; });
  // W's normalised columns are the left vectors of the oriented matrix, the
  // rotation's columns its right ones; a transposed matrix swaps them.
  std::vector<double> left(static_cast<size_t>(rows * cols)), right(static_cast<size_t>(cols * cols));
  s.assign(static_cast<size_t>(cols), 0);
  for (int64_t r = 0; r < cols; ++r) {
    const int64_t j = order[r];
    s[r] = norms[j];
    for (int64_t i = 0; i < rows; ++i) left[i * cols + r] = norms[j] > 0 ? col[j][i] / norms[j] : 0;
    for (int64_t i = 0; i < cols; ++i) right[i * cols + r] = rot[j][i];
  }
  u = transposed ? right : left;
  v = transposed ? left : right;
}

}  // namespace ncd::cli

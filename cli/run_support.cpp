// Data for running diagrams: inputs and params from files or a seed.
#include "run_support.h"

#include <algorithm>
#include <filesystem>
#include <iostream>
#include <new>
#include <set>
#include <stdexcept>

#include "common.h"
#include "ncd/diagnostics.h"
#include "ncd/output.h"

namespace ncd::cli {
namespace fs = std::filesystem;

namespace {

std::string axes_text(const std::vector<std::string> &names, const std::vector<int64_t> &shape) {
  std::string out = "[";
  for (size_t i = 0; i < names.size(); ++i) out += (i ? ", " : "") + names[i] + "=" + std::to_string(shape[i]);
  return out + "]";
}

// The size of the smallest axis that `value` (an integer input) indexes through a gather, if any.
std::optional<int64_t> gather_bound(const ir::Program &program, const ir::Diagram &diagram, int value,
                                    const AxisSizes &sizes, int depth) {
  std::optional<int64_t> best;
  auto note = [&](std::optional<int64_t> n) {
    if (n && (!best || *n < *best)) best = n;
  };
  if (depth > 64) return best;
  ir::for_each_op(diagram.body, [&](const ir::Op &op) {
    if (op.kind == ir::OpKind::Access) {
      const ir::Value &source = diagram.value(op.operands.at(0));
      for (size_t i = 0; i < op.access.size() && i < source.axes.size(); ++i) {
        const ir::AccessIndex &index = op.access[i];
        if (index.kind == ir::AccessIndex::Kind::Gather &&
            op.operands.at(static_cast<size_t>(index.gather_operand)) == value)
          note(sizes.size(source.axes[i]));
      }
    } else if (op.kind == ir::OpKind::Call) {
      const ir::Diagram &callee = *program.diagrams.at(static_cast<size_t>(op.callee));
      for (size_t k = 0; k < op.operands.size() && k < callee.inputs.size(); ++k)
        if (op.operands[k] == value) {
          AxisSizes inner(program, op, sizes);
          note(gather_bound(program, callee, callee.inputs[k], inner, depth + 1));
        }
    }
  });
  return best;
}

RandomSpec random_spec(ir::DType dtype, const std::vector<int64_t> &shape, bool param, std::optional<int64_t> bound) {
  RandomSpec spec;
  if (dtype == ir::DType::I32 || dtype == ir::DType::I8) {
    if (bound) {
      spec.low = 0;
      spec.high = std::min<int64_t>(*bound, dtype == ir::DType::I8 ? 128 : *bound);
    } else {
      spec.low = -8;
      spec.high = 8;
    }
    return spec;
  }
  if (param && shape.size() >= 2) {
    int64_t count = 1;
    for (int64_t d : shape) count *= d;
    double fan_in = static_cast<double>(count / std::max<int64_t>(shape.back(), 1));
    spec.scale = 1.0 / std::sqrt(std::max(fan_in, 1.0));
  }
  return spec;
}

bool is_safetensors(const std::string &path) {
  std::error_code code;
  return fs::is_regular_file(path, code) ||
         (path.size() > 12 && path.compare(path.size() - 12, 12, ".safetensors") == 0);
}

}  // namespace

std::string Slot::describe() const {
  return std::string(param ? "param" : "input") + " '" + name + "' " + axes_text(axis_names, shape) + " " +
         std::string(ir::dtype_name(dtype));
}

bool list_slots(const ir::Program &program, const ir::Diagram &diagram, std::vector<Slot> &inputs,
                std::vector<Slot> &params) {
  AxisSizes sizes(program);
  for (int id : diagram.inputs) {
    const ir::Value &value = diagram.value(id);
    Slot slot;
    slot.name = value.name;
    slot.dtype = value.dtype;
    for (int axis : value.axes) {
      auto size = sizes.size(axis);
      if (!size) {
        std::cerr << "ncd: error: input '" << value.name << "' of '" << diagram.name << "': " << sizes.missing_message(axis)
                  << "\n";
        return false;
      }
      slot.axis_names.push_back(program.axis(axis).name);
      slot.shape.push_back(*size);
    }
    slot.random = random_spec(value.dtype, slot.shape, false, gather_bound(program, diagram, id, sizes, 0));
    inputs.push_back(slot);
  }
  std::vector<ParamInstance> instances;
  std::string error;
  if (!list_param_instances(program, diagram, instances, error)) {
    std::cerr << "ncd: error: " << error << "\n";
    return false;
  }
  for (const ParamInstance &instance : instances) {
    Slot slot;
    slot.name = instance.path;
    slot.param = true;
    slot.dtype = instance.dtype;
    slot.axis_names = instance.axis_names;
    slot.shape = instance.shape;
    slot.random = random_spec(instance.dtype, instance.shape, true, std::nullopt);
    params.push_back(slot);
  }
  return true;
}

bool sizes_from_inputs(const ir::Program &program, const ir::Diagram &diagram, const std::vector<std::string> &in_options,
                       std::vector<std::string> &defines) {
  std::set<int> bound;
  for (int id : diagram.inputs) {
    const ir::Value &value = diagram.value(id);
    std::vector<size_t> open;  // dimensions whose axis has no size yet
    for (size_t j = 0; j < value.axes.size(); ++j) {
      const ir::Axis &axis = program.axis(value.axes[j]);
      if (!axis.size && !axis.derived && !bound.count(axis.id)) open.push_back(j);
    }
    if (open.empty()) continue;
    for (const std::string &option : in_options) {
      auto eq = option.find('=');
      if (eq == std::string::npos || option.substr(0, eq) != value.name) continue;
      const std::string path = option.substr(eq + 1);
      RawArray header;
      std::string error;
      if (!read_npy_header(path, header, error)) {
        std::cerr << "ncd: error: " << error << "\n";
        return false;
      }
      if (header.shape.size() != value.axes.size()) {
        std::string axes;
        for (int axis : value.axes) axes += (axes.empty() ? "" : ", ") + program.axis(axis).name;
        std::cerr << "ncd: error: " << path << " has shape " << shape_text(header.shape) << ", but input '" << value.name
                  << "' has " << value.axes.size() << " axes [" << axes << "]\n";
        return false;
      }
      for (size_t j : open) {
        const int axis = value.axes[j];
        if (bound.count(axis) || header.shape[j] < 1) continue;
        bound.insert(axis);
        defines.push_back(program.axis(axis).name + "=" + std::to_string(header.shape[j]));
      }
      break;
    }
  }
  return true;
}

bool read_slot_npy(const std::string &path, const Slot &slot, Tensor &out) {
  RawArray array;
  std::string error;
  // No .npy of the slot's shape is larger than its data at 8 bytes an element
  // plus a header: a larger file (or an endless one, /dev/zero) is refused early.
  // The header first: a file of the wrong shape is refused before its data is read
  // (tensor_from_array checks dtype and shape before it touches the data).
  RawArray header;
  if (read_npy_header(path, header, error) && header.shape != slot.shape &&
      !tensor_from_array(header, slot.dtype, slot.shape, out, error)) {
    std::cerr << "ncd: error: " << path << ": " << error << " for " << slot.describe() << "\n";
    return false;
  }
  double elements = 1;
  for (int64_t d : slot.shape) elements *= static_cast<double>(d);
  const double most = 8 * elements + (1 << 20);
  if (!read_npy(path, array, error, most < 1.8e19 ? static_cast<uint64_t>(most) : 0)) {
    std::cerr << "ncd: error: " << error << " (for " << slot.describe() << ")\n";
    return false;
  }
  if (!tensor_from_array(array, slot.dtype, slot.shape, out, error)) {
    std::cerr << "ncd: error: " << path << ": " << error << " for " << slot.describe() << "\n";
    return false;
  }
  return true;
}

bool gather_data(const std::vector<Slot> &inputs, const std::vector<Slot> &params,
                 const std::vector<std::string> &in_options, const std::string &params_option,
                 std::optional<uint64_t> seed, RunData &data, bool &usage_error, const std::string &random_label) {
  bool ok = true;
  usage_error = false;
  std::map<std::string, const Slot *> by_name;
  std::vector<std::string> input_names;
  for (const Slot &slot : inputs) {
    by_name[slot.name] = &slot;
    input_names.push_back(slot.name);
  }
  // --in NAME=PATH
  for (const std::string &option : in_options) {
    auto eq = option.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == option.size()) {
      std::cerr << "ncd: error: --in expects NAME=FILE.npy, not '" << option << "'\n";
      usage_error = true;
      ok = false;
      continue;
    }
    std::string name = option.substr(0, eq), path = option.substr(eq + 1);
    auto it = by_name.find(name);
    if (it == by_name.end()) {
      std::string known;
      for (const auto &n : input_names) known += (known.empty() ? "" : ", ") + n;
      std::cerr << "ncd: error: " << path << ": --in names '" << name << "', which is not an input"
                << did_you_mean(name, input_names) << " (inputs: " << (known.empty() ? "none" : known) << ")\n";
      ok = false;
      continue;
    }
    if (data.inputs.count(name)) {
      std::cerr << "ncd: error: " << path << ": input '" << name << "' is given twice\n";
      ok = false;
      continue;
    }
    Tensor tensor;
    if (!read_slot_npy(path, *it->second, tensor)) {
      ok = false;
      continue;
    }
    data.inputs[name] = std::move(tensor);
  }
  // --params DIR (one NAME.npy per param) or FILE.safetensors
  if (!params_option.empty()) {
    std::error_code code;
    if (fs::is_directory(params_option, code)) {
      std::set<std::string> expected;
      for (const Slot &slot : params) {
        std::string path = (fs::path(params_option) / (slot.name + ".npy")).string();
        expected.insert(slot.name + ".npy");
        if (!fs::exists(path, code)) {
          if (!seed) {
            std::cerr << "ncd: error: " << path << ": no such file, for " << slot.describe() << "\n";
            ok = false;
          }
          continue;
        }
        Tensor tensor;
        if (!read_slot_npy(path, slot, tensor)) {
          ok = false;
          continue;
        }
        data.params[slot.name] = std::move(tensor);
      }
      std::vector<std::string> stray;
      for (const auto &entry : fs::directory_iterator(params_option, code)) {
        std::string file = entry.path().filename().string();
        if (entry.path().extension() == ".npy" && !expected.count(file)) stray.push_back(file);
      }
      std::sort(stray.begin(), stray.end());
      for (const auto &file : stray)
        std::cerr << "ncd: warning: " << (fs::path(params_option) / file).string() << " matches no param of this diagram\n";
    } else if (is_safetensors(params_option)) {
      SafetensorsFile file;
      std::string error;
      if (!read_safetensors(params_option, file, error)) {
        std::cerr << "ncd: error: " << error << "\n";
        return false;
      }
      std::set<std::string> used;
      for (const Slot &slot : params) {
        auto it = file.tensors.find(slot.name);
        if (it == file.tensors.end()) {
          if (!seed) {
            std::vector<std::string> names;
            for (auto &[name, array] : file.tensors) names.push_back(name);
            std::cerr << "ncd: error: " << params_option << ": no tensor '" << slot.name << "'"
                      << did_you_mean(slot.name, names) << ", for " << slot.describe() << "\n";
            ok = false;
          }
          continue;
        }
        used.insert(slot.name);
        Tensor tensor;
        if (!tensor_from_array(it->second, slot.dtype, slot.shape, tensor, error)) {
          std::cerr << "ncd: error: " << params_option << ": tensor '" << slot.name << "' " << error << " for "
                    << slot.describe() << "\n";
          ok = false;
          continue;
        }
        data.params[slot.name] = std::move(tensor);
      }
      for (auto &[name, array] : file.tensors)
        if (!used.count(name))
          std::cerr << "ncd: warning: " << params_option << ": tensor '" << name << "' matches no param of this diagram\n";
    } else {
      std::error_code exists_code;
      std::cerr << "ncd: error: " << params_option
                << (fs::exists(params_option, exists_code) ? ": neither a folder nor a .safetensors file"
                                                           : ": no such file or folder")
                << " (--params takes a folder of .npy files or a .safetensors file)\n";
      return false;
    }
  }
  if (!ok) return false;
  // What is still missing: random data, or an error naming it.
  std::vector<const Slot *> missing;
  for (const Slot &slot : inputs)
    if (!data.inputs.count(slot.name)) missing.push_back(&slot);
  for (const Slot &slot : params)
    if (!data.params.count(slot.name)) missing.push_back(&slot);
  if (!seed) {
    if (missing.empty()) return true;
    size_t shown = 0;
    for (const Slot *slot : missing) {
      if (shown++ == 8) {
        std::cerr << "ncd: error: ... and " << missing.size() - 8 << " more\n";
        break;
      }
      std::cerr << "ncd: error: " << slot->describe() << " was not given; pass "
                << (slot->param ? "--params DIR|FILE.safetensors" : "--in " + slot->name + "=FILE.npy")
                << " or --random SEED\n";
    }
    return false;
  }
  // Refuse before allocating: with memory overcommit a too-large request is
  // not refused by the allocator but killed by the system part-way through.
  double total = 0, largest_bytes = 0;
  const Slot *largest = nullptr;
  for (const Slot *slot : missing) {
    double bytes = 4;  // every dtype is held as float32 or int32
    for (int64_t d : slot->shape) bytes *= static_cast<double>(d);
    total += bytes;
    if (bytes > largest_bytes) largest_bytes = bytes, largest = slot;
  }
  const uint64_t available = available_memory();
  if (largest && available && total > static_cast<double>(available)) {
    data.out_of_memory = true;
    std::cerr << "ncd: error: " << random_label << ": the " << missing.size() << " generated inputs and params need "
              << bytes_text(total) << ", more than the " << bytes_text(static_cast<double>(available))
              << " of memory available; the largest is " << largest->describe() << " (" << bytes_text(largest_bytes)
              << "); choose smaller axis sizes with -D\n";
    return false;
  }
  for (const Slot *slot : missing) {
    Tensor tensor;
    try {
      tensor = random_tensor(*seed, (slot->param ? "param/" : "input/") + slot->name, slot->dtype, slot->shape,
                             slot->random);
    } catch (const std::bad_alloc &) {
      data.out_of_memory = true;
      std::cerr << "ncd: error: " << random_label << ": out of memory generating " << slot->describe() << "\n";
      return false;
    } catch (const std::length_error &) {
      data.out_of_memory = true;
      std::cerr << "ncd: error: " << random_label << ": " << slot->describe() << " is too large to hold in memory\n";
      return false;
    }
    if (slot->param) {
      data.params[slot->name] = std::move(tensor);
      data.generated_params.push_back(slot->name);
    } else {
      data.inputs[slot->name] = std::move(tensor);
      data.generated_inputs.push_back(slot->name);
    }
  }
  return true;
}

const Backend *find_executor(const std::string &name, const std::vector<std::string> &plugins) {
  Registry *registry = load_registry(plugins);
  if (!registry) return nullptr;
  const Backend *backend = registry->backend(name);
  if (!backend) {
    std::cerr << "ncd: error: " << registry->describe_miss("backend", name) << "\n";
    return nullptr;
  }
  if (!backend->can_execute()) {
    std::cerr << "ncd: error: backend '" << name << "' does not run diagrams\n";
    return nullptr;
  }
  return backend;
}

bool write_npy(const std::string &path, const Tensor &tensor) {
  return write_or_report(path, npy_bytes(array_from_tensor(tensor, true)));
}

}  // namespace ncd::cli

// The arithmetic and the streaming of `ncd merge` (core/include/ncd/merge.h,
// docs/MERGE.md for the formulas and their sources).
//
// A tensor is processed in chunks of kChunk elements, each input's chunk
// mapped read-only from its file just for the time it is converted to
// float64: mapping whole files would make the address space, not only the
// resident memory, grow with the model, and `ulimit -v` users would see a
// merge of files larger than their limit fail. Two methods need a look at the
// whole tensor before the first output element: slerp (the angle between the
// flattened tensors, one pass of dot products) and TIES (each task vector's
// top-k magnitude threshold, found by four streamed passes of a radix select).
#include "ncd/merge.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>

#include "ncd/diagnostics.h"
#include "ncd/tensor.h"
#include "elements.h"

namespace ncd {
namespace {

namespace fs = std::filesystem;

constexpr int64_t kChunk = int64_t{1} << 16;

// mergekit's threshold: flattened tensors this close to colinear are
// interpolated linearly, where sin θ would divide by almost nothing.
constexpr double kSlerpColinear = 0.9995;

std::optional<ElementType> element_type_of(ir::DType dtype) {
  switch (dtype) {
    case ir::DType::F32: return ElementType::F32;
    case ir::DType::F16: return ElementType::F16;
    case ir::DType::BF16: return ElementType::BF16;
    case ir::DType::F8E4M3: return ElementType::F8E4M3;
    case ir::DType::F8E5M2: return ElementType::F8E5M2;
    default: return std::nullopt;
  }
}

// One checkpoint: its header, and a descriptor to map chunks of its data from.
struct Checkpoint {
  std::string path;
  SafetensorsHeader header;
  int fd = -1;
  Checkpoint() = default;
  Checkpoint(const Checkpoint &) = delete;
  Checkpoint &operator=(const Checkpoint &) = delete;
  ~Checkpoint() {
    if (fd >= 0) ::close(fd);
  }
};

// Elements [first, first + count) of tensor `name` of `file`, as float64.
bool load_chunk(const Checkpoint &file, const std::string &name, int64_t first, int64_t count, double *out,
                std::string &error) {
  const SafetensorsEntry &entry = file.header.tensors.at(name);
  const int width = element_bytes(entry.type);
  const uint64_t begin = file.header.data_start + entry.begin + static_cast<uint64_t>(first) * width;
  const uint64_t length = static_cast<uint64_t>(count) * width;
  if (length == 0) return true;
  static const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  const uint64_t aligned = begin / page * page;
  const size_t span = static_cast<size_t>(begin - aligned + length);
  void *map = ::mmap(nullptr, span, PROT_READ, MAP_PRIVATE, file.fd, static_cast<off_t>(aligned));
  if (map == MAP_FAILED) {
    error = file.path + ": cannot map tensor '" + name + "': " + std::strerror(errno);
    return false;
  }
  const auto *bytes = static_cast<const unsigned char *>(map) + (begin - aligned);
  for (int64_t i = 0; i < count; ++i) out[i] = data::element_value(bytes + i * width, entry.type);
  ::munmap(map, span);
  return true;
}

// SplitMix64 of one state: its output function after one step of γ.
uint64_t splitmix64(uint64_t x) { return data::mix64(x + data::kGolden); }

uint64_t dare_key(uint64_t seed, const std::string &path, uint64_t input) {
  return splitmix64(splitmix64(seed ^ data::fnv1a64(path)) + input);
}

bool dare_keep_keyed(uint64_t key, uint64_t element, double density) {
  const uint64_t r = splitmix64(key + element);
  return static_cast<double>(r >> 11) * 0x1.0p-53 < density;
}

std::string param_description(const MergeParam &param) {
  return std::string(dtype_name(param.dtype)) + " " + shape_text(param.shape);
}

// Each param present with its shape and dtype, nothing else: a checkpoint of
// another model (or size) must be refused, never merged by accident.
bool check_checkpoint(const std::vector<MergeParam> &params, const MergeRequest &request, const Checkpoint &file,
                      std::string &error) {
  std::vector<std::string> names;
  for (const MergeParam &param : params) {
    names.push_back(param.path);
    auto found = file.header.tensors.find(param.path);
    if (found == file.header.tensors.end()) {
      error = file.path + ": missing param '" + param.path + "' (" + request.diagram + " reads it as " +
              param_description(param) + ")";
      return false;
    }
    const SafetensorsEntry &entry = found->second;
    if (entry.shape != param.shape) {
      error = file.path + ": param '" + param.path + "' has shape " + shape_text(entry.shape) + ", but " +
              request.diagram + " reads it as " + param_description(param);
      return false;
    }
    if (entry.type != element_type_of(param.dtype)) {
      error = file.path + ": param '" + param.path + "' has dtype " + safetensors_type_code(entry.type) + ", but " +
              request.diagram + " reads it as " + param_description(param);
      return false;
    }
  }
  for (const auto &[name, entry] : file.header.tensors) {
    if (std::find(names.begin(), names.end(), name) != names.end()) continue;
    error = file.path + ": tensor '" + name + "' is not a param of " + request.diagram + did_you_mean(name, names);
    return false;
  }
  return true;
}

bool open_checkpoint(const std::string &path, Checkpoint &file, std::string &error) {
  file.path = path;
  if (!read_safetensors_header(path, file.header, error)) return false;
  file.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (file.fd < 0) {
    error = path + ": cannot open: " + std::strerror(errno);
    return false;
  }
  return true;
}

// The threshold of TIES's top-k trimming of one task vector: elements of
// magnitude above `threshold` are kept, and of those equal to it the first
// `equal_kept` in index order, so that exactly k survive whatever the ties
// (a stable sort by descending magnitude keeps the same elements).
struct Trim {
  double threshold = std::numeric_limits<double>::infinity();
  int64_t equal_kept = 0;
  int64_t equal_seen = 0;
  bool keep(double magnitude) {
    if (magnitude > threshold) return true;
    if (magnitude == threshold && equal_seen < equal_kept) {
      ++equal_seen;
      return true;
    }
    return false;
  }
};

class TensorMerger {
 public:
  TensorMerger(const MergeRequest &request, const std::vector<std::unique_ptr<Checkpoint>> &inputs,
               const Checkpoint *base)
      : request_(request), inputs_(inputs), base_(base) {
    chunks_.assign(inputs.size(), std::vector<double>(kChunk));
    base_chunk_.assign(kChunk, 0.0);
    out_.assign(kChunk, 0.0);
  }

  // Merges one tensor of n elements, handing each chunk of results to `emit`.
  bool run(const MergeParam &param, int64_t n, const std::function<bool(const double *, int64_t)> &emit,
           std::string &error) {
    if (!prepare(param, n, error)) return false;
    for (int64_t first = 0; first < n; first += kChunk) {
      const int64_t count = std::min(kChunk, n - first);
      if (!load(param.path, first, count, error)) return false;
      combine(param, first, count);
      if (!emit(out_.data(), count)) return false;
    }
    return true;
  }

 private:
  bool load(const std::string &name, int64_t first, int64_t count, std::string &error) {
    for (size_t i = 0; i < inputs_.size(); ++i)
      if (!load_chunk(*inputs_[i], name, first, count, chunks_[i].data(), error)) return false;
    if (base_ && !load_chunk(*base_, name, first, count, base_chunk_.data(), error)) return false;
    return true;
  }

  // What the whole tensor decides before its first element: slerp's
  // coefficients, TIES's thresholds.
  bool prepare(const MergeParam &param, int64_t n, std::string &error) {
    if (request_.method == MergeMethod::Slerp) {
      double dot = 0, aa = 0, bb = 0;
      for (int64_t first = 0; first < n; first += kChunk) {
        const int64_t count = std::min(kChunk, n - first);
        if (!load(param.path, first, count, error)) return false;
        for (int64_t j = 0; j < count; ++j) {
          const double a = chunks_[0][j], b = chunks_[1][j];
          dot += a * b, aa += a * a, bb += b * b;
        }
      }
      const double t = request_.weights[0];
      coefficient_a_ = 1 - t, coefficient_b_ = t;
      if (aa > 0 && bb > 0) {
        const double cosine = dot / (std::sqrt(aa) * std::sqrt(bb));
        if (std::fabs(cosine) <= kSlerpColinear) {
          const double theta = std::acos(cosine), sine = std::sin(theta);
          coefficient_a_ = std::sin((1 - t) * theta) / sine;
          coefficient_b_ = std::sin(t * theta) / sine;
        }
      }
    }
    if (request_.method == MergeMethod::Ties) {
      trims_.assign(inputs_.size(), Trim{});
      const auto k = static_cast<int64_t>(std::floor(request_.density * static_cast<double>(n)));
      if (k > 0 && !select_thresholds(param.path, n, k, error)) return false;  // k = 0: thresholds +inf
    }
    if (request_.method == MergeMethod::Dare) {
      keys_.clear();
      for (size_t i = 0; i < inputs_.size(); ++i) keys_.push_back(dare_key(request_.seed, param.path, i));
    }
    return true;
  }

  // The k-th largest magnitude |θ_i − θ_base| of a tensor for every input, streamed: a radix select
  // on the bits of the magnitudes (for non-negative doubles their order as integers is their order as
  // numbers), 16 bits a pass from the top, each pass a histogram per input of the elements that match
  // the bits chosen so far. Four passes, each reading the base once, find the exact values and how
  // many lie above them, in one histogram per input rather than a copy of the tensor.
  bool select_thresholds(const std::string &path, int64_t n, int64_t k, std::string &error) {
    const size_t inputs = inputs_.size();
    std::vector<std::vector<int64_t>> histograms(inputs, std::vector<int64_t>(size_t{1} << 16));
    std::vector<uint64_t> prefix(inputs, 0);
    // Elements known to be larger, and the rank sought among the rest.
    std::vector<int64_t> above(inputs, 0), rank(inputs, k);
    for (int pass = 0; pass < 4; ++pass) {
      const int shift = 48 - 16 * pass;
      for (auto &histogram : histograms) std::fill(histogram.begin(), histogram.end(), 0);
      for (int64_t first = 0; first < n; first += kChunk) {
        const int64_t count = std::min(kChunk, n - first);
        if (!load_chunk(*base_, path, first, count, base_chunk_.data(), error)) return false;
        for (size_t i = 0; i < inputs; ++i) {
          if (!load_chunk(*inputs_[i], path, first, count, chunks_[i].data(), error)) return false;
          for (int64_t j = 0; j < count; ++j) {
            uint64_t bits;
            const double magnitude = std::fabs(chunks_[i][j] - base_chunk_[j]);
            std::memcpy(&bits, &magnitude, sizeof bits);
            if (pass == 0 || (bits >> (shift + 16)) == prefix[i]) ++histograms[i][(bits >> shift) & 0xFFFF];
          }
        }
      }
      for (size_t i = 0; i < inputs; ++i) {
        size_t bucket = histograms[i].size();
        while (bucket-- > 0) {
          if (histograms[i][bucket] >= rank[i]) break;
          rank[i] -= histograms[i][bucket];
          above[i] += histograms[i][bucket];
        }
        prefix[i] = (prefix[i] << 16) | bucket;
      }
    }
    for (size_t i = 0; i < inputs; ++i) {
      std::memcpy(&trims_[i].threshold, &prefix[i], sizeof prefix[i]);
      trims_[i].equal_kept = k - above[i];
    }
    return true;
  }

  void combine(const MergeParam &param, int64_t first, int64_t count) {
    (void)param;
    const auto &w = request_.weights;
    const size_t inputs = inputs_.size();
    switch (request_.method) {
      case MergeMethod::Linear: {
        double total = 0;
        for (double weight : w) total += weight;
        for (int64_t j = 0; j < count; ++j) {
          double sum = 0;
          for (size_t i = 0; i < inputs; ++i) sum += w[i] * chunks_[i][j];
          out_[j] = sum / total;
        }
        break;
      }
      case MergeMethod::Slerp:
        for (int64_t j = 0; j < count; ++j) out_[j] = coefficient_a_ * chunks_[0][j] + coefficient_b_ * chunks_[1][j];
        break;
      case MergeMethod::TaskArithmetic:
        for (int64_t j = 0; j < count; ++j) {
          double sum = 0;
          for (size_t i = 0; i < inputs; ++i) sum += w[i] * (chunks_[i][j] - base_chunk_[j]);
          out_[j] = base_chunk_[j] + sum;
        }
        break;
      case MergeMethod::Dare:
        for (int64_t j = 0; j < count; ++j) {
          double sum = 0;
          for (size_t i = 0; i < inputs; ++i)
            if (dare_keep_keyed(keys_[i], static_cast<uint64_t>(first + j), request_.density))
              sum += w[i] * ((chunks_[i][j] - base_chunk_[j]) / request_.density);
          out_[j] = base_chunk_[j] + sum;
        }
        break;
      case MergeMethod::Ties: {
        std::vector<double> trimmed(inputs);
        for (int64_t j = 0; j < count; ++j) {
          double elected = 0;
          for (size_t i = 0; i < inputs; ++i) {
            const double tau = chunks_[i][j] - base_chunk_[j];
            trimmed[i] = trims_[i].keep(std::fabs(tau)) ? w[i] * tau : 0.0;
            elected += trimmed[i];
          }
          // mergekit's election: the sign of the summed (weighted, trimmed) task vectors, + on a tie.
          const double sign = elected >= 0 ? 1.0 : -1.0;
          double sum = 0, weight = 0;
          for (size_t i = 0; i < inputs; ++i)
            if (trimmed[i] != 0 && (trimmed[i] > 0) == (sign > 0)) sum += trimmed[i], weight += w[i];
          out_[j] = base_chunk_[j] + (weight != 0 ? sum / weight : 0.0);
        }
        break;
      }
    }
  }

  const MergeRequest &request_;
  const std::vector<std::unique_ptr<Checkpoint>> &inputs_;
  const Checkpoint *base_;
  std::vector<std::vector<double>> chunks_;
  std::vector<double> base_chunk_, out_;
  double coefficient_a_ = 0, coefficient_b_ = 0;
  std::vector<Trim> trims_;
  std::vector<uint64_t> keys_;
};

// A temporary file beside the output, removed unless committed by rename.
class TemporaryOutput {
 public:
  bool open(const std::string &output, std::string &error) {
    std::error_code code;
    fs::path target(output);
    // Through a link to its target, as write_output does; never a rename over a device or a FIFO.
    if (fs::is_symlink(fs::symlink_status(target, code))) {
      fs::path resolved = fs::weakly_canonical(target, code);
      if (!code) target = resolved;
    }
    const fs::file_status status = fs::status(target, code);
    if (fs::exists(status) && !fs::is_regular_file(status)) {
      error = output + ": not a regular file; merge writes a safetensors file";
      return false;
    }
    fs::path folder = target.parent_path();
    path_ = (folder / ("." + target.filename().string() + ".XXXXXX")).string();
    fd_ = ::mkstemp(path_.data());
    if (fd_ < 0) {
      error = output + ": cannot create a temporary file beside it: " + std::strerror(errno);
      path_.clear();
      return false;
    }
    // mkstemp's 0600 would make the merged checkpoint private; give it what a plain create would.
    mode_t mask = ::umask(0);
    ::umask(mask);
    ::fchmod(fd_, 0666 & ~mask);
    output_ = target.string();
    return true;
  }
  bool write(const void *data, size_t size, std::string &error) {
    buffer_.append(static_cast<const char *>(data), size);
    return buffer_.size() >= (size_t{1} << 20) ? flush(error) : true;
  }
  bool commit(std::string &error) {
    if (!flush(error)) return false;
    if (::fsync(fd_) != 0 || ::close(fd_) != 0) {
      fd_ = -1;
      error = output_ + ": cannot write: " + std::strerror(errno);
      return false;
    }
    fd_ = -1;
    if (::rename(path_.c_str(), output_.c_str()) != 0) {
      error = output_ + ": cannot write: " + std::strerror(errno);
      return false;
    }
    path_.clear();
    return true;
  }
  ~TemporaryOutput() {
    if (fd_ >= 0) ::close(fd_);
    if (!path_.empty()) ::unlink(path_.c_str());
  }

 private:
  bool flush(std::string &error) {
    size_t done = 0;
    while (done < buffer_.size()) {
      ssize_t wrote = ::write(fd_, buffer_.data() + done, buffer_.size() - done);
      if (wrote < 0 && errno == EINTR) continue;
      if (wrote <= 0) {
        error = output_ + ": cannot write: " + std::strerror(errno);
        return false;
      }
      done += static_cast<size_t>(wrote);
    }
    buffer_.clear();
    return true;
  }
  std::string path_, output_, buffer_;
  int fd_ = -1;
};

int64_t element_count(const std::vector<int64_t> &shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

}  // namespace

const std::vector<std::string> &merge_method_names() {
  static const std::vector<std::string> names = {"linear", "slerp", "task-arithmetic", "ties", "dare"};
  return names;
}

std::optional<MergeMethod> parse_merge_method(const std::string &name) {
  const auto &names = merge_method_names();
  for (size_t i = 0; i < names.size(); ++i)
    if (names[i] == name) return static_cast<MergeMethod>(i);
  return std::nullopt;
}

std::string merge_method_name(MergeMethod method) { return merge_method_names()[static_cast<size_t>(method)]; }

bool merge_method_uses_base(MergeMethod method) {
  return method == MergeMethod::TaskArithmetic || method == MergeMethod::Ties || method == MergeMethod::Dare;
}

bool merge_method_uses_density(MergeMethod method) {
  return method == MergeMethod::Ties || method == MergeMethod::Dare;
}

double merge_default_density(MergeMethod method) {
  return method == MergeMethod::Ties ? 0.2 : method == MergeMethod::Dare ? 0.1 : 1.0;
}

bool dare_keep(uint64_t seed, const std::string &path, uint64_t input, uint64_t element, double density) {
  return dare_keep_keyed(dare_key(seed, path, input), element, density);
}

bool merge_checkpoints(const std::vector<MergeParam> &params, const MergeRequest &request, std::string &error) {
  for (const MergeParam &param : params)
    if (!element_type_of(param.dtype)) {
      error = "param '" + param.path + "' of " + request.diagram + " is " + std::string(dtype_name(param.dtype)) +
              ": only float params (f32, f16, bf16, f8e4m3, f8e5m2) can be merged";
      return false;
    }
  std::vector<std::unique_ptr<Checkpoint>> inputs;
  for (const std::string &path : request.inputs) {
    inputs.push_back(std::make_unique<Checkpoint>());
    if (!open_checkpoint(path, *inputs.back(), error) || !check_checkpoint(params, request, *inputs.back(), error))
      return false;
  }
  std::unique_ptr<Checkpoint> base;
  if (!request.base.empty()) {
    base = std::make_unique<Checkpoint>();
    if (!open_checkpoint(request.base, *base, error) || !check_checkpoint(params, request, *base, error)) return false;
  }

  // The header first: every offset follows from the params' shapes and dtypes.
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  header["__metadata__"] = {{"format", "pt"}, {"merge_method", merge_method_name(request.method)}};
  uint64_t offset = 0;
  for (const MergeParam &param : params) {
    const ElementType type = *element_type_of(param.dtype);
    const uint64_t bytes = static_cast<uint64_t>(element_count(param.shape)) * element_bytes(type);
    header[param.path] = {
        {"dtype", safetensors_type_code(type)}, {"shape", param.shape}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text = header.dump();
  while ((8 + text.size()) % 8 != 0) text += ' ';  // 8-byte aligned data, as the reference writer does
  unsigned char length[8];
  for (int i = 0; i < 8; ++i) length[i] = static_cast<unsigned char>((text.size() >> (8 * i)) & 0xff);

  TemporaryOutput output;
  if (!output.open(request.output, error) || !output.write(length, 8, error) ||
      !output.write(text.data(), text.size(), error))
    return false;
  TensorMerger merger(request, inputs, base.get());
  std::vector<unsigned char> encoded;
  for (const MergeParam &param : params) {
    const ElementType type = *element_type_of(param.dtype);
    const int width = element_bytes(type);
    bool written = true;
    auto emit = [&](const double *values, int64_t count) {
      encoded.resize(static_cast<size_t>(count * width));
      // Rounded through float32 with ncd's dtype rounding, as every backend rounds.
      for (int64_t j = 0; j < count; ++j)
        data::store_float_element(static_cast<float>(values[j]), type, encoded.data() + j * width);
      written = output.write(encoded.data(), encoded.size(), error);
      return written;
    };
    if (!merger.run(param, element_count(param.shape), emit, error)) return false;
    if (!written) return false;
  }
  return output.commit(error);
}

}  // namespace ncd

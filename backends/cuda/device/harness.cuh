//! The --harness main() and its .npy reading and writing; the generator
//! inserts the diagram tables where `int main(` begins (harness.cpp).

// ---------------------------------------------------------------- harness (--harness)
#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace {

enum NcdDtype { kF32, kF16, kBF16, kF8E4M3, kF8E5M2, kI8, kI32, kBool };
struct NcdTensorInfo {
  const char *name;
  int dtype;
  int rank;
  long long shape[8];  // -1: a runtime size (the diagram's `shapes` fills it)
};
// A runtime size of the diagram, and the input dimension it is read from
// (tensor -1: none; --size NAME=N must give it).
struct NcdSizeInfo {
  const char *name;
  int tensor, dim;
};
struct NcdDiagramInfo {
  const char *name;
  int inputs, params, outputs;
  const NcdTensorInfo *tensors;  // inputs, then params, then outputs
  double flops;                  // 0: unknown (runtime sizes)
  int sizes;
  const NcdSizeInfo *size_info;
  void (*shapes)(const long long *sizes, NcdTensorInfo *tensors);  // the runtime dimensions, from the sizes
  size_t (*workspace)(const long long *sizes);  // the host function's workspace query
  int (*run)(void *const *pointers, const long long *sizes, void *workspace, size_t workspace_bytes,
             cudaStream_t stream);
};

// Every CUDA call of the harness is checked: a failure names the call and exits 1.
#define NCD_CHECK(call)                                                                          \
  do {                                                                                           \
    const cudaError_t ncd_check_ = (call);                                                       \
    if (ncd_check_ != cudaSuccess) {                                                             \
      std::fprintf(stderr, "error: %s failed: %s\n", #call, cudaGetErrorString(ncd_check_));     \
      return 1;                                                                                  \
    }                                                                                            \
  } while (0)

size_t ncd_elements(const NcdTensorInfo &t) {
  size_t n = 1;
  for (int i = 0; i < t.rank; ++i) n *= static_cast<size_t>(t.shape[i]);
  return n;
}
size_t ncd_bytes(int dtype) {
  switch (dtype) {
    case kF32: case kI32: return 4;
    case kF16: case kBF16: return 2;
    default: return 1;
  }
}
std::string ncd_shape_text(const std::vector<long long> &shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + (shape.size() == 1 ? ",)" : ")");
}

// The header of a .npy file: its dtype, shape and where the data begins; "" on success, else the reason.
std::string ncd_npy_header(const std::string &path, const std::string &data, std::string &descr,
                           std::vector<long long> &shape, size_t &begin) {
  if (data.size() < 10 || data.compare(0, 6, "\x93NUMPY") != 0) return path + " is not a .npy file";
  const int major = static_cast<unsigned char>(data[6]);
  size_t header_len, start;
  if (major == 1) {
    header_len = static_cast<unsigned char>(data[8]) | (static_cast<size_t>(static_cast<unsigned char>(data[9])) << 8);
    start = 10;
  } else {
    if (data.size() < 12) return path + ": truncated header";
    header_len = 0;
    for (int i = 0; i < 4; ++i) header_len |= static_cast<size_t>(static_cast<unsigned char>(data[8 + i])) << (8 * i);
    start = 12;
  }
  if (start + header_len > data.size()) return path + ": truncated header";
  const std::string header = data.substr(start, header_len);
  auto field = [&](const char *key) {
    size_t p = header.find(key);
    return p == std::string::npos ? std::string() : header.substr(p + std::strlen(key));
  };
  descr = field("'descr':");
  size_t q1 = descr.find('\''), q2 = descr.find('\'', q1 + 1);
  if (q1 == std::string::npos || q2 == std::string::npos) return path + ": no dtype in the header";
  descr = descr.substr(q1 + 1, q2 - q1 - 1);
  if (descr.size() < 2) return path + ": no dtype in the header";
  if (field("'fortran_order':").find("True") < 3) return path + ": Fortran order is not supported";
  std::string shape_text = field("'shape':");
  shape.clear();
  size_t open = shape_text.find('('), close = shape_text.find(')');
  if (open == std::string::npos || close == std::string::npos) return path + ": no shape in the header";
  std::stringstream shape_stream(shape_text.substr(open + 1, close - open - 1));
  for (std::string item; std::getline(shape_stream, item, ',');)
    if (item.find_first_of("0123456789") != std::string::npos) shape.push_back(std::atoll(item.c_str()));
  begin = start + header_len;
  return "";
}

std::string ncd_read_file(const std::string &path, std::string &data) {
  std::ifstream file(path, std::ios::binary);
  if (!file) return "cannot open " + path;
  data.assign((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  return "";
}

// Reads a .npy file into the device representation of `t`; "" on success, else the reason.
std::string ncd_read_npy(const std::string &path, const NcdTensorInfo &t, std::vector<unsigned char> &out) {
  std::string data, descr;
  std::vector<long long> shape;
  size_t begin = 0;
  std::string error = ncd_read_file(path, data);
  if (error.empty()) error = ncd_npy_header(path, data, descr, shape, begin);
  if (!error.empty()) return error;
  std::vector<long long> want(t.shape, t.shape + t.rank);
  if (shape != want) return path + " has shape " + ncd_shape_text(shape) + ", expected " + ncd_shape_text(want);
  const char order = descr[0];
  if (order == '>') return path + ": big-endian data is not supported";
  const std::string kind = descr.substr(1);
  const size_t n = ncd_elements(t);
  size_t width = kind == "f8" || kind == "i8" ? 8 : kind == "f4" || kind == "i4" ? 4 : kind == "f2" ? 2
                 : kind == "i1" || kind == "b1" || kind == "u1" ? 1 : 0;
  if (width == 0) return path + ": unsupported dtype '" + descr + "'";
  if (data.size() - begin < n * width) return path + ": fewer bytes of data than the shape needs";
  const unsigned char *raw = reinterpret_cast<const unsigned char *>(data.data() + begin);
  auto value = [&](size_t i) -> double {
    const unsigned char *p = raw + i * width;
    if (kind == "f4") { float v; std::memcpy(&v, p, 4); return v; }
    if (kind == "f8") { double v; std::memcpy(&v, p, 8); return v; }
    if (kind == "f2") { __half_raw h; std::memcpy(&h.x, p, 2); return __half2float(__half(h)); }
    if (kind == "i4") { int32_t v; std::memcpy(&v, p, 4); return v; }
    if (kind == "i8") { long long v; std::memcpy(&v, p, 8); return static_cast<double>(v); }
    if (kind == "i1") return static_cast<int8_t>(p[0]);
    return p[0];
  };
  const bool is_float = kind[0] == 'f';
  const bool float_dtype = t.dtype <= kF8E5M2;
  if (float_dtype != is_float && !(t.dtype == kBool && kind == "b1"))
    return path + " has dtype '" + descr + "', which does not fit the tensor's dtype";
  out.resize(n * ncd_bytes(t.dtype));
  for (size_t i = 0; i < n; ++i) {
    const double v = value(i);
    unsigned char *d = out.data() + i * ncd_bytes(t.dtype);
    switch (t.dtype) {
      case kF32: { float f = static_cast<float>(v); std::memcpy(d, &f, 4); break; }
      case kF16: { __half h = ncd_to<__half>(static_cast<float>(v)); std::memcpy(d, &h, 2); break; }
      case kBF16: { __nv_bfloat16 h = ncd_to<__nv_bfloat16>(static_cast<float>(v)); std::memcpy(d, &h, 2); break; }
      case kF8E4M3: { __nv_fp8_e4m3 h = ncd_to<__nv_fp8_e4m3>(static_cast<float>(v)); std::memcpy(d, &h, 1); break; }
      case kF8E5M2: { __nv_fp8_e5m2 h = ncd_to<__nv_fp8_e5m2>(static_cast<float>(v)); std::memcpy(d, &h, 1); break; }
      case kI8: { int8_t h = static_cast<int8_t>(v); std::memcpy(d, &h, 1); break; }
      case kI32: { int32_t h = static_cast<int32_t>(v); std::memcpy(d, &h, 4); break; }
      default: { bool h = v != 0; std::memcpy(d, &h, 1); break; }
    }
  }
  return "";
}

// Writes the device representation of `t` as .npy (bf16 and f8 as float32 holding their exact values).
std::string ncd_write_npy(const std::string &path, const NcdTensorInfo &t, const std::vector<unsigned char> &in) {
  const size_t n = ncd_elements(t);
  std::string descr;
  std::vector<unsigned char> data;
  switch (t.dtype) {
    case kF16: descr = "<f2"; data = in; break;
    case kI8: descr = "|i1"; data = in; break;
    case kI32: descr = "<i4"; data = in; break;
    case kBool: descr = "|b1"; data = in; break;
    default: {
      descr = "<f4";
      data.resize(n * 4);
      for (size_t i = 0; i < n; ++i) {
        float f = 0;
        const unsigned char *p = in.data() + i * ncd_bytes(t.dtype);
        if (t.dtype == kF32) std::memcpy(&f, p, 4);
        if (t.dtype == kBF16) { __nv_bfloat16 h; std::memcpy(&h, p, 2); f = ncd_f(h); }
        if (t.dtype == kF8E4M3) { __nv_fp8_e4m3 h; std::memcpy(&h, p, 1); f = ncd_f(h); }
        if (t.dtype == kF8E5M2) { __nv_fp8_e5m2 h; std::memcpy(&h, p, 1); f = ncd_f(h); }
        std::memcpy(data.data() + i * 4, &f, 4);
      }
    }
  }
  std::vector<long long> shape(t.shape, t.shape + t.rank);
  std::string header = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + ncd_shape_text(shape) + ", }";
  while ((10 + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  std::string tmp = path + ".tmp";
  std::ofstream file(tmp, std::ios::binary);
  const unsigned char len[2] = {static_cast<unsigned char>(header.size() & 0xff), static_cast<unsigned char>(header.size() >> 8)};
  file.write("\x93NUMPY\x01\x00", 8);
  file.write(reinterpret_cast<const char *>(len), 2);
  file << header;
  file.write(reinterpret_cast<const char *>(data.data()), static_cast<std::streamsize>(data.size()));
  file.close();
  if (!file || std::rename(tmp.c_str(), path.c_str()) != 0) return "cannot write " + path;
  return "";
}

int ncd_usage(const char *program) {
  std::fprintf(stderr,
               "usage: %s DIR [--diagram NAME] [--runs N] [--warmup N] [--out DIR] [--no-write] [--graph] [--size AXIS=N]...\n"
               "  reads DIR/inputs/NAME.npy and DIR/params/PATH.npy (as `ncd run --random SEED --out-dir DIR` writes\n"
               "  them), runs the diagram, writes its outputs to --out (default DIR/cuda) and prints the median time.\n"
               "  Runtime sizes are read from the inputs' shapes; --size gives one no input has. --graph times\n"
               "  replays of a CUDA graph of one call (no launch overhead between its kernels).\n",
               program);
  return 2;
}

}  // namespace

int main(int argc, char **argv) {
  std::string dir, diagram, out_dir;
  std::vector<std::pair<std::string, long long>> given;  // --size AXIS=N
  int runs = 20, warmup = 3;
  bool write = true, graph = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> const char * { return i + 1 < argc ? argv[++i] : nullptr; };
    if (a == "--diagram") { const char *v = next(); if (!v) return ncd_usage(argv[0]); diagram = v; }
    else if (a == "--runs") { const char *v = next(); if (!v) return ncd_usage(argv[0]); runs = std::max(1, std::atoi(v)); }
    else if (a == "--warmup") { const char *v = next(); if (!v) return ncd_usage(argv[0]); warmup = std::max(0, std::atoi(v)); }
    else if (a == "--out") { const char *v = next(); if (!v) return ncd_usage(argv[0]); out_dir = v; }
    else if (a == "--no-write") write = false;
    else if (a == "--graph") graph = true;
    else if (a == "--size") {
      const char *v = next();
      const char *eq = v ? std::strchr(v, '=') : nullptr;
      if (!eq || std::atoll(eq + 1) < 1) return ncd_usage(argv[0]);
      given.push_back({std::string(v, eq), std::atoll(eq + 1)});
    }
    else if (a == "--help" || a == "-h") return ncd_usage(argv[0]);
    else if (dir.empty() && a[0] != '-') dir = a;
    else return ncd_usage(argv[0]);
  }
  if (dir.empty()) return ncd_usage(argv[0]);
  const NcdDiagramInfo *info = nullptr;
  if (diagram.empty() && kNcdDiagramCount == 1) info = &kNcdDiagrams[0];
  for (int i = 0; i < kNcdDiagramCount; ++i)
    if (diagram == kNcdDiagrams[i].name) info = &kNcdDiagrams[i];
  if (!info) {
    std::fprintf(stderr, "error: %s diagram '%s'; this program has:", diagram.empty() ? "choose a" : "no", diagram.c_str());
    for (int i = 0; i < kNcdDiagramCount; ++i) std::fprintf(stderr, " %s", kNcdDiagrams[i].name);
    std::fprintf(stderr, "\n");
    return 2;
  }
  if (out_dir.empty()) out_dir = dir + "/cuda";
  const int total = info->inputs + info->params + info->outputs;
  // Runtime sizes: from --size, else from the shape of the input that has the axis.
  std::vector<NcdTensorInfo> tensors(info->tensors, info->tensors + total);
  std::vector<long long> sizes(static_cast<size_t>(info->sizes), 0);
  for (const auto &[name, value] : given) {
    int k = 0;
    while (k < info->sizes && name != info->size_info[k].name) ++k;
    if (k == info->sizes) {
      std::fprintf(stderr, "error: --size %s: %s has no runtime size '%s'\n", name.c_str(), info->name, name.c_str());
      return 2;
    }
    sizes[static_cast<size_t>(k)] = value;
  }
  for (int k = 0; k < info->sizes; ++k) {
    const NcdSizeInfo &s = info->size_info[k];
    if (sizes[static_cast<size_t>(k)] > 0) continue;
    if (s.tensor < 0) {
      std::fprintf(stderr, "error: no input has axis '%s'; give its size with --size %s=N\n", s.name, s.name);
      return 2;
    }
    const std::string path = dir + "/inputs/" + tensors[static_cast<size_t>(s.tensor)].name + ".npy";
    std::string data, descr;
    std::vector<long long> shape;
    size_t begin = 0;
    std::string error = ncd_read_file(path, data);
    if (error.empty()) error = ncd_npy_header(path, data, descr, shape, begin);
    if (error.empty() && (static_cast<int>(shape.size()) <= s.dim || shape[static_cast<size_t>(s.dim)] < 1))
      error = path + " has shape " + ncd_shape_text(shape) + ", which gives no size of '" + s.name + "'";
    if (!error.empty()) {
      std::fprintf(stderr, "error: %s\n", error.c_str());
      return 1;
    }
    sizes[static_cast<size_t>(k)] = shape[static_cast<size_t>(s.dim)];
  }
  if (info->sizes > 0) info->shapes(sizes.data(), tensors.data());
  std::vector<void *> pointers(static_cast<size_t>(total) + 1, nullptr);  // the tensors, then the workspace
  const size_t ws_bytes = info->workspace(sizes.data());
  for (int i = 0; i <= total; ++i) {
    const NcdTensorInfo *t = i < total ? &tensors[static_cast<size_t>(i)] : nullptr;
    const size_t bytes = t ? std::max<size_t>(1, ncd_elements(*t) * ncd_bytes(t->dtype)) : ws_bytes;
    if (bytes == 0) continue;
    if (cudaMalloc(&pointers[static_cast<size_t>(i)], bytes) != cudaSuccess) {
      std::fprintf(stderr, "error: cannot allocate %zu bytes on the device\n", bytes);
      return 1;
    }
    if (i >= info->inputs + info->params) continue;
    const std::string path = dir + (i < info->inputs ? "/inputs/" : "/params/") + t->name + ".npy";
    std::vector<unsigned char> host;
    const std::string error = ncd_read_npy(path, *t, host);
    if (!error.empty()) {
      std::fprintf(stderr, "error: %s\n", error.c_str());
      return 1;
    }
    NCD_CHECK(cudaMemcpy(pointers[static_cast<size_t>(i)], host.data(), host.size(), cudaMemcpyHostToDevice));
  }
  void *const ws = pointers[static_cast<size_t>(total)];
  cudaStream_t stream;
  NCD_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  int status = info->run(pointers.data(), sizes.data(), ws, ws_bytes, stream);
  if (status == 0) status = static_cast<int>(cudaStreamSynchronize(stream));
  if (status != 0) {
    std::fprintf(stderr, "error: %s failed: %s\n", info->name, cudaGetErrorString(static_cast<cudaError_t>(status)));
    return 1;
  }
  if (write) {
    mkdir(out_dir.c_str(), 0777);
    for (int i = info->inputs + info->params; i < total; ++i) {
      const NcdTensorInfo &t = tensors[static_cast<size_t>(i)];
      std::vector<unsigned char> host(ncd_elements(t) * ncd_bytes(t.dtype));
      NCD_CHECK(cudaMemcpy(host.data(), pointers[static_cast<size_t>(i)], host.size(), cudaMemcpyDeviceToHost));
      const std::string error = ncd_write_npy(out_dir + "/" + t.name + ".npy", t, host);
      if (!error.empty()) {
        std::fprintf(stderr, "error: %s\n", error.c_str());
        return 1;
      }
    }
  }
  // With --graph, one call is captured (after the first, which set the kernels' attributes) and replayed.
  cudaGraphExec_t exec = nullptr;
  if (graph) {
    cudaGraph_t g = nullptr;
    NCD_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
    status = info->run(pointers.data(), sizes.data(), ws, ws_bytes, stream);
    const cudaError_t ended = cudaStreamEndCapture(stream, &g);
    if (status != 0 || ended != cudaSuccess) {
      std::fprintf(stderr, "error: capturing %s in a CUDA graph failed: %s\n", info->name,
                   cudaGetErrorString(status != 0 ? static_cast<cudaError_t>(status) : ended));
      return 1;
    }
    NCD_CHECK(cudaGraphInstantiate(&exec, g, 0));
    NCD_CHECK(cudaGraphDestroy(g));
  }
  auto call = [&]() -> cudaError_t {
    if (exec) return cudaGraphLaunch(exec, stream);
    return static_cast<cudaError_t>(info->run(pointers.data(), sizes.data(), ws, ws_bytes, stream));
  };
  for (int i = 0; i < warmup; ++i) NCD_CHECK(call());
  cudaEvent_t begin, end;
  NCD_CHECK(cudaEventCreate(&begin));
  NCD_CHECK(cudaEventCreate(&end));
  std::vector<float> times;
  for (int i = 0; i < runs; ++i) {
    NCD_CHECK(cudaEventRecord(begin, stream));
    NCD_CHECK(call());
    NCD_CHECK(cudaEventRecord(end, stream));
    NCD_CHECK(cudaEventSynchronize(end));
    float ms = 0;
    NCD_CHECK(cudaEventElapsedTime(&ms, begin, end));
    times.push_back(ms);
  }
  NCD_CHECK(cudaGetLastError());
  std::sort(times.begin(), times.end());
  const double median = times[times.size() / 2];
  std::printf("%s: median %.4f ms (min %.4f, max %.4f) over %d runs", info->name, median, times.front(), times.back(),
              runs);
  if (info->flops > 0)
    std::printf("; %.4g GFLOP, %.2f TFLOP/s", info->flops / 1e9, info->flops / (median * 1e-3) / 1e12);
  for (int k = 0; k < info->sizes; ++k) std::printf("%s %s=%lld", k ? "," : ";", info->size_info[k].name, sizes[static_cast<size_t>(k)]);
  std::printf("%s\n", exec ? " (CUDA graph)" : "");
  if (exec) NCD_CHECK(cudaGraphExecDestroy(exec));
  NCD_CHECK(cudaEventDestroy(begin));
  NCD_CHECK(cudaEventDestroy(end));
  NCD_CHECK(cudaStreamDestroy(stream));
  for (void *p : pointers)
    if (p) NCD_CHECK(cudaFree(p));
  return 0;
}

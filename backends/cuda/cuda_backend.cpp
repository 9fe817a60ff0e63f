// Backend `cuda` (plugin cuda): generates one self-contained .cu file per
// request; it runs nothing (can_execute is false). The generator is frame.cpp
// and the planners and printers it calls (generator.h lists them).
#include <map>
#include <memory>
#include <string>

#include "codegen.h"
#include "plan.h"
#include "targets.h"
#include "ncd/plugin.h"
#include "ncd/registry.h"

namespace {

class CudaBackend : public ncd::Backend {
 public:
  std::string name() const override { return "cuda"; }
  std::string description() const override {
    return "CUDA code generator: tensor-core contractions, streamed attention, a host function per diagram";
  }
  bool can_emit() const override { return true; }
  bool emit(const ncd::EmitRequest &request, std::string &output, std::string &error) const override {
    return ncd::cuda::generate(request, output, error);
  }
  bool emit_package(const ncd::EmitRequest &request, const std::string &kind, const std::string &name,
                    std::vector<ncd::EmittedFile> &files, std::string &error) const override {
    if (kind != "torch") return Backend::emit_package(request, kind, name, files, error);
    return ncd::cuda::torch_package(request, name, files, error);
  }
  bool check_options(const std::map<std::string, std::string> &options, std::string &error) const override {
    return ncd::cuda::check_options(options, error);
  }
  bool plans_for(const ncd::HardwareProfile &hardware) const override {
    return ncd::cuda::profile_limits(hardware).has_value();
  }
  std::optional<ncd::KernelShape> plan_kernel(const ncd::KernelQuery &query, std::string &why) const override {
    auto limits = query.hardware ? ncd::cuda::profile_limits(*query.hardware) : std::nullopt;
    if (!limits) {
      why = "the cuda backend has no architecture for this hardware profile";
      return std::nullopt;
    }
    return ncd::cuda::detail::kernel_shape(query, *limits, why);
  }
};

int register_cuda(ncd::Registry *registry) { return registry->add_backend(std::make_unique<CudaBackend>()) ? 0 : 1; }

}  // namespace

NCD_PLUGIN(cuda, "cuda", "0.1.0", "CUDA backend: generates .cu files (ncd emit --cuda)", register_cuda)

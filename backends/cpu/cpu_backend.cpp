// Backend `cpu`: the reference interpreter of the core IR (plugin cpu).
#include <cblas.h>

#include <memory>
#include <new>

#include "executor.h"
#include "ncd/plugin.h"
#include "ncd/registry.h"

namespace {

class CpuBackend : public ncd::Backend {
 public:
  std::string name() const override { return "cpu"; }
  std::string description() const override {
    return "reference interpreter: float32 arithmetic (OpenBLAS sgemm, float64 sums), dtype rounding at value boundaries";
  }
  bool can_execute() const override { return true; }
  bool runs_sharded() const override { return true; }
  bool execute(const ncd::ExecuteRequest &request, std::map<std::string, ncd::Tensor> &outputs,
               std::string &error) const override {
    if (!request.program || !request.diagram) {
      error = "no diagram to run";
      return false;
    }
    ncd::cpu::set_thread_count(request.options.threads);
    // OpenBLAS is single-threaded except around the large products that
    // contract.cpp hands to its threads.
    openblas_set_num_threads(1);
    try {
      if (request.sharding && request.ranks) {
        ncd::cpu::run_ranks(request, outputs);
        return true;
      }
      ncd::cpu::Executor executor(request);
      executor.run(outputs);
      // Freed buffers stay cached for the next run (a benchmark, a repeat of
      // the same diagram) up to 1 GiB; see Buffer::allocate.
      return true;
    } catch (const ncd::cpu::OutOfMemory &e) {
      error = e.what();
      if (request.options.out_of_memory) *request.options.out_of_memory = true;
    } catch (const ncd::cpu::RunError &e) {
      error = e.what();
    } catch (const std::bad_alloc &) {
      error = "out of memory while running '" + request.diagram->name + "'";
      if (request.options.out_of_memory) *request.options.out_of_memory = true;
    }
    outputs.clear();
    return false;
  }
};

int register_cpu(ncd::Registry *registry) { return registry->add_backend(std::make_unique<CpuBackend>()) ? 0 : 1; }

}  // namespace

NCD_PLUGIN(cpu, "cpu", "1.0.0", "CPU reference backend: runs diagrams (ncd run, ncd equiv)", register_cpu)

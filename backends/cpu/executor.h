// The CPU backend's interpreter of the core IR.
//
// Each diagram instance (the root, every call, every iteration's calls) runs
// in a Frame that maps the IR axes it uses to fresh runtime axes. A call is
// run once for all positions of its lifted axes: the arguments keep their
// lifted axes, which every kernel treats as batch axes, so a layer lifted over
// a sequence is one matrix product, not one per position. Values are freed
// after their last use.
#pragma once

#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "kernels.h"
#include "ncd/instantiate.h"
#include "ncd/registry.h"
#include "ncd/routing.h"
#include "ncd/sharding.h"

namespace ncd::cpu {

// The in-memory collectives between the threads of a rank run (rank_run.cpp).
class RankExchange {
 public:
  explicit RankExchange(int ranks) : parts_(static_cast<size_t>(ranks)) {}
  // This rank's part of the next reduction; once every rank has given its part, their
  // combination in rank order (the same bits on every rank, however the threads interleave).
  // Throws RunError when another rank failed.
  std::vector<float> all_reduce(int rank, std::vector<float> part, ops::Fn fn);
  void fail();  // a rank stopped: the others stop waiting

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<std::vector<float>> parts_;
  std::vector<float> result_;
  int arrived_ = 0;
  uint64_t generation_ = 0;
  bool failed_ = false;
};

// Runs `request` (sharding set, ranks true) as its ranks would: one rank program each
// (ncd/rank_program.h) on its own thread, the outputs assembled whole.
void run_ranks(const ExecuteRequest &request, std::map<std::string, Tensor> &outputs);

class Executor {
 public:
  explicit Executor(const ExecuteRequest &request);
  // Throws RunError on bad input (missing or mis-shaped tensors, sizes).
  void run(std::map<std::string, Tensor> &outputs);
  // As rank `rank` of a rank run: after each op in `reductions`, its result is combined with the
  // other ranks' (by the function given) through `exchange`.
  void join_ranks(RankExchange &exchange, int rank, const std::map<const ir::Op *, ops::Fn> &reductions) {
    exchange_ = &exchange;
    rank_ = rank;
    reductions_ = &reductions;
  }

 private:
  struct Frame {
    const ir::Diagram *diagram = nullptr;
    std::unique_ptr<Instance> instance;  // sizes, param naming and paths there
    std::unordered_map<int, int> rt;     // IR axis -> runtime axis
    std::vector<RtTensor> values;
    std::vector<char> defined;
    CallChain chain;  // the call sites from the root (a ShardStep's key)
  };
  struct RegionPlan {
    std::vector<std::vector<int>> release;  // values to free after op i
    std::vector<char> add_into_product;     // op i is a contraction whose one use, op i + 1, adds a bias to it
    std::map<size_t, ir::Routed> routed;    // op i is a routed contraction (ncd/routing.h)
    std::vector<char> skip;                 // op i is the gather a routed contraction reads in place
  };

  int rt_axis(Frame &frame, int axis);
  RtTensor get(Frame &frame, int value);
  void set(Frame &frame, int value, RtTensor tensor);
  RtTensor load_param(Frame &frame, int value);
  RtTensor wrap(Frame &frame, const ir::Value &value, const Tensor &tensor, const std::string &what);

  void run_region(Frame &frame, const ir::Region &region, const ir::Op *repeat = nullptr);
  void run_op(Frame &frame, const ir::Op &op);
  void reduce_across_ranks(Frame &frame, const ir::Op &op);  // (rank_run.cpp)
  bool reduced(const ir::Op &op) const { return reductions_ && reductions_->count(&op); }
  // Runs `contraction` and the `add` after it as one sgemm with beta = 1; false
  // (nothing run) when the product cannot take the addend.
  bool run_contract_add(Frame &frame, const ir::Op &contraction, const ir::Op &add);
  // A contraction's summed axes in runtime terms, with their sizes.
  void summed_axes(Frame &frame, const ir::Op &contraction, std::vector<int> &axes, std::vector<int64_t> &sizes);
  // Sets op's result, with the IR axes it does not vary on as broadcast axes.
  void store_result(Frame &frame, const ir::Op &op, RtTensor out);
  void profile(const std::string &key, std::chrono::steady_clock::time_point start);
  void run_call(Frame &frame, const ir::Op &op);
  void run_repeat(Frame &frame, const ir::Op &op);
  void run_select(Frame &frame, const ir::Op &op);
  // A routed contraction as a grouped matrix product (routed.cpp); false when
  // the runtime tensors do not fit the pattern (the gather then runs as usual).
  bool run_routed(Frame &frame, const ir::Op &op, const ir::Routed &routed);
  RtTensor run_access(Frame &frame, const ir::Op &op);
  RtTensor run_merge(Frame &frame, const ir::Op &op);
  RtTensor finish(RtTensor tensor, ir::DType dtype);
  const RegionPlan &plan(const ir::Diagram &diagram, const ir::Region &region, const ir::Op *repeat);

  // The simulation of a sharded run (shard_sim.cpp): every value carries one
  // runtime axis per mesh dimension where the devices' copies differ.
  // `routed`: op is a routed contraction whose gather was skipped (run_routed).
  void sim_op(Frame &frame, const ir::Op &op, const ir::Routed *routed = nullptr);
  void sim_skipped(Frame &frame, const ir::Op &gather);
  void sim_keep(Frame &frame, const ShardStep &step);  // the routing indices a later combine reads
  RtTensor sim_param(Frame &frame, int id, RtTensor t);
  void sim_yields(Frame &frame, const ir::Op &repeat);
  RtTensor sim_input(Frame &frame, int id, RtTensor t);
  RtTensor sim_output(Frame &frame, int id, RtTensor t);
  // t with `fill` where the device at each coordinate of split's mesh dimension does not hold it.
  RtTensor sim_hold(const RtTensor &t, int axis, const AxisSplit &split, float fill) const;
  // t made whole along `axis`: each position from the device that holds it (all-gather).
  RtTensor sim_gather(const RtTensor &t, int axis, const AxisSplit &split) const;
  // The devices' partial results of `fn` combined in device order (all-reduce).
  RtTensor sim_combine(const RtTensor &t, int mesh, ops::Fn fn) const;
  // Routed rows back from their experts' devices (the all-to-all combine), or
  // with `hold`, a routed result cut to them (each device keeps its experts'
  // rows, NaN for the rest).
  RtTensor sim_route(const RtTensor &t, const RtTensor &index, const AxisSplit &experts, bool hold) const;

  const ExecuteRequest &request_;
  const ir::Program &program_;
  std::vector<int64_t> axis_sizes_;  // by runtime axis
  std::map<const ir::Region *, RegionPlan> plans_;
  Namings namings_;
  std::map<const ir::Op *, int64_t> iterations_;  // the iteration each running repeat is at
  std::map<std::string, double> profile_seconds_;
  std::map<std::string, int64_t> profile_counts_;
  std::vector<int> mesh_axes_;  // a sharded run's runtime axis per mesh dimension
  std::map<std::pair<CallChain, int>, RtTensor> routing_;  // routing indices kept for their combines
  RankExchange *exchange_ = nullptr;                       // a rank run's (join_ranks)
  int rank_ = 0;
  const std::map<const ir::Op *, ops::Fn> *reductions_ = nullptr;
};

}  // namespace ncd::cpu

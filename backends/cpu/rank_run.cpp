// A sharded run as its ranks would do it (`ncd run --devices N --ranks`, docs/SHARDING.md,
// "Rank programs"): each rank runs its own program (ncd/rank_program.h) on its own thread, with
// its slices of the inputs and params, and the reductions between the ranks happen in memory.
//
// This checks what the simulation (shard_sim.cpp) cannot: the lowering itself, the program with
// local twin axes, per-site copies and reductions that the CUDA generator prints with NCCL. Every
// rank runs single-threaded and a reduction adds the ranks' parts in rank order (in double, as
// the reference's sums are), so the outputs are the same bits whatever the thread count. Values
// the ranks all hold whole must agree bit for bit; a split output is put together from the ranks'
// slices.
#include <algorithm>
#include <cstring>
#include <thread>

#include "executor.h"
#include "ncd/rank_program.h"

namespace ncd::cpu {

std::vector<float> RankExchange::all_reduce(int rank, std::vector<float> part, ops::Fn fn) {
  std::unique_lock<std::mutex> lock(mutex_);
  if (failed_) throw RunError("another rank stopped");
  const uint64_t generation = generation_;
  parts_.at(static_cast<size_t>(rank)) = std::move(part);
  if (++arrived_ == static_cast<int>(parts_.size())) {
    const size_t n = parts_[0].size();
    for (const auto &p : parts_)
      if (p.size() != n) {
        failed_ = true;
        changed_.notify_all();
        throw RunError("internal: the ranks reduce values of different sizes");
      }
    result_.assign(n, 0.0f);
    for (size_t i = 0; i < n; ++i) {
      double acc = fn == ops::Fn::Max || fn == ops::Fn::Min ? parts_[0][i] : 0.0;
      for (const auto &p : parts_) {
        if (fn == ops::Fn::Max)
          acc = std::max<double>(acc, p[i]);
        else if (fn == ops::Fn::Min)
          acc = std::min<double>(acc, p[i]);
        else
          acc += p[i];
      }
      if (fn == ops::Fn::Mean) acc /= static_cast<double>(parts_.size());
      result_[i] = static_cast<float>(acc);
    }
    arrived_ = 0;
    ++generation_;
    changed_.notify_all();
  } else {
    changed_.wait(lock, [&] { return generation_ != generation || failed_; });
    if (generation_ == generation) throw RunError("another rank stopped");
  }
  return result_;
}

void RankExchange::fail() {
  std::lock_guard<std::mutex> lock(mutex_);
  failed_ = true;
  changed_.notify_all();
}

void Executor::reduce_across_ranks(Frame &frame, const ir::Op &op) {
  const int id = op.results.at(0);
  const RtTensor dense = materialize(get(frame, id));
  if (dense.is_int()) throw RunError("internal: a reduction across ranks of integers");
  std::vector<float> part(dense.fdata(), dense.fdata() + dense.numel());
  const std::vector<float> whole = exchange_->all_reduce(rank_, std::move(part), reductions_->at(&op));
  RtTensor out = make_tensor(dense.dtype, dense.axes, dense.sizes);
  std::copy(whole.begin(), whole.end(), out.fdata());
  if (out.dtype != ir::DType::F32) round_in_place(out);
  set(frame, id, std::move(out));
}

namespace {

int position(const ir::Value &value, int axis) {
  auto it = std::find(value.axes.begin(), value.axes.end(), axis);
  return it == value.axes.end() ? -1 : static_cast<int>(it - value.axes.begin());
}

}  // namespace

void run_ranks(const ExecuteRequest &request, std::map<std::string, Tensor> &outputs) {
  const ir::Diagram &diagram = *request.diagram;
  std::string why;
  std::optional<RankProgram> program = build_rank_program(*request.program, diagram, *request.sharding, why);
  if (!program) throw RunError("'" + diagram.name + "' has no rank program: " + why);
  const ir::Diagram &root = *program->program.diagrams.at(static_cast<size_t>(program->root));
  const int ranks = static_cast<int>(program->devices);
  auto slice = [&](const ir::Diagram &copy, int value, const ir::Value &whole, const Tensor &tensor, int rank) {
    auto it = program->slices.find({&copy, value});
    if (it == program->slices.end()) return tensor;
    return cut_for_rank(tensor, position(whole, it->second.axis), it->second, ranks, rank);
  };
  // Each rank's data: its slices of the inputs (by name) and of the params (the original's instance
  // beside each of the rank program's).
  std::vector<std::map<std::string, Tensor>> inputs(static_cast<size_t>(ranks)), params(inputs.size());
  for (int rank = 0; rank < ranks; ++rank) {
    for (int id : diagram.inputs) {
      const ir::Value &value = diagram.value(id);
      auto it = request.inputs ? request.inputs->find(value.name) : decltype(request.inputs->end()){};
      if (!request.inputs || it == request.inputs->end()) throw RunError("input '" + value.name + "' was not given");
      if (it->second.shape.size() != value.axes.size())
        throw RunError("input '" + value.name + "' has " + std::to_string(it->second.shape.size()) +
                       " axes, expected " + std::to_string(value.axes.size()));
      inputs[static_cast<size_t>(rank)][value.name] = slice(root, id, value, it->second, rank);
    }
    for (const auto &[local, whole] : program->params) {
      auto it = request.params ? request.params->find(whole.path) : decltype(request.params->end()){};
      if (!request.params || it == request.params->end()) throw RunError("param '" + whole.path + "' was not given");
      if (it->second.shape != whole.shape || it->second.dtype != whole.dtype)
        throw RunError("param '" + whole.path + "' does not have its declared shape and dtype");
      const ir::Value &value = whole.diagram->value(whole.value);
      params[static_cast<size_t>(rank)][local.path] = slice(*local.diagram, local.value, value, it->second, rank);
    }
  }
  std::map<const ir::Op *, ops::Fn> reductions;
  for (const RankProgram::Reduction &r : program->reductions) reductions[r.op] = r.fn;
  // One thread per rank, each single-threaded; the first failure stops the others.
  RankExchange exchange(ranks);
  std::vector<std::map<std::string, Tensor>> results(inputs.size());
  std::vector<std::string> errors(inputs.size());
  std::vector<char> out_of_memory(inputs.size(), 0);
  set_thread_count(1);
  std::vector<std::thread> threads;
  for (int rank = 0; rank < ranks; ++rank)
    threads.emplace_back([&, rank] {
      const size_t r = static_cast<size_t>(rank);
      try {
        ExecuteRequest local;
        local.program = &program->program;
        local.diagram = &root;
        local.inputs = &inputs[r];
        local.params = &params[r];
        Executor executor(local);
        executor.join_ranks(exchange, rank, reductions);
        executor.run(results[r]);
      } catch (const OutOfMemory &e) {
        errors[r] = e.what();
        out_of_memory[r] = 1;
        exchange.fail();
      } catch (const std::bad_alloc &) {
        errors[r] = "out of memory";
        out_of_memory[r] = 1;
        exchange.fail();
      } catch (const RunError &e) {
        errors[r] = e.what();
        exchange.fail();
      } catch (const std::exception &e) {  // a thread must not end by an exception
        errors[r] = std::string("internal: ") + e.what();
        exchange.fail();
      }
    });
  for (std::thread &t : threads) t.join();
  set_thread_count(request.options.threads);
  // The first rank's own failure, not the others' "another rank stopped".
  for (int pass = 0; pass < 2; ++pass)
    for (size_t r = 0; r < errors.size(); ++r)
      if (!errors[r].empty() && (pass == 1 || errors[r] != "another rank stopped")) {
        if (out_of_memory[r]) throw OutOfMemory("rank " + std::to_string(r) + ": " + errors[r]);
        throw RunError("rank " + std::to_string(r) + ": " + errors[r]);
      }
  for (int id : diagram.outputs) {
    const ir::Value &value = diagram.value(id);
    auto split = program->slices.find({&root, id});
    if (split == program->slices.end()) {
      for (size_t r = 1; r < results.size(); ++r) {
        const Tensor &a = results[0].at(value.name), &b = results[r].at(value.name);
        const bool same = a.ints == b.ints && a.values.size() == b.values.size() &&
                          std::memcmp(a.values.data(), b.values.data(), a.values.size() * sizeof(float)) == 0;
        if (!same)
          throw RunError("internal: ranks 0 and " + std::to_string(r) + " disagree on output '" + value.name + "'");
      }
      outputs[value.name] = results[0].at(value.name);
      continue;
    }
    std::vector<Tensor> slices;
    for (auto &result : results) slices.push_back(result.at(value.name));
    std::vector<int64_t> shape = slices[0].shape;
    const int dim = position(value, split->second.axis);
    shape.at(static_cast<size_t>(dim)) *= ranks;
    outputs[value.name] = assemble_ranks(slices, shape, dim, split->second);
  }
}

}  // namespace ncd::cpu

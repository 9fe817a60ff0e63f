// Reverse-mode differentiation of a diagram (`ncd grad`, docs/AUTODIFF.md).
//
// From a diagram D it derives, as ordinary diagrams of the same program:
// D_grad, taking D's inputs, D's params and one cotangent per float output
// (`d_NAME`) and returning the gradients asked for; and D_train, returning
// D's outputs followed by the same gradients. Each recomputes D's forward
// values it needs. A pointwise function, reduction, normalisation or scan
// takes its vector-Jacobian product from its row of the op table
// (`ops::Info::vjp`); contractions, accesses, merges, selections and calls
// have the rules of their op kind. A called diagram is differentiated once
// (F_grad) and its gradient called at a call site of the same name, which
// ties the two calls' params (docs/LANGUAGE.md, "Tied call sites").
#pragma once

#include <string>
#include <vector>

#include "ncd/ir.h"

namespace ncd {

// What a training step keeps of the forward pass for its backward pass
// (docs/AUTODIFF.md, "Saving or recomputing"): nothing (the backward runs the
// forward again), every value the backward reads, or FlashAttention's choice:
// every such value but attention's q × k scores and probabilities, which the
// backward recomputes from the saved rows' logsumexp.
enum class SavePolicy { None, Flash, All };

// One policy priced: what it saves and what the backward then computes.
struct SaveChoice {
  SavePolicy policy = SavePolicy::None;
  std::vector<std::string> saved;  // the saved values' names
  double saved_bytes = 0;
  double backward_flops = 0;       // the backward diagram's FLOPs, recomputation included
};

struct GradientRequest {
  // What to differentiate with respect to: "params", "inputs", or names of
  // inputs and paths of params (docs/RUN.md); empty means both.
  std::vector<std::string> wrt;
  bool train = true;  // also derive D_train
  // Also split the step into D_forward (D's outputs and the saved values) and
  // D_backward (the gradients from the saved values, recomputing the rest).
  bool split = false;
  SavePolicy save = SavePolicy::Flash;
};

struct GradientResult {
  ir::Diagram *grad = nullptr;
  ir::Diagram *train = nullptr;
  // For each gradient output of D_grad: its name and what it is the gradient of
  // (an input's name or a param's path).
  std::vector<std::pair<std::string, std::string>> gradients;
  ir::Diagram *forward = nullptr, *backward = nullptr;  // with GradientRequest::split
  std::vector<SaveChoice> choices;                       // every policy, priced; the chosen one's diagrams are written
};

std::string save_policy_name(SavePolicy policy);

struct GradientError {
  SourceLocation location;  // the op that has no derivative, or the diagram
  std::string message;
};

// Adds D_grad (and D_train) to `program`, with F_grad for every diagram D
// calls. Returns false with `error` when some op of D or of a callee has no
// derivative ncd can state (a `repeat`, `cummax`, ...).
bool derive_gradient(ir::Program &program, const ir::Diagram &diagram, const GradientRequest &request,
                     GradientResult &result, GradientError &error);

}  // namespace ncd

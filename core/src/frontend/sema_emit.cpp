// Sema's emission: a typed right-hand side, with its sums placed, becomes IR
// operations in the current region (sums on a product become a contraction).
#include "sema_impl.h"

namespace ncd::sema_detail {

int Sema::emit(TypedExpr &node) {
  int result = emit_node(node);
  if (result < 0 || node.sum_axes.empty() || node.kind == TypedExpr::Kind::Product) return result;
  // A sum placed at a non-product node: reduce the node's value.
  auto op = new_op(ir::OpKind::Reduce, node.location);
  op->function = ops::Fn::Sum;
  op->axes = node.sum_axes;
  op->operands = {result};
  std::vector<int> axes;
  for (int axis : current_->value(result).axes)
    if (!contains(node.sum_axes, axis)) axes.push_back(axis);
  return finish(std::move(op), axes, statement_float_dtype(), node.location);
}

DType Sema::statement_float_dtype() const {
  return ir::is_integer(statement_dtype_) || statement_dtype_ == DType::Bool ? DType::F32 : statement_dtype_;
}

int Sema::finish(std::unique_ptr<ir::Op> op, const std::vector<int> &axes, DType dtype, SourceLocation location) {
  int result = new_value(axes, dtype, location, "");
  current_->value(result).producer = op->id;
  op->results = {result};
  for (int operand : op->operands) reads_.insert(operand);
  frames_.back().region->ops.push_back(std::move(op));
  return result;
}

// The axes a node's own op produces (a sum placed at it comes after).
const std::vector<int> &Sema::produced(const TypedExpr &node) {
  return node.sum_axes.empty() ? node.axes : node.produced_axes;
}

int Sema::emit_node(TypedExpr &node) {
  switch (node.kind) {
    case TypedExpr::Kind::Value: return node.value;
    case TypedExpr::Kind::Constant: {
      auto op = new_op(ir::OpKind::Constant, node.location);
      op->constant = node.constant;
      return finish(std::move(op), {}, DType::F32, node.location);
    }
    case TypedExpr::Kind::SizeOf: {
      auto op = new_op(ir::OpKind::SizeOf, node.location);
      op->axes = {node.axis};
      return finish(std::move(op), {}, DType::F32, node.location);
    }
    case TypedExpr::Kind::AxisIndex: {
      auto op = new_op(ir::OpKind::AxisIndex, node.location);
      op->axes = {node.axis};
      return finish(std::move(op), {node.axis}, DType::I32, node.location);
    }
    case TypedExpr::Kind::Access: {
      auto op = new_op(ir::OpKind::Access, node.location);
      op->operands = {node.value};
      for (auto &child : node.children) {
        int index = emit(*child);
        if (index < 0) return -1;
        op->operands.push_back(index);
      }
      op->access = node.access;
      return finish(std::move(op), produced(node), node.dtype, node.location);
    }
    case TypedExpr::Kind::Elementwise:
    case TypedExpr::Kind::Reduce:
    case TypedExpr::Kind::Normalize:
    case TypedExpr::Kind::Scan: {
      auto kind = node.kind == TypedExpr::Kind::Elementwise ? ir::OpKind::Elementwise
                  : node.kind == TypedExpr::Kind::Reduce    ? ir::OpKind::Reduce
                  : node.kind == TypedExpr::Kind::Scan      ? ir::OpKind::Scan
                                                            : ir::OpKind::Normalize;
      auto op = new_op(kind, node.location);
      op->function = node.function;
      op->axes = node.op_axes;
      op->options = node.options;
      std::vector<int> axes;
      for (auto &child : node.children) {
        int operand = emit(*child);
        if (operand < 0) return -1;
        op->operands.push_back(operand);
        append_unique(axes, current_->value(operand).axes);
      }
      if (kind == ir::OpKind::Reduce) {
        std::vector<int> kept;
        for (int axis : axes)
          if (!contains(node.op_axes, axis)) kept.push_back(axis);
        axes = kept;
      }
      return finish(std::move(op), axes, node_dtype(node), node.location);
    }
    case TypedExpr::Kind::Call: {
      auto results = emit_call(node);
      return results.empty() ? -1 : results[static_cast<size_t>(node.output_index)];
    }
    case TypedExpr::Kind::Product: return emit_product(node);
    case TypedExpr::Kind::Concat: return emit_concat(node);
  }
  return -1;
}

std::vector<int> Sema::emit_call(TypedExpr &node) {
  auto op = new_op(ir::OpKind::Call, node.location);
  op->callee_name = node.callee_name;
  op->label = node.label;
  op->callee = node.callee;
  op->bindings = node.bindings;
  op->lifted = node.lifted;
  for (auto &child : node.children) {
    int operand = emit(*child);
    if (operand < 0) return {};
    op->operands.push_back(operand);
    reads_.insert(operand);
  }
  std::vector<int> results;
  for (size_t i = 0; i < node.output_axes.size(); ++i) {
    int result = new_value(node.output_axes[i], node.output_dtypes[i], node.location, "");
    current_->value(result).producer = op->id;
    results.push_back(result);
  }
  op->results = results;
  frames_.back().region->ops.push_back(std::move(op));
  return results;
}

int Sema::emit_product(TypedExpr &node) {
  std::vector<int> factors;
  for (size_t i = 0; i < node.children.size(); ++i) {
    int factor = emit(*node.children[i]);
    if (factor < 0) return -1;
    factors.push_back(factor);
  }
  DType dtype = statement_float_dtype();
  if (node.sum_axes.empty()) {
    // A pointwise product chain: keep the user's order, one op per operator.
    int accumulated = factors[0];
    if (node.inverse[0]) accumulated = emit_elementwise(ops::Fn::Recip, {accumulated}, dtype, node.location);
    for (size_t i = 1; i < factors.size(); ++i)
      accumulated = emit_elementwise(node.inverse[i] ? ops::Fn::Div : ops::Fn::Mul, {accumulated, factors[i]}, dtype, node.location);
    return accumulated;
  }
  auto op = new_op(ir::OpKind::Contract, node.location);
  std::vector<int> axes;
  for (size_t i = 0; i < factors.size(); ++i) {
    int factor = node.inverse[i] ? emit_elementwise(ops::Fn::Recip, {factors[i]}, dtype, node.location) : factors[i];
    op->operands.push_back(factor);
    append_unique(axes, current_->value(factor).axes);
  }
  op->axes = node.sum_axes;
  std::vector<int> kept;
  for (int axis : axes)
    if (!contains(node.sum_axes, axis)) kept.push_back(axis);
  return finish(std::move(op), kept, dtype, node.location);
}

int Sema::emit_elementwise(ops::Fn function, const std::vector<int> &operands, DType dtype,
                           SourceLocation location) {
  auto op = new_op(ir::OpKind::Elementwise, location);
  op->function = function;
  op->operands = operands;
  std::vector<int> axes;
  for (int operand : operands) append_unique(axes, current_->value(operand).axes);
  return finish(std::move(op), axes, dtype, location);
}

}  // namespace ncd::sema_detail

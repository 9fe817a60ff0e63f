deps.stamp: \
  deps_stdlib_import.ncd \
  $ROOT/stdlib/std/nn.ncd

$ROOT/stdlib/std/nn.ncd:

model.stamp: \
  model.ncd \
  lib/layers.ncd \
  lib/activations.ncd

lib/layers.ncd:

lib/activations.ncd:

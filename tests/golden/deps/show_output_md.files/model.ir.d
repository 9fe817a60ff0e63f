model.ir: \
  model.ncd \
  lib/layers.ncd \
  lib/activations.ncd

lib/layers.ncd:

lib/activations.ncd:

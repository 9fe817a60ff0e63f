out\ dir/model.json: \
  model.ncd \
  lib/layers.ncd \
  lib/activations.ncd

lib/layers.ncd:

lib/activations.ncd:

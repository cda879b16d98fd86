"""Analysis of the papers' results and of this project's runs.

Modules: ``cost`` (paper 000's billing model), ``scaling`` (ring-AllReduce time model on
ABCI), ``runs`` (reading run directories), ``compare`` (measured against published
accuracy), ``figures`` (the papers' figures redrawn). ``cost`` is re-exported here as the
function ``chainer_yolo_dist.analysis.cost(time_s, gpus, ...)``.
"""
from chainer_yolo_dist.analysis.cost import cost, nodes  # NOQA

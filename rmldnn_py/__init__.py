"""rmldnn_py: a code-free, config-driven deep-learning command line tool on PyTorch.

A re-implementation of RocketML's ``rmldnn``: one JSON config describes the whole run
(network as Keras JSON, data, optimizer, loss, checkpoints, outputs) and ``rmldnn --config=...``
runs it on a CPU, a GPU or many MPI ranks.
"""

__version__ = "0.1.0"

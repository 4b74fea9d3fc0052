"""Keras JSON → torch module (SPEC §4).

``build_network(layers, *, config_path, input_shape=None) -> KerasNetwork`` is the entry point;
see docs/ARCHITECTURE.md for the contract.
"""

from .graph import KerasNetwork, build_network

__all__ = ["KerasNetwork", "build_network"]

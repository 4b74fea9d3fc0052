"""Write the ``--app=pde`` network files (Keras functional-model JSON, tf.keras 2 layout, the
format of the tutorial's ``unet3d_poisson.json``):

* ``networks/unet3d_poisson.json`` — the tutorial's 3D U-Net (SPEC §11.10): input 64³×1; encoder of
  5 Conv3D 4×4×4 stride 2 ``same`` without bias (16, 32, 64, 128, 128 filters), each followed by
  InstanceNormalization (PyTorch-style keys, affine false) and LeakyReLU(0.2), Dropout(0.5) after
  the two deepest; decoder of 4 Conv3DTranspose 4×4×4 stride 2 (128, 64, 32, 16) + Instance-
  Normalization + ReLU (Dropout after the two deepest), each concatenated with the encoder output
  of the same size; UpSampling3D ×2, Conv3D 3×3×3 with 1 filter, sigmoid.
* ``networks/unet2d_poisson.json`` — the same design in 2D, one level shallower (16, 32, 64, 64
  filters), no Dropout, free spatial size (any n divisible by 16: trained at 32², reused at 64²).
* ``networks/burgers_mlp.json`` — Burgers (SPEC §8.2): input (d, 1) = the initial condition,
  Flatten → Dense(128, tanh) → Dense(128, tanh) → Dense(T·d) → Reshape (T, d, 1) (channel-first
  output (1, T, d)); d = 64 points, T = 32 time steps.

Usage: ``python benchmarks/pde_networks.py [--out networks/]``.
"""

from __future__ import annotations

import argparse
import json
import os


class Graph:
    """A tiny writer of tf.keras 2 functional-model JSON."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.layers: list[dict] = []

    def add(self, class_name: str, name: str, inputs: list[str], **config) -> str:
        cfg = {"name": name, "trainable": True, **config}
        nodes = [[[i, 0, 0, {}] for i in inputs]] if inputs else []
        self.layers.append({"class_name": class_name, "config": cfg, "name": name,
                            "inbound_nodes": nodes})
        return name

    def model(self, inputs: str, outputs: str) -> dict:
        return {"class_name": "Model",
                "config": {"name": self.name, "layers": self.layers,
                           "input_layers": [[inputs, 0, 0]], "output_layers": [[outputs, 0, 0]]},
                "keras_version": "2.9.0", "backend": "tensorflow"}


def _instnorm(g: Graph, name: str, x: str) -> str:
    return g.add("InstanceNormalization", name, [x], affine=False, track_running_stats=False,
                 momentum=0.1, epsilon=1e-5)


def unet(dims: int, filters: list[int], dropout_levels: int, size, name: str) -> dict:
    """The tutorial's U-Net design in ``dims`` (2 or 3) dimensions with ``len(filters)`` levels."""
    nd = f"{dims}D"
    k, s = [4] * dims, [2] * dims
    g = Graph(name)
    x = g.add("InputLayer", "input_1", [], batch_input_shape=[None] + [size] * dims + [1],
              dtype="float32", sparse=False)
    skips = []
    depth = len(filters)
    for lvl, f in enumerate(filters, 1):
        x = g.add(f"Conv{nd}", f"conv{dims}d_down_{lvl}", [x], filters=f, kernel_size=k,
                  strides=s, padding="same", data_format="channels_last",
                  dilation_rate=[1] * dims, use_bias=False, activation="linear")
        x = _instnorm(g, f"norm_down_{lvl}", x)
        x = g.add("LeakyReLU", f"leaky_relu_down_{lvl}", [x], alpha=0.2)
        if lvl > depth - dropout_levels:
            x = g.add("Dropout", f"dropout_down_{lvl}", [x], rate=0.5, noise_shape=None, seed=None)
        skips.append(x)
    for lvl in range(depth - 1, 0, -1):
        f = filters[lvl - 1]
        x = g.add(f"Conv{nd}Transpose", f"conv{dims}d_tran_up_{lvl}", [x], filters=f,
                  kernel_size=k, strides=s, padding="same", data_format="channels_last",
                  use_bias=False, activation="linear")
        x = _instnorm(g, f"norm_up_{lvl}", x)
        x = g.add("ReLU", f"relu_up_{lvl}", [x])
        if dropout_levels and lvl > depth - 1 - dropout_levels:
            x = g.add("Dropout", f"dropout_up_{lvl}", [x], rate=0.5, noise_shape=None, seed=None)
        x = g.add("Concatenate", f"concatenate_{lvl}", [skips[lvl - 1], x], axis=-1)
    x = g.add(f"UpSampling{nd}", "upsample_1", [x], size=[2] * dims, data_format="channels_last")
    x = g.add(f"Conv{nd}", f"conv{dims}d_final", [x], filters=1, kernel_size=[3] * dims,
              strides=[1] * dims, padding="same", dilation_rate=[1] * dims,
              data_format="channels_last", use_bias=True, activation="linear")
    x = g.add("Activation", "sigmoid", [x], activation="sigmoid")
    return g.model("input_1", x)


def burgers_mlp(d: int = 64, T: int = 32, hidden: int = 128) -> dict:
    g = Graph("Burgers MLP")
    x = g.add("InputLayer", "input_1", [], batch_input_shape=[None, d, 1], dtype="float32",
              sparse=False)
    x = g.add("Flatten", "flatten", [x], data_format="channels_last")
    x = g.add("Dense", "dense_1", [x], units=hidden, activation="tanh", use_bias=True)
    x = g.add("Dense", "dense_2", [x], units=hidden, activation="tanh", use_bias=True)
    x = g.add("Dense", "dense_out", [x], units=T * d, activation="linear", use_bias=True)
    x = g.add("Reshape", "field", [x], target_shape=[T, d, 1])
    return g.model("input_1", x)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "networks"))
    a = p.parse_args()
    files = {
        "unet3d_poisson.json": unet(3, [16, 32, 64, 128, 128], 2, 64, "Unet3D depth-5 (Poisson)"),
        "unet2d_poisson.json": unet(2, [16, 32, 64, 64], 0, None, "Unet2D depth-4 (Poisson)"),
        "burgers_mlp.json": burgers_mlp(),
    }
    for name, obj in files.items():
        path = os.path.join(a.out, name)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=1)
            f.write("\n")
        print(f"wrote {os.path.normpath(path)}")


if __name__ == "__main__":
    main()

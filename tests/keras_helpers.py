"""Shared helpers for the tests that use Keras 3 (``KERAS_BACKEND=torch``) as the reference.

* :func:`to_keras2_json` rewrites a Keras 3 ``model.to_json()`` into the tf.keras 2 form.
* :func:`save_keras3_weights` / :func:`save_legacy_weights` write the two ``.h5`` layouts that
  ``checkpoints.load`` reads (Keras 3 ``.weights.h5``; tf.keras 2 ``save_weights`` layout through
  Keras' legacy writer).
* :class:`ListLog` collects the lines :func:`rmldnn_py.engine.checkpoint.load_weights` prints.
* :func:`keras_counts` gives the parameter counts rmldnn_py must print for a Keras model (SPEC §4.7).

Imported as ``keras_helpers`` (``tests/`` is on ``sys.path`` under pytest's default import mode).
"""

from __future__ import annotations

import copy
import os

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "torch")

# ------------------------------------------------------------------------------- Keras 2 JSON


def _k2_dtype(cfg: dict) -> dict:
    cfg = dict(cfg)
    if isinstance(cfg.get("dtype"), dict):
        cfg["dtype"] = (cfg["dtype"].get("config") or {}).get("name", "float32")
    for k, v in list(cfg.items()):
        if isinstance(v, dict) and "module" in v and "class_name" in v:  # initializers etc.
            v = {"class_name": v["class_name"], "config": v.get("config")}
            cfg[k] = v
        if k == "activation" and isinstance(v, dict):
            cfg[k] = v.get("config") if isinstance(v.get("config"), str) else v.get("class_name")
    if "negative_slope" in cfg and "threshold" not in cfg:  # tf.keras 2 LeakyReLU
        cfg["alpha"] = cfg.pop("negative_slope")
    if "batch_shape" in cfg:
        cfg["batch_input_shape"] = cfg.pop("batch_shape")
    cfg.pop("optional", None)
    return cfg


def _k2_tensors(obj, out):
    if isinstance(obj, dict) and obj.get("class_name") == "__keras_tensor__":
        h = obj["config"]["keras_history"]
        out.append([h[0], h[1], h[2], {}])
    elif isinstance(obj, list):
        for v in obj:
            _k2_tensors(v, out)


def to_keras2_json(k3: dict, functional_class: str = "Functional") -> dict:
    """Rewrite a Keras 3 model JSON into tf.keras 2 form (nested-list inbound_nodes,
    batch_input_shape, plain dtype strings, ``Functional``/``Model`` class names)."""
    k3 = copy.deepcopy(k3)
    cfg = k3["config"]
    layers = []
    for entry in cfg["layers"]:
        new = {"class_name": entry["class_name"], "config": _k2_dtype(entry["config"])}
        if "name" in entry:
            new["name"] = entry["name"]
        if "inbound_nodes" in entry:
            nodes = []
            for node in entry["inbound_nodes"]:
                refs: list = []
                _k2_tensors(node.get("args", []), refs)
                nodes.append(refs)
            new["inbound_nodes"] = nodes
        layers.append(new)
    out_cfg = {"name": cfg["name"], "layers": layers}
    if k3["class_name"] != "Sequential":
        for key in ("input_layers", "output_layers"):
            v = cfg[key]
            out_cfg[key] = [v] if v and isinstance(v[0], str) else v
        cls = functional_class
    else:
        cls = "Sequential"
    return {"class_name": cls, "config": out_cfg, "keras_version": "2.9.0", "backend": "tensorflow"}


# ------------------------------------------------------------------------------- weights files


def save_keras3_weights(model, path: str) -> str:
    """Keras 3 ``model.save_weights`` (``layers/<name>/vars/<i>``); ``path`` ends ``.weights.h5``."""
    model.save_weights(path)
    return path


def save_legacy_weights(model, path: str) -> str:
    """The tf.keras 2 ``save_weights`` layout (``layer_names`` / ``weight_names`` attributes,
    ``<layer>/<layer>/<weight>`` datasets) written by Keras 3's legacy HDF5 writer."""
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)
    return path


class ListLog:
    """The ``log`` object ``load_weights`` prints through: collects ``line()`` calls."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def line(self, text: str = "") -> None:
        self.lines.append(str(text))

    def skipping(self) -> list[str]:
        return [ln for ln in self.lines if "Skipping" in ln]


# ------------------------------------------------------------------------------- counting

_STATS = ("moving_mean", "moving_variance", "mean", "variance", "count")


def _short(weight) -> str:
    return weight.path.split("/")[-1].split(":")[0]


def always_affine_extra(model) -> int:
    """Parameters rmldnn_py adds for BatchNormalization layers without ``scale``/``center``
    (always affine, SPEC §4.4/§4.7): C per missing gamma and per missing beta."""
    extra = 0
    for layer in _all_layers(model):
        if type(layer).__name__ == "BatchNormalization":
            channels = int(layer.moving_mean.shape[0])
            extra += channels * ((not layer.scale) + (not layer.center))
    return extra


def _all_layers(model):
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.layers:  # nested model
            yield from _all_layers(layer)
        else:
            yield layer


def keras_counts(model) -> tuple[int, int]:
    """``(total, trainable)`` as rmldnn_py must print them for a Keras model (SPEC §4.7): Keras
    weights without running statistics, plus the always-affine BatchNormalization gamma/beta
    (trainable when the layer is)."""
    total = trainable = 0
    for layer in _all_layers(model):
        for w in layer.weights:
            if _short(w) in _STATS and not w.trainable:
                continue
            n = int(np.prod(w.shape))
            total += n
            trainable += n if w.trainable else 0
        if type(layer).__name__ == "BatchNormalization":
            extra = int(layer.moving_mean.shape[0]) * ((not layer.scale) + (not layer.center))
            total += extra
            trainable += extra if layer.trainable else 0
    return total, trainable


def randomize_for_inference(model, rng: np.random.Generator) -> None:
    """Give every weight a non-trivial value while keeping activations of deep networks in range:
    kernels keep Keras' initial values (already random); biases, BatchNormalization
    gamma/beta/statistics and other small vectors get random values."""
    for layer in _all_layers(model):
        for w in layer.weights:
            short = _short(w)
            shape = tuple(w.shape)
            if short in ("gamma",):
                value = rng.uniform(0.5, 1.5, shape)
            elif short in ("moving_variance", "variance"):
                value = rng.uniform(0.5, 1.5, shape)
            elif short in ("beta", "bias", "moving_mean", "mean"):
                value = rng.normal(0.0, 0.1, shape)
            else:
                continue
            w.assign(value.astype("float32"))


def to_tf2_h5(src: str, dst: str, *, full_model: bool = False) -> str:
    """Rewrite a file written by :func:`save_legacy_weights` exactly as tf.keras 2 writes it:
    weight names with ``:0`` (``conv1_conv/kernel:0``, datasets ``conv1_conv/conv1_conv/kernel:0``),
    ``keras_version`` 2.x, and with ``full_model`` the ``model.save()`` form (everything under the
    group ``model_weights`` next to a ``model_config`` attribute)."""
    import h5py

    with h5py.File(src, "r") as fin, h5py.File(dst, "w") as fout:
        root = fout.create_group("model_weights") if full_model else fout
        if full_model:
            fout.attrs["model_config"] = b"{}"
            fout.attrs["keras_version"] = b"2.9.0"
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in fin.attrs["layer_names"]]
        root.attrs["layer_names"] = np.array([n.encode() for n in names])
        root.attrs["backend"] = b"tensorflow"
        root.attrs["keras_version"] = b"2.9.0"
        for layer in names:
            g_in, g_out = fin[layer], root.create_group(layer)
            weights = [w.decode() if isinstance(w, bytes) else str(w) for w in g_in.attrs["weight_names"]]
            new = [f"{w}:0" for w in weights]
            g_out.attrs["weight_names"] = np.array([w.encode() for w in new])
            for old, name in zip(weights, new):
                g_out.create_dataset(name, data=g_in[old][()])
    return dst

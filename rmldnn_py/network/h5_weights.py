"""Keras ``.h5`` weights import (SPEC §4.10, §7.4.2, §12 Q30).

Two steps, both free of torch:

1. :func:`read_keras_weights` reads a Keras weights file into
   ``{layer name: {short weight name: numpy array}}`` with the arrays exactly as Keras stores them
   (channels-last kernels, ``layer.get_weights()`` values).
2. :func:`keras_to_torch` converts one layer's Keras weights into rmldnn_py tensors
   ``{torch tensor name: (keras short weight name, array)}`` in PyTorch's channel-first layouts.

Matching is by layer name, then by short weight name; never by position (§12 Q30). The loader
(``engine/checkpoint.py``) prints the ``Skipping ...`` lines; :func:`tensor_names` and
:func:`keras_name` give it the Keras names of tensors the file lacks.

File layouts read
-----------------
* tf.keras 2 ``model.save_weights("x.h5")``: root attribute ``layer_names``; one group per layer
  with attribute ``weight_names`` (``conv1/kernel:0``); each weight is the dataset
  ``<layer group>/<weight name>``, i.e. ``conv1/conv1/kernel:0`` (a ``/`` inside a layer or weight
  name nests deeper groups: DenseNet's ``conv1/conv`` → ``conv1/conv/conv1/conv/kernel:0``).
  Keras 3's legacy writer (``legacy_h5_format.save_weights_to_hdf5_group``) writes the same layout
  with names without ``:0``. Attributes too large for an HDF5 object header are chunked as
  ``layer_names0``, ``layer_names1``, ... (likewise ``weight_names<i>``).
* tf.keras 2 / legacy ``model.save("x.h5")``: the same under the group ``model_weights``
  (``model_config``, ``training_config`` and ``optimizer_weights`` are ignored).
* Nested models in those layouts (a ``Functional``/``Sequential`` used as a layer): the group of
  the nested model holds the weights of all its layers (``inner/c_in/kernel`` in Keras 3,
  ``c_in/kernel:0`` in tf.keras 2); they are returned under the inner layer names (``c_in``).
  Files written by Keras 3 (root attribute ``keras_version`` 3.x) take the last component of the
  prefix, as Keras 3 names cannot contain ``/`` (two levels: ``inner/d_in/kernel`` → ``d_in``).
  In tf.keras 2 files, a group whose weights all belong to one other name (a renamed layer:
  group ``fc1``, weights ``dense_3/kernel:0``) is returned under the group name, i.e. the
  model's layer name; so is a nested model with a single weighted layer.
* Keras 3 ``model.save_weights("x.weights.h5")``: ``layers/<path name>/vars/<i>`` (nested models:
  ``layers/functional/layers/conv2d/vars/0``; tf.keras 2.13: ``_layer_checkpoint_dependencies``
  instead of ``layers``). Path names are snake-cased *class* names (``conv2d_1``), not layer
  names; the layer name is the ``name`` attribute of the ``vars`` group, written by recent Keras 3
  versions, and the path name is used only when that attribute is absent. Variables are numbered
  in Keras order (trainable first) without names; pass ``layer_info`` to name them (see
  :func:`keras3_weight_names`), otherwise they are returned as ``"0"``, ``"1"``, ...
  The optimizer state (``optimizer/vars``) and the model's own ``vars`` are ignored.
  Sharded weights (``.weights.json``) and ``.keras`` archives are not read.
If a name occurs twice (two nested models with a layer ``conv``), the shallower entry wins, then
the first in file order.

Tensor conversions (Keras channels-last → torch channel-first)
--------------------------------------------------------------
=========================  ==================================  =================================
Keras class                Keras weight                        rmldnn_py tensor
=========================  ==================================  =================================
ConvND                     ``kernel`` (k…, in/groups, out)     ``weight`` (out, in/groups, k…)
ConvNDTranspose            ``kernel`` (k…, out, in)            ``weight`` (in, out, k…)
DepthwiseConvND            ``depthwise_kernel`` (k…, in, m)    ``weight`` (in·m, 1, k…), output
                           (``kernel`` in Keras 3)             channel ``i·m + j`` (as Keras)
SeparableConvND            ``depthwise_kernel`` (k…, in, m)    ``depthwise_weight`` (in·m, 1, k…)
                           ``pointwise_kernel`` (1…, in·m, o)  ``pointwise_weight`` (o, in·m, 1…)
Dense                      ``kernel`` (in, out)                ``weight`` (out, in)
BatchNormalization,        ``gamma``, ``beta``,                ``weight``, ``bias``,
InstanceNormalization      ``moving_mean``, ``moving_variance``  ``running_mean``, ``running_var``
LayerNormalization,        ``gamma``, ``beta``                 ``weight``, ``bias``
GroupNormalization
PReLU                      ``alpha`` (Keras input shape        ``weight``, channel-first: the last
                           without batch, shared axes = 1)     axis moved to the front
Normalization              ``mean``, ``variance`` (kept axes),  ``mean``, ``variance`` (C,) buffers
                           ``count`` (ignored)
=========================  ==================================  =================================
Biases are copied unchanged (except the input-shaped ``beta`` of a multi-axis LayerNormalization).
Normalization has Keras variables only when its config gives no ``mean``/``variance`` (the
values of :meth:`adapt`); otherwise the JSON config carries them. Weights that Keras omits (``use_bias=False``; ``center=False`` →
no ``beta``; ``scale=False`` → no ``gamma``) are simply absent from the result. Batch
renormalisation statistics (``moving_stddev``, ``renorm_mean``, ``renorm_stddev``) are not used at
inference and are dropped. PReLU ``alpha`` of rank ≥ 2 is assumed to be laid out like the Keras
input, channels last: ``(H, W, C)`` → ``(C, H, W)``, ``(1, 1, C)`` → ``(C, 1, 1)``; rank 1 (Dense
input) is unchanged. The torch module is expected to broadcast ``weight`` against its
``(N, C, *spatial)`` input. Multi-axis LayerNormalization ``gamma``/``beta`` get the same
channel-first permutation. For a model written in Keras ``channels_first`` terms
(``keras_to_torch(..., channels_last=False)``) these input-shaped weights are kept as they are.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from typing import Any

import h5py
import numpy as np

from rmldnn_py.errors import CheckpointError

__all__ = [
    "LayerInfo",
    "keras3_weight_names",
    "keras_name",
    "keras_to_torch",
    "read_keras_weights",
    "supported_classes",
    "tensor_names",
]

LayerInfo = Callable[[str], "tuple[str, Mapping[str, Any]] | None"]
"""``layer_info(layer_name) -> (keras class name, keras layer config) | None``: what the network
knows about a layer, used to name the unnamed Keras 3 variables; ``None`` for layers the network
does not have."""

Weights = dict[str, np.ndarray]

# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------

_KERAS3_ROOTS = ("layers", "_layer_checkpoint_dependencies")
_SUFFIX = re.compile(r":\d+$")


def read_keras_weights(path: str, *, layer_info: LayerInfo | None = None) -> dict[str, Weights]:
    """Read a Keras weights file (any layout listed in the module docstring).

    Returns ``{layer name: {short weight name: array}}`` for every layer that has weights, arrays
    as stored by Keras (``layer.get_weights()`` values, channels-last). Short names are the last
    component of the Keras weight name without ``:0`` (``kernel``, ``gamma``, ...). For Keras 3
    ``.weights.h5`` files the variables are named with ``layer_info`` (see
    :func:`keras3_weight_names`), or ``"0"``, ``"1"``, ... where ``layer_info`` is not given,
    returns ``None`` or names a class :func:`keras_to_torch` does not convert.

    Raises :class:`CheckpointError` naming the file when it is missing, not HDF5, holds no Keras
    weights, or is inconsistent.
    """
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: Keras weights file not found")
    try:
        h5 = h5py.File(path, "r")
    except OSError as exc:
        raise CheckpointError(
            f"{path}: not an HDF5 file, cannot read Keras weights ({exc})"
        ) from None
    with h5:
        try:
            if _has_attr(h5, "layer_names"):
                result = _read_legacy(h5, path)
            elif "model_weights" in h5 and _has_attr(h5["model_weights"], "layer_names"):
                result = _read_legacy(h5["model_weights"], path)
            elif any(root in h5 for root in _KERAS3_ROOTS):
                result = _read_keras3(h5, path, layer_info)
            else:
                raise CheckpointError(
                    f"{path}: no Keras weights found (expected the attribute 'layer_names', "
                    "a 'model_weights' group or a Keras 3 'layers' group)"
                )
        except CheckpointError:
            raise
        except (OSError, KeyError, ValueError, TypeError) as exc:
            raise CheckpointError(f"{path}: cannot read Keras weights ({exc})") from None
    if not result:
        raise CheckpointError(f"{path}: no Keras weights found (the file holds no layer weights)")
    return result


def _has_attr(group: h5py.Group, name: str) -> bool:
    return name in group.attrs or f"{name}0" in group.attrs


def _read_str_attr(group: h5py.Group, name: str) -> list[str]:
    """A list-of-strings attribute, possibly chunked as ``name0``, ``name1``, ... (Keras splits
    attributes larger than the 64 KiB HDF5 object-header limit)."""
    if name in group.attrs:
        chunks = [group.attrs[name]]
    else:
        chunks = []
        while f"{name}{len(chunks)}" in group.attrs:
            chunks.append(group.attrs[f"{name}{len(chunks)}"])
    values: list[str] = []
    for chunk in chunks:
        for item in np.atleast_1d(np.asarray(chunk)).ravel():
            values.append(item.decode("utf8") if isinstance(item, bytes) else str(item))
    return values


def _read_legacy(group: h5py.Group, path: str) -> dict[str, Weights]:
    """tf.keras 2 ``layer_names`` / ``weight_names`` layout (also under ``model_weights``)."""
    own: dict[str, Weights] = {}  # weights of the listed layers themselves
    nested: dict[str, Weights] = {}  # weights of layers inside nested models
    version = group.attrs.get("keras_version", b"")
    version = version.decode("utf8") if isinstance(version, bytes) else str(version)
    # Keras 3 layer names cannot contain "/", so the last component of a weight's prefix is its
    # layer (``mid/d_mid/kernel``, ``inner/d_in/kernel``); tf.keras 2 names can (``conv1/conv``).
    keras3 = version.startswith("3")
    for layer in _read_str_attr(group, "layer_names"):
        if layer not in group:
            raise CheckpointError(
                f"{path}: layer '{layer}' is listed in 'layer_names' but has no group"
            )
        layer_group = group[layer]
        names = _read_str_attr(layer_group, "weight_names")
        owners = [_split_weight_name(n)[0] for n in names]
        inner_owners = {o for o in owners if o not in ("", layer)}
        for name, owner in zip(names, owners):
            if name not in layer_group:
                raise CheckpointError(
                    f"{path}: layer '{layer}': weight '{name}' is listed in 'weight_names' "
                    "but has no dataset"
                )
            value = np.asarray(layer_group[name][()])
            short = _split_weight_name(name)[1]
            if owner in ("", layer) or (len(inner_owners) == 1 and not keras3):
                _put(own, layer, short, value, name)  # own weight, or a renamed layer's
            elif keras3:  # nested model: inner/c_in/kernel, or deeper: inner/d_in/kernel
                _put(nested, owner.rpartition("/")[2], short, value, name)
            else:  # tf.keras 2 nested model: c_in/kernel:0
                _put(nested, owner, short, value, name)
    for layer, weights in nested.items():
        own.setdefault(layer, weights)
    return own


def _split_weight_name(name: str) -> tuple[str, str]:
    """``conv1/conv/kernel:0`` → ``("conv1/conv", "kernel")``."""
    prefix, _, short = _SUFFIX.sub("", name).rpartition("/")
    return prefix, short


def _put(result: dict[str, Weights], layer: str, short: str, value: np.ndarray, full: str) -> None:
    weights = result.setdefault(layer, {})
    # Two weights with the same short name (e.g. Bidirectional's two kernels): keep the first
    # under its short name, the others under their full names without ':0'.
    weights[_SUFFIX.sub("", full) if short in weights else short] = value


def _read_keras3(h5: h5py.File, path: str, layer_info: LayerInfo | None) -> dict[str, Weights]:
    """Keras 3 ``.weights.h5``: ``layers/<path name>/vars/<i>``, nested to any depth."""
    found: list[tuple[int, int, str, list[np.ndarray]]] = []  # (depth, order, name, values)

    def visit(group: h5py.Group, depth: int) -> None:
        for key in group:
            child = group[key]
            if not isinstance(child, h5py.Group):
                continue
            if "vars" in child and isinstance(child["vars"], h5py.Group):
                values = _read_vars(child["vars"], path)
                if values:
                    name = child["vars"].attrs.get("name", key)
                    name = name.decode("utf8") if isinstance(name, bytes) else str(name)
                    found.append((depth, len(found), name, values))
            for sub in child:
                if sub in _KERAS3_ROOTS and isinstance(child[sub], h5py.Group):
                    visit(child[sub], depth + 1)

    for root in _KERAS3_ROOTS:
        if root in h5:
            visit(h5[root], 0)
    result: dict[str, Weights] = {}
    for _, _, name, values in sorted(found):
        if name in result:
            continue
        info = layer_info(name) if layer_info is not None else None
        if info is None or not _kind(info[0])[0]:  # unknown layer or class: keep the numbers
            short_names = [str(i) for i in range(len(values))]
        else:
            class_name, config = info
            short_names = keras3_weight_names(class_name, config, layer=name)
            if len(short_names) != len(values):
                raise CheckpointError(
                    f"{path}: layer '{name}' has {len(values)} weights in the file, expected "
                    f"{len(short_names)} for {class_name} ({', '.join(short_names) or 'none'})"
                )
        result[name] = dict(zip(short_names, values))
    return result


def _read_vars(group: h5py.Group, path: str) -> list[np.ndarray]:
    keys = [k for k in group if isinstance(group[k], h5py.Dataset)]
    if any(not k.isdigit() for k in keys):
        raise CheckpointError(f"{path}: unexpected dataset names {sorted(keys)} in '{group.name}'")
    return [np.asarray(group[k][()]) for k in sorted(keys, key=int)]


# --------------------------------------------------------------------------------------------
# Keras weight names and conversion
# --------------------------------------------------------------------------------------------


def _kind(class_name: str) -> tuple[str, int]:
    """``(family, spatial rank)`` of a Keras class; rank 0 for non-convolutions. Registered names
    such as ``Addons>InstanceNormalization`` are reduced to the class name."""
    base = class_name.rsplit(">", 1)[-1]
    m = re.fullmatch(
        r"(Conv|Convolution|DepthwiseConv|SeparableConv|SeparableConvolution)([123])D(Transpose)?",
        base,
    )
    if m:
        prefix, rank, transpose = m.group(1), int(m.group(2)), m.group(3)
        if prefix.startswith("Depthwise"):
            return ("" if transpose else "depthwise", rank)
        if prefix.startswith("Separable"):
            return ("" if transpose else "separable", rank)
        return ("conv_transpose" if transpose else "conv", rank)
    if base in ("Deconvolution2D", "Deconvolution3D"):  # old Keras aliases of ConvNDTranspose
        return ("conv_transpose", int(base[-2]))
    return (_FAMILIES.get(base, ""), 0)


_FAMILIES = {
    "Dense": "dense",
    "BatchNormalization": "batch_norm",
    "SyncBatchNormalization": "batch_norm",
    "InstanceNormalization": "instance_norm",
    "LayerNormalization": "norm",
    "GroupNormalization": "norm",
    "PReLU": "prelu",
    "Normalization": "normalization",
}

# torch tensor → Keras short weight name, per family (canonical tf.keras 2 names).
_TENSORS = {
    "conv": {"weight": "kernel", "bias": "bias"},
    "conv_transpose": {"weight": "kernel", "bias": "bias"},
    "depthwise": {"weight": "depthwise_kernel", "bias": "bias"},
    "separable": {
        "depthwise_weight": "depthwise_kernel",
        "pointwise_weight": "pointwise_kernel",
        "bias": "bias",
    },
    "dense": {"weight": "kernel", "bias": "bias"},
    "batch_norm": {
        "weight": "gamma",
        "bias": "beta",
        "running_mean": "moving_mean",
        "running_var": "moving_variance",
    },
    "instance_norm": {
        "weight": "gamma",
        "bias": "beta",
        "running_mean": "moving_mean",
        "running_var": "moving_variance",
    },
    "norm": {"weight": "gamma", "bias": "beta"},
    "prelu": {"weight": "alpha"},
    "normalization": {"mean": "mean", "variance": "variance"},
}

_ALIASES = {"depthwise": {"kernel": "depthwise_kernel"}}  # Keras 3 names DepthwiseConv's "kernel"
_IGNORED = {
    "batch_norm": {"moving_stddev", "renorm_mean", "renorm_stddev"},  # batch renorm only
    "normalization": {"count"},  # number of samples seen by adapt(); not used at inference
}


def supported_classes() -> list[str]:
    """Keras class names (canonical spellings) whose weights :func:`keras_to_torch` converts."""
    convs = [
        f"{p}{r}D{t}"
        for p, t, ranks in (("Conv", "", "123"), ("Conv", "Transpose", "123"),
                            ("DepthwiseConv", "", "12"), ("SeparableConv", "", "12"))
        for r in ranks
    ]
    return convs + sorted(_FAMILIES)


def tensor_names(class_name: str, *, layer: str) -> dict[str, str]:
    """``{torch tensor name: Keras short weight name}`` of a Keras class, in Keras weight order
    (e.g. ``BatchNormalization`` → ``weight: gamma, bias: beta, running_mean: moving_mean,
    running_var: moving_variance``), for the ``Skipping parameter bn.weight (bn/gamma:0)``
    messages. Unknown class → :class:`CheckpointError` naming ``layer``."""
    family, _ = _kind(class_name)
    if not family:
        raise CheckpointError(
            f"layer '{layer}': cannot import Keras weights of layer type '{class_name}'"
        )
    return dict(_TENSORS[family])


def keras_name(layer: str, weight: str) -> str:
    """Printed Keras name of a weight: ``keras_name("bn_data", "gamma")`` → ``bn_data/gamma:0``."""
    return f"{layer}/{weight}:0"


def keras3_weight_names(
    class_name: str, config: Mapping[str, Any] | None = None, *, layer: str = "?"
) -> list[str]:
    """Short names of a layer's Keras 3 variables in saved order (trainable first), which
    ``.weights.h5`` files store as ``vars/0``, ``vars/1``, ... The Keras layer ``config`` decides
    which optional weights exist (``use_bias``, ``center``, ``scale``, ``rms_scaling``,
    ``renorm``); absent keys take the Keras defaults. Unknown class → :class:`CheckpointError`."""
    config = config or {}
    family, _ = _kind(class_name)
    bias = ["bias"] if config.get("use_bias", True) else []
    if family in ("conv", "conv_transpose", "dense"):
        return ["kernel", *bias]
    if family == "depthwise":
        return ["kernel", *bias]  # Keras 3 calls the depthwise kernel "kernel"
    if family == "separable":
        return ["depthwise_kernel", "pointwise_kernel", *bias]
    scale, center = config.get("scale", True), config.get("center", True)
    if family == "batch_norm":
        names = (["gamma"] if scale else []) + (["beta"] if center else [])
        names += ["moving_mean", "moving_variance"]
        if config.get("renorm", False):
            names += ["moving_stddev", "renorm_mean", "renorm_stddev"]
        return names
    if family == "norm":
        rms = config.get("rms_scaling", False)
        return (["gamma"] if scale or rms else []) + (["beta"] if center and not rms else [])
    if family == "instance_norm":
        return (["gamma"] if scale else []) + (["beta"] if center else [])
    if family == "prelu":
        return ["alpha"]
    if family == "normalization":
        # variables exist only when mean/variance are not given in the config (adapt() state)
        if config.get("mean") is not None:
            return []
        return ["mean", "variance", "count"]
    raise CheckpointError(
        f"layer '{layer}': cannot import Keras weights of layer type '{class_name}'"
    )


def keras_to_torch(
    class_name: str,
    weights: Mapping[str, np.ndarray],
    *,
    layer: str,
    source: str | None = None,
    channels_last: bool = True,
) -> dict[str, tuple[str, np.ndarray]]:
    """Convert one layer's Keras weights (short name → array, as from
    :func:`read_keras_weights`) to ``{torch tensor name: (Keras short weight name, array)}`` with
    the layouts of the module docstring. Only weights present are returned. Arrays are
    C-contiguous with the file's dtype.

    ``channels_last`` is the Keras data layout of the layer's input; it matters only for weights
    shaped like the input (PReLU ``alpha``, multi-axis LayerNormalization ``gamma``/``beta``),
    which are moved to channel-first when true and kept as they are when false. Kernel layouts do
    not depend on the Keras ``data_format``.

    Unknown class, unknown weight name or a kernel of the wrong rank → :class:`CheckpointError`
    naming ``layer`` (prefixed by ``source``, the file, when given).
    """
    where = f"{source}: layer '{layer}'" if source else f"layer '{layer}'"
    family, rank = _kind(class_name)
    if not family:
        raise CheckpointError(f"{where}: cannot import Keras weights of layer type '{class_name}'")
    by_keras = {k: t for t, k in _TENSORS[family].items()}
    aliases = _ALIASES.get(family, {})
    ignored = _IGNORED.get(family, set())
    out: dict[str, tuple[str, np.ndarray]] = {}
    for name, value in weights.items():
        if name in ignored:
            continue
        tensor = by_keras.get(aliases.get(name, name))
        if tensor is None:
            raise CheckpointError(
                f"{where}: unexpected Keras weight '{name}' for {class_name} "
                f"(expected {', '.join(by_keras)})"
            )
        value = np.asarray(value)
        kernel_rank = _kernel_rank(family, rank, tensor)
        if kernel_rank is not None and value.ndim != kernel_rank:
            raise CheckpointError(
                f"{where}: Keras weight '{name}' of {class_name} must have rank {kernel_rank}, "
                f"received shape {list(value.shape)}"
            )
        converted = _convert(family, tensor, value, channels_last)
        out[tensor] = (name, np.ascontiguousarray(converted))
    return out


def _kernel_rank(family: str, rank: int, tensor: str) -> int | None:
    if tensor in ("weight", "depthwise_weight", "pointwise_weight"):
        if family in ("conv", "conv_transpose", "depthwise", "separable"):
            return rank + 2
        if family == "dense":
            return 2
    return None


def _convert(family: str, tensor: str, w: np.ndarray, channels_last: bool) -> np.ndarray:
    if family == "normalization":  # mean/variance of the kept (channel) axis → (C,)
        return w.reshape(-1)
    if family in ("prelu", "norm"):  # input-shaped gamma/beta/alpha: (…, C) → (C, …)
        return np.moveaxis(w, -1, 0) if w.ndim >= 2 and channels_last else w
    if tensor == "bias" or tensor in ("running_mean", "running_var"):
        return w
    n = w.ndim
    if family in ("conv", "conv_transpose") or tensor == "pointwise_weight":
        # (k…, a, b) → (b, a, k…): conv (k…, in, out) → (out, in, k…);
        # transpose (k…, out, in) → (in, out, k…); pointwise (1…, in·m, out) → (out, in·m, 1…)
        return w.transpose(n - 1, n - 2, *range(n - 2))
    if family in ("depthwise", "separable"):  # (k…, in, m) → (in·m, 1, k…)
        k = w.shape[:-2]
        flat = w.reshape(*k, w.shape[-2] * w.shape[-1])
        return np.moveaxis(flat, -1, 0)[:, None]
    if family == "dense":  # (in, out) → (out, in)
        return w.T
    return w

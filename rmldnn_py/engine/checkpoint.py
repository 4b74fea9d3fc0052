"""Model checkpoints (SPEC §7.4): atomic saving, safe loading, partial load by layer name.

File format (``model_checkpoint_<epoch>.pt``): a ``torch.save`` dict ``{"format":
"rmldnn_py-checkpoint-1", "model": state_dict, "optimizer": ..., "lr_scheduler": ..., "epoch": e,
"config": <the config file path and text>}`` whose model keys are ``<keras layer>.<tensor>``
(SPEC §4.10). Loading always uses ``torch.load(weights_only=True)``: a checkpoint never executes
code. A bare state_dict is accepted too. Keras ``.h5`` weights are read by
:mod:`rmldnn_py.network.h5_weights`.
"""

from __future__ import annotations

import os
import pickle
import re
import warnings
from typing import Any, Callable, Mapping, Optional

import torch

from ..errors import CheckpointError
from ..io.atomic import atomic_path

FORMAT = "rmldnn_py-checkpoint-1"


def checkpoint_path(directory: str, epoch: int) -> str:
    """``<directory>/model_checkpoint_<epoch>.pt``."""
    return os.path.join(directory, f"model_checkpoint_{epoch}.pt")


def save_checkpoint(path: str, model: torch.nn.Module, epoch: int,
                    optimizer: Optional[torch.optim.Optimizer] = None,
                    scheduler: Any = None, config_text: str = "") -> None:
    """Write a checkpoint atomically (temporary file + rename) to ``path``.

    Raises:
        CheckpointError: the file cannot be written (message names the path).
    """
    state = {
        "format": FORMAT,
        "epoch": int(epoch),
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "lr_scheduler": scheduler.state_dict() if hasattr(scheduler, "state_dict") else None,
        "config": config_text,
    }
    try:
        with atomic_path(path) as tmp:
            torch.save(state, tmp)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot write checkpoint: {exc.strerror or exc}") from None


def _load_failure(exc: BaseException) -> str:
    """A short reason for a ``torch.load(weights_only=True)`` failure (torch's own messages are
    paragraphs with advice to disable the safety check)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()
    m = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if m:
        return (f"it holds a pickled Python object ({m.group(1)}); loading it would need code "
                f"execution, which rmldnn_py never does (save a state_dict of tensors instead)")
    if "Weights only load failed" in text or isinstance(exc, pickle.UnpicklingError):
        return ("it is not a torch archive of tensors (a raw Python pickle or another format); "
                "only tensors are read from checkpoints, nothing in them is executed")
    if "central directory" in text or "zip archive" in text:
        return "the file is truncated or corrupt (not a complete torch zip archive)"
    if isinstance(exc, EOFError) or not text:
        return "the file is empty or truncated"
    return (text.splitlines() or [type(exc).__name__])[0][:200]


def read_pt_state(path: str) -> dict[str, torch.Tensor]:
    """The model state dict stored in a ``.pt`` file (an rmldnn_py checkpoint or a bare state_dict).

    Loading uses ``torch.load(weights_only=True)``: nothing in the file is executed. torch's
    warnings about the file (``Detected pickle protocol 4 ...``) are not shown; the failure, if
    any, is one line.

    Raises:
        CheckpointError: missing file, not a torch file, an archive that needs code execution
            (e.g. a pickled module or an original-rmldnn libtorch archive), a truncated file, or
            no tensors in it. The message starts ``<path>: not a readable rmldnn_py checkpoint``.
    """
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path}: not a readable rmldnn_py checkpoint: "
                              f"{_load_failure(exc)}") from None
    if isinstance(obj, Mapping) and "model" in obj and isinstance(obj["model"], Mapping):
        obj = obj["model"]
    if not isinstance(obj, Mapping) or not obj or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        raise CheckpointError(f"{path}: not an rmldnn_py checkpoint (expected a dict with a "
                              "'model' state_dict, or a state_dict of tensors)")
    return dict(obj)


def apply_partial_state(model: torch.nn.Module, layer_tensors: Mapping[str, list[str]],
                        state: Mapping[str, torch.Tensor], path: str,
                        emit: Callable[[str], None],
                        file_names: Optional[Mapping[str, str]] = None) -> int:
    """Copy matching tensors of ``state`` into ``model`` by layer name (transfer learning).

    For every layer owning tensors: if the file has none of them, print
    ``   Skipping layer <layer>: not found in model`` and one ``   Skipping parameter
    <layer>.<tensor>: not found in model`` per tensor; if it lacks some, one line per missing tensor
    (with the Keras name in parentheses when ``file_names`` gives it). Tensors in the file that
    the model lacks are ignored silently; ``num_batches_tracked`` never produces messages
    (SPEC §7.4.2).

    Args:
        layer_tensors: layer name → its tensor names, in graph order.
        state: key ``<layer>.<tensor>`` → tensor.
        emit: prints one message line.
        file_names: optional ``<layer>.<tensor>`` → name in the file (``bn_data/gamma:0``).

    Returns:
        The number of tensors loaded.

    Raises:
        CheckpointError: a tensor exists in both with different shapes (names layer, tensor and
            both shapes). Nothing is modified in that case.
    """
    own = model.state_dict()
    updates: dict[str, torch.Tensor] = {}
    for layer, tensors in layer_tensors.items():
        keys = [f"{layer}.{t}" for t in tensors]
        present = [k for k in keys if k in state]
        if not present:
            emit(f"   Skipping layer {layer}: not found in model")
        for key in keys:
            if key not in state:
                extra = f" ({file_names[key]})" if file_names and key in file_names else ""
                emit(f"   Skipping parameter {key}{extra}: not found in model")
                continue
            src, dst = state[key], own[key]
            if tuple(src.shape) != tuple(dst.shape):
                raise CheckpointError(
                    f"{path}: layer '{layer}': tensor '{key}' has shape {list(src.shape)} in the "
                    f"file but {list(dst.shape)} in the model")
            updates[key] = src
        bn_key = f"{layer}.num_batches_tracked"
        if bn_key in state and bn_key in own:
            updates[bn_key] = state[bn_key]
    with torch.no_grad():
        for key, src in updates.items():
            own[key].copy_(src.to(dtype=own[key].dtype))
    return len(updates)


def load_weights(net, path: str, log) -> int:
    """Initialise ``net`` (a KerasNetwork) from ``checkpoints.load`` (SPEC §7.4.2).

    ``.h5``/``.hdf5`` files are Keras weights (tf.keras 2 ``save_weights``/``save`` layouts or Keras 3
    ``.weights.h5``), converted to torch layout; anything else is an rmldnn_py ``.pt`` checkpoint
    or a bare state_dict. Keras files: layers are matched by their Keras names (a ``.`` in a file's
    layer name matches our ``_``-escaped module name; messages print the Keras name); input-shaped
    weights follow ``net.keras_layout``; non-persistent buffers and Normalization layers whose
    mean/variance the JSON gives are not looked up. A BatchNormalization without Keras
    ``scale``/``center`` has no gamma/beta in the file: it keeps its initial 1/0 and the
    ``Skipping parameter bn.weight (bn/gamma:0)`` line is printed (SPEC §4.4, §11.7).
    Prints ``Loading model checkpoint from [HDF5 ]file: <path>`` and the ``Skipping ...`` lines.

    Returns:
        The number of tensors loaded.

    Raises:
        CheckpointError: missing or unreadable file, or a shape mismatch (names layer, tensor and
            both shapes).
    """
    is_h5 = path.lower().endswith((".h5", ".hdf5"))
    log.line(f"Loading model checkpoint from {'HDF5 ' if is_h5 else ''}file: {path}")
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: checkpoint file not found (neural_network.checkpoints.load)")
    layer_tensors = net.layer_tensors()
    file_names: dict[str, str] = {}
    if is_h5:
        from ..network.h5_weights import keras_name, keras_to_torch, read_keras_weights, tensor_names
        from ..network.keras_json import escape_name

        classes = net.layer_classes
        configs = getattr(net, "layer_configs", {})
        persistent = set(net.state_dict())
        channels_last = getattr(net, "keras_layout", "channels_last") == "channels_last"

        def original(name: str) -> str:  # the Keras layer name ("." not escaped)
            raw = (configs.get(name) or {}).get("name")
            return raw if isinstance(raw, str) and escape_name(raw) == name else name

        def from_config(name: str) -> bool:  # values given by the network file, not by weights
            return classes.get(name) == "Normalization" and (configs.get(name) or {}).get("mean") is not None

        # only persistent tensors (non-persistent buffers such as Rescaling's are computed from the
        # config), and no Normalization whose mean/variance the JSON gives
        layer_tensors = {
            layer: kept for layer, tensors in layer_tensors.items()
            if not from_config(layer) and (kept := [t for t in tensors if f"{layer}.{t}" in persistent])
        }

        def layer_info(name: str):
            ours = name if name in classes else escape_name(name)
            return (classes[ours], configs.get(ours, {})) if ours in classes else None

        keras = read_keras_weights(path, layer_info=layer_info)
        escaped: dict[str, str] = {}  # our (escaped) layer name → name in the file
        for fname in keras:
            escaped.setdefault(escape_name(fname), fname)
        state: dict[str, torch.Tensor] = {}
        for layer in layer_tensors:
            kname_layer = original(layer)
            for tensor, kname in tensor_names(classes[layer], layer=kname_layer).items():
                file_names[f"{layer}.{tensor}"] = keras_name(kname_layer, kname)
            fname = kname_layer if kname_layer in keras else escaped.get(layer)
            if fname is not None:
                converted = keras_to_torch(classes[layer], keras[fname], layer=kname_layer, source=path,
                                           channels_last=channels_last)
                for tensor, (_kname, array) in converted.items():
                    state[f"{layer}.{tensor}"] = torch.from_numpy(array.copy())
    else:
        state = read_pt_state(path)
    return apply_partial_state(net, layer_tensors, state, path, log.line, file_names or None)

"""Keras model JSON → plain layer specs (SPEC §4.1, §4.2). No torch here.

Accepted forms (SPEC §4.1):

* a path to a JSON file, an inline list of layer objects, or an inline model dict;
* ``Sequential`` (``config`` a dict with ``layers``, or the old form where ``config`` is the list);
* ``Functional`` / ``Model`` with Keras 2 nested-list ``inbound_nodes``
  (``[[["src", 0, 0, {}], ...]]``) or Keras 3 dict nodes (``[{"args": [...], "kwargs": {...}}]``
  whose tensors are ``__keras_tensor__`` objects carrying ``keras_history``).

The result is a :class:`ModelSpec`: the model name and one :class:`LayerSpec` per layer with its
resolved input layer names (``None`` = "the previous layer in list order", ``[]`` = "fed by the
model input"). Wiring, cycle detection and shape inference happen in :mod:`.graph`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

from ..config.load import check_json_depth
from ..errors import NetworkError

MODEL_CLASSES = ("Sequential", "Functional", "Model")


@dataclass
class LayerSpec:
    """One Keras layer entry.

    Attributes:
        name: the Keras layer name with ``.`` escaped to ``_`` (the state-dict prefix).
        class_name: exact Keras ``class_name``.
        config: the layer's ``config`` dict (never mutated).
        inputs: names of the layers whose outputs feed this layer, in call order;
            ``None`` = the previous layer in list order; ``[]`` = the model input.
        index: position in the file's layer list.
    """

    name: str
    class_name: str
    config: dict[str, Any]
    inputs: list[str] | None
    index: int
    module: str | None = None

    @property
    def trainable(self) -> bool:
        return bool(self.config.get("trainable", True))


@dataclass
class ModelSpec:
    """A parsed network description.

    Attributes:
        source: file label used in error messages (the JSON path, or the config path for inline layers).
        name: model name (``config.name``; ``"Unknown"`` for an inline list of layers).
        layers: layer entries in file order.
        input_layers / output_layers: declared model inputs / outputs (``None`` when not declared).
        keras_version: the file's ``keras_version`` (``None`` when absent).
        trainable: the model-level ``config.trainable`` (false freezes every layer).
    """

    source: str
    name: str
    layers: list[LayerSpec]
    input_layers: list[str] | None = None
    output_layers: list[str] | None = None
    keras_version: str | None = None
    trainable: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


def escape_name(name: str) -> str:
    """Keras layer name → state-dict-safe name (``.`` → ``_``, SPEC §4.10)."""
    return str(name).replace(".", "_")


def load_model_spec(layers: Any, *, config_path: str) -> ModelSpec:
    """Parse the ``layers`` value of a config: a JSON file path, a list of layers or a model dict.

    Raises:
        NetworkError: unreadable file, invalid JSON or an unrecognised structure; the message
            names the file.
    """
    if isinstance(layers, (str, os.PathLike)):
        path = os.fspath(layers)
        source = path
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
            check_json_depth(text, path, NetworkError)
            obj = json.loads(text)
        except RecursionError:  # pragma: no cover - check_json_depth refuses this first
            raise NetworkError(f"{path}: invalid JSON: nested too deeply") from None
        except FileNotFoundError:
            raise NetworkError(f"{path}: network file not found") from None
        except (OSError, UnicodeDecodeError) as e:
            raise NetworkError(f"{path}: cannot read network file: {e}") from None
        except json.JSONDecodeError as e:
            raise NetworkError(f"{path}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
        return parse_model(obj, source=source)
    return parse_model(layers, source=str(config_path))


def parse_model(obj: Any, *, source: str) -> ModelSpec:
    """Parse an already-decoded Keras model JSON object or inline list of layers."""
    if isinstance(obj, list):
        return ModelSpec(source=source, name="Unknown", layers=_parse_layer_list(obj, source))
    if not isinstance(obj, dict):
        raise NetworkError(f"{source}: network must be a Keras model object or a list of layers, "
                           f"received {type(obj).__name__}")
    keras_version = obj.get("keras_version")
    class_name = obj.get("class_name")
    config = obj.get("config")
    if class_name is None and "layers" in obj:  # a bare model config {"name", "layers", ...}
        class_name, config = ("Functional" if "input_layers" in obj else "Sequential"), obj
    if class_name not in MODEL_CLASSES:
        raise NetworkError(f"{source}: unsupported model class '{class_name}' "
                           f"(expected one of: {', '.join(MODEL_CLASSES)})")
    if class_name == "Sequential" and isinstance(config, list):  # old Sequential form
        return ModelSpec(source=source, name="sequential", layers=_parse_layer_list(config, source),
                         keras_version=keras_version)
    if not isinstance(config, dict) or not isinstance(config.get("layers"), list):
        raise NetworkError(f"{source}: '{class_name}' model has no 'config.layers' list")
    name = str(config.get("name") or ("sequential" if class_name == "Sequential" else "model"))
    layers = _parse_layer_list(config["layers"], source, sequential=class_name == "Sequential")
    spec = ModelSpec(source=source, name=name, layers=layers, keras_version=keras_version,
                     trainable=bool(config.get("trainable", True)))
    build_shape = config.get("build_input_shape") or (obj.get("build_config") or {}).get("input_shape")
    if isinstance(build_shape, list) and len(build_shape) >= 2 and not isinstance(build_shape[0], list):
        spec.extra["build_input_shape"] = build_shape  # Keras 3 Sequential built without an Input
    if class_name != "Sequential":
        spec.input_layers = _parse_endpoints(config.get("input_layers"), source, "input_layers")
        spec.output_layers = _parse_endpoints(config.get("output_layers"), source, "output_layers")
    return spec


def _parse_layer_list(entries: list, source: str, sequential: bool = False) -> list[LayerSpec]:
    specs: list[LayerSpec] = []
    taken: set[str] = set()
    counters: dict[str, int] = {}
    raw_names = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("class_name"), str):
            raise NetworkError(f"{source}: layer #{i + 1} is not an object with a 'class_name'")
        cfg = entry.get("config", {})
        if cfg is None:
            cfg = {}
        if not isinstance(cfg, dict):
            raise NetworkError(f"{source}: layer #{i + 1} ('{entry['class_name']}'): 'config' must be an object")
        raw_names.append(entry.get("name") or cfg.get("name"))
    for n in raw_names:
        if n:
            taken.add(escape_name(n))
    for i, entry in enumerate(entries):
        cls = entry["class_name"]
        cfg = entry.get("config") or {}
        raw = raw_names[i]
        if raw:
            name = escape_name(raw)
        else:  # old files without names (SPEC §4.1): <lowercase class>_<k>
            k = counters.get(cls.lower(), 0)
            while True:
                k += 1
                name = f"{cls.lower()}_{k}"
                if name not in taken:
                    break
            counters[cls.lower()] = k
            taken.add(name)
        if any(s.name == name for s in specs):
            raise NetworkError(f"{source}: layer '{name}': duplicate layer name")
        inputs = None if sequential else _parse_inbound(entry.get("inbound_nodes", None), source, name)
        module = entry.get("module") if isinstance(entry.get("module"), str) else None
        specs.append(LayerSpec(name=name, class_name=cls, config=cfg, inputs=inputs, index=i, module=module))
    return specs


def _parse_inbound(nodes: Any, source: str, name: str) -> list[str] | None:
    """``inbound_nodes`` → list of input layer names (None when the key is absent)."""
    if nodes is None:
        return None
    if not isinstance(nodes, list):
        raise NetworkError(f"{source}: layer '{name}': 'inbound_nodes' must be a list")
    if len(nodes) == 0:
        return []
    if len(nodes) > 1:
        raise NetworkError(f"{source}: layer '{name}': shared layers are not supported "
                           f"(the layer is called {len(nodes)} times)")
    node = nodes[0]
    refs: list[tuple[Any, Any, Any]] = []
    if isinstance(node, dict):  # Keras 3: {"args": [...], "kwargs": {...}}
        _collect_keras3_tensors(node.get("args", []), refs)
    elif isinstance(node, list):  # Keras 2: [["src", node_index, tensor_index, {kwargs}], ...]
        if len(node) >= 2 and isinstance(node[0], str):  # a single un-nested entry
            node = [node]
        for item in node:
            if isinstance(item, dict) and item.get("class_name") == "__keras_tensor__":
                _collect_keras3_tensors(item, refs)
                continue
            if not isinstance(item, list) or not item or not isinstance(item[0], str):
                raise NetworkError(f"{source}: layer '{name}': cannot read inbound node entry {item!r}")
            refs.append((item[0], item[1] if len(item) > 1 else 0, item[2] if len(item) > 2 else 0))
    else:
        raise NetworkError(f"{source}: layer '{name}': cannot read inbound node {node!r}")
    inputs = []
    for src, node_index, tensor_index in refs:
        if node_index not in (0, None) or tensor_index not in (0, None):
            raise NetworkError(
                f"{source}: layer '{name}': input '{src}' refers to node {node_index}, tensor "
                f"{tensor_index}; only the first output of single-call layers is supported")
        inputs.append(escape_name(src))
    if not inputs:
        raise NetworkError(f"{source}: layer '{name}': inbound node has no input tensors")
    return inputs


def _collect_keras3_tensors(obj: Any, out: list) -> None:
    if isinstance(obj, dict):
        if obj.get("class_name") == "__keras_tensor__":
            hist = (obj.get("config") or {}).get("keras_history")
            if not isinstance(hist, list) or not hist:
                raise NetworkError(f"malformed __keras_tensor__ without keras_history: {obj!r}")
            out.append((hist[0], hist[1] if len(hist) > 1 else 0, hist[2] if len(hist) > 2 else 0))
        else:
            for v in obj.values():
                _collect_keras3_tensors(v, out)
    elif isinstance(obj, list):
        for v in obj:
            _collect_keras3_tensors(v, out)


def _parse_endpoints(value: Any, source: str, key: str) -> list[str] | None:
    """``input_layers``/``output_layers``: ``[["a", 0, 0], ...]``, ``["a", 0, 0]`` or a dict of those."""
    if value is None:
        return None
    if isinstance(value, dict):
        value = list(value.values())
    if not isinstance(value, list):
        raise NetworkError(f"{source}: '{key}' must be a list, received {value!r}")
    if len(value) >= 1 and isinstance(value[0], str):  # Keras 3 flat single tensor
        return [escape_name(value[0])]
    names = []
    for item in value:
        if isinstance(item, list) and item and isinstance(item[0], str):
            names.append(escape_name(item[0]))
        elif isinstance(item, str):
            names.append(escape_name(item))
        else:
            raise NetworkError(f"{source}: cannot read '{key}' entry {item!r}")
    return names


def _dims(v: list, key: str, whole: list) -> list[int | None]:
    """The dimensions ``v`` (part of the declared list ``whole``) as ints / None."""
    out: list[int | None] = []
    for d in v:
        if d is None:
            out.append(None)
            continue
        ok = isinstance(d, int) and not isinstance(d, bool)
        if isinstance(d, float) and d.is_integer():
            d, ok = int(d), True
        if not ok or d < 1:
            shown = "[" + ", ".join("null" if x is None else json.dumps(x) for x in whole) + "]"
            raise NetworkError(f"'{key}' must hold positive integers or null, received {shown}")
        out.append(int(d))
    return out


def keras_input_shape(config: dict[str, Any]) -> list[int | None] | None:
    """Keras (channels-last, batch excluded) input shape declared in a layer config, or None.

    Looks at ``batch_shape`` (Keras 3), ``batch_input_shape`` (Keras 2), then ``input_shape`` /
    ``shape`` (without batch).

    Raises:
        NetworkError: a dimension that is not a positive integer or null
            (``'batch_input_shape' must hold positive integers or null, received [null, "a",
            28, 1]``); the caller adds the file and the layer.
    """
    for key in ("batch_shape", "batch_input_shape"):
        v = config.get(key)
        if isinstance(v, list) and len(v) >= 2:
            return _dims(v[1:], key, v)     # v[0] is the batch size (null or an int)
    for key in ("input_shape", "shape"):
        v = config.get(key)
        if isinstance(v, list) and len(v) >= 1:
            return _dims(v, key, v)
    return None

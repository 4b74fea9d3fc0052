"""Layer specs → :class:`KerasNetwork`, a torch module that runs the Keras graph (SPEC §4.2, §4.7).

Construction has two phases, as Keras' ``functional.py``: (1) resolve every layer's inputs and
order the graph (cycles, dangling references, shared layers, several inputs/outputs and layers
not connected to the output are errors naming the layers); (2) in topological order, build each
layer from its config and its inputs' shapes (shape inference without running anything).
"""

from __future__ import annotations

import heapq
import math
import os
from typing import Any, Iterable

import torch
from torch.overrides import TorchFunctionMode

from ..errors import NetworkError
from .activations import activation_name, is_linear
from .keras_json import LayerSpec, ModelSpec, keras_input_shape
from .layers import LAYERS, Ctx, KerasLayer
from .layers.base import fmt_shape
from .layers.normalization import BatchNorm

Shape = tuple
_ATTRS = {"source", "keras_layout", "model_name", "keras_version", "ctx", "input_name", "output_name", "input_shape",
          "output_shape", "layer_shapes", "layer_classes", "layer_configs", "num_operations", "training",
          "_steps", "_free", "_fused", "_frozen_bn", "_implicit_input"}


class KerasNetwork(torch.nn.Module):
    """A Keras model as a torch module on channel-first tensors.

    ``forward(x)``: ``(N, C, *spatial)`` → ``(N, C_out, *spatial_out)`` or ``(N, F)``.

    Attributes:
        model_name: Keras model name (``"Unknown"`` for inline layer lists).
        keras_layout: ``"channels_last"``, or ``"channels_first"`` for a network written entirely
            in channels_first terms (its Keras tensors are then our tensors).
        layer_classes / layer_configs / layer_shapes: per layer name, the Keras class name, the
            Keras config dict and the channel-first output shape (no batch).
        input_name: name of the input node (the InputLayer, or ``"input"`` when implicit).
        input_shape: channel-first sample shape without batch; ``None`` = free dimension.
        output_name / output_shape: the output layer and its channel-first shape (no batch).
        num_operations: graph nodes + fused activations (SPEC §4.7).
        source: file label used in error messages.
    """

    def __init__(self, spec: ModelSpec, input_shape: tuple[int, ...] | None = None) -> None:
        super().__init__()
        self.source = spec.source
        self.model_name = spec.name
        self.keras_version = spec.keras_version
        self.ctx = Ctx(_model_layout(spec), keras2=str(spec.keras_version or "").startswith(("1.", "2.")))
        self.keras_layout: str = self.ctx.keras_layout  # "channels_last" (usual) or "channels_first"
        plan = _plan(spec)
        self.input_name: str = plan.input_name
        self.output_name: str = plan.output_name
        self._implicit_input = plan.implicit
        specs = {s.name: s for s in spec.layers}

        # ---------------------------------------------------------------- input shape
        declared = None
        first = specs.get(plan.input_name) if not plan.implicit else specs[plan.order[0]]
        try:
            kshape = keras_input_shape(first.config) if first is not None else None
            if kshape is None and "build_input_shape" in spec.extra:
                kshape = keras_input_shape({"batch_shape": spec.extra["build_input_shape"]})
        except NetworkError as e:
            where = f"layer '{first.name}'" if first is not None else "build_input_shape"
            raise NetworkError(f"{self.source}: {where}: {e}") from None
        if kshape is not None:
            declared = self.ctx.torch_shape(kshape)
        if declared is None:
            if input_shape is None:
                raise NetworkError(
                    f"{self.source}: layer '{plan.input_name}': the network declares no input shape "
                    f"(no InputLayer with batch_shape/batch_input_shape) and no data sample shape was given")
            declared = tuple(int(d) for d in input_shape)
        self.input_shape: tuple = tuple(declared)
        infer_shape = self.input_shape
        if input_shape is not None and len(input_shape) == len(declared) and None in declared:
            infer_shape = tuple(d if d is not None else int(g) for d, g in zip(declared, input_shape))

        # ---------------------------------------------------------------- build layers
        shapes: dict[str, Shape] = {plan.input_name: infer_shape}
        self.layer_shapes: dict[str, Shape] = {plan.input_name: infer_shape}
        self.layer_classes: dict[str, str] = {plan.input_name: "InputLayer"}
        self.layer_configs: dict[str, dict] = {n: specs[n].config for n in plan.order if n in specs}
        modules: dict[str, KerasLayer] = {}
        self._steps: list[tuple[str, tuple[str, ...], bool]] = []
        self._fused: dict[str, str] = {}
        self._frozen_bn: list[str] = []
        ops = 1  # the input node
        guard = _AllocationGuard(_memory_bytes())
        _check_sample_size(plan.input_name, infer_shape, guard.limit, self.source)
        for name in plan.order:
            ls = specs[name]
            if name == plan.input_name:
                continue
            entry = _lookup(ls, self.source)
            inputs = plan.inputs[name]
            if not entry.merge and len(inputs) != 1:
                raise NetworkError(f"{self.source}: layer '{name}': a {ls.class_name} layer takes exactly "
                                   f"one input, received {len(inputs)} ({', '.join(inputs)})")
            try:
                with guard:
                    module, out_shape = entry.build(ls.config, [shapes[i] for i in inputs], ctx=self.ctx)
            except NetworkError as e:
                raise NetworkError(f"{self.source}: layer '{name}': {e}") from None
            except (KeyError, TypeError, ValueError) as e:
                raise NetworkError(f"{self.source}: layer '{name}': invalid {ls.class_name} "
                                   f"configuration: {type(e).__name__}: {e}") from None
            if not ls.trainable or not spec.trainable:
                for p in module.parameters():
                    p.requires_grad_(False)
                if isinstance(module, BatchNorm):
                    module.frozen = True
                    self._frozen_bn.append(name)
            if name in self.__dict__ or name in _ATTRS or name.startswith("_"):
                raise NetworkError(f"{self.source}: layer '{name}': this layer name is reserved; rename the layer")
            _check_sample_size(name, tuple(out_shape), guard.limit, self.source)
            modules[name] = module
            shapes[name] = tuple(out_shape)
            self.layer_shapes[name] = tuple(out_shape)
            self.layer_classes[name] = ls.class_name
            self._steps.append((name, tuple(inputs), entry.merge))
            ops += 1
            if entry.fused_activation and not is_linear(ls.config.get("activation")):
                ops += 1
                self._fused[name] = activation_name(ls.config.get("activation"))
        self.num_operations: int = ops
        self.output_shape: Shape = shapes[plan.output_name]
        # free intermediate tensors after their last use
        last_use: dict[str, int] = {}
        for i, (_, inputs, _) in enumerate(self._steps):
            for src in inputs:
                last_use[src] = i
        self._free: list[tuple[str, ...]] = [() for _ in self._steps]
        for src, i in last_use.items():
            if src != self.output_name:
                self._free[i] += (src,)
        for name, module in modules.items():  # registered last: no attribute assignment follows
            self._modules[name] = module  # direct child: state-dict keys are <layer>.<tensor>

    # ------------------------------------------------------------------ running
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values: dict[str, torch.Tensor] = {self.input_name: x}
        modules = self._modules
        for (name, inputs, merge), free in zip(self._steps, self._free):
            module = modules[name]
            if merge:
                values[name] = module(*[values[i] for i in inputs])
            else:
                values[name] = module(values[inputs[0]])
            for f in free:
                del values[f]
        return values[self.output_name]

    def train(self, mode: bool = True) -> "KerasNetwork":
        """As ``nn.Module.train``; frozen BatchNormalization layers stay in inference mode (SPEC §4.6)."""
        super().train(mode)
        for name in self._frozen_bn:
            self._modules[name].train(False)
        return self

    # ------------------------------------------------------------------ introspection
    def num_parameters(self, trainable_only: bool = False) -> int:
        """Elements of all learnable tensors (running statistics excluded), SPEC §4.7."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    def layer_names(self) -> list[str]:
        """Layer names in graph (topological) order, the input node first."""
        return [self.input_name] + [n for n, _, _ in self._steps]

    def layer_tensors(self) -> dict[str, list[str]]:
        """Layer name → names of its parameters and buffers (no ``num_batches_tracked``), in graph
        order, for the layers that own tensors."""
        out: dict[str, list[str]] = {}
        for name, _, _ in self._steps:
            m = self._modules[name]
            names = [n for n, _ in m.named_parameters(recurse=False)]
            names += [n for n, _ in m.named_buffers(recurse=False) if n != "num_batches_tracked"]
            if names:
                out[name] = names
        return out

    def check_input(self, sample_shape: Iterable[int]) -> None:
        """Check a channel-first data sample shape (no batch) against the network (SPEC §4.8).

        The channel count (and rank) must match the declared input; spatial sizes must only suit
        every layer (fully convolutional networks accept other sizes).

        Raises:
            NetworkError: naming the layer, the expected and the received shape.
        """
        s = tuple(int(d) for d in sample_shape)
        exp = self.input_shape
        if len(s) != len(exp) or (exp[0] is not None and s[0] != exp[0]):
            raise NetworkError(
                f"{self.source}: layer '{self.input_name}': expected input samples of shape "
                f"{fmt_shape(exp)} (channel-first, None = any size), received {fmt_shape(s)}")
        shapes: dict[str, Shape] = {self.input_name: s}
        for name, inputs, _ in self._steps:
            module = self._modules[name]
            try:
                shapes[name] = tuple(module.output_shape([shapes[i] for i in inputs]))
            except NetworkError as e:
                raise NetworkError(f"{self.source}: layer '{name}': {e} (network input declared as "
                                   f"{fmt_shape(exp)}, received samples of shape {fmt_shape(s)})") from None

    def to_dot(self) -> str:
        """Graphviz description: one node per operation (label ``name\\nclass\\noutput shape``),
        one edge per inbound connection (SPEC §7.7)."""

        def q(s: str) -> str:
            return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'

        def label(*parts: str) -> str:
            return q("\n".join(parts)).replace("\n", "\\n")

        def shape(s: Shape) -> str:
            return "(None, " + ", ".join("None" if d is None else str(d) for d in s) + ")"

        lines = [f"digraph {q(self.model_name)} {{", "  node [shape=box];"]
        out_node = {self.input_name: self.input_name}
        lines.append(f"  {q(self.input_name)} [label={label(self.input_name, 'InputLayer', shape(self.layer_shapes[self.input_name]))}];")
        for name, inputs, _ in self._steps:
            shp = shape(self.layer_shapes[name])
            lines.append(f"  {q(name)} [label={label(name, self.layer_classes[name], shp)}];")
            for src in inputs:
                lines.append(f"  {q(out_node[src])} -> {q(name)};")
            out_node[name] = name
            if name in self._fused:
                act_node = f"{name}:{self._fused[name]}"
                lines.append(f"  {q(act_node)} [label={label(act_node, 'Activation', shp)}];")
                lines.append(f"  {q(name)} -> {q(act_node)};")
                out_node[name] = act_node
        lines.append("}")
        return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------- memory

def _memory_bytes() -> int:
    """Physical memory of this machine, or the cgroup (container) limit when smaller."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        total = 1 << 50
    for p in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(p) as f:
                text = f.read().strip()
            if text.isdigit():
                total = min(total, int(text))
        except OSError:
            pass
    return total


def _fmt_bytes(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"  # pragma: no cover


_FACTORIES = {"empty", "zeros", "ones", "rand", "randn", "full"}


def _size_of(args: tuple, kwargs: dict, full: bool) -> tuple[int, ...] | None:
    size = kwargs.get("size")
    if size is None and args:
        if full or isinstance(args[0], (tuple, list, torch.Size)):
            size = args[0]
        elif all(isinstance(a, int) for a in args):
            size = args
    if not isinstance(size, (tuple, list, torch.Size)) or \
            not all(isinstance(d, int) for d in size):
        return None
    return tuple(int(d) for d in size)


class _AllocationGuard(TorchFunctionMode):
    """While a layer is built: refuse tensor allocations (``torch.empty``/``zeros``/``ones``/
    ``full``/``rand``/``randn``) that would bring the network's tensors above the machine's
    memory, before torch tries (an absurd ``units: 2**40`` would otherwise end in an allocator
    error or, worse, in the kernel's out-of-memory killer while the weights are initialised)."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.total = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if name in _FACTORIES and getattr(func, "__module__", "") in ("torch", "torch._C._VariableFunctions", None):
            size = _size_of(args, kwargs, name == "full")
            if size is not None:
                if any(d < 0 for d in size):
                    raise NetworkError(f"a tensor of shape {list(size)} cannot be created "
                                       f"(negative size)")
                dtype = kwargs.get("dtype") or torch.get_default_dtype()
                nbytes = math.prod(size) * torch.empty((), dtype=dtype).element_size()
                if self.total + nbytes > self.limit:
                    raise NetworkError(
                        f"a tensor of shape {list(size)} needs {_fmt_bytes(nbytes)} (the network "
                        f"up to this layer {_fmt_bytes(self.total + nbytes)}), more than this "
                        f"machine's memory ({_fmt_bytes(self.limit)}); check the layer's sizes")
                self.total += nbytes
        return func(*args, **kwargs)


def _check_sample_size(name: str, shape: Shape, limit: int, source: str) -> None:
    """One sample's tensor at ``name`` (channel-first, no batch) must fit in memory."""
    known = [d for d in shape if d is not None]
    if any(d < 1 for d in known):
        raise NetworkError(f"{source}: layer '{name}': output shape {fmt_shape(shape)} has a "
                           f"dimension below 1")
    nbytes = math.prod(known) * 4 if known else 0
    if nbytes > limit:
        raise NetworkError(f"{source}: layer '{name}': one sample's output of shape "
                           f"{fmt_shape(shape)} needs {_fmt_bytes(nbytes)}, more than this "
                           f"machine's memory ({_fmt_bytes(limit)})")


# ---------------------------------------------------------------------------------- planning

class _Plan:
    def __init__(self, input_name: str, implicit: bool, output_name: str,
                 inputs: dict[str, list[str]], order: list[str]) -> None:
        self.input_name, self.implicit, self.output_name = input_name, implicit, output_name
        self.inputs, self.order = inputs, order


def _model_layout(spec: ModelSpec) -> str:
    """``channels_first`` when every layer declaring a data_format says so, else ``channels_last``."""
    formats = {ls.config.get("data_format") for ls in spec.layers
               if ls.class_name != "Flatten" and ls.config.get("data_format") is not None}
    if formats == {"channels_first"}:
        return "channels_first"
    if "channels_first" in formats:
        mixed = [ls.name for ls in spec.layers if ls.config.get("data_format") == "channels_first"
                 and ls.class_name != "Flatten"]
        raise NetworkError(f"{spec.source}: layer '{mixed[0]}': mixing data_format 'channels_first' and "
                           f"'channels_last' in one network is not supported (channels_first layers: "
                           f"{', '.join(mixed)})")
    return "channels_last"


_KNOWN_PREFIXES = ("Addons>",)  # tensorflow_addons registered names, e.g. Addons>InstanceNormalization


def _lookup(ls: LayerSpec, source: str):
    """The registry entry of a layer; Keras 3 operations serialised as layers (``module``
    ``keras.src.ops.*``, e.g. ``x + 3`` saved as an ``Add`` node) and unknown classes are errors."""
    cls = ls.class_name
    if ls.module and (ls.module.startswith("keras.src.ops") or ls.module.startswith("keras.ops")):
        raise NetworkError(f"{source}: layer '{ls.name}': unsupported layer type '{ls.module}.{cls}' "
                           f"(a Keras operation, not a layer)")
    for prefix in _KNOWN_PREFIXES:
        if cls.startswith(prefix) and cls[len(prefix):] in LAYERS:
            cls = cls[len(prefix):]
    if cls not in LAYERS:
        raise NetworkError(f"{source}: layer '{ls.name}': unsupported layer type '{ls.class_name}'")
    return LAYERS.get(cls)


def _plan(spec: ModelSpec) -> _Plan:
    src = spec.source
    layers = spec.layers
    if not layers:
        raise NetworkError(f"{src}: the network has no layers")
    names = {ls.name for ls in layers}
    # unsupported classes are reported first, in file order
    for ls in layers:
        _lookup(ls, src)
    # -------------------------------------------------------------- inputs of every layer
    implicit_name = "input"
    k = 0
    while implicit_name in names:
        k += 1
        implicit_name = f"input_{k}"
    inputs: dict[str, list[str]] = {}
    roots: list[str] = []
    implicit = False
    for i, ls in enumerate(layers):
        if ls.class_name == "InputLayer":
            if ls.inputs:
                raise NetworkError(f"{src}: layer '{ls.name}': an InputLayer cannot have inbound nodes")
            inputs[ls.name] = []
            roots.append(ls.name)
            continue
        ins = ls.inputs
        if ins is None:
            ins = [layers[i - 1].name] if i > 0 else []
        if not ins:
            ins = [implicit_name]
            implicit = True
        for x in ins:
            if x not in names and x != implicit_name:
                raise NetworkError(f"{src}: layer '{ls.name}': input layer '{x}' does not exist")
        inputs[ls.name] = list(ins)
    if implicit:
        roots.append(implicit_name)
    if spec.input_layers is not None and len(spec.input_layers) > 1:
        raise NetworkError(f"{src}: networks with several inputs are not supported "
                           f"(input layers: {', '.join(spec.input_layers)})")
    if len(roots) > 1:
        raise NetworkError(f"{src}: networks with several inputs are not supported "
                           f"(input layers: {', '.join(roots)})")
    if spec.input_layers:
        for x in spec.input_layers:
            if x not in names:
                raise NetworkError(f"{src}: input_layers: layer '{x}' does not exist")
    if spec.output_layers is not None and len(spec.output_layers) > 1:
        raise NetworkError(f"{src}: networks with several outputs are not supported "
                           f"(output layers: {', '.join(spec.output_layers)})")
    if spec.output_layers:
        output = spec.output_layers[0]
        if output not in names:
            raise NetworkError(f"{src}: output_layers: layer '{output}' does not exist")
    else:
        output = layers[-1].name
    # -------------------------------------------------------------- topological order (Kahn)
    index = {ls.name: ls.index for ls in layers}
    consumers: dict[str, list[str]] = {}
    missing = {}
    for n, ins in inputs.items():
        missing[n] = len(set(ins))
        for x in set(ins):
            consumers.setdefault(x, []).append(n)
    order: list[str] = []
    heap: list[tuple[int, str]] = []
    if implicit:
        for n in consumers.get(implicit_name, []):
            missing[n] -= 1
    for n, m in missing.items():
        if m == 0:
            heapq.heappush(heap, (index[n], n))
    while heap:
        _, n = heapq.heappop(heap)
        order.append(n)
        for c in consumers.get(n, []):
            missing[c] -= 1
            if missing[c] == 0:
                heapq.heappush(heap, (index[c], c))
    if len(order) != len(layers):
        stuck = [ls.name for ls in layers if ls.name not in set(order)]
        raise NetworkError(f"{src}: cycle or unresolved dependency among layers: {', '.join(stuck)}")
    if not roots:  # pragma: no cover - every acyclic graph has a root
        raise NetworkError(f"{src}: the network has no input")
    # -------------------------------------------------------------- layers feeding the output
    needed = {output}
    stack = [output]
    while stack:
        for x in inputs.get(stack.pop(), []):
            if x not in needed:
                needed.add(x)
                stack.append(x)
    dead = [ls.name for ls in layers if ls.name not in needed]
    if dead:
        raise NetworkError(f"{src}: layers not connected to the output '{output}' (several outputs are "
                           f"not supported): {', '.join(dead)}")
    if implicit:
        input_name = implicit_name
    else:
        input_name = roots[0]
    return _Plan(input_name, implicit, output, inputs, order)


def build_network(layers: Any, *, config_path: str, input_shape: tuple[int, ...] | None = None) -> KerasNetwork:
    """Build the torch module of a network description (SPEC §4).

    Args:
        layers: path of a Keras JSON file (relative to the CWD), an inline list of layer objects,
            or an inline Keras model dict.
        config_path: the config file, named in errors about inline networks.
        input_shape: channel-first sample shape ``(C, H, W)`` used when the network declares no
            input shape (and to fill free dimensions for shape inference).

    Raises:
        NetworkError: one line naming the file and the layer.
    """
    from .keras_json import load_model_spec

    spec = load_model_spec(layers, config_path=config_path)
    return KerasNetwork(spec, input_shape=input_shape)


__all__ = ["KerasNetwork", "build_network", "KerasLayer"]

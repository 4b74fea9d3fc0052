"""``rmldnn export --config=cfg.json --output=model.onnx [--opset=N] [--batch=N]
[--input-shape=C,H,W]``: the network of a run as an ONNX model, checked in ONNX Runtime (issue 13).

Steps:

1. the config is read (:func:`rmldnn_py.config.load_config`), the network built from ``layers``
   (:func:`rmldnn_py.network.build_network`) and, when ``checkpoints.load`` is set, its weights
   loaded exactly as a run does (:func:`rmldnn_py.engine.checkpoint.load_weights`, same messages);
   without it a WARNING says the exported weights are the random initial ones;
2. the network (evaluation mode, float32, CPU) is exported with the ``torch.export``-based ONNX
   exporter (``torch.onnx.export(..., dynamo=True)``, the default of torch ≥ 2.9; it translates
   the ``torch.export`` graph with onnxscript) with a dynamic batch axis: input ``input``
   ``(batch, C, H, W)`` channel-first, output ``output``. Should it fail, the TorchScript exporter
   (``dynamo=False``, ``dynamic_axes``) is tried. The file is written under a temporary name and
   renamed when complete (weights inside the file; models over 1.5 GiB keep them in
   ``<output>.data``, ONNX's external-data format);
3. ``onnx.checker.check_model(full_check=True)`` validates the file;
4. ONNX Runtime (CPU) runs the file on a random normal batch of ``--batch`` samples (default 2)
   and on a single sample (the batch axis is dynamic), torch runs the same inputs, and the
   maximum absolute difference and the maximum relative difference
   ``max|ort − torch| / max|torch|`` are printed. A relative difference above 1e-4 is an error.

``--input-shape`` gives the channel-first sample shape when the network declares none (or has
free dimensions). Errors (one line, exit 1): a layer ONNX cannot express (named:
``layer 'conv2d_1' (Conv2D) cannot be exported to ONNX: ...``), an unwritable output path, a
difference above the tolerance, and every config/network/checkpoint error of a run.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
import time
import warnings
from typing import Optional

from ..errors import ConfigError, NetworkError, RmldnnError, UsageError
from . import parse_options

__all__ = ["USAGE", "export_onnx", "compare_onnxruntime", "check_writable", "main", "TOLERANCE"]

USAGE = ("usage: rmldnn export --config=<path-to-json> --output=<model.onnx> [--opset=N] "
         "[--batch=N] [--input-shape=C,H,W]")
HELP = f"""{USAGE}

Export the network of a run configuration (layers + checkpoints.load weights) to ONNX with a
dynamic batch axis, validate it with onnx.checker and compare ONNX Runtime with torch on a random
batch (maximum absolute and relative difference; more than 1e-4 relative is an error).

options:
  --config=PATH          the run configuration (JSON)
  --output=PATH          the ONNX file to write
  --opset=N              ONNX opset version (default: the exporter's, 20 with torch 2.14)
  --batch=N              samples in the random check batch (default 2)
  --input-shape=C,H,W    channel-first sample shape when the network declares none
"""

TOLERANCE = 1e-4           # relative: max|ort - torch| / max|torch|
EXTERNAL_DATA_BYTES = 1.5 * 2**30


def _first_line(exc: BaseException) -> str:
    """The most specific one-line reason of an exporter exception (innermost cause first)."""
    chain = []
    e: Optional[BaseException] = exc
    while e is not None and e not in chain:
        chain.append(e)
        e = e.__cause__ or e.__context__
    for e in reversed(chain):
        text = str(e).strip()
        for line in text.splitlines():
            line = line.strip().strip("#").strip()
            if line and not line.startswith(("Traceback", "(Refer", "⬆", "See the")):
                return f"{type(e).__name__}: {line[:300]}"
    return type(exc).__name__


def _layer_of_node(exported, node_name: str, layers: set[str]) -> Optional[str]:
    """The network layer (top-level module) an FX node of an ``ExportedProgram`` came from."""
    for node in exported.graph.nodes:
        if node.name != node_name:
            continue
        stack = node.meta.get("nn_module_stack") or {}
        for path, _cls in stack.values():
            top = re.sub(r"^L\['self'\]\.?", "", str(path)).split(".")[0]
            if top in layers:
                return top
    return None


def _find_culprit(net, x, opset: Optional[int]) -> Optional[tuple[str, str]]:
    """Export each layer alone on the inputs it receives in a forward pass of ``x``; the first
    that fails → ``(layer name, reason)``, None when every layer exports on its own."""
    import torch

    captured: dict[str, tuple] = {}
    hooks = []
    for name, module in net.named_children():
        def pre(m, args, name=name):
            captured.setdefault(name, tuple(a.detach().clone() if torch.is_tensor(a) else a
                                            for a in args))
        hooks.append(module.register_forward_pre_hook(pre))
    try:
        with torch.no_grad():
            net(x)
    finally:
        for h in hooks:
            h.remove()
    for name, module in net.named_children():
        if name not in captured:
            continue
        try:
            with _quiet():
                torch.onnx.export(module, captured[name], None, dynamo=True, verbose=False,
                                  opset_version=opset)
        except Exception as exc:  # the exporter raises many types
            return name, _first_line(exc)
    return None


@contextlib.contextmanager
def _quiet():
    """Silence the exporters' progress prints and warnings (stdout carries our lines only)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with contextlib.redirect_stdout(io.StringIO()):
            yield


def export_onnx(net, path: str, sample_shape: tuple[int, ...], *, opset: Optional[int] = None,
                batch: int = 2, log=None) -> dict:
    """Export ``net`` (a KerasNetwork, put in evaluation mode) to ONNX file ``path`` with a
    dynamic batch axis (see the module text).

    Args:
        sample_shape: channel-first sample shape without the batch axis, e.g. ``(1, 28, 28)``.
        opset: ONNX opset version (None: the exporter's default).
        batch: batch size of the example input used for tracing (at least 2, so the batch axis
            is not specialised to 1).

    Returns:
        ``{"exporter": "dynamo" | "torchscript", "seconds": export wall time, "bytes": file size}``.

    Raises:
        NetworkError: a layer ONNX cannot express (names it), or the export failed.
        RmldnnError: ``path`` cannot be written.
    """
    import torch

    from ..io.atomic import atomic_path

    net = net.eval().float().cpu()
    x = torch.randn(max(2, int(batch)), *sample_shape)
    layers = {name for name, _ in net.named_children()}
    classes = getattr(net, "layer_classes", {})
    nbytes = sum(p.numel() * p.element_size() for p in net.parameters())
    external = nbytes > EXTERNAL_DATA_BYTES
    t0 = time.perf_counter()
    program = None
    exporter = "dynamo"
    dynamo_reason = ""
    culprit = None
    try:
        with _quiet(), torch.no_grad():
            exported = torch.export.export(net, (x,), dynamic_shapes=({0: torch.export.Dim("batch")},),
                                           strict=False)
        try:
            with _quiet():
                program = torch.onnx.export(exported, (x,), None, dynamo=True, verbose=False,
                                            opset_version=opset, input_names=["input"],
                                            output_names=["output"])
        except Exception as exc:
            m = re.search(r"translating node %(\S+)", str(exc))
            layer = _layer_of_node(exported, m.group(1), layers) if m else None
            if layer is not None:
                culprit = (layer, _first_line(exc))
            raise
    except Exception as exc:
        dynamo_reason = _first_line(exc)
        exporter = "torchscript"
    try:
        if program is not None and external:  # external data is named after the file: in place
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            program.save(path, external_data=True)
        elif program is not None:
            with atomic_path(path) as tmp:
                program.save(tmp, external_data=False)
        else:
            with atomic_path(path) as tmp:
                try:
                    with _quiet():
                        torch.onnx.export(net, (x,), tmp, dynamo=False, opset_version=opset or 17,
                                          input_names=["input"], output_names=["output"],
                                          dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
                except Exception as exc:
                    if culprit is None:
                        culprit = _find_culprit(net, x, opset)
                    if culprit is not None:
                        name, reason = culprit
                        raise NetworkError(
                            f"{getattr(net, 'source', 'network')}: layer '{name}' "
                            f"({classes.get(name, type(getattr(net, name)).__name__)}) cannot be "
                            f"exported to ONNX: {reason}") from None
                    raise NetworkError(f"{getattr(net, 'source', 'network')}: cannot export the "
                                       f"network to ONNX: {dynamo_reason or _first_line(exc)}") from None
    except OSError as exc:
        raise RmldnnError(f"{path}: cannot write the ONNX file: {exc.strerror or exc}") from None
    seconds = time.perf_counter() - t0
    return {"exporter": exporter, "seconds": seconds, "bytes": os.path.getsize(path),
            "fallback_reason": dynamo_reason}


def compare_onnxruntime(net, path: str, sample_shape: tuple[int, ...], batches=(2, 1),
                        seed: int = 0) -> tuple[float, float]:
    """Run the ONNX file in ONNX Runtime (CPU) and ``net`` in torch on random normal batches of
    each size in ``batches``; returns ``(max abs diff, max relative diff)`` where the relative
    difference is ``max|ort − torch| / max|torch|`` per batch (the larger of the batches)."""
    import numpy as np
    import onnxruntime as ort
    import torch

    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    gen = torch.Generator().manual_seed(seed)
    abs_max = rel_max = 0.0
    net = net.eval()
    for b in batches:
        x = torch.randn(int(b), *sample_shape, generator=gen)
        with torch.no_grad():
            ref = net(x).float().numpy()
        got = sess.run(None, {name: x.numpy()})[0]
        if got.shape != ref.shape:
            raise NetworkError(f"{path}: ONNX Runtime output shape {got.shape} differs from "
                               f"torch {ref.shape} for a batch of {b}")
        diff = float(np.abs(got.astype(np.float64) - ref).max())
        abs_max = max(abs_max, diff)
        rel_max = max(rel_max, diff / max(float(np.abs(ref).max()), 1e-12))
    return abs_max, rel_max


def check_writable(path: str) -> None:
    """Fail early, before a long export, when ``path`` cannot be created.

    Raises:
        RmldnnError: names ``path`` and the reason.
    """
    import tempfile

    directory = os.path.dirname(os.path.abspath(path))
    parent = directory
    while not os.path.exists(parent) and os.path.dirname(parent) != parent:
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise RmldnnError(f"{path}: cannot write the ONNX file: '{parent}' is not a directory")
    try:
        os.makedirs(directory, exist_ok=True)
        if os.path.isdir(path):
            raise IsADirectoryError(21, "Is a directory")
        fd, tmp = tempfile.mkstemp(prefix=".rmldnn-export-", dir=directory)
        os.close(fd)
        os.remove(tmp)
    except OSError as exc:
        raise RmldnnError(f"{path}: cannot write the ONNX file: {exc.strerror or exc}") from None


def _shape(text: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(d) for d in text.replace("x", ",").split(",") if d.strip())
    except ValueError:
        dims = ()
    if not dims or any(d <= 0 for d in dims):
        raise UsageError(f"export: --input-shape: expected positive integers C,H,W, received '{text}'")
    return dims


def _positive(name: str, text: Optional[str], default: Optional[int]) -> Optional[int]:
    if text is None:
        return default
    if not text.isdigit() or int(text) <= 0:
        raise UsageError(f"export: --{name}: expected a positive integer, received '{text}'")
    return int(text)


def main(argv: list[str]) -> int:
    """``rmldnn export`` entry point (see the module text); returns the exit code."""
    opts, _ = parse_options(argv, {"config": True, "output": True, "opset": True, "batch": True,
                                   "input-shape": True}, "export")
    if "help" in opts:
        sys.stdout.write(HELP)
        return 0
    for key in ("config", "output"):
        if not opts.get(key):
            raise UsageError(f"export: missing --{key} ({USAGE})")
    opset = _positive("opset", opts.get("opset"), None)
    batch = _positive("batch", opts.get("batch"), 2)
    given_shape = _shape(opts["input-shape"]) if opts.get("input-shape") else None
    check_writable(opts["output"])

    from ..config import load_config
    from ..log import Logger

    log = Logger()
    cfg, cfg_warnings = load_config(opts["config"])
    for w in cfg_warnings:
        log.warning(w)
    import torch

    from ..network import build_network

    torch.manual_seed(cfg.seed)
    net = build_network(cfg.layers, config_path=cfg.path, input_shape=given_shape)
    declared = tuple(net.input_shape)
    if given_shape is not None:
        if len(given_shape) != len(declared) or any(
                d is not None and d != g for d, g in zip(declared, given_shape)):
            raise ConfigError(f"export: --input-shape {list(given_shape)} does not fit the "
                              f"network's input shape {list(declared)} (channel-first)")
        shape = given_shape
    elif any(d is None for d in declared):
        raise UsageError(f"export: the network's input shape {list(declared)} has free "
                         "dimensions; give the sample shape with --input-shape=C,H,W")
    else:
        shape = tuple(int(d) for d in declared)
    net.check_input(shape)
    if cfg.checkpoints.load:
        from ..engine.checkpoint import load_weights

        load_weights(net, cfg.checkpoints.load, log)
    else:
        log.warning(f"{cfg.path}: neural_network.checkpoints.load is not set: the exported "
                    "weights are the random initial weights")
    net.eval()
    log.line(f"Exporting network '{net.model_name}' (input {list(shape)}, dynamic batch axis) to "
             f"ONNX file: {opts['output']}")
    info = export_onnx(net, opts["output"], shape, opset=opset, batch=batch)
    if info["exporter"] != "dynamo":
        log.warning(f"the torch.export-based ONNX exporter failed ({info['fallback_reason']}); "
                    "used the TorchScript exporter")
    import onnx

    try:
        onnx.checker.check_model(opts["output"], full_check=True)
    except Exception as exc:
        raise NetworkError(f"{opts['output']}: the exported model fails onnx.checker: "
                           f"{_first_line(exc)}") from None
    model = onnx.load(opts["output"], load_external_data=False)
    opset_used = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), "?")
    log.line(f"   Exporter      : {info['exporter']} (opset {opset_used}), "
             f"{info['seconds']:.2f} s, {info['bytes']} bytes")
    log.line("   onnx.checker  : passed")
    abs_d, rel_d = compare_onnxruntime(net, opts["output"], shape,
                                       batches=(batch, 1) if batch != 1 else (1, 2))
    log.line(f"   ONNX Runtime  : max abs diff {abs_d:.3g}, max rel diff {rel_d:.3g} vs torch "
             f"(random batches of {batch} and {1 if batch != 1 else 2})")
    if not rel_d <= TOLERANCE:
        raise NetworkError(f"{opts['output']}: ONNX Runtime output differs from torch by "
                           f"{rel_d:.3g} relative (tolerance {TOLERANCE:g})")
    log.line("All done (return value = 0).")
    return 0

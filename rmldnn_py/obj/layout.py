"""The detection heads of a YOLOv3 network, read from its graph (SPEC §4.3, §8.4).

**Output layout.** A Keras YOLOv3 head is a 1×1 convolution with ``F = A·(5 + C)`` channels
(A = 3 anchors, C classes) on an ``S_h × S_w`` grid, Keras tensor ``(N, S_h, S_w, F)``;
``Reshape([-1, F])`` makes it ``(N, S_h·S_w, F)`` (positions in row-major order, ``y·S_w + x``),
and ``Concatenate(axis=1)`` of the heads gives ``(N, K, F)``, ``K = Σ S_h·S_w`` cells (3549 for
the 416×416 network: 13² + 26² + 52², i.e. 3·3549 = 10647 boxes; SPEC §4.3/§8.4 write the Keras
output as ``(10647, 255)``, which mixes the box count with the cell width: ``Reshape([-1, 255])``
gives ``(3549, 255)``). rmldnn_py holds tensors channel-first, so the network output is
``(N, F, K)`` (``(255, 3549)``), and

    ``output.view(N, A, 5 + C, K)[n, a, j, offset_h + y·S_w + x]``

is value ``j`` (``0 tx, 1 ty, 2 tw, 3 th, 4 objectness, 5 + c`` class c logits) of anchor ``a``
of head ``h`` at cell ``(y, x)`` (channel ``a·(5 + C) + j``: the Keras ``(…, 3, 5 + C)`` /
Darknet order). A network whose output is one head without the reshape, ``(N, F, S_h, S_w)``,
is read as the same thing with ``K = S_h·S_w``.

**Head order** is read from the network, not assumed: the output layer's inputs are followed
back — through a ``Concatenate`` on the position axis (nested ones too), and through one-input
layers such as ``Reshape`` — to the tensors with a spatial grid; their order in the concatenation
gives each head's offset in ``K``. Grid sizes come from the shapes the network computes for the
actual data sample size.

**Anchors** (pixels of the network input, ``[w, h]``): 3 per head. The heads with the coarsest
grid (largest stride) get the largest anchors: anchors are sorted by area, heads by stride, and
assigned in groups of 3 — for the COCO anchors and strides 32/16/8 this is the usual
``[[6, 7, 8], [3, 4, 5], [0, 1, 2]]`` mask of YOLOv3 (Redmon & Farhadi 2018).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import torch

from ..errors import ConfigError, NetworkError

ANCHORS_PER_HEAD = 3
#: the 9 COCO anchors of YOLOv3 (416×416 input), pixels ``(w, h)``
COCO_ANCHORS = ((10, 13), (16, 30), (33, 23), (30, 61), (62, 45), (59, 119), (116, 90),
                (156, 198), (373, 326))
#: the 6 anchors of YOLOv3-tiny (two heads)
TINY_ANCHORS = ((10, 14), (23, 27), (37, 58), (81, 82), (135, 169), (344, 319))


@dataclass(frozen=True)
class Head:
    """One detection scale.

    Attributes:
        layer: the network layer whose ``(F, S_h, S_w)`` output is this head.
        grid: ``(S_h, S_w)`` cells.
        offset: index of the head's first position in the output's ``K`` axis.
        stride: ``(input H / S_h, input W / S_w)`` pixels per cell.
        anchors: three ``(w, h)`` in input pixels.
    """

    layer: str
    grid: tuple[int, int]
    offset: int
    stride: tuple[float, float]
    anchors: tuple[tuple[float, float], ...]

    @property
    def positions(self) -> int:
        return self.grid[0] * self.grid[1]


@dataclass(frozen=True)
class HeadLayout:
    """All heads of a network, in output order, plus per-position lookup tensors.

    Attributes:
        heads: in the order of the output's ``K`` axis.
        input_size: ``(H, W)`` of the network input in pixels.
        num_classes: C.
        output_layer: the network's output layer (named in errors).
    """

    heads: tuple[Head, ...]
    input_size: tuple[int, int]
    num_classes: int
    output_layer: str = "output"
    _cache: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def width(self) -> int:
        """``F = 3·(5 + C)``."""
        return ANCHORS_PER_HEAD * (5 + self.num_classes)

    @property
    def positions(self) -> int:
        """``K = Σ S_h·S_w``."""
        return sum(h.positions for h in self.heads)

    @property
    def anchors(self) -> list[tuple[float, float]]:
        """All anchors, head by head (index ``3·h + a``)."""
        return [a for h in self.heads for a in h.anchors]

    def tables(self, device: torch.device, dtype: torch.dtype = torch.float32) -> dict:
        """Per-position tensors (cached per device/dtype):

        * ``cx``, ``cy`` ``(K,)``: the cell's column / row;
        * ``gw``, ``gh`` ``(K,)``: the head's grid width / height ``S_w``, ``S_h``;
        * ``aw``, ``ah`` ``(A, K)``: the anchor sizes in input pixels;
        * ``head`` ``(K,)`` int64: the head index.
        """
        key = (str(device), dtype)
        if key not in self._cache:
            cx, cy, gw, gh, aw, ah, hd = [], [], [], [], [], [], []
            for i, h in enumerate(self.heads):
                S_h, S_w = h.grid
                ys, xs = torch.meshgrid(torch.arange(S_h), torch.arange(S_w), indexing="ij")
                cx.append(xs.reshape(-1))
                cy.append(ys.reshape(-1))
                n = S_h * S_w
                gw.append(torch.full((n,), S_w))
                gh.append(torch.full((n,), S_h))
                a = torch.tensor(h.anchors, dtype=torch.float64)     # (3, 2)
                aw.append(a[:, 0:1].expand(-1, n))
                ah.append(a[:, 1:2].expand(-1, n))
                hd.append(torch.full((n,), i, dtype=torch.int64))
            self._cache[key] = {
                "cx": torch.cat(cx).to(device, dtype), "cy": torch.cat(cy).to(device, dtype),
                "gw": torch.cat(gw).to(device, dtype), "gh": torch.cat(gh).to(device, dtype),
                "aw": torch.cat(aw, 1).to(device, dtype), "ah": torch.cat(ah, 1).to(device, dtype),
                "head": torch.cat(hd).to(device)}
        return self._cache[key]

    @classmethod
    def from_grids(cls, input_size: tuple[int, int], grids: Sequence[tuple[int, int]],
                   anchors: Sequence[Sequence[float]], num_classes: int,
                   layers: Optional[Sequence[str]] = None,
                   output_layer: str = "output") -> "HeadLayout":
        """A layout for heads with these grids in output order (anchors assigned by stride, see
        the module docstring)."""
        H, W = input_size
        heads = []
        offset = 0
        strides = [(H / g[0], W / g[1]) for g in grids]
        groups = assign_anchors(strides, anchors)
        for i, g in enumerate(grids):
            name = layers[i] if layers is not None else f"head_{i}"
            heads.append(Head(name, (int(g[0]), int(g[1])), offset, strides[i], groups[i]))
            offset += int(g[0]) * int(g[1])
        return cls(tuple(heads), (int(H), int(W)), int(num_classes), output_layer)


def assign_anchors(strides: Sequence[tuple[float, float]],
                   anchors: Sequence[Sequence[float]]) -> list[tuple[tuple[float, float], ...]]:
    """Groups of 3 anchors per head: the largest anchors (by area) to the largest stride.

    Returns:
        One tuple of three ``(w, h)`` per head, in the order of ``strides``.
    """
    by_area = sorted(((float(a[0]), float(a[1])) for a in anchors), key=lambda a: a[0] * a[1])
    groups = [tuple(by_area[k:k + ANCHORS_PER_HEAD])
              for k in range(0, len(by_area), ANCHORS_PER_HEAD)]
    order = sorted(range(len(strides)), key=lambda i: strides[i][0] * strides[i][1])
    out: list = [None] * len(strides)
    for rank, i in enumerate(order):        # finest grid first → smallest anchors
        out[i] = groups[rank]
    return out


# --------------------------------------------------------------------------------------------
# reading the graph


def _graph(net) -> dict[str, tuple[str, ...]]:
    """Layer name → its input layer names.

    (Reads :class:`rmldnn_py.network.graph.KerasNetwork`'s wiring; a public accessor on the
    network would be the cleaner seam.)
    """
    return {name: tuple(inputs) for name, inputs, _ in net._steps}


def _shapes(net, sample_shape: Optional[Sequence[int]]) -> dict[str, tuple]:
    """Channel-first output shape of every layer for a sample of ``sample_shape`` (the
    network's own shapes when None)."""
    if sample_shape is None:
        return dict(net.layer_shapes)
    shapes: dict[str, tuple] = {net.input_name: tuple(int(d) for d in sample_shape)}
    for name, inputs, _ in net._steps:
        shapes[name] = tuple(net._modules[name].output_shape([shapes[i] for i in inputs]))
    return shapes


def read_layout(net, sample_shape: Optional[Sequence[int]], num_classes: int,
                anchors: Optional[Sequence[Sequence[float]]], *,
                anchors_where: str = "neural_network.loss.anchors") -> HeadLayout:
    """The heads of ``net`` (see the module docstring).

    Args:
        net: a :class:`~rmldnn_py.network.graph.KerasNetwork`.
        sample_shape: channel-first ``(3, H, W)`` of the network input, or None for the
            network's declared shape.
        num_classes: C.
        anchors: ``[w, h]`` pixel pairs, 3 per head; None = the COCO anchors for 3 heads, the
            YOLOv3-tiny anchors for 2.
        anchors_where: config path of ``anchors`` for errors.

    Raises:
        NetworkError: output width ≠ 3·(5 + C), or no head grid found (names the layer).
        ConfigError: the number of anchors is not 3 per head.
    """
    src = net.source
    shapes = _shapes(net, sample_shape)
    graph = _graph(net)
    out = net.output_name
    oshape = shapes[out]
    want = ANCHORS_PER_HEAD * (5 + num_classes)
    if len(oshape) not in (2, 3):
        raise NetworkError(f"{src}: layer '{out}': a YOLOv3 output must be (N, positions, "
                           f"3*(5+C)) in Keras terms, held as (N, 3*(5+C), positions); "
                           f"received channel-first shape {_fmt(oshape)}")
    width = oshape[0]
    if width != want:
        raise NetworkError(f"{src}: layer '{out}': output width {width} != 3*(5+num_classes) = "
                           f"{want} (num_classes = {num_classes}; 3 anchors per cell, each "
                           f"tx, ty, tw, th, objectness and {num_classes} class scores)")
    in_shape = shapes[net.input_name]
    input_size = (int(in_shape[-2]), int(in_shape[-1]))

    if len(oshape) == 3:
        grids = [(int(oshape[1]), int(oshape[2]))]
        layers = [out]
    else:
        grids, layers = [], []
        for part in _parts(net, out, shapes, graph):
            node = part
            while len(shapes[node]) != 3:
                ins = graph.get(node, ())
                if len(ins) != 1:
                    raise NetworkError(
                        f"{src}: layer '{part}': cannot find the detection grid of this part of "
                        f"the output '{out}' (expected a 1x1 convolution head followed by "
                        f"Reshape([-1, {want}]))")
                node = ins[0]
            f, gh, gw = shapes[node]
            if f != want or gh * gw != shapes[part][1]:
                raise NetworkError(
                    f"{src}: layer '{node}': head shape {_fmt(shapes[node])} does not give "
                    f"{shapes[part][1]} positions of width {want} (layer '{part}' "
                    f"{_fmt(shapes[part])})")
            grids.append((int(gh), int(gw)))
            layers.append(node)
        total = sum(g[0] * g[1] for g in grids)
        if total != oshape[1]:     # pragma: no cover - guaranteed by the shapes above
            raise NetworkError(f"{src}: layer '{out}': {oshape[1]} positions but the heads give "
                               f"{total}")
    if anchors is None:
        defaults = {3: COCO_ANCHORS, 2: TINY_ANCHORS}
        if len(grids) not in defaults:
            raise ConfigError(f"{anchors_where}: the network has {len(grids)} detection heads "
                              f"({_grids(grids)}); give {3 * len(grids)} anchors [w, h] in pixels "
                              f"(3 per head)")
        anchors = defaults[len(grids)]
    elif len(anchors) != ANCHORS_PER_HEAD * len(grids):
        raise ConfigError(f"{anchors_where}: expected {3 * len(grids)} [w, h] pairs (3 per "
                          f"detection head; the network has {len(grids)} heads: "
                          f"{_grids(grids)}), received {len(anchors)}")
    return HeadLayout.from_grids(input_size, grids, anchors, num_classes, layers, out)


def _parts(net, name: str, shapes, graph) -> list[str]:
    """The layers concatenated (on the position axis) into ``name``, in order, recursively."""
    module = net._modules.get(name)
    if net.layer_classes.get(name) == "Concatenate" and getattr(module, "dim", None) == 2:
        out = []
        for x in graph[name]:
            out += _parts(net, x, shapes, graph)
        return out
    return [name]


def _fmt(shape) -> str:
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"


def _grids(grids) -> str:
    return ", ".join(f"{g[0]}x{g[1]}" for g in grids)

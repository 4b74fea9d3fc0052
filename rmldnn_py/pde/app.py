"""``--app=pde``: neural PDE solvers (SPEC §8.2), through the engine's application seam
(:class:`rmldnn_py.engine.app.Application`).

What the application changes in a run:

* **losses**: only ``Burgers_PDE``, ``Poisson2D_PDE``, ``Poisson3D_PDE`` (:mod:`.losses`), and a
  loss is required (it defines the PDE);
* **data**: ``type: "pde"`` → the raised-cosine generator (:mod:`.generator`, Burgers);
  ``numpy`` / ``hdf5`` diffusivity maps (Poisson) → the ordinary loaders, the targets being ν;
  every ν batch is checked once (finite, > 0) by :class:`CheckedSplit`, which names the file;
* **checks** before anything is written (:meth:`PdeApp.setup`): targets present (Poisson), the
  dimension of the loss = the dimension of the maps, network output = one channel of ν's spatial
  shape (Poisson) or ``(1, T, domain_size)`` (Burgers);
* **evaluation**: the loss (the energy / the Burgers loss) and no accuracy; a Poisson prediction
  written to ``output_<epoch>.h5`` is the field with the Dirichlet values imposed (the field the
  loss evaluated, SPEC §12 Q21).

Training is the engine's default step; multigrid transfer (SPEC §8.2) is ``checkpoints.load``
(:func:`rmldnn_py.engine.checkpoint.load_weights`).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Optional

import torch

from ..engine.app import APPS, Application, SupervisedEvaluator
from ..engine.losses import PDE_LOSSES
from ..errors import ConfigError, DataError, NetworkError
from . import losses as pde_losses
from .generator import build_generator_bundle

if TYPE_CHECKING:  # pragma: no cover
    from ..config.types import Config
    from ..engine.run import Context

__all__ = ["PdeApp", "CheckedSplit", "PoissonEvaluator"]

POISSON = ("Poisson2D_PDE", "Poisson3D_PDE")


def _is_generator(cfg: "Config") -> bool:
    return (cfg.data.input_type or cfg.data.type or "").lower() == "pde"


def _network_name(cfg: "Config") -> str:
    return f"{cfg.path}: {cfg.layers}" if isinstance(cfg.layers, str) else \
        f"{cfg.path}: neural_network.layers"


def _fmt_shape(shape) -> str:
    return "[" + ", ".join("?" if s is None else str(s) for s in shape) + "]"


class CheckedSplit:
    """A Poisson split whose targets (ν) are checked to be finite and > 0, each sample once (the
    first time it appears in a batch), naming the sample's file. Everything else is the wrapped
    :class:`~rmldnn_py.data.split.Split`."""

    def __init__(self, split, where: str) -> None:
        self._split = split
        self._where = where
        self._seen = torch.zeros(split.num_total, dtype=torch.bool)
        self._all_seen = False

    def __getattr__(self, name):
        return getattr(self._split, name)

    def target_file(self, index: int) -> str:
        """The target file (and array) of sample ``index`` as written on disk."""
        src = self._split.reader.targets
        name = src.name(index)
        root = getattr(src, "root", None)
        if root and os.path.isdir(root):
            return os.path.join(root, name)
        return root or name

    def check(self, y: Optional[torch.Tensor], idx: torch.Tensor) -> None:
        """Raise DataError when a row of ``y`` ``(B, 1, …)`` is not finite or not > 0."""
        if y is None or self._all_seen or not y.numel():
            return
        new = ~self._seen[idx]
        if not bool(new.any()):
            return
        rows = y[new] if not bool(new.all()) else y
        flat = rows.reshape(rows.shape[0], -1)
        bad = ~(torch.isfinite(flat).all(1) & (flat > 0).all(1))
        if bool(bad.any()):
            j = int(torch.nonzero(bad)[0])
            i = int(idx[new][j])
            v = flat[j]
            what = ("non-finite values" if not bool(torch.isfinite(v).all())
                    else f"values <= 0 (min {float(v.min()):.6g})")
            raise DataError(f"{self._where}: '{self.target_file(i)}': the diffusivity ν must be "
                            f"finite and > 0 everywhere; found {what}")
        self._seen[idx] = True
        self._all_seen = bool(self._seen.all())

    def batches(self, epoch: int, *args, **kwargs):
        for batch in self._split.batches(epoch, *args, **kwargs):
            self.check(batch.targets, batch.indices)
            yield batch


class PoissonEvaluator(SupervisedEvaluator):
    """Evaluation of a Poisson run: the energy as the loss (no accuracy); the written prediction
    is u with the Dirichlet planes imposed, ``(1, n_1, …)`` per sample."""

    def __init__(self, ctx: "Context", split, epoch: int) -> None:
        super().__init__(ctx, split, epoch)
        self.metric_name = "energy"          # no accuracy metric (has_accuracy is False)

    def prediction(self, out: torch.Tensor, x: torch.Tensor,
                   y: Optional[torch.Tensor]) -> torch.Tensor:
        return pde_losses.impose_dirichlet(out)


class PdeApp(Application):
    """``--app=pde`` (module docstring)."""

    name = "pde"
    losses = PDE_LOSSES

    # ----- configuration ----------------------------------------------------------------------
    def check_config(self, cfg: "Config") -> None:
        """The loss is a PDE loss (the engine's check) and is present; the data fits it.

        Raises:
            ConfigError: no loss, a loss of another application, Burgers without the ``pde``
                generator, Poisson on generated data, a Poisson split without targets (ν).
        """
        if cfg.loss is None:
            raise ConfigError(f"{cfg.path}: neural_network.loss: --app=pde needs a loss "
                              f"function (one of: {', '.join(PDE_LOSSES)}): the loss defines "
                              "the PDE")
        super().check_config(cfg)
        fn, d = cfg.loss.function, cfg.data
        data_type = (d.input_type or d.type or "images").lower()
        if fn == "Burgers_PDE" and not _is_generator(cfg):
            raise ConfigError(f"{cfg.path}: neural_network.data.type: Burgers_PDE trains on "
                              f"generated conditions (type \"pde\" with domain_size and "
                              f"bc_frequency), received '{data_type}'")
        if fn in POISSON:
            if _is_generator(cfg):
                raise ConfigError(f"{cfg.path}: neural_network.data.type: 'pde' generates "
                                  f"Burgers conditions; {fn} reads diffusivity maps (type "
                                  "\"numpy\" or \"hdf5\")")
            for inp, tgt in (("input_path", "target_path"),
                             ("test_input_path", "test_target_path")):
                if getattr(d, inp) and not getattr(d, tgt):
                    raise ConfigError(f"{cfg.path}: neural_network.data.{tgt}: {fn} reads the "
                                      f"diffusivity ν from the targets; set {tgt} (the tutorial "
                                      f"points it at the same files as {inp})")
        if _is_generator(cfg) and d.domain_size is None:
            raise ConfigError(f"{cfg.path}: neural_network.data.domain_size: required for data "
                              "type 'pde' (the number of grid points in x)")

    # ----- data -------------------------------------------------------------------------------
    def build_data(self, ctx: "Context"):
        cfg = ctx.cfg
        if _is_generator(cfg):
            return build_generator_bundle(cfg.data, config_path=cfg.path, logger=ctx.data_log,
                                          rank=ctx.rank, world_size=ctx.world, seed=cfg.seed)
        bundle = super().build_data(ctx)
        if cfg.loss is not None and cfg.loss.function in POISSON:
            for role, key in (("train", "target_path"), ("test", "test_target_path")):
                split = getattr(bundle, role)
                if split is not None and split.has_targets:
                    setattr(bundle, role, CheckedSplit(
                        split, f"{cfg.path}: neural_network.data.{key}"))
        return bundle

    # ----- checks -----------------------------------------------------------------------------
    def setup(self, ctx: "Context") -> None:
        """Shape checks of the data, the loss and the network (module docstring); the first
        samples' ν. Raises DataError / NetworkError naming the file or the network."""
        loss = ctx.loss
        if isinstance(loss, pde_losses.PoissonLoss):
            self._setup_poisson(ctx, loss)
        elif isinstance(loss, pde_losses.BurgersLoss):
            self._setup_burgers(ctx)

    def _setup_poisson(self, ctx: "Context", loss: pde_losses.PoissonLoss) -> None:
        cfg = ctx.cfg
        out = tuple(ctx.net.output_shape)
        for role, key in (("train", "target_path"), ("test", "test_target_path")):
            split = getattr(ctx.bundle, role)
            if split is None:
                continue
            if not split.has_targets:
                raise ConfigError(f"{cfg.path}: neural_network.data.{key}: {loss.name} reads the "
                                  f"diffusivity ν from the targets; set {key}")
            where = f"{cfg.path}: neural_network.data.{key}"
            count = min(4, split.num_total)
            with torch.random.fork_rng(devices=[]):
                samples = [split.reader.sample(i) for i in range(count)]
            nu_shape = tuple(samples[0][1].shape)
            spatial = len(nu_shape) - 1
            if spatial != loss.dims:
                hint = (f"; use Poisson{spatial}D_PDE" if spatial in (2, 3) else "")
                raise DataError(f"{where}: {loss.name} solves a {loss.dims}D problem but the "
                                f"diffusivity maps are {spatial}D (sample '{split.sample_name(0)}' "
                                f"has shape {_fmt_shape(nu_shape)}){hint}")
            if nu_shape[0] != 1:
                raise DataError(f"{where}: the diffusivity maps have {nu_shape[0]} channels "
                                f"(sample '{split.sample_name(0)}' has shape "
                                f"{_fmt_shape(nu_shape)}); ν has 1")
            if len(out) != 1 + loss.dims or out[0] != 1:
                raise NetworkError(f"{_network_name(cfg)}: the network output has shape "
                                   f"{_fmt_shape(out)}; {loss.name} needs one channel, the "
                                   f"solution u, of ν's spatial shape: "
                                   f"{_fmt_shape((1,) + tuple(nu_shape[1:]))}")
            if any(o is not None and o != v for o, v in zip(out[1:], nu_shape[1:])):
                raise NetworkError(f"{_network_name(cfg)}: the network output has shape "
                                   f"{_fmt_shape(out)} but the diffusivity ν has "
                                   f"{_fmt_shape(nu_shape)}: {loss.name} needs the same spatial "
                                   "shape")
            for (_, y), i in zip(samples, range(count)):
                split.check(y.unsqueeze(0), torch.tensor([i]))

    def _setup_burgers(self, ctx: "Context") -> None:
        cfg = ctx.cfg
        out = tuple(ctx.net.output_shape)
        d = cfg.data.domain_size
        if len(out) != 3 or out[0] != 1:
            raise NetworkError(f"{_network_name(cfg)}: the network output has shape "
                               f"{_fmt_shape(out)}; Burgers_PDE needs (1, T, {d}): one channel, "
                               f"T time steps of the domain_size = {d} points (Keras shape "
                               f"(T, {d}, 1))")
        if out[2] is not None and out[2] != d:
            raise NetworkError(f"{_network_name(cfg)}: the network output has shape "
                               f"{_fmt_shape(out)} but neural_network.data.domain_size is {d}")
        if out[1] is not None and out[1] < 2:
            raise NetworkError(f"{_network_name(cfg)}: the network output has shape "
                               f"{_fmt_shape(out)}; Burgers_PDE needs at least 2 time steps")

    # ----- evaluation -------------------------------------------------------------------------
    def evaluator(self, ctx: "Context", epoch: int):
        if isinstance(ctx.loss, pde_losses.PoissonLoss):
            return PoissonEvaluator(ctx, ctx.bundle.test, epoch)
        return SupervisedEvaluator(ctx, ctx.bundle.test, epoch)


if "pde" not in {n.lower() for n in APPS.names()}:
    APPS.register("pde", PdeApp)

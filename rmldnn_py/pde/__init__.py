"""``--app=pde``: neural PDE solvers (SPEC §8.2).

* :mod:`.losses` — ``Poisson2D_PDE``, ``Poisson3D_PDE``, ``Burgers_PDE`` (registered in
  :data:`rmldnn_py.engine.losses.LOSSES` when :mod:`.losses` is imported, which :mod:`.app`
  does);
* :mod:`.generator` — the ``pde`` data generator (raised-cosine Burgers conditions);
* :mod:`.app` — :class:`~.app.PdeApp`, registered as ``pde`` in :data:`rmldnn_py.engine.app.APPS`
  (imported on demand by :func:`rmldnn_py.engine.app.get_application`);
* :mod:`.diffusivity` — ``python -m rmldnn_py.pde.diffusivity``: random diffusivity maps
  (NumPy and SciPy only: this package imports nothing at start-up, so the generator starts
  without loading torch).
"""

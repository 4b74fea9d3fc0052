"""``--app=gan``: Wasserstein GAN with gradient penalty (SPEC §8.3).

Modules: :mod:`.losses` (the ``Wasserstein`` loss: critic and generator losses, gradient
penalty), :mod:`.data` (the fixed latent evaluation split, the training noise stream),
:mod:`.critic` (the discriminator network and its step), :mod:`.grid` (the PNG grid of generated
samples), :mod:`.app` (the application registered as ``gan``). Importing the package registers
the loss; :func:`rmldnn_py.engine.app.get_application` imports :mod:`.app` for ``--app=gan``.
"""

from . import losses  # noqa: F401  (registers the Wasserstein loss)

"""``python -m rmldnn_py`` is the same as the ``rmldnn`` command."""
from .cli import console_main

console_main()

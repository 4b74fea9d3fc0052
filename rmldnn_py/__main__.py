"""``python -m rmldnn_py`` is the same as the ``rmldnn`` command."""
import sys

from .cli import main

sys.exit(main())

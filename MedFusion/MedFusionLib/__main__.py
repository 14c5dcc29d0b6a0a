"""``python -m MedFusionLib`` is the ``medfusion`` command."""
import sys

from .cli import main

sys.exit(main())

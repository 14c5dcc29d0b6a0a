"""``python -m MedFusionLib`` is the ``medfusion`` command."""
from .cli import command

command()

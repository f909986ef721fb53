"""``python -m plan_and_render`` = the ``plan-and-render`` command."""

from .app.cli import entry

entry()

"""``python -m plan_and_render`` = the ``plan-and-render`` command."""

from .cli import main

main()

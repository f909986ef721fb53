"""Who reads a chat instruction: the rules parser, the planner's language model, or both.

    script, parser = parse_instruction("make the cat bigger", edit_context(plan), "local")

The policy, in one place:

* a backend whose class sets ``edit_rules_first`` (the small ``local`` model)
  is asked only for what the rules parser did not understand: the rules are
  faster and more reliable on the common edits, and the model is not even
  loaded while they suffice;
* any other backend reads every instruction itself;
* a backend without edit support, or whose model fails (``LLMError``), hands
  the instruction to the rules parser - unless the rules already failed on it
  (an ``EditError`` such as an unknown name), then that error stands.

``parser`` says who answered: ``"rules"``, the planner's name (its spec), or
``"rules (after: <the model's error>)"``.
"""

from __future__ import annotations

import logging
from typing import Callable

from ..errors import LLMError
from .backends import Planner, get_planner, planner_class, rules_edits
from .edit_ops import EditError, EditScript

log = logging.getLogger(__name__)


def _asks_rules_first(planner: str | Planner) -> bool:
    """The backend's ``edit_rules_first``; for a spec, read from its class (no model is loaded)."""
    source = planner_class(planner) if isinstance(planner, str) else planner
    return bool(getattr(source, "edit_rules_first", False))


def parse_instruction(instruction: str, context: dict, planner: str | Planner,
                      load: Callable[[], Planner] | None = None) -> tuple[EditScript, str]:
    """The operations ``instruction`` means for the scene in ``context`` (``edit_ops.edit_context``), and who
    read it. Nothing is applied.

    ``planner`` is a built backend or a spec; for a spec, ``load`` builds the backend once its model is needed
    (default ``get_planner(spec)``; the app passes its cache of loaded planners)."""
    name = planner if isinstance(planner, str) else planner.name
    rules_error: EditError | None = None
    if _asks_rules_first(planner):
        try:
            script = rules_edits.edit_ops(instruction, context)
            if rules_edits.understood(script):
                return script, "rules"
        except EditError as exc:  # e.g. a name the rules do not know; the model may
            rules_error = exc
    backend = (load or (lambda: get_planner(planner)))() if isinstance(planner, str) else planner
    try:
        script = backend.edit_ops(instruction, context)
    except NotImplementedError:  # a backend without edit support
        if rules_error is not None:
            raise rules_error from None
        return rules_edits.edit_ops(instruction, context), "rules"
    except LLMError as exc:
        if rules_error is not None:
            raise rules_error from None
        log.warning("planner %s could not read the edit (%s); using the rules parser", name, exc)
        return rules_edits.edit_ops(instruction, context), f"rules (after: {exc.message})"
    return EditScript.model_validate(script) if isinstance(script, dict) else script, name

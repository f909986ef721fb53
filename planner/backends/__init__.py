"""Planner backends. Importing this package registers every built-in backend;
each keeps its heavy imports (torch, transformers, openai) inside methods."""

from .base import LLMPlanner, Planner, available, get_planner, register
from . import rules  # noqa: F401  (registers "rules")
from . import transformers_backend  # noqa: F401  (registers "hf", "gguf", "local")
from . import openai_backend  # noqa: F401  (registers "openai")

__all__ = ["LLMPlanner", "Planner", "available", "get_planner", "register"]

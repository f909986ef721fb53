"""Planner backends: the interface and the entry-point lookup (``base``), and the built-in backends
(``rules``, ``transformers_backend``: local/hf/gguf, ``openai_backend``), which pyproject.toml declares as
entry points. Nothing here imports a backend module: a spec's backend is loaded when it is asked for."""

from .base import ENTRY_POINT_GROUP, LLMPlanner, Planner, available, get_planner, planner_class

__all__ = ["ENTRY_POINT_GROUP", "LLMPlanner", "Planner", "available", "get_planner", "planner_class"]

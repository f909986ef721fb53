"""Prompt texts and few-shot examples of the language-model planners (package data)."""

if __name__ != "plan_and_render.prompts":  # one copy of each module: the folder installs under the namespace
    raise ImportError(f"import plan_and_render.prompts, not {__name__!r} (this folder is installed as plan_and_render.prompts)")

"""Planner backends as plugins (entry points in the group ``plan_and_render.planners``), and the chat-edit
policy the planner layer applies to them (``plan_and_render.planner.edits``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from plan_and_render.errors import LLMError, ModelUnavailableError, UsageError
from plan_and_render.planner import LLMPlanner, available, get_planner, parse_instruction, planner_class
from plan_and_render.planner.backends.rules import RulesPlanner
from plan_and_render.planner.backends.transformers_backend import LocalPlanner
from plan_and_render.planner.edit_ops import edit_context
from plan_and_render.scene import ScenePlan

ROOT = Path(__file__).resolve().parents[1]
BUILT_IN = ["gguf", "hf", "local", "openai", "rules"]
HEAVY = ("torch", "transformers", "openai", "instructor", "xgrammar")

FAKEPLUG = textwrap.dedent("""
    from plan_and_render.planner import Planner
    from plan_and_render.scene import SceneGraph

    class FakePlanner(Planner):
        '''Plans every prompt as a fish above a boat; ``fake:N`` makes it N fish.'''

        name = "fake"

        def __init__(self, count="1", **options):
            self.count = int(count)

        def graph(self, prompt):
            return SceneGraph.model_validate({
                "objects": [{"id": "fish", "name": "fish", "count": self.count}, {"id": "boat", "name": "boat"}],
                "relations": [{"subject": "fish", "predicate": "above", "object": "boat"}]})
""")


def run_python(code: str, plugins: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(plugins), "OMP_NUM_THREADS": "1"})


def test_an_installed_plugin_package_adds_a_backend(planner_plugins):
    """The real mechanism in a fresh interpreter: a distribution on PYTHONPATH declares ``fake``; the CLI plans
    with ``--planner fake:2`` and the library lists it beside the built-in backends."""
    plugins = planner_plugins({"fake": "fakeplug:FakePlanner"}, {"fakeplug": FAKEPLUG})
    proc = run_python("from plan_and_render.app.cli import main; "
                      "main(['plan', 'anything at all', '--planner', 'fake:2', '--json'])", plugins)
    assert proc.returncode == 0, proc.stderr
    plan = ScenePlan.model_validate_json(proc.stdout)
    assert [o.id for o in plan.objects] == ["fish-1", "fish-2", "boat-1"]
    for fish in ("fish-1", "fish-2"):  # placed by the shared geometry stage: above the boat
        assert plan.object_by_id(fish).box[3] <= plan.object_by_id("boat-1").box[1] + 1e-6
    proc = run_python("import json; from plan_and_render.planner import available, get_planner; "
                      "print(json.dumps([available(), get_planner('fake').name]))", plugins)
    assert json.loads(proc.stdout) == [sorted([*BUILT_IN, "fake"]), "fake"], proc.stderr


def test_listing_and_looking_up_backends_imports_no_heavy_library():
    code = ("import json, sys; from plan_and_render.planner import available, planner_class; names = available(); "
            "classes = [planner_class(n).__name__ for n in names]; "
            f"print(json.dumps([names, classes, sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})]))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    names, classes, heavy = json.loads(proc.stdout)
    assert names == BUILT_IN
    assert classes == ["GGUFPlanner", "TransformersPlanner", "LocalPlanner", "OpenAIPlanner", "RulesPlanner"]
    assert heavy == []


def test_unknown_and_broken_backends_are_one_line_errors(planner_plugins):
    with pytest.raises(UsageError, match=r"^unknown planner 'nope:x'; choose one of: gguf, hf, local, openai, "
                                         r"rules \(e\.g\. openai:MODEL\)$"):
        get_planner("nope:x")
    planner_plugins({"broken": "brokenplug:Planner"}, {"brokenplug": "import not_a_module_anywhere\n"})
    assert "broken" in available()
    with pytest.raises(ModelUnavailableError) as info:
        get_planner("broken")
    assert str(info.value) == ("planner 'broken' (brokenplug:Planner) cannot be loaded: ModuleNotFoundError: "
                               "No module named 'not_a_module_anywhere'")


def test_spec_argument_and_options_reach_the_plugin(planner_plugins):
    planner_plugins({"fake": "fakeplug:FakePlanner"}, {"fakeplug": FAKEPLUG})
    assert get_planner("fake:3").count == 3 and get_planner("fake").count == 1
    assert planner_class("fake:3").__module__ == "fakeplug"


# --------------------------------------------------------------------------
# Who reads a chat edit
# --------------------------------------------------------------------------


def _context() -> dict:
    plan = ScenePlan(prompt="a cat left of a vase", objects=[
        dict(id="cat-1", name="cat", phrase="a gray cat", attributes=["gray"], box=(0.1, 0.4, 0.4, 0.8)),
        dict(id="vase-1", name="vase", phrase="a blue vase", attributes=["blue"], box=(0.6, 0.4, 0.8, 0.8))])
    return edit_context(plan)


class _Model(LLMPlanner):
    """A language-model stand-in: a fixed script, or a failure like a timed-out model."""

    name = "stand-in"

    def __init__(self, answer: dict | None):
        self.answer, self.asked = answer, 0

    def structured(self, messages, schema):
        self.asked += 1
        if self.answer is None:
            raise LLMError("the model timed out")
        return schema.model_validate(self.answer)


SLEEPY = {"ops": [{"op": "change", "target": "cat-1", "add_attributes": ["sleepy"]}]}


def test_the_local_class_asks_for_the_rules_first_and_loads_its_model_only_when_needed():
    assert LocalPlanner.edit_rules_first and not RulesPlanner.edit_rules_first
    model, loads = _Model(SLEEPY), []

    def load():
        loads.append(1)
        return model

    script, parser = parse_instruction("move the cat a bit up", _context(), "local", load=load)
    assert parser == "rules" and [o.op for o in script.ops] == ["move"] and loads == []
    script, parser = parse_instruction("let the kitty doze off", _context(), "local", load=load)
    assert parser == "local" and script.ops[0].add_attributes == ["sleepy"] and loads == [1]
    model.answer = None  # the model fails on what the rules did not understand: the rules' question stands
    script, parser = parse_instruction("let the kitty doze off", _context(), "local", load=load)
    assert parser == "rules (after: the model timed out)" and script.clarification.startswith("I did not understand")
    with pytest.raises(Exception, match="there is no 'giraffe'"):  # the rules' own error, not the model's
        parse_instruction("move the giraffe left", _context(), "local", load=load)


def test_other_backends_read_every_instruction_and_fall_back_to_the_rules():
    model = _Model({"ops": [{"op": "remove", "target": "vase-1"}]})
    script, parser = parse_instruction("move the cat a bit up", _context(), model)
    assert parser == "stand-in" and [o.op for o in script.ops] == ["remove"] and model.asked == 1
    model.answer = None
    script, parser = parse_instruction("make the vase red", _context(), model)
    assert parser == "rules (after: the model timed out)" and script.ops[0].op == "change"
    script, parser = parse_instruction("make the vase red", _context(), "rules")
    assert parser == "rules" and script.ops[0].op == "change"

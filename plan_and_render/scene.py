"""The two data contracts of the project, and the rules they enforce.

* ``SceneGraph`` is what a planner (language model or rules) fills in: object
  groups with counts, relations between groups, background, excluded objects.
  Its pydantic schema is what constrained decoding and instructor enforce.
* ``ScenePlan`` is the public JSON contract of ``shared/spec/plan-format.md``:
  one entry per instance with a normalised box. Field names must not change.

The models check themselves (instructor style): ids are unique, every relation
names existing ids, nothing is related to itself, ``between`` has two
references, boxes are normalised, a plan has a prompt and a bounded size. So
every way in - a plan file, the API, a chat session, a hosted model's answer
through instructor (which sends the error back to the model) - gets the same
checks and the same one-line messages (``first_error``). ``SceneGraphDraft`` is
the one deliberate exception: a model answer whose references are still to be
mended (see its docstring).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from .vocab import (SYMMETRIC_PREDICATES, Depth, Predicate, Region, canonical_depth, canonical_predicate,
                    canonical_region)

SizeHint = Literal["tiny", "small", "medium", "large", "huge"]

MAX_INSTANCES = 30  # the planner's limit for one prompt (counts summed over groups)
MAX_PROMPT_CHARS = 2000
# How big a plan may be. The planner makes at most MAX_INSTANCES objects and edits keep to
# that too; hand-written plans get room to spare. The lengths are checked before any item
# is read, so a runaway file (600,000 objects) is refused at once instead of hanging the
# checks, the geometry or the renderer.
MAX_PLAN_OBJECTS = 256
MAX_PLAN_RELATIONS = 16 * MAX_PLAN_OBJECTS


def _problem(message: str) -> PydanticCustomError:
    """A validation error whose message is exactly ``message`` (no "Value error, " prefix)."""
    return PydanticCustomError("scene_contract", "{problem}", {"problem": message})


def first_error(error: ValidationError) -> str:
    """The first problem of a validation error as one line: ``relations.0.predicate: ...``."""
    first = error.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
    return f"{where}: {first['msg']}{more}" if where else f"{first['msg']}{more}"


def _known(ids: Iterable[str], limit: int = 12) -> str:
    ids = list(ids)
    shown = ", ".join(ids[:limit]) or "none"
    return f"{shown}, ... ({len(ids) - limit} more)" if len(ids) > limit else shown


def _counts_by_id(objects: Iterable["GraphObject | PlanObject"]) -> dict[str, int]:
    """Id -> instance count (1 for a plan's instances); a repeated id is an error.

    One pass over a dict, so a large plan costs linear time (not ``list.count`` per id)."""
    counts: dict[str, int] = {}
    first: dict[str, int] = {}
    for i, o in enumerate(objects):
        if o.id in first:
            raise _problem(f"duplicate object id {o.id!r} (objects {first[o.id]} and {i})")
        first[o.id] = i
        counts[o.id] = o.count if isinstance(o, GraphObject) else 1
    return counts


def _relation_problem(r: "GraphRelation | PlanRelation", counts: Mapping[str, int]) -> str | None:
    """What is wrong with ``r``'s references, given the objects' ids and counts; None if nothing.

    A group may be related to itself by a symmetric predicate ("two cats next to
    each other") and be both references of ``between`` ("a dog between two
    trees") when it has two or more members; a plan's instances never can.
    """
    for ref in (r.subject, r.object, r.object2):
        if ref is not None and ref not in counts:
            return f"relation '{relation_text(r)}' refers to unknown object {ref!r} (known: {_known(counts)})"
    if r.subject in (r.object, r.object2) and not (r.predicate in SYMMETRIC_PREDICATES and counts[r.subject] >= 2):
        return f"relation '{relation_text(r)}' relates an object to itself"
    if r.object2 is not None and r.object == r.object2 and counts[r.object] < 2:
        return f"relation '{relation_text(r)}' needs two different references"
    return None


def _check_relations(relations: Iterable["GraphRelation | PlanRelation"], counts: Mapping[str, int]) -> None:
    for r in relations:
        problem = _relation_problem(r, counts)
        if problem:
            raise _problem(problem)


def _between_rule(r: "GraphRelation | PlanRelation") -> None:
    if r.predicate == "between" and not r.object2:
        raise _problem("'between' needs a second reference in object2")
    if r.predicate != "between" and r.object2 is not None:
        raise _problem(f"only 'between' takes object2, not {r.predicate!r}")


# --------------------------------------------------------------------------
# Scene graph: what the language model fills in
# --------------------------------------------------------------------------


class GraphObject(BaseModel):
    """A group of identical-looking instances ("three red apples")."""

    id: str = Field(description="short unique key used by relations, e.g. 'cat' or 'red_ball'")
    name: str = Field(description="singular head noun without article, count or colour, e.g. 'teddy bear'")
    count: int = Field(default=1, ge=1, le=MAX_INSTANCES)
    attributes: list[str] = Field(default_factory=list, description="adjectives such as colours or materials")
    size: SizeHint | None = Field(default=None, description="size word from the prompt, if any")
    region: Region | None = Field(default=None, description="part of the image the prompt puts it in, if any")
    depth: Depth | None = Field(default=None, description="foreground or background, if the prompt says")

    @field_validator("id", "name")
    @classmethod
    def _non_empty(cls, v: str) -> str:
        v = v.strip()
        if not v:
            raise ValueError("must not be empty")
        return v

    @field_validator("region", mode="before")
    @classmethod
    def _canonical_region(cls, v: object) -> object:
        """Accept what a model may write ("upper left", "top-left corner", "middle") as the region it means."""
        return canonical_region(v) or v if isinstance(v, str) else v

    @field_validator("depth", mode="before")
    @classmethod
    def _canonical_depth(cls, v: object) -> object:
        """Accept "in the distance", "far background", "close up" as the depth they mean."""
        return canonical_depth(v) or v if isinstance(v, str) else v


class GraphRelation(BaseModel):
    """``subject predicate object`` between object ids; ``between`` uses ``object2``."""

    subject: str
    predicate: Predicate
    object: str
    object2: str | None = None

    @field_validator("predicate", mode="before")
    @classmethod
    def _canonical_predicate(cls, v: object) -> object:
        """Accept phrasings a model may write ("on top of", "left-of") as their predicate."""
        return canonical_predicate(v) or v if isinstance(v, str) else v

    @model_validator(mode="after")
    def _between_needs_object2(self) -> "GraphRelation":
        _between_rule(self)
        return self


class SceneGraphDraft(BaseModel):
    """A scene graph as a planner wrote it: every object and relation well formed,
    but the references not yet checked.

    Grammar-constrained decoding (``hf:``, ``local``) cannot make a relation name
    an object the model listed, and nobody can ask the model again; its answer
    may repeat an id or name an object instead of its id. Such an answer is a
    draft: ``plan_and_render.planner.normalize.normalize_graph`` and
    ``plan_and_render.planner.crosscheck.repair`` mend what can be mended and
    return a ``SceneGraph``, or say what cannot. Everything else builds
    ``SceneGraph`` (which is a draft that passed the checks) directly.
    """

    objects: list[GraphObject] = Field(default_factory=list)
    relations: list[GraphRelation] = Field(default_factory=list)
    background: str | None = None
    excluded: list[str] = Field(default_factory=list, description="objects the prompt says are absent")

    @property
    def instance_count(self) -> int:
        return sum(o.count for o in self.objects)

    def object_by_id(self, oid: str) -> GraphObject | None:
        return next((o for o in self.objects if o.id == oid), None)


class SceneGraph(SceneGraphDraft):
    """The planner's output before geometry: groups, relations, background.

    Group ids are unique and every relation refers to them; a group is related
    to itself only by ``next_to``/``near`` and only when it has two or more
    members; ``between`` has two different references (or one group of two or
    more). Whether the relations can all hold together is the planner's check
    (``plan_and_render.planner.graph.check_graph``), not the contract's.
    """

    @model_validator(mode="after")
    def _references(self) -> "SceneGraph":
        _check_relations(self.relations, _counts_by_id(self.objects))
        return self


# --------------------------------------------------------------------------
# Scene plan: the public contract (plan-format.md)
# --------------------------------------------------------------------------

Box = tuple[float, float, float, float]


class Canvas(BaseModel):
    width: int = Field(default=512, ge=64, le=4096)
    height: int = Field(default=512, ge=64, le=4096)


class PlanObject(BaseModel):
    """One instance. ``group`` (extra field) is the scene-graph id it came from."""

    model_config = ConfigDict(extra="allow")

    id: str
    name: str
    phrase: str
    attributes: list[str] = Field(default_factory=list)
    box: Box = (0.0, 0.0, 1.0, 1.0)
    size: SizeHint | None = None
    group: str | None = None
    region: Region | None = None
    depth: Depth | None = None

    @field_validator("box")
    @classmethod
    def _valid_box(cls, b: Box) -> Box:
        x0, y0, x1, y1 = b
        if not (0.0 <= x0 < x1 <= 1.0 and 0.0 <= y0 < y1 <= 1.0):
            raise ValueError(f"box {list(b)} must satisfy 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1")
        return b


class PlanRelation(BaseModel):
    model_config = ConfigDict(extra="allow")

    subject: str
    predicate: Predicate
    object: str
    object2: str | None = None

    @model_validator(mode="after")
    def _between_needs_object2(self) -> "PlanRelation":
        _between_rule(self)
        return self

    def __str__(self) -> str:
        return relation_text(self)


class ScenePlan(BaseModel):
    """The JSON scene plan handed from planner to renderer.

    Checked on every construction from data (see the module docstring and
    plan-format.md, "Validation"). The prompt may be empty only in a plan
    without objects: the blank canvas a chat session starts from.
    """

    model_config = ConfigDict(extra="allow")

    version: int = 1
    prompt: str
    canvas: Canvas = Field(default_factory=Canvas)
    background: str | None = None
    negative_prompt: str | None = None
    objects: list[PlanObject] = Field(default_factory=list, max_length=MAX_PLAN_OBJECTS)
    relations: list[PlanRelation] = Field(default_factory=list, max_length=MAX_PLAN_RELATIONS)
    warnings: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> "ScenePlan":
        if self.objects and not self.prompt.strip():
            raise _problem("'prompt' is empty; a plan with objects needs the prompt it depicts")
        _check_relations(self.relations, _counts_by_id(self.objects))
        return self

    def object_by_id(self, oid: str) -> PlanObject | None:
        return next((o for o in self.objects if o.id == oid), None)

    def to_json(self, indent: int | None = 2) -> str:
        return self.model_dump_json(indent=indent, exclude_none=False)


def relation_text(r: GraphRelation | PlanRelation) -> str:
    """``cat-1 left_of dog-1`` - the form used in conflict messages."""
    tail = f" and {r.object2}" if r.object2 else ""
    return f"{r.subject} {r.predicate} {r.object}{tail}"


# Terminal control sequences (ANSI CSI "\x1b[31m", OSC "\x1b]0;title\x07", other two-byte escapes) and the
# remaining control characters. Text from a user - a prompt, a chat line, a plan file - never needs them, and
# printed back they would recolour or rewrite the terminal; left in a prompt they become object names.
_CONTROL = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-_]|[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def clean_text(text: str) -> str:
    """``text`` without terminal escape sequences and control characters (tabs and newlines stay)."""
    return _CONTROL.sub("", text)

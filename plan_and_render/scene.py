"""The two data contracts of the project.

* ``SceneGraph`` is what a planner (language model or rules) fills in: object
  groups with counts, relations between groups, background, excluded objects.
  Its pydantic schema is what constrained decoding and instructor enforce.
* ``ScenePlan`` is the public JSON contract of ``shared/spec/plan-format.md``:
  one entry per instance with a normalised box. Field names must not change.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

PREDICATES: tuple[str, ...] = (
    "left_of",
    "right_of",
    "above",
    "below",
    "on",
    "under",
    "in_front_of",
    "behind",
    "next_to",
    "near",
    "inside",
    "between",
)
Predicate = Literal[
    "left_of",
    "right_of",
    "above",
    "below",
    "on",
    "under",
    "in_front_of",
    "behind",
    "next_to",
    "near",
    "inside",
    "between",
]
SizeHint = Literal["tiny", "small", "medium", "large", "huge"]

MAX_INSTANCES = 30
MAX_PROMPT_CHARS = 2000


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

    @field_validator("id", "name")
    @classmethod
    def _non_empty(cls, v: str) -> str:
        v = v.strip()
        if not v:
            raise ValueError("must not be empty")
        return v


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
        from .vocab import canonical_predicate

        return canonical_predicate(v) or v if isinstance(v, str) else v

    @model_validator(mode="after")
    def _between_needs_object2(self) -> "GraphRelation":
        if self.predicate == "between" and not self.object2:
            raise ValueError("'between' needs a second reference in object2")
        if self.predicate != "between" and self.object2 is not None:
            raise ValueError(f"only 'between' takes object2, not {self.predicate!r}")
        return self


class SceneGraph(BaseModel):
    """The planner's output before geometry: groups, relations, background."""

    objects: list[GraphObject] = Field(default_factory=list)
    relations: list[GraphRelation] = Field(default_factory=list)
    background: str | None = None
    excluded: list[str] = Field(default_factory=list, description="objects the prompt says are absent")

    @property
    def instance_count(self) -> int:
        return sum(o.count for o in self.objects)

    def object_by_id(self, oid: str) -> GraphObject | None:
        return next((o for o in self.objects if o.id == oid), None)


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

    def __str__(self) -> str:
        tail = f" and {self.object2}" if self.object2 else ""
        return f"{self.subject} {self.predicate} {self.object}{tail}"


class ScenePlan(BaseModel):
    """The JSON scene plan handed from planner to renderer."""

    model_config = ConfigDict(extra="allow")

    version: int = 1
    prompt: str
    canvas: Canvas = Field(default_factory=Canvas)
    background: str | None = None
    negative_prompt: str | None = None
    objects: list[PlanObject] = Field(default_factory=list)
    relations: list[PlanRelation] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)

    def object_by_id(self, oid: str) -> PlanObject | None:
        return next((o for o in self.objects if o.id == oid), None)

    def to_json(self, indent: int | None = 2) -> str:
        return self.model_dump_json(indent=indent, exclude_none=False)


def relation_text(r: GraphRelation | PlanRelation) -> str:
    """``cat-1 left_of dog-1`` - the form used in conflict messages."""
    tail = f" and {r.object2}" if r.object2 else ""
    return f"{r.subject} {r.predicate} {r.object}{tail}"

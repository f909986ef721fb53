"""Typed chat edits ("move the cat a bit left") and how they change a ScenePlan.

A planner (language model or rules) turns an instruction into an ``EditScript``:
a list of operations, each a small pydantic model tagged by ``op``. The schema
is a plain pydantic model so constrained decoding and instructor can fill it.
``apply`` validates the ids an operation names against the plan and returns a
new plan; it never edits the one it was given.

Geometry policy (the contract the tests check):

* Objects an operation does not touch keep their boxes exactly.
* ``add``, ``relate`` and a ``move`` relative to another object re-solve the
  layout with every other object fixed (``plan_and_render.geometry.solve(..., fixed=)``);
  only when that is impossible are the objects directly related to the moved
  one freed as well (a note says so), and if that fails too the edit is a
  ``ConflictError`` naming the relations.
* A direct ``move`` (direction + amount), ``resize`` (about the bottom edge's
  centre) and ``swap`` change boxes themselves (clamped to the canvas), then
  every relation of the changed objects is checked: a relation that no longer
  holds is *updated* to the weaker, opposite or other directional predicate
  that now holds ("on" -> "above", "right_of" -> "left_of" after moving past,
  "behind" -> "in_front_of") or, if none holds, *dropped*; either way a note
  names it. A region or depth of a changed object that no longer holds is
  dropped with a note (``swap`` exchanges them first). The user asked for the
  move, so it wins.
* A ``move`` (or ``add``) with a ``region`` and / or ``depth`` ("move the cat to
  the top right corner", "put the dog in the foreground") sets them and
  re-solves the object with every other box fixed; relations and regions of
  the moved object that cannot hold with the new place are dropped with a note.
* ``relate`` (and a relative ``move``) replaces the relations between the same
  two objects; relations of the subject to third objects that would form a
  contradiction (an ordering cycle, or a conflict the solver names) are
  dropped with a note, since the newest instruction wins.
* Undo, redo and clarify are not plan changes: ``Session`` handles them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..errors import ConflictError, PlanAndRenderError
from ..geometry import SizePrior, relation_holds, solve
from ..geometry.check import Placement, check_placements, placements
from .expand import article, slug
from .graph import find_conflicts
from ..scene import (
    MAX_INSTANCES,
    Box,
    GraphObject,
    GraphRelation,
    PlanObject,
    PlanRelation,
    ScenePlan,
    SceneGraph,
    SizeHint,
    first_error,
    relation_text,
)
from ..vocab import (COLOURS, MATERIALS, SIZE_WORDS, Depth, Predicate, Region, canonical_depth, canonical_predicate,
                     canonical_region, pluralize, singularize)

__all__ = [
    "AMOUNTS", "AddOp", "Applied", "BackgroundOp", "ChangeOp", "ClarifyOp", "EditError", "EditOp", "EditScript",
    "MoveOp", "RedoOp", "RelateOp", "RemoveOp", "ResizeOp", "SwapOp", "UndoOp", "UnrelateOp", "apply",
    "describe", "edit_context", "resolve_target",
]


class EditError(PlanAndRenderError):
    """An edit that cannot be applied: unknown object, nothing to undo, a bad value."""

    type = "invalid_edit"


# --------------------------------------------------------------------------
# Operations
# --------------------------------------------------------------------------

Direction = Literal["left", "right", "up", "down", "center"]
Amount = Literal["small", "medium", "large", "max"]
# Named move amounts as a fraction of the canvas side ("max" = to the edge).
AMOUNTS: dict[str, float] = {"small": 0.05, "medium": 0.15, "large": 0.3}

_TARGET = "an object id from the scene (e.g. 'cat-1'), a group id / name meaning all its instances, or 'all'"


def _require_op(schema: dict) -> None:
    """``op`` has a default for Python callers but is required in the JSON schema models decode to."""
    required = schema.setdefault("required", [])
    if "op" not in required:
        required.insert(0, "op")


class _Op(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=_require_op)

    @field_validator("predicate", mode="before", check_fields=False)
    @classmethod
    def _canonical_predicate(cls, v: object) -> object:
        """Accept what a model may write ("on top of", "left-of") as the predicate it means."""
        return (canonical_predicate(v) or v) if isinstance(v, str) else v

    @field_validator("region", mode="before", check_fields=False)
    @classmethod
    def _canonical_region(cls, v: object) -> object:
        """Accept "upper left corner", "middle" as the region they mean."""
        return (canonical_region(v) or v) if isinstance(v, str) else v

    @field_validator("depth", mode="before", check_fields=False)
    @classmethod
    def _canonical_depth(cls, v: object) -> object:
        """Accept "front", "in the distance" as the depth they mean."""
        return (canonical_depth(v) or v) if isinstance(v, str) else v


_REGION = "part of the picture it belongs in: left, right, top, bottom, center, top_left, top_right, bottom_left, " \
    "bottom_right"
_DEPTH = "foreground (near, larger, low) or background (far, smaller, higher up)"


class AddOp(_Op):
    """Add ``count`` new instances, optionally related to an existing object."""

    op: Literal["add"] = "add"
    name: str = Field(description="singular noun without article, count or colour, e.g. 'dog'")
    count: int = Field(default=1, ge=1, le=MAX_INSTANCES)
    attributes: list[str] = Field(default_factory=list, description="adjectives such as colours")
    size: SizeHint | None = None
    predicate: Predicate | None = Field(default=None, description="relation of the new object to `reference`")
    reference: str | None = Field(default=None, description=_TARGET)
    reference2: str | None = Field(default=None, description="second reference, only for 'between'")
    region: Region | None = Field(default=None, description=_REGION)
    depth: Depth | None = Field(default=None, description=_DEPTH)

    @model_validator(mode="after")
    def _relation_complete(self) -> "AddOp":
        _check_relation(self.predicate, self.reference, self.reference2, "add")
        if self.predicate != "between":  # a stray second reference (models write one) means nothing
            self.reference2 = None
        if self.predicate is None:
            self.reference = None
        return self


class RemoveOp(_Op):
    """Remove an object (or ``count`` instances of a group, the last ones first)."""

    op: Literal["remove"] = "remove"
    target: str = Field(description=_TARGET)
    count: int | None = Field(default=None, ge=1, description="how many instances to remove; null = all named")


class MoveOp(_Op):
    """Move by a direction and amount, relative to another object (predicate + reference), or to a
    part of the picture (region) and / or a depth."""

    op: Literal["move"] = "move"
    target: str = Field(description=_TARGET)
    direction: Direction | None = None
    amount: Amount | float = Field(default="medium", description="small/medium/large/max, or a canvas fraction")
    predicate: Predicate | None = None
    reference: str | None = None
    reference2: str | None = None
    region: Region | None = Field(default=None, description=_REGION)
    depth: Depth | None = Field(default=None, description=_DEPTH)

    @model_validator(mode="after")
    def _one_kind(self) -> "MoveOp":
        if self.direction is None and self.predicate is None and self.region is None and self.depth is None:
            raise ValueError("a move needs a direction, a predicate with a reference object, a region or a depth")
        if self.direction is not None and (self.region is not None or self.depth is not None):
            self.direction = None  # "to the top right corner" says more than "up" and "right"
        if self.direction is not None and self.predicate is not None:
            if not self.reference:
                self.predicate = None  # a direction plus a dangling predicate: the direction is the move
            else:
                self.direction = None  # a relation to another object says more than a direction
        if isinstance(self.amount, float) and not 0.0 < self.amount <= 1.0:
            raise ValueError("a numeric move amount is a fraction of the canvas in (0, 1]")
        _check_relation(self.predicate, self.reference, self.reference2, "move")
        if self.predicate != "between":
            self.reference2 = None
        return self


class ResizeOp(_Op):
    """Scale an object's box about its centre (bottom edge kept for objects resting on something)."""

    op: Literal["resize"] = "resize"
    target: str = Field(description=_TARGET)
    scale: float = Field(gt=0.1, le=5.0, description="side-length factor: 1.3 = bigger, 0.75 = smaller")


class SwapOp(_Op):
    """Exchange the positions of two objects (each keeps its own size)."""

    op: Literal["swap"] = "swap"
    first: str = Field(description=_TARGET)
    second: str = Field(description=_TARGET)


class ChangeOp(_Op):
    """Change what an object is: its name, attributes, size word or the grounded phrase."""

    op: Literal["change"] = "change"
    target: str = Field(description=_TARGET)
    name: str | None = Field(default=None, description="new noun, e.g. 'dog' for 'turn the cat into a dog'")
    add_attributes: list[str] = Field(default_factory=list, description="a new colour replaces the old colour")
    remove_attributes: list[str] = Field(default_factory=list)
    phrase: str | None = Field(default=None, description="explicit text to ground in the box")

    @model_validator(mode="after")
    def _something(self) -> "ChangeOp":
        if not (self.name or self.add_attributes or self.remove_attributes or self.phrase):
            raise ValueError("a change needs a new name, attributes to add or remove, or a phrase")
        return self


class RelateOp(_Op):
    """Set ``subject predicate object``, replacing relations between the two; re-place the subject."""

    op: Literal["relate"] = "relate"
    subject: str = Field(description=_TARGET)
    predicate: Predicate
    object: str = Field(description=_TARGET)
    object2: str | None = None

    @model_validator(mode="after")
    def _between(self) -> "RelateOp":
        _check_relation(self.predicate, self.object, self.object2, "relate")
        if self.predicate != "between":
            self.object2 = None
        return self


class UnrelateOp(_Op):
    """Drop the relations between two objects (or every relation of ``subject``)."""

    op: Literal["unrelate"] = "unrelate"
    subject: str = Field(description=_TARGET)
    object: str | None = None


class BackgroundOp(_Op):
    """Set the background / setting; null clears it."""

    op: Literal["background"] = "background"
    background: str | None


class UndoOp(_Op):
    op: Literal["undo"] = "undo"
    steps: int = Field(default=1, ge=1, le=100)


class RedoOp(_Op):
    op: Literal["redo"] = "redo"
    steps: int = Field(default=1, ge=1, le=100)


class ClarifyOp(_Op):
    """The instruction is ambiguous: ask instead of guessing."""

    op: Literal["clarify"] = "clarify"
    question: str


EditOp = Union[AddOp, RemoveOp, MoveOp, ResizeOp, SwapOp, ChangeOp, RelateOp, UnrelateOp, BackgroundOp,
               UndoOp, RedoOp, ClarifyOp]
PLAN_OPS = ("add", "remove", "move", "resize", "swap", "change", "relate", "unrelate", "background")


class EditScript(BaseModel):
    """What one chat instruction asks for, in order."""

    ops: list[EditOp] = Field(default_factory=list, description="operations applied in order")

    @property
    def clarification(self) -> str | None:
        return next((o.question for o in self.ops if isinstance(o, ClarifyOp)), None)


def _check_relation(predicate, reference, reference2, what: str) -> None:
    if predicate is not None and not reference:
        raise ValueError(f"{what}: predicate {predicate!r} needs a reference object")
    if predicate == "between" and not reference2:
        raise ValueError(f"{what}: 'between' needs reference2")


# --------------------------------------------------------------------------
# Names -> instance ids
# --------------------------------------------------------------------------


def _key(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9]+", " ", text.lower()).split())


def _listing(plan: ScenePlan) -> str:
    return ", ".join(f"{o.id} ({o.phrase})" for o in plan.objects) or "nothing yet"


def resolve_target(plan: ScenePlan, ref: str) -> list[str]:
    """Instance ids a reference names: an id ("cat-2"), a group id, or a name (singular or plural).

    Raises ``EditError`` listing the scene's objects when nothing matches.
    """
    ref = (ref or "").strip()
    ids = [o.id for o in plan.objects]
    if ref in ids:
        return [ref]
    if ref.lower() in ("all", "everything", "*") and ids:
        return ids
    k = _key(ref)
    m = re.fullmatch(r"(.+?) (\d+)", k)  # "cat 2" -> cat-2
    if m and f"{slug(m.group(1))}-{m.group(2)}" in ids:
        return [f"{slug(m.group(1))}-{m.group(2)}"]
    for test in (lambda o: _key(o.group or "") == k,
                 lambda o: _key(o.name) == k or _key(o.name) == _key(singularize(k)),
                 lambda o: _key(o.phrase) in (k, _key(f"{article(k)} {k}"))):
        hit = [o.id for o in plan.objects if test(o)]
        if hit:
            return hit
    raise EditError(f"unknown object {ref!r}; the scene has: {_listing(plan)}")


def _one(plan: ScenePlan, ref: str, role: str) -> str:
    ids = resolve_target(plan, ref)
    if len(ids) != 1:
        raise EditError(f"{role} {ref!r} names {len(ids)} objects ({', '.join(ids)}); name one, e.g. {ids[0]!r}")
    return ids[0]


# --------------------------------------------------------------------------
# Applying
# --------------------------------------------------------------------------


@dataclass
class Applied:
    """The new plan, what was done (one line each) and which objects changed."""

    plan: ScenePlan
    notes: list[str] = field(default_factory=list)
    touched: list[str] = field(default_factory=list)


def apply(plan: ScenePlan, ops: EditScript | list, seed: int = 0, size_prior: SizePrior | None = None) -> Applied:
    """Apply plan-changing operations in order to a copy of ``plan`` (``size_prior``: the model's own, as
    the plan was made with, for the boxes the geometry places anew; None: real-world sizes).

    Raises ``EditError`` (unknown id, bad value, undo/clarify given here) or
    ``ConflictError`` (the result cannot satisfy its relations).
    """
    items = ops.ops if isinstance(ops, EditScript) else list(ops)
    state = _State(plan.model_copy(deep=True), seed, size_prior)
    for op in items:
        if isinstance(op, dict):
            op = EditScript.model_validate({"ops": [op]}).ops[0]
        handler = _HANDLERS.get(op.op)
        if handler is None:
            raise EditError(f"'{op.op}' is not a plan change (the session handles it)")
        handler(state, op)
    state.plan.prompt = describe(state.plan)
    return Applied(_checked(state.plan), state.notes, list(dict.fromkeys(state.touched)))


def _checked(plan: ScenePlan) -> ScenePlan:
    """The edited plan, validated again: handlers change a copy in place, which pydantic
    does not check, and a session stores and reloads what comes back."""
    try:
        return ScenePlan.model_validate(plan.model_dump())
    except ValidationError as e:
        raise EditError(f"the edit would make an invalid plan: {first_error(e)}") from None


@dataclass
class _State:
    plan: ScenePlan
    seed: int
    size_prior: SizePrior | None = None
    notes: list[str] = field(default_factory=list)
    touched: list[str] = field(default_factory=list)

    def obj(self, oid: str) -> PlanObject:
        o = self.plan.object_by_id(oid)
        assert o is not None, oid
        return o

    def set_box(self, oid: str, box: Box) -> None:
        self.obj(oid).box = tuple(round(v, 4) for v in box)  # type: ignore[assignment]
        self.touched.append(oid)


def fresh_ids(plan: ScenePlan, name: str, count: int) -> list[str]:
    """``count`` ids for new objects called ``name``, numbered after the plan's highest (``cat-3``, ``cat-4``)."""
    base = slug(name)
    used = [int(m.group(1)) for o in plan.objects if (m := re.fullmatch(re.escape(base) + r"-(\d+)", o.id))]
    start = max(used, default=0) + 1
    return [f"{base}-{start + i}" for i in range(count)]


def _phrase(name: str, attributes: list[str], size: str | None = None) -> str:
    words = " ".join([*([size] if size and size != "medium" else []), *attributes, name]).strip()
    return f"{article(words)} {words}"


def _group_for(plan: ScenePlan, name: str, attributes: list[str]) -> str:
    """An existing group with the same name and attributes, else a fresh group id."""
    for o in plan.objects:
        if o.name == name and sorted(o.attributes) == sorted(attributes) and o.group:
            return o.group
    taken = {o.group for o in plan.objects}
    gid = slug(" ".join([*attributes, name]))
    n = 2
    while gid in taken:
        gid, n = f"{slug(' '.join([*attributes, name]))}_{n}", n + 1
    return gid


def _add(s: _State, op: AddOp) -> None:
    name = singularize(_key(op.name)) or _key(op.name)
    if not name:
        raise EditError("add: the new object needs a name")
    if len(s.plan.objects) + op.count > MAX_INSTANCES:
        raise EditError(f"add: the scene would have {len(s.plan.objects) + op.count} objects; the limit is "
                        f"{MAX_INSTANCES}")
    refs = resolve_target(s.plan, op.reference) if op.reference else []
    refs2 = resolve_target(s.plan, op.reference2) if op.reference2 else []
    attrs = [a.lower() for a in op.attributes]
    group = _group_for(s.plan, name, attrs)
    new = [PlanObject(id=i, name=name, phrase=_phrase(name, attrs, op.size), attributes=attrs, size=op.size,
                      group=group, region=op.region, depth=op.depth) for i in fresh_ids(s.plan, name, op.count)]
    s.plan.objects.extend(new)
    for o in new:
        if op.predicate == "between":
            s.plan.relations += [PlanRelation(subject=o.id, predicate="between", object=a, object2=b)
                                 for a in refs for b in refs2 if a != b]
        elif op.predicate:
            s.plan.relations += [PlanRelation(subject=o.id, predicate=op.predicate, object=r) for r in refs]
    _resolve_layout(s, [o.id for o in new], fresh=placements(new))
    where = f" {op.predicate} {', '.join(refs)}" if op.predicate else ""
    where += "".join(f", {k} {v}" for k, v in (("region", op.region), ("depth", op.depth)) if v)
    s.notes.append(f"added {', '.join(o.id for o in new)} ({new[0].phrase}){where}")


def _remove(s: _State, op: RemoveOp) -> None:
    ids = resolve_target(s.plan, op.target)
    if op.count is not None:
        if op.count > len(ids):
            raise EditError(f"remove: {op.target!r} has {len(ids)} instance(s), cannot remove {op.count}")
        ids = ids[-op.count:]
    gone = set(ids)
    s.plan.objects = [o for o in s.plan.objects if o.id not in gone]
    dropped = [r for r in s.plan.relations if gone & {r.subject, r.object, r.object2}]
    s.plan.relations = [r for r in s.plan.relations if not gone & {r.subject, r.object, r.object2}]
    s.notes.append(f"removed {', '.join(ids)}" + (f" and {len(dropped)} relation(s) of it" if dropped else ""))


def _union(boxes: list[Box]) -> Box:
    return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))


def _move(s: _State, op: MoveOp) -> None:
    ids = resolve_target(s.plan, op.target)
    if op.region is not None or op.depth is not None:
        _place_op(s, ids, op)
        return
    if op.predicate is not None:
        _relate(s, RelateOp(subject=op.target, predicate=op.predicate, object=op.reference or "",
                            object2=op.reference2), verb="moved")
        return
    boxes = [s.obj(i).box for i in ids]
    x0, y0, x1, y1 = _union(boxes)
    if op.direction == "center":
        dx, dy = 0.5 - (x0 + x1) / 2, 0.5 - (y0 + y1) / 2
    else:
        step = {"max": 1.0, **AMOUNTS}[op.amount] if isinstance(op.amount, str) else float(op.amount)
        dx = {"left": -step, "right": step}.get(op.direction or "", 0.0)
        dy = {"up": -step, "down": step}.get(op.direction or "", 0.0)
    # clamp so the group stays on the canvas as a whole
    dx = min(max(dx, -x0), 1.0 - x1)
    dy = min(max(dy, -y0), 1.0 - y1)
    if abs(dx) < 1e-4 and abs(dy) < 1e-4:
        s.notes.append(f"{', '.join(ids)} is already as far {op.direction} as it can go; nothing moved")
        return
    for i, b in zip(ids, boxes):
        s.set_box(i, (b[0] + dx, b[1] + dy, b[2] + dx, b[3] + dy))
    s.notes.append(f"moved {', '.join(ids)} {op.direction} by {max(abs(dx), abs(dy)):.2f} of the canvas")
    _recheck(s, ids)


def _place_op(s: _State, ids: list[str], op: MoveOp) -> None:
    """Set the region / depth of ``ids`` and re-place them (relative to ``op.reference`` when given)."""
    fresh = []
    for i in ids:
        o = s.obj(i)
        o.region, o.depth = op.region or o.region, op.depth or o.depth
        fresh += [p for p in placements([o]) if p.value in (op.region, op.depth)]
        s.touched.append(i)
    s.notes.append(f"placed {', '.join(ids)}: " + ", ".join(f"{k} {v}" for k, v in (("region", op.region),
                                                                                ("depth", op.depth)) if v))
    if op.predicate is not None:
        _relate(s, RelateOp(subject=op.target, predicate=op.predicate, object=op.reference or "",
                            object2=op.reference2), verb="moved", fresh=fresh)
        return
    try:
        _resolve_layout(s, ids, fresh=fresh)
    except ConflictError:  # the place needs room the kept boxes hold: lay the scene out again around it
        _place(s, ids, everything=True)


def _resize(s: _State, op: ResizeOp) -> None:
    ids = resolve_target(s.plan, op.target)
    for i in ids:
        x0, y0, x1, y1 = s.obj(i).box
        w, h = min((x1 - x0) * op.scale, 1.0), min((y1 - y0) * op.scale, 1.0)
        cx = (x0 + x1) / 2
        # keep the bottom edge (what stands on the ground stays there; on/behind/in_front_of read it)
        nx0 = min(max(cx - w / 2, 0.0), 1.0 - w)
        ny0 = min(max(y1 - h, 0.0), 1.0 - h)
        s.set_box(i, (nx0, ny0, nx0 + w, ny0 + h))
        o = s.obj(i)
        o.size = _step_size(o.size, op.scale)
    word = "bigger" if op.scale > 1 else "smaller"
    s.notes.append(f"made {', '.join(ids)} {word} (x{round(op.scale, 2):g})")
    _recheck(s, ids)


_SIZES = ("tiny", "small", "medium", "large", "huge")


def _step_size(size: str | None, scale: float) -> str | None:
    if size is None or scale == 1:
        return size
    i = _SIZES.index(size) + (1 if scale > 1 else -1)
    return _SIZES[min(max(i, 0), len(_SIZES) - 1)]


def _swap(s: _State, op: SwapOp) -> None:
    a, b = _one(s.plan, op.first, "swap"), _one(s.plan, op.second, "swap")
    if a == b:
        raise EditError(f"swap needs two different objects, got {a!r} twice")
    ba, bb = s.obj(a).box, s.obj(b).box

    def recentre(box: Box, onto: Box) -> Box:
        w, h = box[2] - box[0], box[3] - box[1]
        cx, cy = (onto[0] + onto[2]) / 2, (onto[1] + onto[3]) / 2
        x0, y0 = min(max(cx - w / 2, 0.0), 1.0 - w), min(max(cy - h / 2, 0.0), 1.0 - h)
        return (x0, y0, x0 + w, y0 + h)

    s.set_box(a, recentre(ba, bb))
    s.set_box(b, recentre(bb, ba))
    oa, ob = s.obj(a), s.obj(b)
    (oa.region, oa.depth), (ob.region, ob.depth) = (ob.region, ob.depth), (oa.region, oa.depth)
    swap = {a: b, b: a}
    s.plan.relations = [
        PlanRelation(**{**r.model_dump(), "subject": swap.get(r.subject, r.subject),
                        "object": swap.get(r.object, r.object),
                        "object2": swap.get(r.object2, r.object2) if r.object2 else None})
        for r in s.plan.relations
    ]
    s.notes.append(f"swapped the places of {a} and {b}")
    _recheck(s, [a, b])


def _change(s: _State, op: ChangeOp) -> None:
    ids = resolve_target(s.plan, op.target)
    renames: dict[str, str] = {}
    new_name = singularize(_key(op.name)) if op.name else None
    new_ids = fresh_ids(s.plan, new_name, len(ids)) if new_name else []
    adds = [a.lower() for a in op.add_attributes]
    removes = {a.lower() for a in op.remove_attributes}
    colour_in = any(a in COLOURS for a in adds)
    material_in = any(a in MATERIALS and a not in COLOURS for a in adds)
    group = None
    for n, i in enumerate(ids):
        o = s.obj(i)
        attrs = [a for a in o.attributes if a not in removes
                 and not (colour_in and a in COLOURS) and not (material_in and a in MATERIALS)]
        size = o.size
        for a in adds:
            if a in SIZE_WORDS:
                size = SIZE_WORDS[a]
            elif a not in attrs:
                attrs.append(a)
        o.attributes = attrs
        o.size = size
        if new_name:
            o.name = new_name
            renames[i] = o.id = new_ids[n]
        o.phrase = op.phrase.strip() if op.phrase else _phrase(o.name, attrs)
        group = group or _group_for_change(s.plan, o)
        o.group = group
        s.touched.append(o.id)
    if renames:
        s.plan.relations = [
            PlanRelation(**{**r.model_dump(), "subject": renames.get(r.subject, r.subject),
                            "object": renames.get(r.object, r.object),
                            "object2": renames.get(r.object2, r.object2) if r.object2 else None})
            for r in s.plan.relations
        ]
    done = ", ".join(f"{i} -> {renames[i]}" for i in ids) if renames else ", ".join(ids)
    s.notes.append(f"changed {done}: now {s.obj(renames.get(ids[0], ids[0])).phrase!r}")


def _group_for_change(plan: ScenePlan, obj: PlanObject) -> str:
    others = [o for o in plan.objects if o is not obj]
    for o in others:
        if o.name == obj.name and sorted(o.attributes) == sorted(obj.attributes) and o.phrase == obj.phrase:
            return o.group or o.id
    taken = {o.group for o in others}
    gid = base = slug(" ".join([*obj.attributes, obj.name]))
    n = 2
    while gid in taken:
        gid, n = f"{base}_{n}", n + 1
    return gid


def _relate(s: _State, op: RelateOp, verb: str = "related", fresh: list[Placement] | None = None) -> None:
    subs = resolve_target(s.plan, op.subject)
    objs = resolve_target(s.plan, op.object)
    objs2 = resolve_target(s.plan, op.object2) if op.object2 else []
    if set(subs) & (set(objs) | set(objs2)):
        raise EditError(f"cannot relate {op.subject!r} to itself")
    pair = set(subs) | set(objs) | set(objs2)
    replaced = [r for r in s.plan.relations if r.subject in subs and {r.object, r.object2} & pair
                or r.object in subs and r.subject in pair]
    kept = [r for r in s.plan.relations if r not in replaced]
    if op.predicate == "between":
        new = [PlanRelation(subject=x, predicate="between", object=a, object2=b)
               for x in subs for a in objs for b in objs2 if a != b]
    else:
        new = [PlanRelation(subject=x, predicate=op.predicate, object=t) for x in subs for t in objs]
    s.plan.relations = kept + new
    dropped = _drop_contradictions(s, new, set(subs), fresh or [])
    note = f"{verb} {', '.join(subs)}: now {'; '.join(relation_text(r) for r in new)}"
    if replaced:
        note += f" (replaces {'; '.join(relation_text(r) for r in replaced)})"
    if dropped:
        note += f" (dropped contradicting {'; '.join(map(str, dropped))})"
    s.notes.append(note)
    _resolve_layout(s, subs, new, fresh or [])


def _drop_contradictions(s: _State, new: list[PlanRelation], subjects: set[str],
                         fresh: list[Placement] = ()) -> list[PlanRelation | Placement]:
    """Remove older relations and regions / depths of ``subjects`` that form an ordering cycle
    (or put a pair in two sectors) with the new relations and ``fresh`` placements."""
    dropped: list[PlanRelation | Placement] = []
    for _ in range(len(s.plan.relations) + 2 * len(s.plan.objects)):
        graph = _as_graph(s.plan)
        cycles = find_conflicts(graph)
        if not cycles:
            break
        cycle = cycles[0]
        index = {id(g): i for i, g in enumerate(graph.relations)}
        victims = [g if isinstance(g, Placement) else s.plan.relations[index[id(g)]] for g in cycle]
        victim = next((r for r in victims if r not in new and r not in fresh and (
            r.subject in subjects or not isinstance(r, Placement) and r.object in subjects)), None)
        if victim is None:
            raise ConflictError("conflicting relations: " + ", ".join(map(str, victims)))
        _forget(s, victim)
        dropped.append(victim)
    return dropped


def _forget(s: _State, item: PlanRelation | Placement) -> None:
    """Drop a relation, or an object's region / depth."""
    if isinstance(item, Placement):
        setattr(s.obj(item.subject), item.kind, None)
    else:
        s.plan.relations.remove(item)


def _as_graph(plan: ScenePlan) -> SceneGraph:
    """Instances as one-member groups (with their regions and depths), so the graph checks run on plan ids."""
    return SceneGraph(
        objects=[GraphObject(id=o.id, name=o.name, count=1, region=o.region, depth=o.depth) for o in plan.objects],
        relations=[GraphRelation(subject=r.subject, predicate=r.predicate, object=r.object, object2=r.object2)
                   for r in plan.relations],
    )


def _unrelate(s: _State, op: UnrelateOp) -> None:
    subs = set(resolve_target(s.plan, op.subject))
    objs = set(resolve_target(s.plan, op.object)) if op.object else None

    def linked(r: PlanRelation) -> bool:
        ends = {r.subject, r.object, r.object2}
        return bool(subs & ends) and (objs is None or bool(objs & (ends - subs)))

    gone = [r for r in s.plan.relations if linked(r)]
    if not gone:
        s.notes.append("no such relation; nothing changed")
        return
    s.plan.relations = [r for r in s.plan.relations if not linked(r)]
    s.notes.append(f"dropped {'; '.join(relation_text(r) for r in gone)}")


def _background(s: _State, op: BackgroundOp) -> None:
    bg = " ".join((op.background or "").split()) or None
    s.plan.background = bg
    s.notes.append(f"background is now {bg!r}" if bg else "removed the background")


_HANDLERS = {"add": _add, "remove": _remove, "move": _move, "resize": _resize, "swap": _swap, "change": _change,
             "relate": _relate, "unrelate": _unrelate, "background": _background}


# --------------------------------------------------------------------------
# Geometry: re-solve with fixed boxes, re-check after direct changes
# --------------------------------------------------------------------------


def _neighbours(plan: ScenePlan, ids: set[str]) -> set[str]:
    out = set()
    for r in plan.relations:
        ends = {r.subject, r.object, r.object2} - {None}
        if ends & ids:
            out |= ends  # type: ignore[arg-type]
    return out - ids


def _resolve_layout(s: _State, free: list[str], new: list[PlanRelation] | None = None,
                    fresh: list[Placement] = ()) -> None:
    """Place ``free`` objects with every other box fixed; free their neighbours only if that fails.

    When even that is impossible and the solver's conflict names older relations,
    regions or depths of the free objects, those are dropped (the newest
    instruction - ``new`` relations, ``fresh`` placements - wins) and the placement
    is tried once more.
    """
    try:
        _place(s, free)
        return
    except ConflictError as exc:
        older = [r for r in s.plan.relations if r not in (new or []) and set(free) & {r.subject, r.object, r.object2}]
        older += [p for p in placements(s.obj(i) for i in free) if p not in fresh]
        named = [r for r in older if f"{r}," in f"{exc.message}," or f"{r} (" in exc.message]
        if not (new or fresh) or not named:
            raise
    for item in named:
        _forget(s, item)
    _place(s, free)
    s.notes.append(f"dropped {'; '.join(map(str, named))} (it cannot hold together with the edit)")


def _place(s: _State, free: list[str], everything: bool = False) -> None:
    """Solve ``free`` with the other boxes fixed; then with their neighbours free too; with
    ``everything``, finally with every box free ("put the vase in the foreground" may need the
    table it stood in front of to move)."""
    free_set = set(free)
    tries = [free_set, free_set | _neighbours(s.plan, free_set)]
    if tries[1] == tries[0]:
        tries = tries[:1]
    if everything:
        tries.append({o.id for o in s.plan.objects})
    error: ConflictError | None = None
    for extra, loose in enumerate(tries):
        fixed = {o.id: tuple(o.box) for o in s.plan.objects if o.id not in loose}
        try:
            layout = solve(s.plan.objects, s.plan.relations, s.plan.canvas, seed=s.seed, fixed=fixed,
                           size_prior=s.size_prior)
        except ConflictError as exc:
            error = exc
            continue
        for oid in (o.id for o in s.plan.objects if o.id in loose):  # plan order: "it" next time is reproducible
            s.set_box(oid, layout.boxes[oid])
        if extra:
            s.notes.append(f"also moved {', '.join(sorted(loose - free_set))} to make room")
        s.plan.warnings = [*dict.fromkeys([*s.plan.warnings, *layout.warnings])]
        return
    raise ConflictError(f"cannot place {', '.join(free)} with the other objects kept where they are: "
                        f"{error.message if error else 'no layout found'}")


# When a relation stops holding after a direct change: what to try instead, in order
# (the weaker form first, then the opposite, then the other directions); none holds -> dropped.
_DIRECTIONAL = ["left_of", "right_of", "above", "below"]
_REPLACEMENTS = {
    "left_of": ["right_of", "above", "below"], "right_of": ["left_of", "above", "below"],
    "above": ["below", "left_of", "right_of"], "below": ["above", "left_of", "right_of"],
    "on": ["above", *_DIRECTIONAL], "under": ["below", *_DIRECTIONAL], "next_to": ["near", *_DIRECTIONAL],
    "near": _DIRECTIONAL, "in_front_of": ["behind"], "behind": ["in_front_of"], "inside": ["near"], "between": [],
}


def _recheck(s: _State, changed: list[str]) -> None:
    """Update or drop the changed objects' relations that no longer hold (see module doc)."""
    boxes = {o.id: tuple(o.box) for o in s.plan.objects}
    out: list[PlanRelation] = []
    for r in s.plan.relations:
        if not {r.subject, r.object, r.object2} & set(changed):
            out.append(r)
            continue
        sb, ob = boxes[r.subject], boxes[r.object]
        o2 = boxes[r.object2] if r.object2 else None
        if relation_holds(r.predicate, sb, ob, o2):
            out.append(r)
            continue
        repl = None
        for cand in _REPLACEMENTS[r.predicate]:
            if relation_holds(cand, sb, ob, None):
                repl = PlanRelation(subject=r.subject, predicate=cand, object=r.object)
                break
        if repl is not None and repl not in out:
            out.append(repl)
            s.notes.append(f"'{relation_text(r)}' no longer holds; updated to '{relation_text(repl)}'")
        else:
            s.notes.append(f"'{relation_text(r)}' no longer holds; dropped it")
    s.plan.relations = out
    _recheck_placements(s, changed)


def _recheck_placements(s: _State, changed: list[str]) -> None:
    """Drop the regions and depths that a direct change broke: the changed objects' own, or, when a
    background object now sits lower than a changed foreground one, the foreground's depth."""
    for _ in range(2):
        boxes = {o.id: tuple(o.box) for o in s.plan.objects}
        broken = check_placements(boxes, s.plan.objects, s.plan.canvas)
        if not broken:
            return
        for v in broken:
            p = v.relation
            culprits = [p] if p.subject in changed else [
                q for q in placements(s.obj(i) for i in changed) if q.value == "foreground"]
            for q in culprits:
                if getattr(s.obj(q.subject), q.kind) is not None:
                    _forget(s, q)
                    s.notes.append(f"'{q}' no longer holds; dropped it")


# --------------------------------------------------------------------------
# Text: the prompt a plan now describes, and the context a planner sees
# --------------------------------------------------------------------------

_PRED_WORDS = {"left_of": "to the left of", "right_of": "to the right of", "above": "above", "below": "below",
               "on": "on", "under": "under", "in_front_of": "in front of", "behind": "behind",
               "next_to": "next to", "near": "near", "inside": "inside", "between": "between"}


def describe(plan: ScenePlan) -> str:
    """A prompt for the edited plan: each group once, in object order, then its relations.

    The renderer finds an object's tokens by its name in this text, so every
    group's phrase comes before any relation mentions it again.
    """
    groups: dict[str, list[PlanObject]] = {}
    for o in plan.objects:
        groups.setdefault(o.group or o.id, []).append(o)
    parts = []
    for members in groups.values():
        o = members[0]
        if len(members) == 1:
            parts.append(o.phrase)
        else:
            words = " ".join([*o.attributes, pluralize(o.name)])
            parts.append(f"{_NUMBER.get(len(members), str(len(members)))} {words}")
    text = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + f" and {parts[-1]}" if parts else ""
    gid = {o.id: o.group or o.id for o in plan.objects}
    label = {g: _label(m, groups) for g, m in groups.items()}
    seen, clauses = set(), []
    for r in plan.relations:
        key = (gid.get(r.subject), r.predicate, gid.get(r.object), gid.get(r.object2) if r.object2 else None)
        if key in seen or None in key[:3] or key[0] == key[2]:
            continue
        seen.add(key)
        tail = f" and {label[key[3]]}" if key[3] else ""
        clauses.append(f"{label[key[0]]} {_PRED_WORDS[r.predicate]} {label[key[2]]}{tail}")
    for g, members in groups.items():  # "the cat in the top right corner", "the dog in the foreground"
        where = [_WHERE.get(p.value, f"in the {p.value}") for p in placements(members[:1])]
        if where:
            clauses.append(f"{label[g]} {' and '.join(where)}")
    if clauses:
        text += "; " + ", ".join(clauses)
    if plan.background:
        text += f", {plan.background}" if text else plan.background
    return text


_WHERE = {"left": "on the left", "right": "on the right", "top": "at the top", "bottom": "at the bottom",
          "center": "in the center", "top_left": "in the top left corner", "top_right": "in the top right corner",
          "bottom_left": "in the bottom left corner", "bottom_right": "in the bottom right corner"}
_NUMBER = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight", 9: "nine", 10: "ten"}


def _label(members: list[PlanObject], groups: dict[str, list[PlanObject]]) -> str:
    o = members[0]
    same_name = sum(1 for m in groups.values() if m[0].name == o.name) > 1
    noun = o.name if len(members) == 1 else pluralize(o.name)
    return "the " + " ".join([*(o.attributes if same_name else []), noun])


def edit_context(plan: ScenePlan, last_targets: list[str] | None = None, can_undo: bool = False,
                 can_redo: bool = False) -> dict:
    """What a planner needs to parse an instruction against the current scene (JSON-able)."""
    return {
        "plan": plan.model_dump(mode="json"),
        "last_targets": list(last_targets or []),
        "can_undo": can_undo,
        "can_redo": can_redo,
    }

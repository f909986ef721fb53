"""Object phrase -> token positions in the encoded prompt, through character offsets.

Published guidance code assumes one token per word (word index + 1 for the
start token). That breaks on words the tokenizer splits ("catnip" -> "cat",
"nip"), on repeated words ("a dog and a dog") and after truncation at the text
encoder's length. Here every group (``PlanObject.group``; instances of one group
share their tokens) is first located as a character span of the text, then the
span becomes the positions of the tokens whose character offsets overlap it.

Positions count the start token as 0, so they index the encoder's sequence (and
the last axis of cross-attention maps) directly.

Entry point ``plan_tokens`` (= ``locate_objects`` + ``token_indices`` -> ``TokenMap``):
the text may change - groups the prompt does not mention get ", <phrase>"
appended, and groups cut off by truncation are moved to the front of the text
(``fallback="front"``; ``"none"`` leaves them unguided). Each change comes with a
warning. Encode ``TokenMap.text``, not the plan's prompt.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from plan_and_render.scene import PlanObject, ScenePlan
from plan_and_render.vocab import pluralize, singular_word

Span = tuple[int, int]
_WORD = re.compile(r"\w+")


@dataclass
class TokenMap:
    """Result of ``token_indices``.

    text: the text to encode (may differ from the input when the fallback moved phrases).
    groups: group key -> token positions (start token = 0); ``[]`` when the group is not guided.
    spans: group key -> (start, end) character span in ``text`` that the positions cover.
    warnings: one line per group that was moved, truncated or not found.
    n_tokens: start + kept content tokens + end token, i.e. the index of the first padding
        token (``last_index = n_tokens - 1`` is the end-of-text token).
    """

    text: str
    groups: dict[str, list[int]]
    spans: dict[str, Span] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    n_tokens: int = 0


# ---------------------------------------------------------------------------
# 1. groups -> character spans
# ---------------------------------------------------------------------------

def group_key(obj: PlanObject) -> str:
    """The key instances share tokens by: ``group`` when set, else ``name`` (so "three apples"
    without group fields still shares one "apples" token)."""
    return obj.group or obj.name


def plan_groups(objects: Iterable[PlanObject]) -> dict[str, list[PlanObject]]:
    """Group key -> its instances, in order of first appearance."""
    out: dict[str, list[PlanObject]] = {}
    for o in objects:
        out.setdefault(group_key(o), []).append(o)
    return out


def _word_matches(word: str, target: str) -> bool:
    """``word`` is ``target`` or one of its plurals (case-insensitive)."""
    w, t = word.lower(), target.lower()
    return w == t or singular_word(w) == t or w == pluralize(t)


def find_name(text: str, name: str, taken: Sequence[Span] = (), start: int = 0) -> Span | None:
    """First span of ``name`` (whole words, case-insensitive, head noun singular or plural)
    in ``text[start:]`` that overlaps none of the ``taken`` spans; None when absent.

    "three birds" matches name "bird"; "catnip" does not match "cat".
    """
    want = name.lower().split()
    if not want:
        return None
    words = [m for m in _WORD.finditer(text) if m.start() >= start]
    n = len(want)
    for i in range(len(words) - n + 1):
        win = words[i:i + n]
        if [m.group().lower() for m in win[:-1]] != want[:-1] or not _word_matches(win[-1].group(), want[-1]):
            continue
        s, e = win[0].start(), win[-1].end()
        if any(s < te and ts < e for ts, te in taken):
            continue
        return s, e
    return None


def locate_groups(text: str, groups: Mapping[str, Sequence[PlanObject]]) -> dict[str, Span]:
    """Character span of each group's ``name`` in ``text``; groups not found are left out.

    Longer names claim their words first (so "teddy bear" is not taken by a group "bear"),
    and groups with the same name take successive occurrences in plan order
    ("a dog and a dog" -> first dog, second dog).
    """
    order = sorted(groups, key=lambda g: -len(groups[g][0].name.split()))  # stable: plan order within a length
    spans: dict[str, Span] = {}
    for g in order:
        sp = find_name(text, groups[g][0].name, list(spans.values()))
        if sp is not None:
            spans[g] = sp
    return {g: spans[g] for g in groups if g in spans}


def _phrase_span(phrase: str, name: str, offset: int) -> Span:
    sp = find_name(phrase, name)
    s, e = sp if sp is not None else (0, len(phrase))
    return s + offset, e + offset


def locate_objects(plan: ScenePlan, text: str | None = None,
                   append_missing: bool = True) -> tuple[str, dict[str, Span]]:
    """The text to encode and the character span of every group of ``plan``.

    text: defaults to the plan's prompt. A group whose name (singular or plural, case-insensitive,
        n-th occurrence for repeated names) is not in the text gets ", <phrase>" appended, with
        the phrase of its first instance, when ``append_missing``; otherwise it has no span.
    Returns (text, {group key: (start, end)}), spans in plan order.
    """
    text = plan.prompt.strip() if text is None else text
    groups = plan_groups(plan.objects)
    spans = locate_groups(text, groups)
    if append_missing:
        for g, objs in groups.items():
            if g in spans:
                continue
            phrase = (objs[0].phrase or objs[0].name).strip()
            text = f"{text}, {phrase}" if text else phrase
            spans[g] = _phrase_span(phrase, objs[0].name, len(text) - len(phrase))
    return text, {g: spans[g] for g in groups if g in spans}


# ---------------------------------------------------------------------------
# 2. character spans -> token positions
# ---------------------------------------------------------------------------

def _max_length(tokenizer, max_length: int | None) -> int:
    if max_length is not None:
        return max_length
    m = getattr(tokenizer, "model_max_length", 77)
    return m if isinstance(m, int) and 0 < m < 100_000 else 77


def _fast_positions(tokenizer, text: str, spans: Mapping[str, Span]) -> tuple[dict[str, list[int]], int]:
    enc = tokenizer(text, return_offsets_mapping=True, truncation=False)
    offsets = enc["offset_mapping"]
    out = {g: [k for k, (a, b) in enumerate(offsets) if b > a and a < e and b > s] for g, (s, e) in spans.items()}
    return out, len(enc["input_ids"])


def _slow_positions(tokenizer, text: str, spans: Mapping[str, Span]) -> tuple[dict[str, list[int]], int]:
    """Without offsets: count the tokens of the text before and up to each span.

    Exact for tokenizers that split on whitespace and punctuation first (CLIP, GPT-2 style),
    since spans start and end at word boundaries.
    """
    def n(s: str) -> int:
        return len(tokenizer(s, add_special_tokens=False)["input_ids"])

    first = 1 if n("x") < len(tokenizer("x")["input_ids"]) else 0  # a start token shifts positions
    out = {g: list(range(first + n(text[:s]), first + n(text[:e]))) for g, (s, e) in spans.items()}
    return out, len(tokenizer(text)["input_ids"])


def _positions(tokenizer, text: str, spans: Mapping[str, Span], offsets: bool | None):
    if offsets is not False and getattr(tokenizer, "is_fast", True):
        try:
            return _fast_positions(tokenizer, text, spans)
        except (NotImplementedError, ValueError, TypeError, KeyError):
            if offsets:
                raise
    return _slow_positions(tokenizer, text, spans)


def token_indices(tokenizer, text: str, spans: Mapping[str, Span], max_length: int | None = None,
                  fallback: str = "front", offsets: bool | None = None,
                  labels: Mapping[str, str] | None = None) -> TokenMap:
    """Token positions of each span, keeping only tokens that survive truncation.

    tokenizer: a Hugging Face tokenizer; fast ones give character offsets
        (``return_offsets_mapping``), others fall back to counting tokens of text prefixes.
    spans: group key -> (start, end) character span in ``text`` (from ``locate_objects``).
    max_length: the encoder's length (default ``tokenizer.model_max_length``, 77 for CLIP);
        content tokens at positions >= max_length - 1 are cut (the end token takes the last slot).
    fallback: for groups with a token cut off -
        "front": re-encode once with their phrases (the span text) moved to the front of the
            text, "<phrase>, <phrase>, <text>"; groups still cut after that are not guided;
        "none": not guided (no tokens) and a warning.
    offsets: force (True) or forbid (False) the offset path; None = use it when available.
    labels: group key -> how to name it in warnings (default: the key).
    """
    limit = _max_length(tokenizer, max_length)
    name = (lambda g: (labels or {}).get(g, g))
    pos, total = _positions(tokenizer, text, spans, offsets)
    cut = [g for g, p in pos.items() if any(k >= limit - 1 for k in p)]
    warnings: list[str] = []
    spans = dict(spans)
    if cut and fallback == "front":
        moved = [text[spans[g][0]:spans[g][1]] for g in cut]
        prefix = ", ".join(moved) + ", "
        new_spans: dict[str, Span] = {}
        at = 0
        for g, m in zip(cut, moved):
            new_spans[g] = (at, at + len(m))
            at += len(m) + 2
        for g, (s, e) in spans.items():
            if g not in new_spans:
                new_spans[g] = (s + len(prefix), e + len(prefix))
        text, spans = prefix + text, {g: new_spans[g] for g in spans}
        pos, total = _positions(tokenizer, text, spans, offsets)
        warnings += [f"{name(g)}: its words fell past the text encoder's {limit} tokens; "
                     f"moved to the front of the prompt" for g in cut]
        cut = [g for g, p in pos.items() if any(k >= limit - 1 for k in p)]
    elif fallback not in ("front", "none"):
        raise ValueError(f"unknown fallback {fallback!r}; use 'front' or 'none'")
    for g in cut:
        pos[g] = []
        warnings.append(f"{name(g)}: its words fall past the text encoder's {limit} tokens; not guided")
    for g, p in pos.items():
        if not p and g not in cut:
            warnings.append(f"{name(g)}: no token covers its span; not guided")
    return TokenMap(text=text, groups=pos, spans=spans, warnings=warnings, n_tokens=min(total, limit))


def plan_tokens(tokenizer, plan: ScenePlan, text: str | None = None, max_length: int | None = None,
                fallback: str = "front") -> TokenMap:
    """``locate_objects`` then ``token_indices``: everything a pipeline needs for one plan.

    Groups whose name the text lacks get their phrase appended, with a warning; groups cut
    by truncation get the ``fallback`` (see ``token_indices``), with a warning.
    """
    original = plan.prompt.strip() if text is None else text
    groups = plan_groups(plan.objects)
    labels = {g: _label(objs) for g, objs in groups.items()}
    found = locate_groups(original, groups)
    text, spans = locate_objects(plan, original)
    tm = token_indices(tokenizer, text, spans, max_length, fallback, labels=labels)
    appended = [f"{labels[g]}: '{groups[g][0].name}' is not in the prompt; appended "
                f"'{(groups[g][0].phrase or groups[g][0].name).strip()}' to the encoded text"
                for g in groups if g not in found]
    tm.warnings = appended + tm.warnings
    return tm


def _label(objs: Sequence[PlanObject]) -> str:
    return "object " + ", ".join(repr(o.id) for o in objs)


# ---------------------------------------------------------------------------
# 3. several text encoders in one sequence (SD 3: CLIP then T5; FLUX: T5) -> one token axis
# ---------------------------------------------------------------------------

@dataclass
class JointTokens:
    """Token positions of every group in a transformer's text sequence, and the axis guidance reads.

    The text sequence is the encoders' parts side by side (SD 3: 77 CLIP tokens then the T5 tokens;
    FLUX: the T5 tokens). Guidance losses expect the UNet's axis: a special token at 0, the prompt's
    tokens at 1 .. n_tokens - 2, a special token at n_tokens - 1, the rest after. ``order`` lists the
    real sequence positions in that order (the first non-prompt position, every part's prompt tokens,
    the next non-prompt position, then all the others), so ``maps[..., order]`` puts any map of the
    sequence on that axis, and ``groups`` holds positions on it: a word has one position per part
    that encodes it (CLIP and T5 alike).

    text: the text every part encodes; real: group -> real sequence positions; parts: per part
    (offset in the sequence, length, TokenMap); warnings: of every part.
    """

    text: str
    order: list[int]
    groups: dict[str, list[int]]
    n_tokens: int
    real: dict[str, list[int]]
    parts: list[tuple[int, int, TokenMap]]
    warnings: list[str] = field(default_factory=list)

    @property
    def length(self) -> int:
        return len(self.order)


def _content(tokenizer, tm: TokenMap) -> list[int]:
    """Positions of the prompt's tokens in one part (special tokens and padding excluded)."""
    ids = tokenizer(tm.text, truncation=True, max_length=_max_length(tokenizer, None))["input_ids"]
    special = set(tokenizer.all_special_ids)
    marks = {getattr(tokenizer, f"{k}_token_id", None) for k in ("bos", "eos", "pad", "cls", "sep")}
    if tokenizer.unk_token_id not in marks:  # an unknown word is still a word (CLIP's unknown is its end token)
        special.discard(tokenizer.unk_token_id)
    return [k for k, i in enumerate(ids[:tm.n_tokens]) if i not in special]


def joint_tokens(plan: ScenePlan, text: str, parts: Sequence[tuple[object, int]]) -> JointTokens:
    """Map the plan's groups in every part of a joint text sequence.

    parts: (tokenizer, length) per encoder in sequence order; the tokenizer is None for a part with
    no encoder (SD 3 without T5: zeros that carry no words). The first part decides the text (its
    fallback may append or move phrases, ``plan_tokens``); the others encode that same text, with no
    further change, and keep what fits their length (a word cut from one part may live in another).
    Each part keeps at least two non-prompt positions, so the axis always has its two special slots.
    """
    first_tok, first_len = parts[0]
    head = plan_tokens(first_tok, plan, text, min(first_len, _max_length(first_tok, None)))
    maps, offset, contents = [], 0, []
    for k, (tok, length) in enumerate(parts):
        if tok is None:
            maps.append((offset, length, TokenMap(head.text, {}, n_tokens=0)))
        else:
            tm = head if k == 0 else token_indices(tok, head.text, head.spans, min(length, _max_length(tok, None)) - 1,
                                                   fallback="none", labels=None)
            maps.append((offset, length, tm))
            keep = [p for p in _content(tok, tm) if p < length - 2 or k == 0]
            contents += [offset + p for p in keep]
        offset += length
    others = [p for p in range(offset) if p not in set(contents)]
    order = [others[0], *contents, *others[1:]]
    where = {p: v for v, p in enumerate(order)}
    real = {g: [off + p for off, length, tm in maps for p in tm.groups.get(g, []) if where.get(off + p, 0) > 0
                and where[off + p] < len(contents) + 1] for g in head.groups}
    groups = {g: sorted(where[p] for p in ps) for g, ps in real.items()}
    warnings = list(head.warnings)
    for _, _, tm in maps[1:]:
        warnings += [w for w in tm.warnings if w not in warnings and "not guided" not in w]
    return JointTokens(head.text, order, groups, len(contents) + 2, real, maps, warnings)

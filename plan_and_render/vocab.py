"""Words the planner understands without a model.

One place for the predicate vocabulary and its phrasings, the canvas regions
and depth words of plan-format.md, number words, size words, colours,
materials and English noun inflection, so the language-model backends, the
normaliser, the rules backend and the benchmarks agree on what "on top of",
"a dozen" or "potted plants" mean. Pure data and pure functions; this module
imports nothing from the project (scene.py imports it).

The closed word sets (``Predicate``, ``Region``, ``Depth``) are written once, as
``Literal`` types, and their tuples of names are derived from them. They live
here rather than in scene.py because this module needs them too (phrasings map
onto predicates, ``ORDER_AXES`` is keyed by them) and must not import scene.py,
which imports this module: a second list would be the only way around that.
"""

from __future__ import annotations

import re
from typing import Literal, get_args

Predicate = Literal[
    "left_of", "right_of", "above", "below", "on", "under",
    "in_front_of", "behind", "next_to", "near", "inside", "between",
]
PREDICATE_NAMES: tuple[str, ...] = get_args(Predicate)

# "two cats next to each other" relates a group to itself; only these predicates can
SYMMETRIC_PREDICATES = frozenset({"next_to", "near"})

# Where on the canvas the prompt puts an object ("in the top left corner"), in thirds of width and height
Region = Literal["left", "right", "top", "bottom", "center", "top_left", "top_right", "bottom_left", "bottom_right"]
REGIONS: tuple[str, ...] = get_args(Region)

# "a dog in the foreground", "mountains in the far background"
Depth = Literal["foreground", "background"]
DEPTHS: tuple[str, ...] = get_args(Depth)

# Region -> (column, row) of the canvas thirds its box centre lies in: 0 left / top, 1 middle,
# 2 right / bottom, None where the region says nothing about that axis (plan-format.md).
REGION_THIRDS: dict[str, tuple[int | None, int | None]] = {
    "left": (0, None), "right": (2, None), "top": (None, 0), "bottom": (None, 2), "center": (1, 1),
    "top_left": (0, 0), "top_right": (2, 0), "bottom_left": (0, 2), "bottom_right": (2, 2),
}
# Side words -> (axis, third): "h" columns, "v" rows, None the middle of whichever axis is left open
SIDE_WORDS: dict[str, tuple[str | None, int]] = {
    "left": ("h", 0), "right": ("h", 2), "top": ("v", 0), "bottom": ("v", 2), "upper": ("v", 0),
    "lower": ("v", 2), "middle": (None, 1), "center": (None, 1), "centre": (None, 1), "left-hand": ("h", 0),
    "right-hand": ("h", 2), "leftmost": ("h", 0), "rightmost": ("h", 2), "topmost": ("v", 0),
    "bottommost": ("v", 2), "central": (None, 1), "high": ("v", 0), "low": ("v", 2),
}
# Depth words (a model or a person may write any of them) -> the Depth they mean
DEPTH_WORDS: dict[str, str] = {
    "foreground": "foreground", "fore": "foreground", "front": "foreground", "close": "foreground",
    "close up": "foreground", "up close": "foreground", "near": "foreground", "nearby": "foreground",
    "background": "background", "back": "background", "far": "background", "far away": "background",
    "distance": "background", "distant": "background", "far off": "background", "far background": "background",
}


# Phrases that state a depth outright (DEPTH_WORDS also holds words such as "near", which mostly relate objects)
DEPTH_CUES: dict[str, tuple[str, ...]] = {
    "foreground": ("foreground", "up close", "close up", "close to the camera", "near the camera", "at the front"),
    "background": ("background", "distance", "distant", "far away", "far off", "horizon", "in the back",
                   "at the back"),
}


def region_from_thirds(column: int | None, row: int | None) -> str | None:
    """The region whose thirds are ``column`` / ``row`` (None: unconstrained). A middle third on
    one axis only says nothing ("high up in the middle" is ``top``); both middle is ``center``."""
    col = column if column in (0, 2) else None
    r = row if row in (0, 2) else None
    if col is None and r is None:
        return "center" if 1 in (column, row) else None
    for name, thirds in REGION_THIRDS.items():
        if thirds == (col, r):
            return name
    return None  # pragma: no cover - every combination of 0/2/None is a region


def canonical_region(text: object) -> str | None:
    """The ``Region`` a phrasing means ("upper-left corner", "Top Right", "the middle",
    "left side of the image" -> ``top_left``, ``top_right``, ``center``, ``left``), else None."""
    if not isinstance(text, str):
        return None
    t = _clean_phrase(text)
    if t.replace(" ", "_") in REGIONS:
        return t.replace(" ", "_")
    column = row = None
    middle = False
    for word in t.replace("dead ", "").split():
        axis, third = SIDE_WORDS.get(word, ("", -1))
        if axis == "h":
            column = third
        elif axis == "v":
            row = third
        elif axis is None:
            middle = True
    if column is None and row is None and not middle:
        return None
    return region_from_thirds(column if column is not None else (1 if middle else None),
                              row if row is not None else (1 if middle else None))


_FRAME_WORDS = frozenset("image picture photo photograph frame canvas scene view painting composition shot".split())
_SIDE_TAILS = frozenset("side hand edge part corner half area region".split())


def _absolute_side_words(text: str) -> set[str]:
    """The side words of ``text`` that say where on the canvas, not beside what: "on the left"
    and "the left side of the picture" count, "left of the dog", "to its left", "on top of" do not."""
    words = _clean_phrase(text).split()
    out = set()
    for i, w in enumerate(words):
        if w not in SIDE_WORDS or (i and words[i - 1] in ("its", "their", "his", "her")):
            continue
        j = i + 1
        while j < len(words) and words[j] in _SIDE_TAILS:
            j += 1
        if j < len(words) and words[j] in ("of", "than"):
            rest = [x for x in words[j + 1:j + 3] if x not in ("the", "this", "a", "an")]
            if not rest or rest[0] not in _FRAME_WORDS:
                continue
        out.add(w)
    return out


def stated_region(region: str, text: str) -> bool:
    """Does ``text`` have the side words ``region`` needs ("top_left": top or upper, and left), said of
    the canvas rather than of another object? A language model's region is kept only when it is."""
    words = _absolute_side_words(text)
    column, row = REGION_THIRDS[region]
    for axis, third in (("h", column), ("v", row)):
        if third is None:
            continue
        if not any(SIDE_WORDS[w] == (axis, third) or (third == 1 and SIDE_WORDS[w][0] is None)
                   for w in words if w in SIDE_WORDS):
            return False
    return True


def stated_depth(depth: str, text: str) -> bool:
    """Does ``text`` state ``depth`` ("in the distance", "up close in the foreground")?"""
    t = f" {_clean_phrase(text)} "
    return any(f" {cue} " in t or f" {cue}" in t and cue.isalpha() for cue in DEPTH_CUES.get(depth, ()))


def canonical_depth(text: object) -> str | None:
    """The ``Depth`` a phrasing means ("in the far background", "up close", "distance"), else None."""
    if not isinstance(text, str):
        return None
    t = _clean_phrase(text)
    t = re.sub(r"^(?:in|at|into|to|towards?)\s+(?:the\s+)?(?:very\s+)?", "", t)
    if t in DEPTH_WORDS:
        return DEPTH_WORDS[t]
    hits = {DEPTH_WORDS[w] for w in t.split() if w in DEPTH_WORDS and w not in ("near", "close", "front", "back")}
    return hits.pop() if len(hits) == 1 else None

# predicate -> (axis, flip): each of these relations orders its two objects along
# an axis, edge u -> v meaning "u comes first": further left (x), higher up (y),
# further back (depth), contained in (containment); flip means the edge runs
# object -> subject. A cycle on any axis can never hold, whatever the boxes.
ORDER_AXES: dict[str, tuple[str, bool]] = {
    "left_of": ("x", False),
    "right_of": ("x", True),
    "above": ("y", False),
    "on": ("y", False),
    "below": ("y", True),
    "under": ("y", True),
    "behind": ("depth", False),
    "in_front_of": ("depth", True),
    "inside": ("containment", False),
}

# Phrase (lower case, single spaces, no article) -> canonical predicate, with the
# subject first: "a cat <phrase> a dog". Reversed constructions ("to its left")
# are handled by the rules parser, not here.
PREDICATE_PHRASES: dict[str, str] = {
    # left / right
    "left of": "left_of", "to the left of": "left_of", "on the left of": "left_of",
    "on the left side of": "left_of", "to the left side of": "left_of", "left": "left_of",
    "further left than": "left_of", "farther left than": "left_of", "more to the left than": "left_of",
    "leftward of": "left_of", "at the left of": "left_of", "on left of": "left_of", "left side of": "left_of",
    "right of": "right_of", "to the right of": "right_of", "on the right of": "right_of",
    "on the right side of": "right_of", "to the right side of": "right_of", "right": "right_of",
    "further right than": "right_of", "farther right than": "right_of", "more to the right than": "right_of",
    "rightward of": "right_of", "at the right of": "right_of", "on right of": "right_of", "right side of": "right_of",
    # above / below
    "above": "above", "over": "above", "higher than": "above", "up above": "above", "overhead of": "above",
    "hovering over": "above", "hovering above": "above", "flying over": "above", "flying above": "above",
    "hanging over": "above", "hanging above": "above", "floating above": "above", "floating over": "above",
    "further up than": "above", "top of": "above", "at the top of": "above",
    "below": "below", "lower than": "below", "further down than": "below", "down below": "below",
    "at the bottom of": "below", "bottom of": "below", "on the bottom of": "below", "beneath and below": "below",
    # on / under
    "on": "on", "on top of": "on", "onto": "on", "upon": "on", "atop": "on", "sitting on": "on",
    "standing on": "on", "lying on": "on", "laying on": "on", "resting on": "on", "placed on": "on",
    "perched on": "on", "sits on": "on", "stands on": "on", "on the top of": "on", "on to": "on",
    "under": "under", "underneath": "under", "beneath": "under", "below and touching": "under",
    "under the": "under", "underneath of": "under", "sitting under": "under", "lying under": "under",
    "hidden under": "under",
    # depth
    "in front of": "in_front_of", "before": "in_front_of", "ahead of": "in_front_of", "front of": "in_front_of",
    "in the front of": "in_front_of", "in_front": "in_front_of",
    "behind": "behind", "in back of": "behind", "at the back of": "behind", "back of": "behind",
    "in the back of": "behind", "hidden behind": "behind", "after": "behind", "hidden by": "behind",
    "obscured by": "behind", "blocked by": "behind", "partially hidden by": "behind", "covered by": "behind",
    # adjacency
    "next to": "next_to", "beside": "next_to", "besides": "next_to", "alongside": "next_to",
    "by the side of": "next_to", "side by side with": "next_to", "adjacent to": "next_to",
    "at the side of": "next_to", "to the side of": "next_to", "nextto": "next_to", "on side of": "next_to",
    "on the side of": "next_to", "by the side": "next_to",
    "near": "near", "near to": "near", "close to": "near", "nearby": "near", "by": "near",
    "around": "near", "close by": "near", "not far from": "near", "in the vicinity of": "near",
    # containment
    "inside": "inside", "in": "inside", "within": "inside", "inside of": "inside", "into": "inside",
    "contained in": "inside", "in the middle of": "inside", "sitting in": "inside", "enclosed in": "inside",
    # between
    "between": "between", "in between": "between", "in the middle between": "between", "amid": "between",
    "among": "between", "amongst": "between", "in between of": "between",
}

_LEADING_NOISE = re.compile(r"^(?:is|are|be|being|was|were|placed|located|positioned|sits|sitting|stands|standing)\s+")


def _clean_phrase(text: str) -> str:
    """``Left-Of``, ``left_of``, ``LeftOf`` -> ``left of``."""
    t = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", text.strip())  # camelCase
    t = re.sub(r"[_\-]+", " ", t.lower())
    t = re.sub(r"[^a-z ]+", " ", t)
    return " ".join(t.split())


def canonical_predicate(text: str) -> str | None:
    """The vocabulary predicate a phrasing means ("on top of" -> "on"), or None.

    Accepts the canonical names, their spacing variants (``left-of``,
    ``LeftOf``) and the phrasings of ``PREDICATE_PHRASES``; a leading copula
    ("is above") is ignored.
    """
    if not isinstance(text, str):
        return None
    t = _clean_phrase(text)
    if not t:
        return None
    snake = t.replace(" ", "_")
    if snake in PREDICATE_NAMES:
        return snake
    for cand in (t, _LEADING_NOISE.sub("", t)):
        if cand in PREDICATE_PHRASES:
            return PREDICATE_PHRASES[cand]
        if cand.replace(" ", "_") in PREDICATE_NAMES:
            return cand.replace(" ", "_")
    return None


# --------------------------------------------------------------------------
# Numbers
# --------------------------------------------------------------------------

_UNITS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
    "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19,
}
_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90}

# Multi-word and special quantity phrases, longest first when matched.
COUNT_PHRASES: dict[str, int] = {
    "half a dozen": 6, "half dozen": 6, "a dozen": 12, "one dozen": 12, "dozen": 12, "two dozen": 24,
    "a pair of": 2, "pair of": 2, "one pair of": 2, "a couple of": 2, "couple of": 2, "a couple": 2,
    "a trio of": 3, "trio of": 3, "a single": 1, "single": 1, "a lone": 1, "lone": 1, "one single": 1,
    "twin": 2, "twins": 2, "both": 2, "a duo of": 2, "duo of": 2,
    "a": 1, "an": 1, "another": 1, "one": 1,
}
# Words meaning "some, unspecified": the rules backend picks a default.
VAGUE_COUNTS: dict[str, int] = {
    "a few": 3, "few": 3, "several": 3, "some": 2, "a group of": 4, "group of": 4, "many": 5,
    "a bunch of": 4, "bunch of": 4, "lots of": 5, "a lot of": 5, "multiple": 3, "various": 3, "numerous": 5,
    "a herd of": 4, "herd of": 4, "a flock of": 5, "flock of": 5, "a pile of": 4, "a row of": 4, "row of": 4,
    "a line of": 3, "line of": 3, "a queue of": 3,
    "a stack of": 3, "a set of": 3, "a pack of": 4, "a team of": 4, "a number of": 3, "plenty of": 5,
    "a school of": 5, "school of": 5, "a swarm of": 5, "swarm of": 5, "a pod of": 3, "pod of": 3,
    "a crowd of": 5, "a cluster of": 3, "cluster of": 3, "a handful of": 3, "a gaggle of": 4, "a litter of": 4,
}


def parse_count(text: str) -> int | None:
    """A quantity word or phrase as a number: "7", "seven", "twenty-one",
    "a dozen", "half a dozen", "a pair of", "twin", "a couple of" -> int.

    Returns None for text that is not a definite quantity (vague words such as
    "several" are in ``VAGUE_COUNTS`` and also give None here).
    """
    if not isinstance(text, str):
        return None
    t = " ".join(text.lower().replace("-", " ").split())
    if not t:
        return None
    if t.isdigit():
        return int(t)
    if t in COUNT_PHRASES:
        return COUNT_PHRASES[t]
    if t in _UNITS:
        return _UNITS[t]
    if t in _TENS:
        return _TENS[t]
    parts = t.split()
    if len(parts) == 2 and parts[0] in _TENS and parts[1] in _UNITS and 0 < _UNITS[parts[1]] < 10:
        return _TENS[parts[0]] + _UNITS[parts[1]]
    if len(parts) == 2 and parts[0] in ("a", "one") and parts[1] == "hundred":
        return 100
    return None


# --------------------------------------------------------------------------
# Adjectives
# --------------------------------------------------------------------------

COLOURS: frozenset[str] = frozenset(
    """red green blue yellow orange purple pink brown black white gray grey silver gold golden beige tan
    cyan magenta violet indigo turquoise teal maroon navy crimson scarlet lavender lilac olive lime khaki
    ivory cream amber bronze copper burgundy coral peach mint charcoal emerald ruby azure multicolored
    multicoloured colorful colourful rainbow blond blonde""".split()
)
MATERIALS: frozenset[str] = frozenset(
    """wooden wood metal metallic steel iron glass plastic stone marble brick ceramic porcelain paper
    leather woolen wool cotton silk rubber concrete golden silver crystal velvet denim straw wicker
    clay cardboard furry fluffy""".split()
)
# Size word -> the SizeHint of scene.py.
SIZE_WORDS: dict[str, str] = {
    "tiny": "tiny", "minuscule": "tiny", "miniature": "tiny", "mini": "tiny", "teeny": "tiny",
    "small": "small", "little": "small", "smaller": "small", "short": "small", "baby": "small",
    "medium": "medium", "medium-sized": "medium", "mid-sized": "medium", "average-sized": "medium",
    "large": "large", "big": "large", "bigger": "large", "larger": "large", "tall": "large", "long": "large",
    "huge": "huge", "giant": "huge", "enormous": "huge", "gigantic": "huge", "massive": "huge", "immense": "huge",
    "colossal": "huge", "vast": "huge",
}
# Other common descriptive adjectives the parser may strip from a name into attributes.
DESCRIPTIVE: frozenset[str] = frozenset(
    """old young new ancient modern vintage antique shiny dirty clean wet dry striped spotted dotted
    plaid checkered cute fat thin round square rectangular empty full broken open closed sleeping
    happy sad angry cheerful bright dark light pale fresh ripe rotten tasty delicious beautiful pretty
    ugly fancy simple elegant cozy cosy rusty sleek soft hard heavy smooth rough wild fierce friendly
    lonely lone realistic shiny sparkling glowing empty wild blurry hazy misty faint fluffy furry muddy dusty
    sunny snowy rainy foggy busy quiet crowded tiny distant""".split()
)
ADJECTIVES: frozenset[str] = COLOURS | MATERIALS | frozenset(SIZE_WORDS) | DESCRIPTIVE

# Words of how a picture is made or shot, not of what is in it: media, styles, camera and
# quality tags ("a watercolor of...", "photo, 35mm, ...", "soft lighting, shallow depth of field").
# A tag or a leading "<these words> of" names no object; a medium used as a thing ("a painting
# on the wall") still is one (see the rules parser).
STYLE_WORDS: frozenset[str] = frozenset(
    """photo photos photograph photography photographic picture image shot still film movie cinematic cinema
    render rendering rendered 3d 2d cgi illustration illustrated drawing drawn sketch sketched painting painted
    watercolor watercolour gouache oil acrylic pastel charcoal pencil ink crayon pixel art artwork digital concept
    vector flat isometric anime manga cartoon comic claymation clay stop-motion lowpoly low-poly poly poster
    wallpaper postcard portrait macro closeup close-up close wide angle telephoto fisheye aerial drone tilt-shift
    long exposure polaroid kodak portra fuji fujifilm velvia ektachrome 35mm 50mm 85mm 8k 4k 16k hd hdr uhd ultra
    highly detailed hyperrealistic hyper-realistic photorealistic realistic surreal surrealist minimalist minimal
    vintage retro renaissance baroque impressionist impressionism expressionist style styled lighting light lit
    soft hard moody dramatic studio natural golden hour bokeh blurred blurry depth field shallow sharp focus
    colors colours colour color palette background backdrop pastel vibrant muted travel storybook artstation
    trending masterpiece quality best low high eye level view bird's eye top-down overhead establishing
    tone tones toned grain grainy noir sepia monochrome monochromatic black white and of lens photoreal
    intricate details detail rim ambient cinematography
    unreal engine octane volumetric symmetrical composition frame framed wide-angle full-body headshot
    editorial documentary street candid analog analogue film-still still-life life""".split()
)
# Times of day and light conditions: when a picture is set ("at sunset", "at night"), never a thing
TIME_WORDS: frozenset[str] = frozenset(
    "sunset sunrise dawn dusk night nighttime daytime noon midday midnight twilight daybreak evening morning "
    "afternoon daylight moonlight sundown".split()
)

# Multi-word nouns whose first word must never be read as an adjective or whose
# head word alone means something else ("hot dog" is not a dog).
COMPOUND_NOUNS: frozenset[str] = frozenset(
    """traffic light|fire hydrant|stop sign|parking meter|sports ball|baseball bat|baseball glove|tennis racket
    |wine glass|hot dog|potted plant|dining table|cell phone|teddy bear|hair drier|hair dryer|ice cream
    |light bulb|red panda|red pepper|green pepper|yellow pepper|white board|black board
    |red wine|white wine|blue jay|gold fish|orange juice|paper plane|hot air balloon|christmas tree|palm tree
    |guinea pig|sea lion|sea turtle|big ben|little league|blue whale|white house|green bean|green beans
    |red bull|black widow|golden retriever|silver fish|clean room|light house|dark room
    |parking lot|parking space|bus stop|fruit stand|cake stand|music stand|flower stand|food stand|news stand
    |lemonade stand|night stand|rocking chair|rocking horse|swimming pool|sleeping bag|cutting board
    |frying pan|walking stick|washing machine|fishing rod|computer keyboard|piano keyboard""".replace("\n", "").split("|")
)
# Compounds whose last word is not what they are: a "hot dog" is not a dog.
MISLEADING_HEADS: frozenset[str] = frozenset(
    {"hot dog", "teddy bear", "sea lion", "guinea pig", "red panda", "sea horse", "paper plane", "toy car",
     "prairie dog", "catfish", "dog house", "cat food", "dog food", "horse fly", "fire hydrant"}
)
COMPOUND_NOUNS = frozenset(" ".join(c.split()) for c in COMPOUND_NOUNS)

# MS-COCO categories (the NSR-1K and LMD object vocabulary) and common other names for them.
COCO_CATEGORIES: tuple[str, ...] = tuple(
    """person|bicycle|car|motorcycle|airplane|bus|train|truck|boat|traffic light|fire hydrant|stop sign
    |parking meter|bench|bird|cat|dog|horse|sheep|cow|elephant|bear|zebra|giraffe|backpack|umbrella|handbag
    |tie|suitcase|frisbee|skis|snowboard|sports ball|kite|baseball bat|baseball glove|skateboard|surfboard
    |tennis racket|bottle|wine glass|cup|fork|knife|spoon|bowl|banana|apple|sandwich|orange|broccoli|carrot
    |hot dog|pizza|donut|cake|chair|couch|potted plant|bed|dining table|toilet|tv|laptop|mouse|remote
    |keyboard|cell phone|microwave|oven|toaster|sink|refrigerator|book|clock|vase|scissors|teddy bear
    |hair drier|toothbrush""".replace("\n", "").split("|")
)
COCO_CATEGORIES = tuple(" ".join(c.split()) for c in COCO_CATEGORIES)
ALIASES: dict[str, str] = {
    "bike": "bicycle", "motorbike": "motorcycle", "motor bike": "motorcycle", "scooter": "motorcycle",
    "plane": "airplane", "aeroplane": "airplane", "jet": "airplane", "airliner": "airplane",
    "television": "tv", "tv set": "tv", "television set": "tv", "monitor": "tv",
    "sofa": "couch", "settee": "couch", "table": "dining table", "kitchen table": "dining table",
    "phone": "cell phone", "mobile phone": "cell phone", "cellphone": "cell phone", "smartphone": "cell phone",
    "doughnut": "donut", "fridge": "refrigerator", "plant": "potted plant", "houseplant": "potted plant",
    "pot plant": "potted plant", "potted flower": "potted plant", "hydrant": "fire hydrant",
    "traffic signal": "traffic light", "stoplight": "traffic light", "computer mouse": "mouse",
    "remote control": "remote", "laptop computer": "laptop", "notebook computer": "laptop",
    "hair dryer": "hair drier", "teddy": "teddy bear", "wineglass": "wine glass", "ball": "sports ball",
    "racket": "tennis racket", "racquet": "tennis racket", "tennis racquet": "tennis racket",
    "puppy": "dog", "kitten": "cat", "kitty": "cat", "doggy": "dog", "lamb": "sheep", "calf": "cow",
    "automobile": "car", "mug": "cup", "man": "person", "woman": "person", "boy": "person", "girl": "person",
    "child": "person", "kid": "person", "people": "person", "lady": "person", "guy": "person",
    "microwave oven": "microwave", "toilet bowl": "toilet", "skateboarder": "person",
}


# --------------------------------------------------------------------------
# Inflection (English plural -> singular), hand-written: no dependency
# --------------------------------------------------------------------------

IRREGULAR_PLURALS: dict[str, str] = {
    "people": "person", "persons": "person", "men": "man", "women": "woman", "children": "child",
    "mice": "mouse", "geese": "goose", "feet": "foot", "teeth": "tooth", "oxen": "ox", "lice": "louse",
    "dice": "die", "knives": "knife", "wives": "wife", "lives": "life", "leaves": "leaf", "loaves": "loaf",
    "wolves": "wolf", "shelves": "shelf", "halves": "half", "calves": "calf", "scarves": "scarf",
    "thieves": "thief", "elves": "elf", "hooves": "hoof", "selves": "self", "sheaves": "sheaf",
    "potatoes": "potato", "tomatoes": "tomato", "heroes": "hero", "echoes": "echo", "volcanoes": "volcano",
    "mangoes": "mango", "mosquitoes": "mosquito", "torpedoes": "torpedo", "dominoes": "domino",
    "cacti": "cactus", "fungi": "fungus", "octopi": "octopus", "octopuses": "octopus", "buses": "bus",
    "busses": "bus", "gases": "gas", "lenses": "lens", "canvases": "canvas", "atlases": "atlas",
    "cactuses": "cactus", "walruses": "walrus", "hippopotami": "hippopotamus", "hippos": "hippo",
    "indices": "index", "matrices": "matrix", "vertices": "vertex", "appendices": "appendix",
    "criteria": "criterion", "phenomena": "phenomenon", "bacteria": "bacterium", "data": "datum",
    "axes": "axe", "quizzes": "quiz", "geckos": "gecko", "photos": "photo", "pianos": "piano",
    "radios": "radio", "zoos": "zoo", "kangaroos": "kangaroo", "tacos": "taco", "avocados": "avocado",
    "flamingos": "flamingo", "flamingoes": "flamingo", "burritos": "burrito", "videos": "video",
    "bikinis": "bikini", "dwarves": "dwarf", "dwarfs": "dwarf", "cookies": "cookie", "movies": "movie",
    "ties": "tie", "pies": "pie", "zombies": "zombie", "brownies": "brownie", "hoodies": "hoodie",
    "selfies": "selfie", "calories": "calorie", "rookies": "rookie", "smoothies": "smoothie",
    "lies": "lie", "magpies": "magpie", "collies": "collie", "goalies": "goalie", "budgies": "budgie",
    "yorkies": "yorkie", "beanies": "beanie", "aunties": "auntie", "genies": "genie", "veggies": "veggie",
    "horses": "horse", "houses": "house", "vases": "vase", "cases": "case", "purses": "purse",
    "nurses": "nurse", "roses": "rose", "noses": "nose", "hoses": "hose",
    "glasses": "glass", "dresses": "dress", "crosses": "cross", "tortoises": "tortoise",
    "blouses": "blouse", "mouses": "mouse", "courses": "course", "bases": "base", "cheeses": "cheese",
    "geeses": "goose", "spouses": "spouse", "warehouses": "warehouse", "lighthouses": "lighthouse",
    "greenhouses": "greenhouse", "birdhouses": "birdhouse", "doghouses": "doghouse", "treehouses": "treehouse",
    "suitcases": "suitcase", "bookcases": "bookcase", "staircases": "staircase", "briefcases": "briefcase",
    "pencil cases": "pencil case",
}
INVARIANT: frozenset[str] = frozenset(
    """sheep deer fish moose series species aircraft bison salmon shrimp trout swine broccoli scissors
    pants jeans shorts trousers binoculars eyeglasses sunglasses goggles news physics chess tennis
    bonsai sushi spaghetti pasta rice corn bread water milk juice coffee tea sand snow rain furniture
    luggage equipment money hair jewelry jewellery cattle police skis hummus asparagus""".split()
)
# Singular nouns that end in -s (their plural takes -es).
SINGULAR_S: frozenset[str] = frozenset(
    """bus gas lens canvas atlas iris cactus octopus virus hippopotamus walrus bonus campus grass glass
    dress class boss cross compass mattress princess goddess lioness analysis citrus hibiscus bass moss
    kiss circus chorus plus status apparatus stimulus lotus fungus platypus nautilus abacus""".split()
)
UNINFLECTED: frozenset[str] = INVARIANT | SINGULAR_S


def singular_word(word: str) -> str:
    """One English noun to its singular ("benches" -> "bench", "mice" -> "mouse").

    Irregulars and invariant nouns come from tables; the rest follow the
    regular suffix rules. Words that are already singular come back unchanged.
    """
    w = word.lower()
    if len(w) <= 2 or w in UNINFLECTED:
        return w
    if w in IRREGULAR_PLURALS:
        return IRREGULAR_PLURALS[w]
    if w.endswith("s") and w[:-1] in INVARIANT:
        return w[:-1]  # "broccolis", "sheeps": an invariant noun given a plural anyway
    if w.endswith(("ss", "us", "is", "ous", "'s")):
        return w
    if w.endswith("ies") and len(w) > 4:
        return w[:-3] + "y"
    if w.endswith("ves"):
        return w[:-1]  # gloves, olives, stoves (the -f/-fe plurals are irregulars above)
    if w.endswith(("ches", "shes", "xes", "zzes", "sses")):
        return w[:-2]
    if w.endswith("oes"):
        return w[:-1]  # shoes, toes, canoes (potatoes & co. are irregulars)
    if w.endswith("zes") and len(w) > 4:
        return w[:-1]  # prizes, sizes
    if w.endswith("s") and not w.endswith("ss"):
        return w[:-1]
    return w


def singularize(name: str) -> str:
    """A noun phrase to its singular: the head noun is inflected
    ("teddy bears" -> "teddy bear", "cups of coffee" -> "cup of coffee")."""
    words = name.split()
    if not words:
        return name
    if " ".join(words) in IRREGULAR_PLURALS:
        return IRREGULAR_PLURALS[" ".join(words)]
    head = words.index("of") - 1 if "of" in words[1:] else len(words) - 1
    if head < 0:
        return name
    words[head] = singular_word(words[head])
    return " ".join(words)


def is_plural(word: str) -> bool:
    """True when ``word`` looks like a plural noun (its singular differs)."""
    w = word.lower()
    return w not in UNINFLECTED and singular_word(w) != w


def pluralize(name: str) -> str:
    """A singular noun phrase to a plural, for messages and tests ("bench" -> "benches")."""
    words = name.split()
    if not words:
        return name
    w = words[-1]
    inverse: dict[str, str] = {}
    for plural_form, single in IRREGULAR_PLURALS.items():
        inverse.setdefault(single, plural_form)
    if w in INVARIANT:
        plural = w
    elif w in inverse and w not in SINGULAR_S:
        plural = inverse[w]
    elif w.endswith(("s", "x", "z", "ch", "sh")):
        plural = w + "es"
    elif w.endswith("y") and len(w) > 1 and w[-2] not in "aeiou":
        plural = w[:-1] + "ies"
    else:
        plural = w + "s"
    return " ".join([*words[:-1], plural])

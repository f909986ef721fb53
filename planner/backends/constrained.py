"""Grammar-constrained greedy decoding for a local transformers model (xgrammar).

Why a hand-written loop instead of ``model.generate``:

* **Prefix reuse.** The instructions and few-shot examples are the same for
  every prompt; their key/value cache is computed once and copied per prompt,
  so a prompt costs its own ~20 tokens plus the answer, not ~1,000 tokens.
* **Jump-forward.** Where the grammar allows exactly one continuation (JSON
  keys, brackets, ``", "count": ``) xgrammar says so and the text is fed to the
  model in one forward pass instead of being decoded token by token. The last
  token of a forced run is held back when it could merge with what follows
  (``[`` + ``]`` is one token, ``▁[]``, in most vocabularies), so the model
  still sees the tokenisation it learnt from the few-shot answers.
* **A pruned output head.** ``keep`` (optional) restricts the candidates to a
  few thousand token ids (the prompt's words, JSON punctuation, digits...);
  only those rows of the output embedding are multiplied, which is most of the
  per-token cost of a model with a 262k vocabulary such as Gemma 3.
* **Timeouts.** A wall-clock limit is checked between steps, so a model that
  never closes its JSON gets a one-line ``LLMError``, not a hang; length limits
  in the schema (``maxLength``/``maxItems``) make every answer finite anyway.

xgrammar rather than lm-format-enforcer: lm-format-enforcer 0.11's transformers
integration imports ``transformers.tokenization_utils``, which transformers 5
removed, so it cannot be imported here; xgrammar builds its token tables for
a 262k vocabulary in ~2 s and compiles a JSON schema in ~0.1 s.

torch, transformers and xgrammar are imported inside the functions that use
them: they take seconds to import, and a planner that never decodes (rules,
openai) must not pay for them.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass
from typing import Any, Iterable

from ...errors import LLMError

SEPARATORS = (", ", ": ")  # the layout of prompting.answer(), so outputs look like the few-shot answers


MAX_STRING, MAX_ITEMS, MAX_INT = 40, 10, 10**9
# a bounded string with no blank ends: pydantic strips names and rejects empty ones
BOUNDED_STRING = rf'^[^\s"\\]([^"\\\n]{{0,{MAX_STRING - 2}}}[^\s"\\])?$'


def strict_schema(schema: dict) -> dict:
    """A copy of a JSON schema fit for decoding: every object property required,
    free strings and arrays bounded.

    Pydantic leaves fields with defaults optional; a grammar with optional keys
    lets a small model skip fields and hides from jump-forward which key comes
    next. Requiring all keys (in declaration order) makes the key structure
    forced; the answer still validates against the original model. Bounds
    (``MAX_STRING`` characters, ``MAX_ITEMS`` items, integers within
    ``MAX_INT``, where the schema sets none) make every answer finite, even
    from a model that babbles.
    """

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            out = {k: walk(v) for k, v in node.items()}
            if out.get("type") == "object" and isinstance(out.get("properties"), dict):
                out["required"] = list(out["properties"])
                out.setdefault("additionalProperties", False)
            if out.get("type") == "string" and not ({"enum", "const", "pattern", "format"} & set(out)):
                out["pattern"] = BOUNDED_STRING
                out.pop("maxLength", None)
                out.pop("minLength", None)
            if out.get("type") == "array":
                out.setdefault("maxItems", MAX_ITEMS)
            if out.get("type") == "integer":  # digits cannot run on forever either
                out.setdefault("minimum", -MAX_INT)
                out.setdefault("maximum", MAX_INT)
            return out
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(schema)


def tokenizer_info(tokenizer, vocab_size: int = 0):
    """xgrammar's token table for a Hugging Face tokenizer (the model's head may be larger)."""
    import xgrammar as xgr

    return xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=max(vocab_size, len(tokenizer)))


@dataclass
class Generation:
    text: str
    chosen_tokens: int  # model decisions (forward passes after the prompt)
    forced_tokens: int  # tokens fed by jump-forward
    seconds: float


class ConstrainedDecoder:
    """Greedy decoding under a grammar (a JSON schema or EBNF), with a reusable prompt prefix.

    One decoder serves many prompts and schemas; compiled grammars and the
    prefix's key/value cache are memoised.
    """

    def __init__(self, model, tokenizer, info=None, max_threads: int = 1):
        """``tokenizer`` needs ``encode(text, add_special_tokens=False)``, ``decode(ids,
        skip_special_tokens=True)`` and ``bos_token_id``; ``info`` is an
        ``xgrammar.TokenizerInfo`` (built from a Hugging Face tokenizer when omitted)."""
        import torch
        import xgrammar as xgr

        self.model, self.tokenizer = model, tokenizer
        if info is None:
            info = tokenizer_info(tokenizer, int(getattr(model.config, "vocab_size", 0) or 0))
        self.info = info
        self.compiler = xgr.GrammarCompiler(self.info, max_threads=max_threads)
        self._grammars: dict[tuple, Any] = {}
        self._prefix: tuple[tuple[int, ...], Any, Any] | None = None  # (ids, cache, hidden)
        head = model.get_output_embeddings()
        body = getattr(model, getattr(model, "base_model_prefix", ""), None)
        # the pruned head needs the body's hidden states and a plain linear head
        self._split = body is not None and body is not model and isinstance(head, torch.nn.Linear)
        self._body, self._head = body, head
        self._keep_key: tuple[int, ...] | None = None
        self._keep_rows = None

    # -- grammar --------------------------------------------------------------
    def grammar(self, spec: dict | str, lead: str = ""):
        """Compile ``spec`` - a JSON schema (all keys made required) or an EBNF
        grammar text - optionally after a fixed ``lead``. JSON-schema grammars
        are memoised; EBNF ones are usually per prompt and compile in ~10 ms."""
        import xgrammar as xgr

        key = (json.dumps(spec, sort_keys=True), lead) if isinstance(spec, dict) else None
        if key is not None and key in self._grammars:
            return self._grammars[key]
        if isinstance(spec, dict):
            g = xgr.Grammar.from_json_schema(json.dumps(strict_schema(spec)), any_whitespace=False,
                                             separators=SEPARATORS)
        else:
            g = xgr.Grammar.from_ebnf(spec)
        if lead:
            g = xgr.Grammar.concat(xgr.Grammar.from_ebnf(f"root ::= {json.dumps(lead)}"), g)
        compiled = self.compiler.compile_grammar(g)
        if key is not None:
            self._grammars[key] = compiled
        return compiled

    # -- model calls ------------------------------------------------------------
    def _hidden(self, ids: list[int], cache):
        """Last position's hidden state (before the output head) and the grown cache."""
        import torch

        x = torch.tensor([ids], dtype=torch.long)
        if self._split:
            out = self._body(input_ids=x, past_key_values=cache, use_cache=True)
            return out.last_hidden_state[0, -1], out.past_key_values
        out = self.model(input_ids=x, past_key_values=cache, use_cache=True, logits_to_keep=1)
        return out.logits[0, -1], out.past_key_values

    def _logits(self, hidden, keep):
        """Scores over the whole vocabulary (``-inf`` outside ``keep`` when pruning)."""
        import torch

        if not self._split:
            return hidden.float()
        if keep is None:
            return self._head(hidden).float()
        w = self._keep_rows
        scores = torch.full((self.info.vocab_size,), float("-inf"))
        part = (w @ hidden).float()
        bias = getattr(self._head, "bias", None)
        if bias is not None:
            part = part + bias[keep].float()
        scores[keep] = part
        return scores

    def _set_keep(self, keep: Iterable[int] | None):
        import torch

        if keep is None or not self._split:
            return None
        ids = tuple(sorted({int(i) for i in keep if 0 <= int(i) < self.info.vocab_size}))
        if ids != self._keep_key:
            self._keep_key = ids
            idx = torch.tensor(ids, dtype=torch.long)
            self._keep_rows = self._head.weight.detach().index_select(0, idx)
            self._keep_idx = idx
        return self._keep_idx

    def _start(self, prefix_ids: list[int], prompt_ids: list[int]):
        """Hidden state and cache after ``prefix_ids + prompt_ids``; the prefix part is computed once."""
        from transformers import DynamicCache

        if not prefix_ids:
            return self._hidden(prompt_ids, DynamicCache(config=self.model.config))
        key = tuple(prefix_ids)
        if self._prefix is None or self._prefix[0] != key:
            hidden, cache = self._hidden(prefix_ids, DynamicCache(config=self.model.config))
            self._prefix = (key, cache, hidden)
        _, cache, hidden = self._prefix
        cache = copy.deepcopy(cache)
        if not prompt_ids:
            return hidden.clone(), cache
        return self._hidden(prompt_ids, cache)

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    # -- the prefix cache can be saved: recomputing ~800 tokens costs seconds on a CPU
    def prefix_state(self, prefix: str, add_bos: bool = True):
        """Compute (if needed) and return the cached state after ``prefix``."""
        import torch

        ids = self._prefix_ids(prefix, add_bos)
        with torch.inference_mode():
            self._start(ids, [])
        return self._prefix

    def load_prefix_state(self, state) -> None:
        self._prefix = state

    def _prefix_ids(self, prefix: str, add_bos: bool) -> list[int]:
        bos = [self.tokenizer.bos_token_id] if add_bos and self.tokenizer.bos_token_id is not None else []
        return bos + (self.encode(prefix) if prefix else [])

    def generate(
        self,
        prefix: str,
        prompt: str,
        grammar: dict | str,
        *,
        lead: str = "",
        keep: Iterable[int] | None = None,
        max_new_tokens: int = 400,
        timeout: float | None = 60.0,
        add_bos: bool = True,
    ) -> Generation:
        """The text the model writes after ``prefix + prompt`` under ``grammar``
        (a JSON schema or EBNF text, see ``grammar()``).

        ``prefix`` is the fixed part (its cache is reused while it stays the
        same); ``lead`` is text the answer must start with (e.g. the space
        after "Scene graph:"), returned as part of ``text``.
        """
        import torch
        import xgrammar as xgr

        t0 = time.monotonic()
        prefix_ids = self._prefix_ids(prefix, add_bos)
        prompt_ids = self.encode(prompt)
        matcher = xgr.GrammarMatcher(self.grammar(grammar, lead), terminate_without_stop_token=True)
        bitmask = xgr.allocate_token_bitmask(1, self.info.vocab_size)
        with torch.inference_mode():
            keep_idx = self._set_keep(keep)
            hidden, cache = self._start(prefix_ids, prompt_ids)
            out: list[int] = []
            steps = forced_count = 0
            while True:
                if timeout is not None and time.monotonic() - t0 > timeout:
                    raise LLMError(f"the model did not finish its answer within {timeout:g} s (option timeout)")
                if len(out) >= max_new_tokens:
                    raise LLMError(f"the model's answer did not end within {max_new_tokens} tokens "
                                   "(option max_new_tokens)")
                token = self._choose(hidden, matcher, bitmask, keep_idx)
                steps += 1
                out.append(token)
                if matcher.is_terminated():
                    break
                accepted = self._forced_tokens(matcher)
                pending = [token, *accepted]  # fed with the next forward
                out += accepted
                forced_count += len(accepted)
                if accepted and matcher.is_terminated():
                    break
                hidden, cache = self._hidden(pending, cache)
        text = self.tokenizer.decode(out, skip_special_tokens=True)
        return Generation(text, steps, forced_count, time.monotonic() - t0)

    def _forced_tokens(self, matcher) -> list[int]:
        """The tokens the grammar leaves no choice about (xgrammar's jump-forward string), accepted by the
        matcher; the last is left to the model unless it closes a string, since it may span the boundary
        with what the model writes next."""
        forced = matcher.find_jump_forward_string()
        if not forced:
            return []
        ids = self.encode(forced)
        if ids and not self.tokenizer.decode(ids[-1:]).endswith('"'):
            ids = ids[:-1]
        accepted = []
        for t in ids:
            if not matcher.accept_token(t):
                break
            accepted.append(t)
        return accepted

    def _choose(self, hidden, matcher, bitmask, keep_idx) -> int:
        """The best token the grammar allows (greedy)."""
        import torch
        import xgrammar as xgr

        matcher.fill_next_token_bitmask(bitmask)
        for k in ((keep_idx, None) if keep_idx is not None else (None,)):
            row = self._logits(hidden, k)[: self.info.vocab_size].unsqueeze(0)
            if row.shape[-1] < self.info.vocab_size:  # output head smaller than the tokenizer
                row = torch.nn.functional.pad(row, (0, self.info.vocab_size - row.shape[-1]), value=float("-inf"))
            xgr.apply_token_bitmask_inplace(row, bitmask)
            token = int(torch.argmax(row[0]))
            if torch.isfinite(row[0, token]):
                break  # else nothing in ``keep`` is allowed here: score the whole vocabulary
        if not matcher.accept_token(token):
            raise LLMError("the constrained decoder reached a state its grammar rejects")
        return token

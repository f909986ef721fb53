"""``openai:<model>``: any OpenAI-compatible chat endpoint, structured by instructor.

The same class talks to OpenAI itself and to local servers that speak the
OpenAI chat API (Ollama, vLLM, LM Studio, llama.cpp's server): only the base
URL changes. instructor sends the pydantic schema, validates the answer and,
when validation fails, sends the answer back with the error text so the model
can correct itself (``retries`` times).

Failures become one-line ``PlanAndRenderError``s. The API key is read from
``OPENAI_API_KEY`` only and is scrubbed from every message and log record we
or instructor produce (OpenAI's 401 answers echo part of the key).

``openai`` and ``instructor`` take seconds to import, so they are imported
when the first request is made, not when this module is.
"""

from __future__ import annotations

import json
import logging
import os
import re
from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError

from ...errors import LLMError, ModelUnavailableError, PlanAndRenderError, UsageError
from ...scene import first_error
from .base import LLMPlanner, M

KEY_ENV = "OPENAI_API_KEY"
URL_ENV = "OPENAI_BASE_URL"
DEFAULT_URL = "https://api.openai.com/v1"
LOCAL_KEY = "not-needed"  # local servers ignore the key, but the SDK insists on one

# Our mode names -> instructor.Mode members. json_schema (response_format
# "json_schema") is the one structured-output request that OpenAI, Ollama,
# vLLM and LM Studio all accept and enforce server-side; LM Studio rejects
# "json_object" (mode json), and tools needs a model/server with tool calling.
MODES = {"json_schema": "JSON_SCHEMA", "tools": "TOOLS", "json": "JSON", "md_json": "MD_JSON"}
DEFAULT_MODE = "json_schema"
DEFAULT_RETRIES = 2
DEFAULT_TIMEOUT = 60.0  # seconds per HTTP request

# OpenAI-style secrets ("sk-...", "sk-proj-...") and masked echoes of them ("sk-ab****wxyz", "****wxyz").
_KEYLIKE = re.compile(r"\b(?:sk|rk|pk)-[\w*.\-]{4,}|[\w.\-]*\*{3,}[\w.\-]*")


def scrub(text: str, secrets: tuple[str, ...] = ()) -> str:
    """``text`` on one line with every secret and key-like token replaced by ``***``."""
    for s in secrets:
        if s:
            text = text.replace(s, "***")
    text = re.sub(r"\*{3,}", "***", _KEYLIKE.sub("***", text))  # adjacent masks read as one
    return " ".join(text.split())


class _ScrubLogs(logging.Filter):
    """Scrubs secrets from records; demotes instructor's per-attempt ERROR lines to DEBUG.

    instructor logs each failed call with the server's text (a 401 echoes part of
    the key) at ERROR, which Python's last-resort handler would print to stderr.
    We report the failure ourselves as one line, so theirs only belongs in debug logs.
    """

    secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record must not break the request
            text = str(record.msg)
        record.msg, record.args = scrub(text, tuple(self.secrets)), None
        if record.name.startswith("instructor") and record.levelno > logging.DEBUG:
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return True


_LOG_FILTER = _ScrubLogs()


def _guard_logs(secret: str) -> None:
    if secret != LOCAL_KEY:
        _ScrubLogs.secrets.add(secret)
    for name in ("instructor", "instructor.v2", "instructor.v2.retry", "openai"):
        logger = logging.getLogger(name)
        if _LOG_FILTER not in logger.filters:
            logger.addFilter(_LOG_FILTER)


def _show_url(url: str) -> str:
    """The URL without ``user:password@`` so it can go in messages; "" if it is not an http(s) URL."""
    try:
        parts = urlsplit(url)
        port = f":{parts.port}" if parts.port else ""
    except ValueError:  # a port that is not a number
        return ""
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return ""
    return f"{parts.scheme}://{parts.hostname}{port}{parts.path}".rstrip("/")


class OpenAIPlanner(LLMPlanner):
    """A chat model behind an OpenAI-compatible API; spec ``openai:<model>``.

    Options: ``base_url`` (else ``$OPENAI_BASE_URL``, else OpenAI), ``retries``
    (answers sent back for correction, and transient HTTP retries), ``timeout``
    (seconds per request), ``mode`` (one of ``MODES``), ``temperature`` (``None``
    to leave it to the server, for models that accept only the default). ``None``
    for base_url, retries, timeout or mode means "use the default".
    Options meant for other backends (``device``...) are ignored, so one CLI
    can pass the same options to any backend.
    """

    def __init__(
        self,
        model: str = "",
        *,
        base_url: str | None = None,
        retries: int | None = DEFAULT_RETRIES,
        timeout: float | None = DEFAULT_TIMEOUT,
        mode: str | None = DEFAULT_MODE,
        temperature: float | None = 0.0,
        **_other_backends_options: Any,
    ) -> None:
        # None means "not given" (a CLI passes every option), so it takes the default
        retries = DEFAULT_RETRIES if retries is None else retries
        timeout = DEFAULT_TIMEOUT if timeout is None else timeout
        mode = mode or DEFAULT_MODE
        if not model:
            raise UsageError("name the model after the colon: openai:MODEL, e.g. openai:gpt-4o-mini or openai:llama3.1")
        if mode not in MODES:
            raise UsageError(f"unknown mode {mode!r} for openai:{model}; choose one of: {', '.join(MODES)}")
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise UsageError(f"retries must be a whole number >= 0, not {retries!r}")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
            raise UsageError(f"timeout must be a positive number of seconds, not {timeout!r}")
        self.model, self.mode, self.retries, self.timeout = model, mode, retries, float(timeout)
        self.temperature = temperature
        self.name = f"openai:{model}"
        self.base_url = (base_url or os.environ.get(URL_ENV) or "").strip() or DEFAULT_URL
        self.url = _show_url(self.base_url)
        if not self.url:
            raise UsageError(f"base_url must be an http(s) URL such as http://localhost:11434/v1, "
                             f"not {scrub(self.base_url)!r}")
        key = os.environ.get(KEY_ENV, "").strip()
        if not key and urlsplit(self.base_url).hostname == urlsplit(DEFAULT_URL).hostname:
            raise ModelUnavailableError(
                f"no API key for {self.url}: set {KEY_ENV}, or point base_url / {URL_ENV} at a local server"
            )
        self._key = key or LOCAL_KEY
        self._client: Any = None  # built on first use: importing openai + instructor takes seconds

    def __repr__(self) -> str:  # never shows the key
        return f"OpenAIPlanner(model={self.model!r}, base_url={self.url!r}, mode={self.mode!r})"

    def _instructor(self) -> Any:
        if self._client is None:
            import instructor
            import openai

            _guard_logs(self._key)
            raw = openai.OpenAI(api_key=self._key, base_url=self.base_url, timeout=self.timeout,
                                max_retries=self.retries)
            self._client = instructor.from_openai(raw, mode=getattr(instructor.Mode, MODES[self.mode]))
        return self._client

    def structured(self, messages: list[dict], schema: type[M]) -> M:
        """Ask the model; instructor validates against ``schema`` and re-asks with the errors."""
        client = self._instructor()
        sampling = {} if self.temperature is None else {"temperature": self.temperature}
        try:
            result = client.chat.completions.create(
                model=self.model, messages=messages, response_model=schema,
                max_retries=self.retries, strict=False, **sampling,
            )
            # instructor answers with a subclass of ``schema`` carrying the raw HTTP response; hand back a plain one
            return schema.model_validate(result.model_dump())
        except Exception as exc:  # noqa: BLE001 - translated below; unknown ones re-raised
            failure = self._explain(exc, schema)
            if failure is None:
                raise
        raise failure  # outside the except block: no chained exception can carry the key

    # ------------------------------------------------------------------
    # failures -> one-line errors
    # ------------------------------------------------------------------

    def _explain(self, exc: Exception, schema: type) -> PlanAndRenderError | None:
        import openai
        from instructor.core import IncompleteOutputException, InstructorError, InstructorRetryException

        attempts = getattr(exc, "n_attempts", None) or 1
        root: BaseException = exc
        while isinstance(root, InstructorRetryException) and root.__cause__ is not None:
            root = root.__cause__
        where = f"{self.model!r} at {self.url}"

        if isinstance(root, openai.APITimeoutError):
            return LLMError(f"the model {where} did not answer within {self.timeout:g} s; "
                            "check that the server is up and the model loaded, or raise the timeout")
        if isinstance(root, openai.APIConnectionError):
            return ModelUnavailableError(f"cannot reach {self.url}: is the server running? "
                                         f"(set base_url or {URL_ENV} to the server's /v1 URL)")
        if isinstance(root, openai.APIStatusError):
            return self._http_error(root)
        if isinstance(root, IncompleteOutputException):
            return LLMError(f"the answer of {where} was cut off (output token limit) before the JSON ended")
        if isinstance(exc, InstructorRetryException):
            return LLMError(f"the model {where} gave no valid {schema.__name__} in {attempts} attempt"
                            f"{'s' if attempts != 1 else ''}: {self._reason(root)}")
        if isinstance(exc, (InstructorError, openai.OpenAIError)):
            return LLMError(f"the model {where} failed: {scrub(str(exc), (self._key,))[:300]}")
        return None

    def _http_error(self, err: Any) -> PlanAndRenderError:
        status = err.status_code
        if status in (401, 403):  # never echo the body: OpenAI's 401 text contains part of the key
            return ModelUnavailableError(f"{self.url} refused the API key (HTTP {status}): "
                                         f"set a valid key in {KEY_ENV}")
        body = err.body
        detail = body.get("message") if isinstance(body, dict) else body
        detail = scrub(str(detail if detail is not None else err.message), (self._key,))[:300]
        if status == 404:
            return ModelUnavailableError(
                f"{self.url} has no model {self.model!r} (HTTP 404: {detail}); check the model name "
                "(Ollama: ollama pull NAME) and that the base URL ends in /v1")
        if status == 429:
            return LLMError(f"{self.url} is rate-limiting requests (HTTP 429: {detail}); try again later")
        if status in (400, 422):
            return LLMError(f"{self.url} refused the request (HTTP {status}: {detail}); "
                            f"if the server lacks the {self.mode} structured-output mode, try mode md_json")
        return LLMError(f"{self.url} failed (HTTP {status}: {detail})")

    def _reason(self, err: BaseException) -> str:
        """The first validation problem of the last answer, short."""
        if isinstance(err, ValidationError) and err.error_count():
            return scrub(first_error(err), (self._key,))[:300]
        if isinstance(err, json.JSONDecodeError):
            return f"not JSON ({err.msg})"
        return scrub(str(err), (self._key,))[:300] or type(err).__name__

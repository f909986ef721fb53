"""A fake OpenAI-compatible chat server on 127.0.0.1 for the openai backend's tests.

Each test scripts the answers (``FakeOpenAI.script``: replies, or functions of
the request that compute one) and reads back every
request the client sent (``FakeOpenAI.requests``: parsed JSON bodies, headers).
Answers are wrapped the way the request asks for them: as a tool call when the
request offers tools, bare JSON when it sets ``response_format``, and in a
```json fence otherwise (instructor's md_json mode), so one script serves all modes.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Union


@dataclass
class Reply:
    """One scripted answer: assistant text, an HTTP error, or a hang."""

    text: str = ""
    status: int = 200
    error: dict | None = None  # the "error" object of an HTTP error body
    hang: bool = False
    finish: str = "stop"  # finish_reason; "length" = cut off at the token limit


def ok(answer: str | dict) -> Reply:
    return Reply(text=answer if isinstance(answer, str) else json.dumps(answer))


def http_error(status: int, message: str, code: str | None = None) -> Reply:
    return Reply(status=status, error={"message": message, "type": "invalid_request_error", "code": code})


HANG = Reply(hang=True)

# A script entry: a fixed reply, or a "model" computing one from the request body.
Step = Union[Reply, Callable[[dict], Reply]]


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: dict = field(default_factory=dict)


class FakeOpenAI:
    """Context manager: a threaded server on an ephemeral port. When the script
    runs out, its last entry repeats ("garbage every time")."""

    def __init__(self) -> None:
        self.script: list[Step] = []
        self.requests: list[Request] = []
        self.release = threading.Event()  # ends hangs at teardown
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def next_reply(self, request: Request) -> Reply:
        with self._lock:
            self.requests.append(request)
            if not self.script:
                return http_error(500, "no scripted reply")
            step = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        return step(request.body) if callable(step) else step

    def __enter__(self) -> "FakeOpenAI":
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                request = Request(self.path, {k.lower(): v for k, v in self.headers.items()}, json.loads(raw or b"{}"))
                if self.path.rstrip("/") != "/v1/chat/completions":
                    return self._send(404, {"error": {"message": f"no route {self.path}"}})
                reply = fake.next_reply(request)
                if reply.hang:
                    fake.release.wait(30)
                    reply = ok("too late")  # unparseable: a client without a timeout fails the test
                if reply.status != 200:
                    return self._send(reply.status, {"error": reply.error})
                self._send(200, completion(request.body, reply.text, reply.finish))

            def _send(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
                    pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        server.block_on_close = False
        self._server = server
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.release.set()
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()


def completion(body: dict, text: str, finish: str = "stop") -> dict:
    """A chat.completion object answering ``body`` with ``text`` in the form the request asked for."""
    message: dict = {"role": "assistant", "content": text}
    if body.get("tools"):
        name = body["tools"][0]["function"]["name"]
        message = {"role": "assistant", "content": None, "tool_calls": [
            {"id": f"call_{len(text)}", "type": "function", "function": {"name": name, "arguments": text}}]}
        finish = "tool_calls" if finish == "stop" else finish
    elif not body.get("response_format"):
        message["content"] = f"Here is the scene graph:\n```json\n{text}\n```"
    return {
        "id": "chatcmpl-fake", "object": "chat.completion", "created": 0, "model": body.get("model", "fake"),
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20},
    }


def rules_model(body: dict) -> Reply:
    """A stand-in model: answers with the rules planner's graph of the last framed description."""
    from plan_and_render.planner.backends.rules import parse

    text = body["messages"][-1]["content"]
    if isinstance(text, list):  # content parts
        text = " ".join(part.get("text", "") for part in text)
    description = text.split("Description: ", 1)[-1].split("\n")[0]
    return ok(parse(description).model_dump_json())

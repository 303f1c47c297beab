"""revloop llm: the LLM endpoint (REVLOOP_LLM=openai, OPENAI_BASE_URL, REVLOOP_LLM_MODEL)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from api.cli.common import fail, get_settings

llm_app = typer.Typer(help="The LLM endpoint: what it supports, how fast it answers.", no_args_is_help=True)


def _tokens(result: dict) -> str:
    if "prompt_tokens" not in result:
        return "no answer"
    if result.get("prompt_tokens") is None:
        return "tokens unknown (no usage in the reply)"
    return f"{result['prompt_tokens']} prompt + {result['completion_tokens']} completion tokens"


@llm_app.command("check")
def llm_check(
    as_json: Annotated[bool, typer.Option("--json", help="Print the findings as JSON")] = False,
) -> None:
    """Ask the endpoint what it supports (json_schema structured output, json_object mode, tool calling) with tiny
    requests, time a sample call, whether json_object is slower than a plain reply, and its speed on a prompt the
    size of the compact research; store the findings (the worker then uses the strongest mode that works, prompt
    mode when json_object is slow, and the compact research prompt when the full one would not fit the budget).
    Exit 1 if the endpoint gives no answer at all."""
    from agents.llm import LlmError, forget_capabilities, probe

    settings = get_settings()
    if not settings.llm_base_url and not settings.llm_api_key:
        fail("no LLM endpoint: set OPENAI_BASE_URL (and OPENAI_API_KEY if it asks for one)", code=2)
    forget_capabilities()
    try:
        found = probe(settings)
    except LlmError as exc:
        fail(str(exc))
    if as_json:
        typer.echo(json.dumps(found, indent=2, default=str))
    else:
        price_in, price_out = found["price_per_mtok"]
        typer.echo(f"endpoint {found['endpoint']}  model {found['model']}")
        typer.echo(f"price    ${price_in:g} / ${price_out:g} per million prompt / completion tokens")
        for name in ("sample", "json_schema", "json_object", "prompt", "tools", "speed"):
            result = found["results"].get(name, {})
            ok = {True: "yes", False: "no", None: "??"}[result.get("ok")]
            label = "sample call" if name == "sample" else name
            typer.echo(
                f"{label:<12} {ok:<4} {result.get('seconds', 0):>6.2f} s  {_tokens(result)}  ({result.get('why', '')})"
            )
        if found["json_object_slow"]:
            typer.echo("note: json_object is slow here (grammar decoding), so replies are asked for in prompt mode")
        if found["full_research_seconds"] is not None:
            typer.echo(
                f"lead research prompt: {found['research_prompt']} (a full research would take about "
                f"{found['full_research_seconds']:g} s of the {settings.llm_budget_seconds:g} s budget)"
            )
        typer.echo(
            f"structured output: {found['structured_mode']}; tool calling: "
            + {True: "yes", False: "no (the deterministic engine plans the look-ups)", None: "unknown"}[
                found["capabilities"]["tools"]
            ]
        )
    if not found["results"].get("sample", {}).get("ok"):
        raise typer.Exit(1)

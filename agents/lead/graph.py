"""Wiring of the lead graph."""

from __future__ import annotations

from langgraph.graph import END, START, StateGraph

from agents.lead.nodes import LeadNodes
from agents.lead.state import LeadState
from core.settings import Settings
from review.decisions import MAX_REDRAFTS


def _after_route(state: LeadState) -> str:
    return "finish" if state["route"]["channel"] == "none" else "draft"


def _after_prepare(state: LeadState) -> str:
    return "finish" if state["route"]["channel"] == "none" else "review"


def _after_review(state: LeadState) -> str:
    decision = state.get("decision") or {}
    if decision.get("action") == "approve":
        return "execute"
    if decision.get("redraft") and len(state.get("redrafts") or []) < MAX_REDRAFTS:
        return "draft"
    return "finish"


def build_lead_graph(settings: Settings) -> StateGraph:
    nodes = LeadNodes(settings)
    graph = StateGraph(LeadState)
    # enrich -> score -> brief -> route -> draft run as one step, "prepare": one LangGraph super-step instead of
    # five (each costs its task set-up, channel writes and checkpoint bookkeeping; before the review interrupt
    # nothing is checkpointed in between anyway, see agents.runtime.FIRST_RUN_DURABILITY).
    graph.add_node("prepare", nodes.prepare)
    graph.add_node("draft", nodes.draft)  # a redraft a closer asked for
    graph.add_node("review", nodes.review)
    graph.add_node("execute", nodes.execute)
    graph.add_node("finish", nodes.finish)
    graph.add_edge(START, "prepare")
    graph.add_conditional_edges("prepare", _after_prepare, ["review", "finish"])
    # assess (the four without the draft) and the four as their own nodes, for a thread checkpointed midway by an
    # earlier version (its next step is one of them); no new run goes through them.
    graph.add_node("assess", nodes.assess)
    graph.add_conditional_edges("assess", _after_route, ["draft", "finish"])
    graph.add_node("enrich", nodes.enrich)
    graph.add_node("score", nodes.score)
    graph.add_node("brief", nodes.brief)
    graph.add_node("route", nodes.route)
    graph.add_edge("enrich", "score")
    graph.add_edge("score", "brief")
    graph.add_edge("brief", "route")
    graph.add_conditional_edges("route", _after_route, ["draft", "finish"])
    graph.add_edge("draft", "review")
    graph.add_conditional_edges("review", _after_review, ["execute", "draft", "finish"])
    graph.add_edge("execute", "finish")
    graph.add_edge("finish", END)
    return graph

"""Wiring of the proposal graph."""

from __future__ import annotations

from langgraph.graph import END, START, StateGraph

from agents.proposal.nodes import ProposalNodes
from agents.proposal.state import ProposalState
from core.settings import Settings


def _thread_id(config) -> str:
    return config["configurable"]["thread_id"]


def build_proposal_graph(settings: Settings) -> StateGraph:
    nodes = ProposalNodes(settings, _thread_id)
    graph = StateGraph(ProposalState)
    graph.add_node("price", nodes.price)
    graph.add_node("render", nodes.render)
    graph.add_node("draft", nodes.draft)
    graph.add_node("review", nodes.review)
    graph.add_node("execute", nodes.execute)
    graph.add_node("finish", nodes.finish)
    graph.add_edge(START, "price")
    graph.add_conditional_edges("price", lambda s: "finish" if s.get("outcome") else "render", ["render", "finish"])
    graph.add_edge("render", "draft")
    graph.add_edge("draft", "review")
    graph.add_conditional_edges(
        "review",
        lambda s: "execute" if (s.get("decision") or {}).get("action") == "approve" else "finish",
        ["execute", "finish"],
    )
    graph.add_edge("execute", "finish")
    graph.add_edge("finish", END)
    return graph

"""LangGraph agents (lead graph first), their runtime (checkpointer, runner, job handlers)."""

"""ICP rubric scoring (and, later, the outcome model)."""

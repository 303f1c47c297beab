"""Collections: the dunning policy and the ladder decision for one invoice."""

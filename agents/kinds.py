"""Background job kinds (kept apart from the graph runtime so capture stays light to import)."""

LEAD_RUN = "lead.run"
REVIEW_RESUME = "review.resume"
PROPOSAL_RUN = "proposal.run"

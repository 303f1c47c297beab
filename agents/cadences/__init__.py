"""Follow-up cadences: sequences per next action, events that stop or change them, hand-off on reply."""

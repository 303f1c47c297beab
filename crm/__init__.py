"""crm domain."""

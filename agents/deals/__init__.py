"""From proposal to cash: proposals (HTML + PDF), signature, delivery hand-off, milestones, invoices."""

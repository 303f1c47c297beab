"""Built-in message texts (Jinja2), one module per flow; managers override them with approved versions
(review/templates.py)."""

"""Built-in message texts (Jinja2), one module per flow; managers override them with approved versions
(tools/templates.py). They live in tools so that the template governance never imports agents."""

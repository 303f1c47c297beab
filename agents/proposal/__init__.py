"""The proposal graph: price from the price book -> render HTML and PDF -> draft the cover email ->
review (interrupt) -> send with the PDF attached, once."""

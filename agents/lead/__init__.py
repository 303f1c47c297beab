"""The lead graph: enrich -> score -> brief -> route -> draft -> review (interrupt) -> execute."""

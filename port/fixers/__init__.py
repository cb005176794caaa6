"""One fixer per site: each finds its anchors by structure and returns its rewrite."""

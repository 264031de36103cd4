"""Qt parts of the MPUNetSegmentation module beyond its .ui (they need the Slicer application)."""

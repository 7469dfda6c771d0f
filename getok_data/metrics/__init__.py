"""Task metrics that need no model: pure numpy functions a scorer plugs in."""

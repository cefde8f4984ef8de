"""The explorer: a web page over the same RPCs every other client calls."""

"""diffmine: mine what is visually typical of each label of an image collection."""

__version__ = "0.1.0"

"""Image collections: declaration, discovery, validation and the built-in set."""

"""Label text to partition key: the one documented mapping.

Dagster partition keys of a multi-partitioned asset may not contain ``|``,
``,``, ``[`` or ``]``, and a key is also a folder name in the lake
(``label=<key>``), so keys are restricted to ``[a-z0-9_-]``. A label that is
already such a string is its own key ("1950s" -> "1950s"). Any other label is
slugified (accents dropped, runs of other characters turned into "-") and a
short hash of the exact original text is appended, so two labels that slugify
alike ("a/b" and "a b") never share a key. The original text is always kept in
the tables' ``label`` column; the key is only an address.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

_KEY_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_MAX_SLUG = 40


def is_valid_key(key: str) -> bool:
    return bool(_KEY_RE.match(key))


def label_key(label: str) -> str:
    """Return the partition key of a label (see module docstring)."""
    if not isinstance(label, str) or label.strip() == "":
        raise ValueError(f"a label must be a non-empty string, got {label!r}")
    if is_valid_key(label):
        return label
    ascii_text = unicodedata.normalize("NFKD", label).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")[:_MAX_SLUG].strip("-")
    digest = hashlib.sha1(label.encode("utf-8")).hexdigest()[:6]
    return f"{slug}-{digest}" if slug else f"label-{digest}"


def check_unique_keys(labels: list[str]) -> dict[str, str]:
    """Map each label to its key; fail if two different labels share a key."""
    keys: dict[str, str] = {}
    for label in labels:
        key = label_key(label)
        other = keys.get(key)
        if other is not None and other != label:
            raise ValueError(f"labels {other!r} and {label!r} map to the same partition key {key!r}")
        keys[key] = label
    return {label: key for key, label in keys.items()}

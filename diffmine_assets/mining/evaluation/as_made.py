"""The options the stored results were made with, read from their records.

`diffmine eval` scores stored results and, beside them, controls it makes
now. Made from the config's options, a control would not be "trained and
scored the same way" once the config had changed since the results were
made (a learning rate edited, a timestep range moved): the comparison would
be between two recipes. So controls, chance levels and regenerations use
the options each stored table records (the checkpoint's `params`, the
typicality, patch and translation tables' `params`), and the differences
from the config are said. The clusters' record (the features' options
within it) names what the cluster figures were made from: no control uses
it, but the evaluation records it with the figures.
"""

from __future__ import annotations

import json
from typing import Callable

import polars as pl
from pydantic import BaseModel


# not the recipe: where the run kept its time (a control trains the recorded
# steps without one) and where the base model lies on this machine
NOT_RECIPE = ("time_budget", "model_path")


def _parsed(params: str | None) -> dict | None:
    try:
        stored = json.loads(params or "")
    except (TypeError, ValueError):
        return None
    return stored if isinstance(stored, dict) else None


def recorded(current: BaseModel, params: str | None, leave_out: tuple[str, ...] = ()) -> BaseModel | None:
    """`current`'s kind of options as `params` (a stored JSON record) gives
    them, or None when there is no readable record. A field the record
    lacks because it did not exist yet is what the code did before it
    (`NEUTRAL_WHEN_ADDED`, `NETWORK_BEFORE_RECORDED`), not today's default;
    options that change no result (a batch size) and `NOT_RECIPE` are the
    config's; what the code no longer knows is dropped."""
    stored = _parsed(params)
    if stored is None:
        return None
    kind = type(current)
    skip = set(getattr(kind, "RUN_ONLY", ())) | set(leave_out) | set(NOT_RECIPE)
    before = {**getattr(kind, "NEUTRAL_WHEN_ADDED", {}), **getattr(kind, "NETWORK_BEFORE_RECORDED", {})}
    fields = {k: v for k, v in {**before, **stored}.items() if k in kind.model_fields and k not in skip}
    try:
        return kind(**{**current.model_dump(), **fields})
    except (TypeError, ValueError):
        return None


def _one_record(table: pl.DataFrame | None, key: str | None = None, drop: tuple[str, ...] = ()) -> str | None:
    """The table's record (the one nested under `key` in it, when given)
    when every row shares one (labels made at one time; compared as
    options, `drop` left out, not as text); "" when its rows disagree or
    only some have one (labels made before the record existed); else None."""
    if table is None or "params" not in table.columns or table.is_empty():
        return None
    parsed = [_parsed(p) for p in table["params"].unique().to_list()]
    if key is not None:
        parsed = [p.get(key) if p is not None and isinstance(p.get(key), dict) else None for p in parsed]
    readable = {json.dumps({k: v for k, v in p.items() if k not in drop}, sort_keys=True) for p in parsed if p is not None}
    if len(readable) > 1 or (readable and None in parsed):
        return ""
    return next(iter(readable)) if readable else None


def changed(current: BaseModel, made: BaseModel) -> list[str]:
    """The fields whose value differs between the config's options and the recorded ones."""
    a, b = current.model_dump(mode="json"), made.model_dump(mode="json")
    return sorted(k for k in a if a.get(k) != b.get(k))


def spec_as_made(spec, checkpoint: dict | None, typicality: pl.DataFrame | None, patches: pl.DataFrame | None,
                 translations: pl.DataFrame | None, log: Callable[[str], None] = print, clusters: pl.DataFrame | None = None):
    """`spec` with the training, typicality, patch, translation, feature and
    cluster options its stored results were made with, where their records
    say; the config's where a record is missing or the labels' records differ."""
    made = {}
    records = {
        "training": (checkpoint or {}).get("params"),
        "typicality": _one_record(typicality),
        "patches": _one_record(patches),
        "translation": _one_record(translations),
        "clusters": _one_record(clusters, drop=("features",)),  # the features' options are their own section
    }
    records["features"] = _one_record(clusters, key="features")  # the clusters' record names the features they clustered
    for section, params in records.items():
        current = getattr(spec, section)
        if params == "":
            log(f"{section}: the labels' stored results were made with different options; controls, chance levels and the figures' record use the config's")
            continue
        # the translations' record also names the typicality options that scored them (the typicality section's own)
        options = recorded(current, params, leave_out=("typicality", "features"))
        if options is None:
            continue
        diff = changed(current, options)
        if diff:
            log(f"{section}: the stored results were made with other options than the config's now ({', '.join(diff)}); "
                "controls, chance levels and the figures' record use the stored results' own (materialize again to use the config's)")
            made[section] = options
    return spec.model_copy(update=made) if made else spec


def translations_as_made(spec, translations: pl.DataFrame | None, log: Callable[[str], None] = print):
    """`spec` with the typicality options the stored translations were
    scored with (their record's own `typicality`), for their chance level
    and their controls. They are normally the maps' (a change of those
    re-makes the translations), but a label re-made alone can differ."""
    options = recorded(spec.typicality, _one_record(translations, key="typicality"))
    diff = changed(spec.typicality, options) if options is not None else []
    if not diff:
        return spec
    log(f"translations: scored with other typicality options than the maps' ({', '.join(diff)}); "
        "their chance level and controls are scored as they were")
    return spec.model_copy(update={"typicality": options})

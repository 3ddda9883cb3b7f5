"""The layers of docs/DESIGN.md, held against the package's own imports
(structure.py measures them; `python -m diffmine_assets_tests.structure`
prints the figures)."""

import ast
import typing

import pytest

from diffmine_assets_tests import structure


@pytest.fixture(scope="module")
def figures():
    return structure.measure()


def test_no_import_circle_between_modules_or_rooms(figures):
    assert figures["module_circles"] == [] and figures["room_circles"] == []


def test_the_rooms_stand_on_at_most_ten_floors(figures):
    assert figures["floors"] <= 10, figures["rooms_by_floor"]


def test_no_module_is_over_400_lines(figures):
    assert max(figures["largest_modules"].values()) <= 400, figures["largest_modules"]


def test_assets_stay_thin(figures):
    long = {name: n for name, n in figures["asset_bodies"].items() if n > 35}
    assert figures["asset_bodies"] and long == {}


def test_the_typicality_sequence_is_written_once(figures):
    assert figures["typicality_maps_callers"] == ["diffmine_assets.mining.typicality.score"]


def test_imports_inside_functions_only_in_the_command_line_with_a_reason(figures):
    outside = [i for i in figures["imports_inside_functions"] if not i.startswith("diffmine_assets.cli:")]
    assert outside == []
    lines = (structure.ROOT / "cli.py").read_text().splitlines()
    for item in figures["imports_inside_functions"]:
        line = int(item.split(":")[1].split()[0])
        block = lines[line - 1 : line + 2]  # a group of imports carries its reason on its first line
        assert any("#" in b for b in [lines[line - 2], *block]), item


def test_the_science_never_imports_dagster():
    for path in (structure.ROOT / "mining").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(n == "dagster" or n.startswith("dagster.") or n.startswith("dagster_") for n in names), path


def test_every_registered_backend_is_a_choice_of_the_config_and_the_reverse():
    from diffmine_assets.mining.config import TrainingOptions
    from diffmine_assets.mining.denoisers.registry import BACKENDS, backend

    assert set(typing.get_args(TrainingOptions.model_fields["backend"].annotation)) == set(BACKENDS)
    assert backend("tiny").backend == "tiny"
    with pytest.raises(ValueError, match="unknown denoiser backend 'nope'"):
        backend("nope")


def test_every_dataset_kind_has_a_source():
    from diffmine_assets.mining.config.datasets import KINDS
    from diffmine_assets.mining.datasets.registry import SOURCES

    assert set(KINDS) == set(SOURCES)

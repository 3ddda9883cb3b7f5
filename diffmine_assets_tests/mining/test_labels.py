import pytest

from dagster import MultiPartitionsDefinition, StaticPartitionsDefinition
from diffmine_assets.mining.labels import check_unique_keys, is_valid_key, label_key

ODD = ["1950s", "a/b", "a b", "a|b", "a,b", "x'); drop view images; --", "東京", "Zürich", "ÉCOLE", "...", "  spaced  ", "Chest X-Ray with Nodule|Mass", "-lead"]


def test_valid_keys_are_kept_as_they_are():
    assert label_key("1950s") == "1950s"
    assert label_key("street_view-2") == "street_view-2"


@pytest.mark.parametrize("label", ODD)
def test_every_label_gets_a_valid_partition_key(label):
    key = label_key(label)
    assert is_valid_key(key), key
    assert not set("|,[]/ ") & set(key)
    # Dagster accepts it as a dimension key of a multi-partition.
    MultiPartitionsDefinition({"dataset": StaticPartitionsDefinition(["d"]), "label": StaticPartitionsDefinition([key])})


def test_labels_that_slugify_alike_get_different_keys():
    keys = check_unique_keys(ODD)
    assert len(set(keys.values())) == len(ODD)
    assert label_key("a/b") != label_key("a b")
    assert label_key("a/b").startswith("a-b-")


def test_key_is_stable_and_readable():
    assert label_key("Zürich") == label_key("Zürich")
    assert label_key("Zürich").startswith("zurich-")
    assert label_key("東京").startswith("label-")


def test_empty_label_is_refused():
    with pytest.raises(ValueError, match="non-empty"):
        label_key("  ")

"""ImageNet-1k class names and resolve_class."""

from __future__ import annotations

import subprocess
import sys

import pytest

from neurofilters.filters.zoo.labels import imagenet_labels, resolve_class
from neurofilters.plugin_host import ParameterError


@pytest.fixture(scope="module")
def labels() -> list[str]:
    return imagenet_labels()


def test_imagenet_labels_are_the_1000_classes_in_order(labels: list[str]) -> None:
    assert len(labels) == 1000 and len(set(labels)) == 1000
    assert (labels[0], labels[130], labels[282], labels[281], labels[967]) == (
        "tench", "flamingo", "tiger cat", "tabby", "espresso"
    )
    assert (labels[134], labels[517]) == ("crane bird", "construction crane")  # WordNet calls both 'crane'


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (130, 130), ("130", 130), (" 967 ", 967), (0, 0),
        ("flamingo", 130), ("Tiger_Cat", 282), ("tiger-cat", 282), ("  TIGER   cat ", 282),
        ("tabby cat", 281),  # a synonym inside the label string
        ("man-eater", 2),  # a WordNet synonym of 'great white shark'
        ("rooster", 7), ("cock", 7),  # curated name and WordNet name
        ("missile", 657),  # a label wins over the synonym of 'projectile'
    ],
)
def test_resolve_class_accepts_ids_and_names(labels: list[str], value: int | str, expected: int) -> None:
    assert resolve_class(value, labels) == expected


def test_a_near_miss_gets_suggestions(labels: list[str]) -> None:
    with pytest.raises(ParameterError) as caught:
        resolve_class("flamingoo", labels)
    message = str(caught.value)
    assert "Received: class_label='flamingoo'" in message and "Did you mean: flamingo (130)" in message
    assert caught.value.param == "class_label"


def test_a_word_suggests_the_classes_containing_it(labels: list[str]) -> None:
    with pytest.raises(ParameterError, match=r"tiger cat \(282\)") as caught:
        resolve_class("cat", labels, param="target")
    assert "Received: target='cat'" in str(caught.value)


def test_an_ambiguous_synonym_lists_the_classes(labels: list[str]) -> None:
    with pytest.raises(ParameterError, match=r"names several classes: 134 \(crane bird\), 517 \(construction crane\)"):
        resolve_class("crane", labels)


@pytest.mark.parametrize("value", [1000, -1, "1000", True, 2.5, None])
def test_bad_ids_are_refused(labels: list[str], value: object) -> None:
    with pytest.raises(ParameterError, match="Received: class_label="):
        resolve_class(value, labels)  # type: ignore[arg-type]


def test_custom_labels_with_synonyms() -> None:
    custom = ["cat, kitty", "dog"]
    assert resolve_class("Kitty", custom) == 0
    assert resolve_class("dog", custom) == 1
    with pytest.raises(ParameterError, match="between 0 and 1"):
        resolve_class(2, custom)


def test_labels_module_is_light() -> None:
    code = "import sys, neurofilters.filters.zoo.labels as l; l.resolve_class('flamingo', l.imagenet_labels()); " \
           "print(sorted(m for m in ('numpy', 'keras', 'tensorflow') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"

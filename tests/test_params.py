"""Parameter declarations: conversion, validation and every error path."""

from __future__ import annotations

import pytest

from neurofilters.plugin_host import DeclarationError, Param, ParameterError, format_value, validate_params

STEPS = Param("steps", "int", 10, "Gradient steps per octave.", minimum=1, maximum=500)
STEP = Param("step_size", "float", 0.01, "Step size.", minimum=0.0, maximum=1.0)
FLAG = Param("tile", "bool", True, "Compute in tiles.")
MODE = Param("loss", "choice", "mean", "Loss form.", choices=("mean", "squared"))
TEXT = Param("note", "string", "", "Free text.")
FILE = Param("guide", "path", "", "Guide image.")
COLOUR = Param("tint", "colour", "#ff8000", "Tint.")
CLASS = Param("target", "class_label", "flamingo", "Class to hallucinate.")
LAYER = Param("layer", "layer", "block5", "Layer.")
LAYERS = Param("layers", "layers", "mixed3:1,mixed5:1.5", "Layers and weights.")
MODEL = Param("model", "model", "lite0", "Model.")
ALL = (STEPS, STEP, FLAG, MODE, TEXT, FILE, COLOUR, CLASS, LAYER, LAYERS, MODEL)


def test_defaults_fill_every_parameter() -> None:
    values = validate_params(ALL, {})
    assert values == {
        "steps": 10,
        "step_size": 0.01,
        "tile": True,
        "loss": "mean",
        "note": "",
        "guide": "",
        "tint": (1.0, 128 / 255, 0.0),
        "target": "flamingo",
        "layer": "block5",
        "layers": (("mixed3", 1.0), ("mixed5", 1.5)),
        "model": "lite0",
    }


@pytest.mark.parametrize(
    ("param", "raw", "expected"),
    [
        (STEPS, "42", 42),
        (STEPS, 7.0, 7),
        (STEP, "0.5", 0.5),
        (STEP, 1, 1.0),
        (FLAG, "no", False),
        (FLAG, "ON", True),
        (FLAG, 0, False),
        (MODE, "Squared", "squared"),
        (COLOUR, "0, 255, 51", (0.0, 1.0, 0.2)),
        (COLOUR, "#00FF00", (0.0, 1.0, 0.0)),
        (COLOUR, (0.1, 0.2, 0.3), (0.1, 0.2, 0.3)),
        (CLASS, "281", 281),
        (CLASS, 0, 0),
        (CLASS, " tiger cat ", "tiger cat"),
        (LAYER, " block4_conv3 ", "block4_conv3"),
        (LAYERS, "a", (("a", 1.0),)),
        (LAYERS, [("b", 2)], (("b", 2.0),)),
        (MODEL, "my/net.keras", "my/net.keras"),
    ],
)
def test_conversions(param: Param, raw: object, expected: object) -> None:
    assert param.convert(raw) == expected


@pytest.mark.parametrize(
    ("param", "raw", "fragment"),
    [
        (STEPS, "2.5", "must be an integer between 1 and 500. Received: steps=2.5"),
        (STEPS, 0, "Received: steps=0"),
        (STEPS, 501, "between 1 and 500"),
        (STEPS, True, "Received: steps=True"),
        (STEP, "fast", "must be a number between 0 and 1. Received: step_size=fast"),
        (STEP, 2.5, "Received: step_size=2.5"),
        (STEP, "nan", "must be a finite number"),
        (FLAG, "maybe", "must be true or false. Received: tile=maybe"),
        (FLAG, 2, "Received: tile=2"),
        (MODE, "max", "must be one of mean, squared. Received: loss=max"),
        (TEXT, 3, "must be text"),
        (FILE, "/no/such/file.png", "no file is there"),
        (COLOUR, "#12345", "as #rrggbb or r,g,b"),
        (COLOUR, "1,2", "Received: tint=1,2"),
        (COLOUR, "0,0,256", "Received: tint=0,0,256"),
        (COLOUR, (2.0, 0.0, 0.0), "Received: tint=(2.0, 0.0, 0.0)"),
        (CLASS, -1, "class id (integer >= 0)"),
        (CLASS, "", "Received: target="),
        (LAYER, "bad layer!", "layer name or alias"),
        (LAYERS, "mixed3:heavy", "'mixed3:1.0,mixed5:1.5'"),
        (LAYERS, ",", "Received: layers=,"),
        (MODEL, "  ", "model name"),
    ],
)
def test_invalid_values_name_parameter_value_and_allowed(param: Param, raw: object, fragment: str) -> None:
    with pytest.raises(ParameterError) as info:
        param.convert(raw)
    assert fragment in str(info.value)
    assert info.value.param == param.name
    assert info.value.value == raw


def test_existing_path_is_accepted(tmp_path) -> None:  # type: ignore[no-untyped-def]
    image = tmp_path / "guide.png"
    image.write_bytes(b"x")
    assert FILE.convert(str(image)) == str(image)
    assert FILE.convert(image) == str(image)


def test_unknown_parameter_is_rejected_with_suggestion() -> None:
    with pytest.raises(ParameterError) as info:
        validate_params(ALL, {"stepz": 3})
    message = str(info.value)
    assert "Unknown parameter. Received: stepz=3" in message
    assert "Did you mean: steps" in message
    assert info.value.param == "stepz"


def test_dashed_names_are_accepted() -> None:
    assert validate_params(ALL, {"step-size": "0.2"})["step_size"] == 0.2


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"name": "Steps", "kind": "int", "default": 1}, "snake_case"),
        ({"name": "class", "kind": "int", "default": 1}, "snake_case"),
        ({"name": "n", "kind": "integer", "default": 1}, "unknown kind"),
        ({"name": "n", "kind": "int", "default": 1, "help": ""}, "needs a help text"),
        ({"name": "n", "kind": "choice", "default": "a"}, "declares no choices"),
        ({"name": "n", "kind": "int", "default": 1, "choices": ("a",)}, "Only choice parameters"),
        ({"name": "n", "kind": "bool", "default": True, "minimum": 0}, "Only int and float"),
        ({"name": "n", "kind": "int", "default": 1, "minimum": 5, "maximum": 2}, "above maximum"),
        ({"name": "n", "kind": "int", "default": 0, "minimum": 1}, "Default of parameter 'n' is invalid"),
    ],
)
def test_bad_declarations_fail_at_declaration_time(kwargs: dict, fragment: str) -> None:
    kwargs.setdefault("help", "Help.")
    with pytest.raises(DeclarationError) as info:
        Param(**kwargs)
    assert fragment in str(info.value)


def test_label_is_derived_and_format_round_trips() -> None:
    assert STEP.label == "Step size"
    for param in ALL:
        rendered = format_value(param, param.default)
        assert param.convert(rendered, check_files=False) == param.default


# --------------------------------------------------------------------------- hostile input
def test_huge_integer_strings_are_parameter_errors_with_a_short_echo() -> None:
    """Over 4,300 digits int() raises ValueError; the user gets the usual error, the echo cut."""
    huge = "1" * 5000
    with pytest.raises(ParameterError) as caught:
        validate_params(ALL, {"steps": huge})
    message = str(caught.value)
    assert message.startswith('"steps" must be an integer between 1 and 500. Received: steps=111')
    assert "(5000 characters)" in message and len(message) < 400
    with pytest.raises(ParameterError) as caught:
        validate_params(ALL, {"steps": 10**5000})  # an int object that repr() cannot print
    assert "digits>" in str(caught.value)


def test_huge_integer_for_a_float_parameter_is_a_parameter_error() -> None:
    with pytest.raises(ParameterError, match='"step_size" must be'):
        validate_params(ALL, {"step_size": 10**400})  # float() raises OverflowError
    with pytest.raises(ParameterError, match='"layers" must be'):
        validate_params(ALL, {"layers": [["mixed3", 10**400]]})


@pytest.mark.parametrize("bad", [[["block5", None]], [["block5", True]], [[5, 1.0]], [["block5", [1]]], "block5:x"])
def test_layer_weights_in_list_form_must_be_numbers(bad: object) -> None:
    with pytest.raises(ParameterError, match='"layers" must be layer names with optional weights'):
        validate_params(ALL, {"layers": bad})
    assert validate_params(ALL, {"layers": [["block5", 2], ["block6", "0.5"]]})["layers"] == (("block5", 2.0), ("block6", 0.5))


def test_echoed_values_are_cut() -> None:
    long_text = "x" * 100_000
    for values in ({"steps": long_text}, {long_text: 1}, {"tint": long_text}):
        with pytest.raises(ParameterError) as caught:
            validate_params(ALL, values)
        assert len(str(caught.value)) < 600, len(str(caught.value))


def test_validated_values_remember_what_was_given() -> None:
    """The names the user set, even to the default value (presets change only the others)."""
    values = validate_params(ALL, {"steps": 10, "step-size": "0.5"})
    assert values.given == {"steps", "step_size"}
    assert values["steps"] == STEPS.default
    assert validate_params(ALL, {}).given == frozenset()


def test_seeds_are_integers_from_0() -> None:
    from neurofilters.plugin_host.core.params import MAX_SEED, parse_seed

    assert parse_seed("7") == 7 and parse_seed(0) == 0 and parse_seed(str(MAX_SEED)) == MAX_SEED
    for bad in ("-5", -5, "x", True, 1.5, "9" * 5000, MAX_SEED + 1):
        with pytest.raises(ParameterError, match='"seed" must be an integer between 0 and'):
            parse_seed(bad)


def test_the_worker_reads_a_header_with_a_huge_integer_as_a_protocol_error() -> None:
    """json.loads raises ValueError on an integer over 4,300 digits: the connection must survive it."""
    import socket

    from neurofilters.plugin_host.gimp import worker

    header = ('{"type": "run", "seed": ' + "1" * 5000 + "}").encode()
    left, right = socket.socketpair()
    with left, right:
        frame = worker._FRAME
        left.sendall(frame.pack(worker.MAGIC, len(header), 0) + header)
        with pytest.raises(worker.wire.ProtocolError, match="header is not JSON"):  # the connection loop answers these
            worker.recv_message(right)

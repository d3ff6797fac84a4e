"""Class names are checked against the zoo's label lists before any model loads; one classification rule per model."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import neurofilters
from neurofilters.plugin_host import ParameterError, build_registry
from neurofilters.plugin_host.core.call import check_class_names


@pytest.fixture()
def photo(tmp_path: Path, chelsea: np.ndarray) -> Path:
    path = tmp_path / "cat.png"
    Image.fromarray((chelsea * 255).astype(np.uint8)).save(path)
    return path


def _cli(*args: str) -> tuple[int, str, bool, float]:
    """Run the CLI in a fresh interpreter: exit code, stderr, whether a framework got imported, seconds."""
    code = (
        "import sys\nfrom neurofilters.plugin_host.cli.main import main\n"
        f"rc = main({list(args)!r})\n"
        "print('FRAMEWORK' if {'tensorflow', 'keras', 'jax', 'torch'} & set(sys.modules) else 'LIGHT')\n"
        "sys.exit(rc)\n"
    )
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    return done.returncode, done.stderr, "FRAMEWORK" in done.stdout, time.perf_counter() - start


def test_a_misspelt_class_fails_before_any_framework_loads(photo: Path, tmp_path: Path) -> None:
    code, error, framework, seconds = _cli("run", "hallucinate", str(photo), "-o", str(tmp_path / "h.png"), "--class", "flamingoo")
    print(f"--class flamingoo refused in {seconds:.2f} s (a fresh interpreter)")
    assert code == 2, error
    assert "--class must be a class id between 0 and 999 or a class name. Received: --class 'flamingoo'." in error
    assert "Did you mean: flamingo (130)?" in error and "class_" not in error
    assert not framework
    assert not (tmp_path / "h.png").exists()


def test_ambiguous_and_misspelt_targets_name_their_flag(photo: Path, tmp_path: Path) -> None:
    code, error, framework, _ = _cli("run", "adversarial", str(photo), "-o", str(tmp_path / "a.png"), "--target", "crane")
    assert code == 2 and not framework
    assert "--target 'crane' names several classes: 134 (crane bird), 517 (construction crane)" in error
    code, error, framework, _ = _cli("run", "saliency", str(photo), "-o", str(tmp_path / "s.png"), "--class", "tiger kat")
    assert code == 2 and not framework and "Did you mean: tiger cat (282)" in error


def test_the_check_leaves_ranks_ids_and_unlabelled_models_to_the_filter() -> None:
    registry = build_registry(autoload=False)
    saliency = registry.get_filter("saliency")
    check_class_names(saliency, {"class_": "top-2", "model": "lite0"})  # a rank, not a name
    check_class_names(saliency, {"class_": "Tiger_Cat", "model": "efficientnet-lite0"})  # an alias, a spelling
    check_class_names(saliency, {"class_": "whatever", "model": "vgg16-hed"})  # a backbone: no label list
    with pytest.raises(ParameterError, match="Did you mean") as caught:
        check_class_names(saliency, {"class_": "flamingoo", "model": "resnet50"})  # Keras Applications: same labels
    assert caught.value.param == "class_"


def test_the_python_api_refuses_a_misspelt_class(chelsea: np.ndarray) -> None:
    with pytest.raises(ParameterError, match=r"Did you mean: flamingo \(130\)"):
        neurofilters.apply("hallucinate", chelsea, class_="flamingoo")


@pytest.mark.slow
def test_saliency_top1_is_classify_top1(chelsea: np.ndarray) -> None:
    # On this photo the whole image at the network's area (what saliency ranked on) gives 'Egyptian cat',
    # classify's centre crop 'tiger cat': now both rank as classify does.
    class_id, name, _ = neurofilters.load_model("lite0").classify(chelsea, top=1)[0]
    result = neurofilters.apply("saliency", chelsea, method="grad-cam")
    assert result.summary == f"grad-cam map of class {class_id} ({name})"

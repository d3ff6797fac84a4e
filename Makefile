# The two commands of the README:
#   make demo   installs everything into .venv and dreams on a sample photo
#   make test   installs everything into .venv and runs the whole test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install demo test test-tf test-jax bench docs gallery clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# -qq: errors only. setuptools tells every editable install of this layout (the repository root is the
	# package, so it installs through a meta-path finder) to "be careful with folders ... with the same name as
	# your package", and recent pip (26.3 here; 23.2 did not) shows it; editable_mode=strict only swaps it for another.
	$(BIN)/python -m pip install -qq -e ".[test]"
	# The torch backend's gradient test needs a CPU build of PyTorch; "+cpu" is never
	# served by PyPI itself, so where no such build is at hand this skips quickly
	# instead of downloading a multi-GB CUDA build (the test then skips, saying why).
	# captum (the saliency tests' guided-backprop peer) comes with it, never pulling a CUDA torch.
	$(BIN)/python -m pip install --quiet "torch==2.13.0+cpu" "captum==0.9.0" 2>/dev/null || echo "note: no CPU build of torch 2.13 here; the torch backend and captum tests will skip"
	touch $(STAMP)

demo: install
	mkdir -p build
	$(BIN)/python docs/examples/sample_photo.py chelsea build/chelsea.png
	$(BIN)/neurofilters run deepdream build/chelsea.png -o demo-output.png
	@echo "open demo-output.png to see the dream"

test: install test-tf test-jax

# --confcutdir=tests: a checkout in a folder whose name is no Python name (neurofilters-main) would
# otherwise be collected as a package whose __init__.py cannot be imported on its own.
test-tf:
	$(BIN)/python -m pytest --confcutdir=tests

# The filter smoke tests again, on Keras' JAX backend.
test-jax:
	KERAS_BACKEND=jax $(BIN)/python -m pytest --confcutdir=tests -m smoke -p no:cacheprovider

bench: install
	$(BIN)/python bench/run_all.py

docs: install
	$(BIN)/python docs/update_param_tables.py
	$(BIN)/python docs/build_site.py
	@echo "open build/site/index.html"

# The gallery page: every registered filter on the sample photos (seeded; rerun after adding a filter).
gallery: install
	$(BIN)/python docs/make_gallery.py
	# The course's figures, reproduced by the commands their page prints (docs/course.md, minutes).
	$(BIN)/python docs/make_course.py

clean:
	rm -rf $(VENV) build demo-output.png

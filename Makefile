# Two commands from a fresh clone (README):
#   make demo   the main job: train and evaluate on the built-in synthetic set (CPU, minutes)
#   make test   the test suite
#   (make test-fast: the suite without the end-to-end runs marked slow, for quick checks while developing)
# Each first installs what is missing: the README's pinned set-up (and, for the tests, the peer toolkits the
# importer tests compare with), once; a stamp under .make/ records it, and a changed requirements file redoes it.
# PYTHON=path/to/python picks the interpreter (default: the python on PATH, e.g. an active virtual environment).

PYTHON ?= python
STAMPS := .make
DEMO_CONFIG := configs/Synthetic/resnet50_circle.yml
DEMO_OUTPUT := output/synthetic/resnet50_circle

.PHONY: demo test test-fast setup peers

demo: $(STAMPS)/setup
	$(PYTHON) tools/train.py --config $(DEMO_CONFIG) $(if $(wildcard $(DEMO_OUTPUT)/model_last.pt),--resume)

test: $(STAMPS)/setup $(STAMPS)/peers
	$(PYTHON) -m pytest

test-fast: $(STAMPS)/setup $(STAMPS)/peers
	$(PYTHON) -m pytest -m "not slow"

setup: $(STAMPS)/setup

peers: $(STAMPS)/peers

# The README's set-up: tested pins and reid itself (editable).
$(STAMPS)/setup: requirements.txt setup.py
	$(PYTHON) -m pip install -r requirements.txt -e .
	@mkdir -p $(STAMPS) && touch $@

# Test-only: fast-reid and torchreid, installed as requirements-peers.txt says (their declared dependencies are
# too old for torch 2, so they go in without them).
$(STAMPS)/peers: requirements-peers.txt $(STAMPS)/setup
	$(PYTHON) -m pip install -r requirements-peers.txt
	$(PYTHON) -m pip install --no-deps --no-build-isolation fastreid==1.4.0 torchreid==0.2.5
	@touch $@

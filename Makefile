# Two set-up commands: `make demo` and `make test`. Both create .venv if missing and install.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# torch and torchvision first, pinned to the builds this team's machines hold on local disk.
TORCH := torch==2.14.1 torchvision==0.29.1
DEMO_OUT ?= out/demo

.PHONY: setup demo test clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: setup
	$(VENV)/bin/getok-data build --src synthetic --split train --size 64 --grid 16 \
		--segmenter superpixel --images-per-shard 16 --out $(DEMO_OUT) --force
	$(VENV)/bin/getok-data verify $(DEMO_OUT)
	$(VENV)/bin/getok-data inspect $(DEMO_OUT) --png $(DEMO_OUT)/inspect.png
	$(VENV)/bin/getok-data inspect $(DEMO_OUT) --gallery $(DEMO_OUT)/gallery.png

test: setup
	$(PY) -m pytest -q tests

clean:
	rm -rf out .pytest_cache

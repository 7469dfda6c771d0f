# Two set-up commands: `make demo` and `make test`. Both create .venv if missing and install.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# torch and torchvision first, pinned to the builds this team's machines hold on local disk.
TORCH := torch==2.14.1 torchvision==0.29.1
DEMO_OUT ?= out/demo

.PHONY: setup system-deps demo test clean

setup: $(STAMP) system-deps

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

# Java (pycocoevalcap's tokenizer and METEOR: caption scores) and Chromium (the report's browser
# tests, driven by Playwright without downloading a browser), from Debian when missing.
system-deps:
	@command -v java >/dev/null 2>&1 && command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq default-jre-headless chromium >/dev/null; \
	  else echo "warning: install java and chromium (Debian: default-jre-headless chromium) for the caption and report tests"; fi; }

demo: setup
	$(VENV)/bin/getok-data build --src synthetic --split train --size 64 --grid 16 \
		--segmenter superpixel --images-per-shard 16 --out $(DEMO_OUT) --force
	$(VENV)/bin/getok-data verify $(DEMO_OUT)
	$(VENV)/bin/getok-data inspect $(DEMO_OUT) --png $(DEMO_OUT)/inspect.png
	$(VENV)/bin/getok-data inspect $(DEMO_OUT) --gallery $(DEMO_OUT)/gallery.png
	$(VENV)/bin/getok-data report $(DEMO_OUT) --out $(DEMO_OUT)/report --no-progress

test: setup
	$(PY) -m pytest -q tests

clean:
	rm -rf out .pytest_cache

# Custodian: everything a fresh Debian / Raspberry Pi OS machine needs, in two commands.
#   make demo   run the whole system on this machine (central, synthetic cameras, UI)
#   make test   install what is missing, then run the test suite
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
APT_PACKAGES := ffmpeg tmux fonts-dejavu-core openssl mtools dosfstools poppler-utils p7zip-full
STAMP  := $(VENV)/.installed

PYTEST_ARGS ?=

.PHONY: demo test test-other-python bench system-deps clean

system-deps:
	@missing=""; \
	for tool in ffmpeg ffprobe tmux openssl mcopy mkfs.vfat pdftotext 7z; do \
	  command -v $$tool >/dev/null 2>&1 || missing="$$missing $$tool"; done; \
	[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing="$$missing fonts"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing from apt:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES) >/dev/null; \
	  else \
	    echo "missing:$$missing"; \
	    echo "run: sudo apt-get update && sudo apt-get install -y $(APT_PACKAGES)"; exit 1; \
	  fi; \
	fi

$(STAMP): pyproject.toml
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV) || { \
	  echo "$(PYTHON) -m venv failed: run 'sudo apt-get install -y python3-venv'"; exit 1; }
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

demo: system-deps $(STAMP)
	$(VENV)/bin/custodian demo

test: system-deps $(STAMP)
	$(PY) -m pytest -n 2 -q $(PYTEST_ARGS)

# Raspberry Pi OS trixie ships Python 3.13 (bookworm 3.11): run the fast tests there too
# when this machine has it. The slow end-to-end tests run once, in `make test`.
OTHER_PYTHON ?= $(firstword $(wildcard /usr/bin/python3.13 $(HOME)/.pyenv/versions/3.13*/bin/python3.13))
test-other-python:
	@if [ -n "$(OTHER_PYTHON)" ] && $(OTHER_PYTHON) -c pass 2>/dev/null; then \
	  $(MAKE) test PYTHON=$(OTHER_PYTHON) VENV=.venv-3.13 PYTEST_ARGS="-m 'not slow'"; \
	else echo "no Python 3.13 on this machine: skipping"; fi

bench: system-deps $(STAMP)
	$(PY) -m bench.run

clean:
	rm -rf $(VENV) .venv-* var build *.egg-info .pytest_cache

# Custodian: everything a fresh Debian / Raspberry Pi OS machine needs, in two commands.
#   make demo   run the whole system on this machine (central, synthetic cameras, UI)
#   make test   install what is missing, then run the test suite
#   make bundle the offline bundle flash.sh puts on every card (build/bundle)
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# fdisk (sfdisk), mtools, bmap-tools, xz-utils: flash.sh; dosfstools, e2fsprogs: test images with
# Raspberry Pi OS's layout; cloud-init: `cloud-init schema` validates the generated user-data;
# shellcheck: flash.sh and the first-boot scripts. poppler-utils (pdftotext), p7zip-full (7z):
# the tests read evidence packages as a recipient would.
# GStreamer's RTSP server (system Python 3 with PyGObject) stands in for IP cameras in the tests and
# benchmarks (bench/rtsp_camera.py): x264enc is in -ugly, x265enc in -bad, the RTP payloaders in -good.
GST_PACKAGES := python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good \
  gstreamer1.0-plugins-ugly gstreamer1.0-plugins-bad
APT_PACKAGES := ffmpeg tmux fonts-dejavu-core openssl mtools dosfstools fdisk e2fsprogs xz-utils bmap-tools \
                cloud-init shellcheck poppler-utils p7zip-full $(GST_PACKAGES)
GST_CHECK := import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0'); \
  from gi.repository import Gst; Gst.init(None); \
  assert all(Gst.ElementFactory.find(e) for e in ('videotestsrc', 'x264enc', 'x265enc', 'rtph264pay', 'rtph265pay'))
STAMP  := $(VENV)/.installed

PYTEST_ARGS ?=

.PHONY: demo test test-other-python bench bundle system-deps clean

# cloud-init is installed only for `cloud-init schema`: /etc/cloud/cloud-init.disabled (made
# before it is installed, and only where cloud-init is not installed already) keeps its
# services from ever configuring this machine at boot.
system-deps:
	@missing=""; \
	for tool in ffmpeg ffprobe tmux openssl mcopy mkfs.vfat mkfs.ext4 sfdisk xz bmaptool cloud-init shellcheck pdftotext 7z; do \
	  command -v $$tool >/dev/null 2>&1 || missing="$$missing $$tool"; done; \
	[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing="$$missing fonts"; \
	/usr/bin/python3 -c "$(GST_CHECK)" >/dev/null 2>&1 || missing="$$missing gstreamer-rtsp-server"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing from apt:$$missing"; \
	    if ! command -v cloud-init >/dev/null 2>&1; then \
	      mkdir -p /etc/cloud && touch /etc/cloud/cloud-init.disabled; \
	    fi; \
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

# The project's wheel and the aarch64 wheels of its dependencies (CPython 3.11 and 3.13),
# for first boot without internet. Build output: not committed.
bundle: $(STAMP)
	PYTHON=$(PY) bash images/bundle.sh build/bundle

bench: system-deps $(STAMP)
	$(PY) -m bench.run

clean:
	rm -rf $(VENV) .venv-* var build *.egg-info .pytest_cache

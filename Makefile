# Set-up, run and test for ComfyUI-AuthFace. See README.md.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON_BOOT ?= python3
VENV        := .venv
PY          := $(VENV)/bin/python
PIP         := $(PY) -m pip --disable-pip-version-check -q
CACHE       := .cache
HOSTS       := $(CACHE)/hosts
HOST_CURRENT := $(HOSTS)/comfyui-0.30.0
HOST_OLDEST  := $(HOSTS)/comfyui-0.3.75
COMFYUI_DIR ?= $(HOST_CURRENT)
COMFYUI_PYTHON ?= $(abspath $(PY))
PORT        ?= 8188
PACK_NAME   := ComfyUI-AuthFace
PYTEST_ARGS ?=
# Extra ComfyUI start-up flags for `make run`, e.g. COMFYUI_ARGS=--cpu to stay off the GPU.
COMFYUI_ARGS ?=

.PHONY: help setup browser run test bench clean-hosts

help:
	@echo "make setup   build .venv/ and the ComfyUI test hosts (idempotent)"
	@echo "make run     start ComfyUI on 127.0.0.1:$(PORT) with this pack, on the GPU if there is one"
	@echo "             (COMFYUI_DIR=... for your own ComfyUI, COMFYUI_ARGS=--cpu for CPU, or other flags)"
	@echo "make test    run the whole test suite (both ComfyUI hosts)"
	@echo "make bench   run the benchmarks and print their figures"

setup: $(VENV)/.stamp-pack $(HOST_CURRENT)/.stamp $(HOST_OLDEST)/.stamp $(CACHE)/photos/.stamp browser

# Headless Chromium for the UI-workflow tests (Debian packages; needs root or sudo).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium chromium-driver; }

$(VENV)/.stamp-torch: constraints.txt
	test -x $(PY) || $(PYTHON_BOOT) -m venv $(VENV)
	$(PIP) install -c constraints.txt torch torchvision
	$(PIP) install --no-deps -c constraints.txt torchaudio
	touch $@

# The current host's requirements go into .venv; the pack and its dev/train extras after them.
$(VENV)/.stamp-pack: $(VENV)/.stamp-torch pyproject.toml requirements.txt tools/setup_hosts.py $(HOST_CURRENT)/.stamp-src
	$(PIP) install -c constraints.txt -r $(HOST_CURRENT)/requirements.host.txt
	$(PIP) install -c constraints.txt -e '.[dev,train,insightface,video,eval]'
	$(PIP) install -c constraints.txt facexlib==0.3.0
	# pyiqa (MUSIQ, NIQE in authface evaluate) without its declared requirements: they add
	# opencv-python-headless (overwrites cv2), bitsandbytes, datasets, pyarrow..., none of which those metrics import.
	$(PIP) install --no-deps pyiqa==0.1.16
	touch $@

# Real photos of one person on different occasions, for the identity tests (tools/fetch_photos.py).
$(CACHE)/photos/.stamp: tools/fetch_photos.py
	$(PYTHON_BOOT) tools/fetch_photos.py --dest $(CACHE)/photos

$(HOST_CURRENT)/.stamp-src: tools/setup_hosts.py
	$(PYTHON_BOOT) tools/setup_hosts.py fetch current --dest $(HOST_CURRENT)

$(HOST_OLDEST)/.stamp-src: tools/setup_hosts.py
	$(PYTHON_BOOT) tools/setup_hosts.py fetch oldest --dest $(HOST_OLDEST)

$(HOST_CURRENT)/.stamp: $(HOST_CURRENT)/.stamp-src $(VENV)/.stamp-pack
	$(PY) tools/setup_hosts.py link --dest $(HOST_CURRENT)
	touch $@

# The oldest host shares .venv; its own frontend pins live in an overlay put first on PYTHONPATH.
$(HOST_OLDEST)/.stamp: $(HOST_OLDEST)/.stamp-src $(VENV)/.stamp-pack
	$(PIP) install --no-deps --upgrade --target $(HOST_OLDEST)/overlay -r $(HOST_OLDEST)/requirements.overlay.txt
	$(PY) tools/setup_hosts.py link --dest $(HOST_OLDEST)
	touch $@

run: $(VENV)/.stamp-pack $(HOST_CURRENT)/.stamp
	$(PY) tools/setup_hosts.py link --dest $(COMFYUI_DIR)
	cd $(COMFYUI_DIR) && device="$$($(COMFYUI_PYTHON) $(abspath tools/comfyui_device.py) $(COMFYUI_ARGS))" && \
	  PYTHONPATH="$$(cat .authface-pythonpath 2>/dev/null)" \
	  $(COMFYUI_PYTHON) main.py $$device --listen 127.0.0.1 --port $(PORT) $(COMFYUI_ARGS)

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

bench: setup
	$(PY) -m bench

clean-hosts:
	rm -rf $(HOSTS)

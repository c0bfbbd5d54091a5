# Set-up and everyday commands. `make serve` and `make test` work on a fresh Debian machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# The fonts the SynthDigits generator renders with (train/synth.py FONT_PACKAGES), and the browser
# the page test drives.
FONT_PACKAGES := $(shell grep -o '"fonts-[a-z0-9-]*"' train/synth.py | tr -d '"' | sort -u)

.PHONY: venv serve test system-packages bench clean

$(BIN)/activate: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	touch $(BIN)/activate

venv: $(BIN)/activate

serve: venv  ## serve the default model on http://127.0.0.1:5000
	$(BIN)/python main-flask.py

system-packages:  ## Debian packages: chromium for the browser test, fonts for SynthDigits
	$(SUDO) apt-get update -q
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends chromium $(FONT_PACKAGES)

test: system-packages venv  ## install everything, then run the whole test suite
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) .pytest_cache

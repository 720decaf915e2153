# cnnkit — the commands a newcomer needs. `make demo` and `make test` do all the set-up.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.cnnkit-installed
FMNIST := /usr/share/datasets/fashion-mnist

.PHONY: install demo test test-all typecheck test-fast lint format bench clean data browser

install: $(STAMP) data browser

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,pretrained,deploy]"
	$(BIN)/python -m pip install --quiet --no-deps "facenet-pytorch==2.6.0"  # MTCNN weight files only; it pins an old torch
	@touch $(STAMP)

# Fashion-MNIST from Debian's package when we can install it; otherwise cnnkit downloads it
# (SHA-256 verified) into ~/.cache/cnnkit on first use.
data:
	@if [ ! -f $(FMNIST)/train-images-idx3-ubyte.gz ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing dataset-fashion-mnist (Debian package)"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null) \
			|| echo "apt-get could not install dataset-fashion-mnist; cnnkit will download it when needed"; \
	fi

# Chromium and its driver for the browser test of `cnnkit serve` (skipped with a reason when they are missing).
browser:
	@if ! command -v chromedriver >/dev/null && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing chromium and chromium-driver (Debian packages)"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
			|| echo "apt-get could not install chromium; the browser test will be skipped"; \
	fi

demo: install
	$(BIN)/python -m cnnkit.demo

test: install
	$(BIN)/python -m pytest -q -m "not slow and not gpu"

# `make test` leaves out the tests marked slow (and gpu); this runs every test but the gpu ones.
test-all: install
	$(BIN)/python -m pytest -q -m "not gpu"

typecheck: install
	$(BIN)/mypy

test-fast: install
	$(BIN)/python -m pytest -q -x -m "not slow and not gpu" --deselect tests/models

lint: install typecheck
	$(BIN)/ruff check cnnkit tests benchmarks
	$(BIN)/ruff format --check cnnkit tests benchmarks

format: install
	$(BIN)/ruff format cnnkit tests benchmarks
	$(BIN)/ruff check --fix cnnkit tests benchmarks

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache

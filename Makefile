# The README names these targets. Everything installs into .venv; nothing global but the Debian dataset package.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
FMNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz

.PHONY: setup data demo test lint suite bench

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install --quiet -e '.[all,test]'
	touch $(STAMP)

setup: $(STAMP)

# Fashion-MNIST, offline: Debian's dataset-fashion-mnist package (needs root; skipped when already present).
data:
	@test -f $(FMNIST) || (apt-get install -y dataset-fashion-mnist >/dev/null || \
	  (echo "Install Fashion-MNIST with: sudo apt-get install -y dataset-fashion-mnist" && exit 1))

demo: setup data
	$(BIN)/python scripts/demo.py

# The whole suite (eager losses), then every loss test again on the native CPU kernels (about a minute more).
test: setup data
	$(BIN)/python -m pytest -q
	GEOKT_TEST_KERNEL=native $(BIN)/python -m pytest -q tests/losses

lint: setup
	$(BIN)/ruff check geokt_plugin tests benchmarks scripts

suite: setup data
	bash scripts/run_fashion_mnist_suite.sh

# The step benchmarks of docs/performance.md: both pairs, 2 threads, every GeoKT loss on its three kernel paths.
bench: setup
	$(BIN)/python benchmarks/bench_step.py --device cpu --threads 2 --repeats 21 --out benchmarks/results/step_cpu_2threads_native.json
	$(BIN)/python benchmarks/bench_step.py --device cpu --pair quickstart --batch-size 64 --threads 2 --repeats 21 --out benchmarks/results/step_quickstart_cpu_2threads_native.json

# Two entry points for a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint clean bench bench-train

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# CPU build of torch first, so the train extra does not pull a CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[train,dev,lora]"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	bash pipelines/demo.sh

test: $(STAMP)
	$(BIN)/ruff check umi_data umi_train umi_eval tests benchmarks
	$(BIN)/python -m pytest -q -n 2 tests

lint: $(STAMP)
	$(BIN)/ruff check umi_data umi_train umi_eval tests benchmarks

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_split.py --files 3000 30000

# batching figures on the alpha-UMi sample; add --gpu on a CUDA machine for tokens/s and MFU
bench-train: $(STAMP)
	$(BIN)/python benchmarks/bench_train.py --from-alpha-umi ../shared/data/alpha-umi-example

clean:
	rm -rf $(VENV) build *.egg-info demo-out

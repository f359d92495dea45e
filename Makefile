# Two entry points for a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-fast lint clean bench bench-train

# Set-up says one line per step; pip's own output goes to $(SETUP_LOG) and is shown (its last
# lines) only when a step fails.
SETUP_LOG := $(VENV)/setup.log
PIP := $(BIN)/pip install --disable-pip-version-check --no-input
define pip_step
	@echo "setup: $(1)"
	@$(PIP) $(2) >> $(SETUP_LOG) 2>&1 || { echo "setup failed; last lines of $(SETUP_LOG):"; tail -n 25 $(SETUP_LOG); exit 1; }
endef

EXTRAS := train,dev,lora,ray
# CPU build of torch first, so the train extra does not pull a CUDA build.
$(STAMP): pyproject.toml
	@echo "setup: creating the virtual environment $(VENV) with $(PY)"
	@$(PY) -m venv $(VENV) && : > $(SETUP_LOG)
	$(call pip_step,upgrading pip,--upgrade pip)
	$(call pip_step,installing PyTorch 2.13.0 (CPU build; the largest download),torch==2.13.0)
	$(call pip_step,installing umi with its train/dev/lora/ray extras (transformers / accelerate / datasets / peft / ray / ruff / mypy / pytest …),-e ".[$(EXTRAS)]")
	@touch $(STAMP)
	@echo "setup: done ($(VENV); pip's log in $(SETUP_LOG))"

setup: $(STAMP)

demo: $(STAMP)
	@bash pipelines/demo.sh

test: $(STAMP)
	$(BIN)/ruff check umi_cli umi_data umi_train umi_eval tests benchmarks
	$(BIN)/lint-imports --no-cache --no-logo
	$(BIN)/mypy
	$(BIN)/python -m pytest -q -n 2 tests

# the suite without the tests marked slow (training the memorised trio, end-to-end runs, memory bounds)
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 -m "not slow" tests

lint: $(STAMP)
	$(BIN)/ruff check umi_cli umi_data umi_train umi_eval tests benchmarks
	$(BIN)/lint-imports --no-cache --no-logo
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_split.py --files 3000 30000

# batching figures on the alpha-UMi sample; add --gpu on a CUDA machine for tokens/s and MFU
bench-train: $(STAMP)
	$(BIN)/python benchmarks/bench_train.py --from-alpha-umi ../shared/data/alpha-umi-example

clean:
	rm -rf $(VENV) build *.egg-info demo-out

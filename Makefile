# The two entry points named in the README. Each sets itself up idempotently:
# a virtual environment in .venv, torch pinned to the CPU build, pets installed
# editable with every extra. Re-running installs nothing when pyproject.toml
# has not changed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.pets-installed

.PHONY: demo test bench lint setup

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	# pin first: anything that lets pip choose torch pulls a multi-GB CUDA build
	$(PY) -m pip install -q --disable-pip-version-check torch==2.13.0
	$(PY) -m pip install -q --disable-pip-version-check -e '.[he,dp,mpc,fl,service,examples,dev,docs]'
	# CrypTen 0.4.1 (its last release) declares the defunct "sklearn" package and old
	# torchvision: install it alone; its real needs come with the [mpc] extra above
	$(PY) -m pip install -q --disable-pip-version-check --no-deps crypten==0.4.1
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/pets demo

test: $(STAMP)
	$(PY) -m ruff check pets protocols tests examples benchmarks
	$(PY) -m mypy
	# two workers, each test module on one worker (its expensive fixtures built once);
	# slow tests included: `.venv/bin/pytest -m "not slow"` leaves them out
	$(PY) -m pytest -q -n 2 --dist loadscope

bench: $(STAMP)
	$(VENV)/bin/pets bench

# Two commands do all the set-up: `make lab` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# JupyterLab refuses to run as root unless told; only add the flag for root.
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)
LAB_ARGS  ?=
# The learner's folder that `make lab` fills and opens (git ignores student/).
STUDENT   ?= student
# Extra arguments for pytest, e.g. `make test PYTEST_ARGS="-x -k iou"`.
PYTEST_ARGS ?=

.PHONY: install lab test lint unit nbval notebooks fixtures clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# The learner's copy: $(STUDENT) gets the student version of each chapter it lacks (a notebook
# already there is never overwritten), and JupyterLab opens there.
lab: $(STAMP)
	$(BIN)/python -m course student-copies --notebooks notebooks --to $(STUDENT)
	$(BIN)/jupyter lab $(ROOT_FLAG) --ServerApp.root_dir=$(STUDENT) $(LAB_ARGS)

test: $(STAMP)
	@start=$$(date +%s); \
	$(MAKE) --no-print-directory lint unit nbval && \
	echo "make test: passed in $$(( $$(date +%s) - start )) s"

lint: $(STAMP)
	$(BIN)/ruff check course tests bench scripts notebooks teacher

unit: $(STAMP)
	$(BIN)/pytest -q tests $(PYTEST_ARGS)

nbval: $(STAMP)
	$(BIN)/pytest -q --nbval-lax --nbval-current-env notebooks $(PYTEST_ARGS)

# Re-execute every solution notebook in place (stores fresh outputs).
notebooks: $(STAMP)
	$(BIN)/jupyter nbconvert --to notebook --execute --inplace \
	    --ExecutePreprocessor.timeout=1200 notebooks/[0-9]*.ipynb

# Regenerate the exercise fixtures from the library's reference implementations.
fixtures: $(STAMP)
	$(BIN)/python scripts/make_fixtures.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info

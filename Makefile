# Two commands do all set-up on a fresh machine with Python 3.11: `make demo` and `make test`.
# uv (installed into that Python if missing) creates .venv from uv.lock, the versions tested here.
PYTHON ?= python3.11
UV := $(PYTHON) -m uv

.PHONY: demo dev test uv manifest

uv:
	@$(PYTHON) -m uv --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet "uv>=0.5"

# the dbt manifest the definitions load (dbt parse; a no-op when it is fresh)
manifest: uv
	$(UV) run --frozen python -m adpipeline.transform.project

demo: uv manifest
	$(UV) run --frozen adpipeline demo

dev: uv manifest
	$(UV) run --frozen adpipeline dev

test: uv manifest
	$(UV) run --frozen --extra dev pytest

# Two commands do all set-up on a fresh machine with Python 3.11: `make demo` and `make test`.
# uv (installed into that Python if missing) creates .venv from uv.lock, the versions tested here.
# The demo runs in exactly the product's environment (--exact: no dev extra, as a newcomer has it);
# the tests add the dev extra. The dbt manifest is built when the definitions load, if missing or stale.
PYTHON ?= python3.11
UV := $(PYTHON) -m uv
# Installed packages are compiled to bytecode once, at install: every Dagster process (run worker, step,
# code server, test subprocess) otherwise compiles dagster and dbt from source again (~2-3 s each) where
# PYTHONDONTWRITEBYTECODE is set, as on these machines.
export UV_COMPILE_BYTECODE := 1

.PHONY: demo dev test uv manifest

# ...and so is the project's own package (installed editable, so uv leaves it alone): ~0.3 s per process
uv:
	@$(PYTHON) -m uv --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet "uv>=0.5"
	@$(PYTHON) -m compileall -q adpipeline >/dev/null

# the dbt manifest alone (dbt parse; a no-op when it is fresh), e.g. for an image build
manifest: uv
	$(UV) run --frozen python -m adpipeline.transform.project

demo: uv
	$(UV) run --frozen --exact adpipeline demo

dev: uv
	$(UV) run --frozen --exact adpipeline dev

# Two test processes (pytest-xdist), a file each at a time (module fixtures stay in one process): the suite mostly
# waits on the subprocesses it starts, so the two cores stay busy. Measured on this 2-core machine: 25 min -> 10.
# The 20 slowest tests are listed at the end: CI's log then says where its minutes go.
test: uv
	$(UV) run --frozen --extra dev pytest -n 2 --dist loadfile --durations=20

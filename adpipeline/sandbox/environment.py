"""Environment that points the sources at a running sandbox (demo, dev, tests)."""

from __future__ import annotations

from adpipeline.clock import CLOCK_URL_ENV
from adpipeline.sandbox.app import OPTIONAL_EMULATIONS, load_emulations


def demo_environment(base_url: str) -> dict[str, str]:
    """Each emulation's API base URL and the demo credentials it accepts (sandbox-only, not secrets), and
    the pipeline's clock: the sandbox's, whose "today" the emulated data is built around."""
    env: dict[str, str] = {}
    for module in load_emulations(list(OPTIONAL_EMULATIONS)):
        provide = getattr(module, "demo_environment", None)
        if provide:
            env.update(provide(base_url))
    env[CLOCK_URL_ENV] = f"{base_url.rstrip('/')}/_admin/clock"
    return env

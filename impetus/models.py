"""Building the artefacts the streaming jobs load: ``impetus models build <name>``.

The training code lives in ``models/<name>/`` (with each model's card); this module
runs it with this interpreter, so the CLI, the demo and Airflow start it the same way.
"""

from __future__ import annotations

import runpy

from impetus.config import ConfigError, Settings

SCRIPTS = {
    "urban-baseline": "models/urban_baseline/build.py",
    "flow-anomaly": "models/flow_anomaly/train.py",
}


def build_model(settings: Settings, name: str, argv: list[str]) -> int:
    """Run the build script of ``name`` with ``argv``; it writes under ``settings.model_path``."""
    if name not in SCRIPTS:
        raise ConfigError(f"no model {name!r}; known: {', '.join(sorted(SCRIPTS))}")
    script = settings.home / SCRIPTS[name]
    main = runpy.run_path(str(script), run_name="impetus_model_build")["main"]
    return main(argv)

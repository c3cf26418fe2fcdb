"""The analyst notebooks in notebooks/ run without error on the lake the real jobs built (conftest's
``lake``), in a kernel of this interpreter, and answer from its known documents; each ends with its own
assertion cell, so running it is a test. They read only: no table gets a new version."""

import os
import sys
from pathlib import Path

import nbformat
import pytest

from impetus import access

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
# What each notebook must conclude from the fixture's documents (conftest.lake_documents): its one
# tenant has no declared time zone (UTC), its counts are from a Friday morning and a Wednesday,
# alert a-1 (brute_force, no area) was confirmed and a-2 (urban_baseline, Queen Street) dismissed.
ANSWERS = {
    "friday_nights": ["No Friday-night pedestrian counts in this lake: nothing to answer yet.",
                      "checks passed: gold.area_hourly and gold.sensor_hourly agree for every tenant and year "
                      "(1 in all, 0 with Friday nights); Friday nights: 0 area-hours, 0 pedestrians"],
    "rule_feedback": ["2 alerts, 2 decided: 1 confirmed, 1 dismissed",
                      "Most dismissed: urban_baseline (model), 1 of 1 decided alerts dismissed (100%; at least 21% "
                      "with 95 % confidence). Never dismissed so far: brute_force. 2 of 2 alerts (100%) have a "
                      "decision.",
                      "checks passed: 2 alerts, 2 decided, 1 dismissed"],
    "alert_clusters": ["{tenant}: half of its 2 alerts fall in 1 of the 168 hours of the week, busiest Fri 10:00; "
                       "most alerts come from Queen Street (100%, mostly urban_anomaly).",
                       "alerts without an area (e.g. cyber alerts): 1",
                       "checks passed: the grid, silver.alerts and the areas all count 2 alerts (tenants: {tenant})"],
}


def notebook_paths():
    return sorted(NOTEBOOKS.glob("*.ipynb"))


def test_every_notebook_is_committed_without_outputs_and_ends_with_a_check():
    assert {p.stem for p in notebook_paths()} == set(ANSWERS)
    for path in notebook_paths():
        notebook = nbformat.read(path, as_version=4)
        nbformat.validate(notebook)
        code = [c for c in notebook.cells if c.cell_type == "code"]
        assert all(c.outputs == [] and c.execution_count is None for c in code), f"{path.name} has outputs"
        assert "assert " in code[-1].source, f"{path.name}: the last cell must check what it computed"
        assert notebook.metadata.kernelspec.name == "python3"


@pytest.mark.parametrize("name", sorted(ANSWERS))
def test_notebook_runs_on_the_built_lake(name, lake, tmp_path):
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    notebook = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    # which interpreter ran it: the kernelspec's "python" must resolve to this one (jupyter_client maps it
    # to sys.executable of the process that starts the kernel)
    notebook.cells.append(nbformat.v4.new_code_cell("import sys\nprint('kernel prefix:', sys.prefix)"))
    versions = {t: access.table_state(lake.settings, t)["version"] for t in access.existing_tables(lake.settings)}
    # the kernel starts in an empty folder, with the lake's variables and a private matplotlib cache
    env = {**os.environ, **lake.env, "MPLCONFIGDIR": str(tmp_path / "matplotlib")}
    client = NotebookClient(notebook, kernel_name="python3", timeout=300, startup_timeout=120,
                            resources={"metadata": {"path": str(tmp_path)}})
    try:
        client.execute(env=env)
    except CellExecutionError as err:
        pytest.fail(f"notebooks/{name}.ipynb failed on the lake at {lake.env['IMPETUS_LAKE_URI']}:\n{err}")

    printed = "".join(out.get("text", "") for cell in notebook.cells if cell.cell_type == "code"
                      for out in cell.outputs if out.output_type == "stream" and out.name == "stdout")
    assert f"kernel prefix: {sys.prefix}\n" in printed
    for answer in ANSWERS[name]:
        assert answer.format(tenant=lake.tenant) in printed, f"{name}: {answer!r} not in\n{printed}"
    assert {t: access.table_state(lake.settings, t)["version"]
            for t in access.existing_tables(lake.settings)} == versions, f"{name} wrote to the lake"
    assert list(tmp_path.iterdir()) in ([], [tmp_path / "matplotlib"]), f"{name} wrote files where it ran"

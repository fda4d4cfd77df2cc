"""local/deploy-tools.sh: syntax, and that the tools these tests use are installed."""

from __future__ import annotations

from deployhelpers import REPO, run, state_dir

SCRIPT = REPO / "local" / "deploy-tools.sh"


def test_script_syntax() -> None:
    proc = run(["bash", "-n", str(SCRIPT)])
    assert proc.returncode == 0, proc.stderr


def test_tools_are_installed() -> None:
    """`deploy-tools.sh check` installs nothing; it fails naming what is missing."""
    proc = run(["bash", str(SCRIPT), "check"], timeout=120)
    assert proc.returncode == 0, (
        f"deploy tools missing in {state_dir()}; run `bash local/deploy-tools.sh`:\n{proc.stderr}"
    )


def test_env_prints_helm_homes_under_state() -> None:
    proc = run(["bash", str(SCRIPT), "env"])
    assert proc.returncode == 0
    for var in ("HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME"):
        assert f"{var}={state_dir()}" in proc.stdout.replace("'", "")

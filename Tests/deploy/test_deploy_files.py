"""Every file in Deploy/ passes its offline validator; any warning is a failure.

Run by Scripts/test.sh from .venv-deploy/ (kubernetes-validate, yamllint, pytest); docker-compose v1
lives in a venv of its own (its jsonschema pin clashes with kubernetes-validate's) named by
DOCKER_COMPOSE. shellcheck and systemd-analyze come from Debian (Deploy/install-deps.sh). Each
validator is also shown a broken file, so a validator that accepts everything fails the test.
"""
import glob
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEPLOY = os.path.join(ROOT, "Deploy")
BIN_DIR = os.path.dirname(sys.executable)
DOCKER_COMPOSE = os.environ.get("DOCKER_COMPOSE", shutil.which("docker-compose") or "docker-compose")
if os.sep in DOCKER_COMPOSE:
    DOCKER_COMPOSE = os.path.abspath(DOCKER_COMPOSE)  # compose runs with cwd set to the file's directory
SWITCHYARD_BIN = os.environ.get("SWITCHYARD_BIN")


def run(args, cwd=None, **kwargs):
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120, **kwargs)


def assert_clean(result, what):
    """Exit 0 and nothing said on either stream: a warning counts as a failure."""
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 0 and output == "", f"{what}: exit {result.returncode}\n{output}"


def deploy_files(pattern):
    files = sorted(glob.glob(os.path.join(DEPLOY, pattern), recursive=True))
    assert files, f"no files match Deploy/{pattern}"
    return files


# --- Kubernetes ---------------------------------------------------------------------------------

def kubernetes_validate(files):
    return run([os.path.join(BIN_DIR, "kubernetes-validate"), "--strict", "--quiet", *files])


def test_kubernetes_manifests_are_valid():
    files = deploy_files("kubernetes/*.yaml")
    assert_clean(kubernetes_validate(files), "kubernetes-validate --strict")
    kinds = "".join(open(path, encoding="utf-8").read() for path in files)
    for kind in ("kind: Deployment", "kind: StatefulSet", "clusterIP: None", "kind: Service"):
        assert kind in kinds


def test_kubernetes_validate_rejects_an_unknown_field(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("apiVersion: v1\nkind: Service\nmetadata:\n  name: x\nspec:\n  portz: []\n")
    assert kubernetes_validate([str(broken)]).returncode != 0


# --- YAML style ----------------------------------------------------------------------------------

def yamllint(paths):
    return run([os.path.join(BIN_DIR, "yamllint"), "--strict", "-c", os.path.join(DEPLOY, ".yamllint.yaml"), *paths])


def test_every_yaml_file_passes_yamllint():
    files = deploy_files("**/*.yaml") + deploy_files("**/*.yml")
    assert_clean(yamllint(files), "yamllint --strict")


def test_yamllint_rejects_bad_indentation(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("---\na:\n    - b\n  c: d\n")
    assert yamllint([str(broken)]).returncode != 0


# --- docker compose --------------------------------------------------------------------------------

def compose_config(directory):
    return run([DOCKER_COMPOSE, "config", "-q"], cwd=directory)


def test_compose_file_is_valid():
    assert os.path.exists(os.path.join(DEPLOY, "docker", "Dockerfile"))
    result = compose_config(os.path.join(DEPLOY, "docker"))
    assert_clean(result, "docker-compose config -q")
    services = run([DOCKER_COMPOSE, "config", "--services"], cwd=os.path.join(DEPLOY, "docker")).stdout.split()
    assert {"coordinator", "worker-0", "worker-1"} <= set(services)


def test_compose_rejects_an_unknown_key(tmp_path):
    (tmp_path / "docker-compose.yml").write_text("version: '3.8'\nservices:\n  a:\n    image: x\n    commandz: y\n")
    assert compose_config(str(tmp_path)).returncode != 0


# --- shell -------------------------------------------------------------------------------------------

def test_shell_scripts_pass_shellcheck():
    files = deploy_files("**/*.sh") + deploy_files("**/*.sbatch")
    assert_clean(run(["shellcheck", *files]), "shellcheck")


def test_shellcheck_rejects_an_unquoted_variable(tmp_path):
    broken = tmp_path / "broken.sh"
    broken.write_text("#!/bin/bash\nrm $1\n")
    assert run(["shellcheck", str(broken)]).returncode != 0


# --- systemd -----------------------------------------------------------------------------------------

def systemd_verify(tmp_path, unit_dir, units):
    """`systemd-analyze verify` in a temporary root holding the system's units, the units under test
    and an executable /usr/local/bin/switchyard (verify checks that ExecStart's binary exists)."""
    root = tmp_path / "root"
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    (root / "etc/systemd/system").mkdir(parents=True)
    for path in glob.glob(os.path.join(unit_dir, "*.service")):
        shutil.copy(path, root / "etc/systemd/system")
    binary = root / "usr/local/bin/switchyard"
    binary.parent.mkdir(parents=True)
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    return run(["systemd-analyze", "verify", "--man=no", f"--root={root}", *units])


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_units_verify_without_warnings(tmp_path):
    units = [os.path.basename(path) for path in deploy_files("systemd/*.service")]
    # A template is verified through an instance.
    instances = [unit.replace("@.service", "@w0.service") for unit in units]
    assert "switchyard-worker@w0.service" in instances and "switchyard-coordinator.service" in instances
    assert_clean(systemd_verify(tmp_path, os.path.join(DEPLOY, "systemd"), instances), "systemd-analyze verify")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_verify_reports_a_misspelled_key(tmp_path):
    units = tmp_path / "units"
    units.mkdir()
    (units / "broken.service").write_text("[Service]\nExecStart=/usr/local/bin/switchyard worker\nRestartt=always\n")
    result = systemd_verify(tmp_path, str(units), ["broken.service"])
    assert "Restartt" in result.stdout + result.stderr


# --- the launcher's example cluster file -----------------------------------------------------------

@pytest.mark.skipif(SWITCHYARD_BIN is None, reason="SWITCHYARD_BIN is not set")
def test_example_cluster_file_is_valid():
    example = os.path.join(DEPLOY, "launch", "cluster.example.yaml")
    result = run([SWITCHYARD_BIN, "launch", "--dry-run", example])
    assert result.returncode == 0, result.stderr
    assert "ssh -o BatchMode=yes" in result.stdout

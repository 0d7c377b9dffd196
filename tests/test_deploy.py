"""The container files: the StatefulSet entry point turns a pod into the right player.

Kubernetes itself is not run here (no cluster); the entry point is, with a stand-in for
``cicada-async`` that prints what it was given.
"""

from __future__ import annotations

import os
import pathlib
import re
import subprocess

import pytest

DEPLOY = pathlib.Path(__file__).resolve().parent.parent / "deploy"
ENTRYPOINT = DEPLOY / "entrypoint.sh"


def run_entrypoint(tmp_path: pathlib.Path, hostname: str, *args: str,
                   extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    fake = tmp_path / "bin"
    fake.mkdir(exist_ok=True)
    stand_in = fake / "cicada-async"
    stand_in.write_text('#!/bin/sh\necho "root=$CICADA_ROOT_ADDRESS"\nfor a in "$@"; do echo "arg=$a"; done\n')
    stand_in.chmod(0o755)
    env = {"PATH": f"{fake}:{os.environ['PATH']}", "HOSTNAME": hostname, "CICADA_SERVICE": "cicada",
           "CICADA_IDENTITY_DIR": str(tmp_path / "identity"), "CICADA_TRUSTED_DIR": str(tmp_path / "trusted"),
           **(extra or {})}
    return subprocess.run(["sh", str(ENTRYPOINT), *args], env=env, capture_output=True, text=True, timeout=30)


def test_a_pods_ordinal_is_its_rank_and_player_0_is_the_root(tmp_path):
    (tmp_path / "identity").mkdir()
    (tmp_path / "trusted").mkdir()
    for rank in range(3):
        (tmp_path / "identity" / f"player-{rank}.pem").write_text("key")
        (tmp_path / "trusted" / f"player-{rank}.cert").write_text("cert")
    result = run_entrypoint(tmp_path, "player-2", "/app/program/program.py", "--steps", "5")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "root=tcp://player-0.cicada:25000"
    args = [line.removeprefix("arg=") for line in lines[1:]]
    trusted = ",".join(str(tmp_path / "trusted" / f"player-{rank}.cert") for rank in range(3))
    assert args == ["start", "--rank", "2", "--address", "tcp://player-2.cicada:25000",
                    "--identity", str(tmp_path / "identity" / "player-2.pem"), f"--trusted={trusted}",
                    "--", "/app/program/program.py", "--steps", "5"]


def test_without_tls_material_and_with_a_root_of_its_own(tmp_path):
    result = run_entrypoint(tmp_path, "mpc-11", "program.py",
                            extra={"CICADA_ROOT_ADDRESS": "tcp://org-a.example:443", "CICADA_PORT": "7000"})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "root=tcp://org-a.example:443"
    assert [line.removeprefix("arg=") for line in lines[1:]] == [
        "start", "--rank", "11", "--address", "tcp://mpc-11.cicada:7000", "--", "program.py"]


@pytest.mark.parametrize("hostname", ["player", "player-x", "player-"])
def test_a_hostname_without_an_ordinal_is_refused(tmp_path, hostname):
    result = run_entrypoint(tmp_path, hostname, "program.py")
    assert result.returncode == 2
    assert "cannot read a rank" in result.stderr


def test_the_manifest_and_the_image_agree():
    manifest = (DEPLOY / "kubernetes" / "players.yaml").read_text()
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    service = re.search(r"kind: Service\nmetadata:\n  name: (\S+)", manifest).group(1)
    assert re.search(rf"serviceName: {service}\n", manifest)
    assert re.search(rf"name: CICADA_SERVICE\n\s+value: {service}\n", manifest)
    assert "clusterIP: None" in manifest and "publishNotReadyAddresses: true" in manifest
    assert "cicada-statefulset" in manifest and "/usr/local/bin/cicada-statefulset" in dockerfile
    assert re.search(r"replicas: (\d+)", manifest).group(1) == re.search(
        r'name: CICADA_WORLD_SIZE\n\s+value: "(\d+)"', manifest).group(1)
    assert "FROM python:3.11" in dockerfile and "USER player" in dockerfile

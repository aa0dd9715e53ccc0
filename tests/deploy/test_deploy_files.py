"""The deployment files are checked here, not run (there is no Docker engine or Kubernetes
cluster on the machines that run these tests): they parse, they name only the settings and
commands of SPEC §2, the topology is the one the sidecar needs (one reader with Recreate, API
replicas behind a Service, probes on /healthz and /readyz), and postgres-init.sql really
prepares a voucher database on PostgreSQL."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import yaml

from cdc_reader.checks import run_startup_checks
from demo.traffic import VoucherTraffic
from voucher_activity.cli import COMMANDS
from voucher_activity.config import OPTIONS, build_settings

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
SETTINGS = {variable for variable, _default in OPTIONS.values()}
FLAG_OF = {variable: flag for flag, (variable, _default) in OPTIONS.items()}
INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}")
REQUIRED = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*):\?[^}]*\}")
# What an operator sets where compose requires it (no default: the stack refuses to start).
OPERATOR_SET = {"VA_API_TOKENS": "acme=acme-token,globex=globex-token,*=admin-token"}


def documents(path: Path) -> list[Any]:
    return [document for document in yaml.safe_load_all(path.read_text()) if document is not None]


def compose() -> dict[str, Any]:
    return documents(DEPLOY / "compose.yaml")[0]


def kubernetes_objects() -> list[dict[str, Any]]:
    return [obj for path in sorted(KUBERNETES.glob("*.yaml")) if path.name != "kustomization.yaml"
            for obj in documents(path)]


def one(kind: str, name: str) -> dict[str, Any]:
    (found,) = [obj for obj in kubernetes_objects() if obj["kind"] == kind and obj["metadata"]["name"] == name]
    return found


def with_defaults(value: str) -> str:
    """Compose interpolation with only the required variables set: ${NAME:-default} -> default,
    ${NAME:?message} -> what the operator set (OPERATOR_SET)."""
    value = REQUIRED.sub(lambda match: OPERATOR_SET[match.group(1)], value)
    return INTERPOLATION.sub(lambda match: match.group(2) or "", value)


def settings_from_environment(environment: dict[str, str]):
    """The Settings the sidecar would build from these VA_* variables (raises if it would refuse)."""
    return build_settings({FLAG_OF[variable]: value for variable, value in environment.items()})


def containers() -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for obj in kubernetes_objects():
        if obj["kind"] in ("Deployment", "StatefulSet"):
            for container in obj["spec"]["template"]["spec"]["containers"]:
                yield obj, container


# -- every file ---------------------------------------------------------------------------


def test_every_yaml_file_parses():
    paths = sorted(DEPLOY.rglob("*.yaml")) + sorted(DEPLOY.rglob("*.yml"))
    assert {path.relative_to(DEPLOY).as_posix() for path in paths} >= {
        "compose.yaml", "kubernetes/kustomization.yaml", "kubernetes/configmap.yaml", "kubernetes/secret.yaml",
        "kubernetes/reader-statefulset.yaml", "kubernetes/api-deployment.yaml", "kubernetes/api-service.yaml"}
    for path in paths:
        assert documents(path), path
        assert all(isinstance(document, dict) for document in documents(path)), path


def test_deploy_files_name_only_spec_settings():
    named: dict[str, set[str]] = {}
    for path in DEPLOY.rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts:
            named[path.name] = set(re.findall(r"\bVA_[A-Z0-9_]+", path.read_text()))
    assert set().union(*named.values()) <= SETTINGS
    assert named["compose.yaml"] == SETTINGS  # compose sets every setting explicitly


# -- compose ------------------------------------------------------------------------------


def test_compose_postgres_has_logical_wal_and_the_init_script():
    postgres = compose()["services"]["postgres"]
    command = postgres["command"]
    assert command[0] == "postgres"
    assert ["-c", "wal_level=logical"] in [command[i:i + 2] for i in range(len(command) - 1)]
    mounts = {}
    for volume in postgres["volumes"]:
        source, target = volume.split(":")[:2]
        mounts[target] = source
    init = {target: source for target, source in mounts.items() if target.startswith("/docker-entrypoint-initdb.d/")}
    # the schema first, then the grants and the publication that need its tables
    assert [init[target] for target in sorted(init)] == ["../mappers/voucher_schema.sql", "./postgres-init.sql"]
    for source in init.values():
        assert (DEPLOY / source).resolve().is_file()
    assert "VOUCHER_ACTIVITY_PASSWORD" in postgres["environment"]


def test_compose_runs_one_reader_and_two_api_replicas_configured_by_spec_settings():
    services = compose()["services"]
    assert set(services) == {"postgres", "clickhouse", "reader", "api"}
    assert services["reader"]["command"] == ["reader"]
    assert "deploy" not in services["reader"]  # one replica: one slot, one consumer
    assert services["api"]["command"] == ["serve"]
    assert services["api"]["deploy"]["replicas"] == 2
    for name in ("reader", "api"):
        service = services[name]
        assert service["command"][0] in COMMANDS
        assert set(service["environment"]) <= SETTINGS
        assert (DEPLOY / service["build"]["context"] / service["build"]["dockerfile"]).resolve() == DEPLOY / "Dockerfile"
        environment = {key: with_defaults(str(value)) for key, value in service["environment"].items()}
        settings = settings_from_environment(environment)
        if name == "api":  # the API replicas never get the replication DSN
            assert settings.source_dsn is None
            continue
        assert (settings.listen_host, settings.listen_port) == ("0.0.0.0", 8000)
        assert set(settings.tokens.values()) == {"acme", "globex", "*"}
        source = urlsplit(settings.source_dsn)
        assert (source.hostname, source.path, source.username) == (
            "postgres", "/" + services["postgres"]["environment"]["POSTGRES_DB"], "voucher_activity")
        store = urlsplit(settings.store_url)
        clickhouse = services["clickhouse"]["environment"]
        assert (store.scheme, store.hostname, store.port, store.path, store.username) == (
            "http", "clickhouse", 8123, "/" + clickhouse["CLICKHOUSE_DB"], clickhouse["CLICKHOUSE_USER"])
        assert store.password == with_defaults(clickhouse["CLICKHOUSE_PASSWORD"])
        assert source.password == with_defaults(services["postgres"]["environment"]["VOUCHER_ACTIVITY_PASSWORD"])
    assert services["api"]["depends_on"]["reader"]["condition"] == "service_healthy"


# -- Kubernetes ---------------------------------------------------------------------------


def test_kustomization_lists_every_manifest():
    (kustomization,) = documents(KUBERNETES / "kustomization.yaml")
    assert sorted(kustomization["resources"]) == sorted(
        path.name for path in KUBERNETES.glob("*.yaml") if path.name != "kustomization.yaml")


def test_reader_is_a_single_replica_with_its_data_dir_on_a_persistent_volume():
    reader = one("StatefulSet", "voucher-activity-reader")
    assert reader["spec"]["replicas"] == 1
    (container,) = reader["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["reader"]
    config = one("ConfigMap", "voucher-activity")["data"]
    (data,) = [mount for mount in container["volumeMounts"] if mount["mountPath"] == config["VA_DATA_DIR"]]
    (claim,) = reader["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == data["name"]
    assert data["name"] not in {volume["name"] for volume in reader["spec"]["template"]["spec"]["volumes"]}
    service = one("Service", reader["spec"]["serviceName"])
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"].items() <= reader["spec"]["template"]["metadata"]["labels"].items()


def test_compose_publishes_on_loopback_and_has_no_default_token():
    services = compose()["services"]
    published = [port for service in services.values() for port in service.get("ports", [])]
    assert published and all(port.startswith("127.0.0.1:") for port in published)
    for name in ("reader", "api"):
        assert REQUIRED.fullmatch(services[name]["environment"]["VA_API_TOKENS"])


def test_compose_keeps_the_reader_data_dir_on_a_volume():
    services = compose()["services"]
    data_dir = with_defaults(services["reader"]["environment"]["VA_DATA_DIR"])
    (volume,) = [volume for volume in services["reader"]["volumes"] if volume.split(":")[1] == data_dir]
    assert volume.split(":")[0] in compose()["volumes"]


def test_api_has_replicas_behind_a_service():
    api = one("Deployment", "voucher-activity-api")
    assert api["spec"]["replicas"] >= 2
    (container,) = api["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["serve"]
    labels = api["spec"]["template"]["metadata"]["labels"]
    service = one("Service", "voucher-activity-api")
    assert service["spec"]["selector"].items() <= labels.items()
    port_names = {port["name"] for port in container["ports"]}
    assert {port["targetPort"] for port in service["spec"]["ports"]} <= port_names
    budget = one("PodDisruptionBudget", "voucher-activity-api")
    assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert budget["spec"]["minAvailable"] < api["spec"]["replicas"]


def test_deployments_probe_healthz_and_readyz_and_request_resources():
    config = one("ConfigMap", "voucher-activity")["data"]
    listen_port = int(config["VA_LISTEN"].rpartition(":")[2])
    deployments = set()
    for deployment, container in containers():
        deployments.add(deployment["metadata"]["name"])
        spec = deployment["spec"]
        assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
        ports = {port["name"]: port["containerPort"] for port in container["ports"]}
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            http = container[probe]["httpGet"]
            assert http["path"] == path
            assert ports[http["port"]] == listen_port
        requests = container["resources"]["requests"]
        assert set(requests) == {"cpu", "memory"}
        assert container["args"][0] in COMMANDS
        assert "env" not in container  # configured only through the ConfigMap and the Secret
        sources = [ref.get("configMapRef", ref.get("secretRef"))["name"] for ref in container["envFrom"]]
        # only the reader gets the replication DSN
        assert sources == ["voucher-activity", "voucher-activity"] + (
            ["voucher-activity-source"] if container["args"] == ["reader"] else [])
        pod_security = spec["template"]["spec"]["securityContext"]
        assert pod_security["runAsNonRoot"] is True and pod_security["runAsUser"] == 10001
    assert deployments == {"voucher-activity-reader", "voucher-activity-api"}


def test_configmap_and_secret_hold_spec_settings_that_the_sidecar_accepts():
    config = one("ConfigMap", "voucher-activity")["data"]
    secret = {**one("Secret", "voucher-activity")["stringData"], **one("Secret", "voucher-activity-source")["stringData"]}
    assert set(config) | set(secret) == SETTINGS
    assert not set(config) & set(secret)
    assert set(secret) == {"VA_SOURCE_DSN", "VA_STORE_URL", "VA_API_TOKENS"}  # the ones with credentials
    assert set(one("Secret", "voucher-activity-source")["stringData"]) == {"VA_SOURCE_DSN"}
    settings = settings_from_environment({**config, **secret})
    assert settings.store_url.startswith("http://") and settings.tokens
    assert str(settings.data_dir) == "/var/lib/voucher-activity"
    for _deployment, container in containers():
        mounts = {mount["mountPath"] for mount in container["volumeMounts"]}
        assert str(settings.data_dir) in mounts


# -- the image ----------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


# What the allocators are tuned by (docs/store.md, "Memory"): set where the process starts.
ALLOCATOR_VARIABLES = ("MALLOC_ARENA_MAX", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "JE_MALLOC_CONF")


def allocator_environment() -> dict[str, str]:
    """The allocator variables as the image sets them."""
    image = {}
    for instruction, argument in dockerfile_instructions():
        if instruction == "ENV":
            image.update(item.split("=", 1) for item in shlex.split(argument))
    return {name: image[name] for name in ALLOCATOR_VARIABLES}


def test_the_image_and_dev_tune_the_allocators_alike():
    dev = dict(re.findall(r"^export (\w+)=\$\{\1:-([^}]*)\}$", (REPO / "dev").read_text(), re.MULTILINE))
    assert {name: dev[name] for name in ALLOCATOR_VARIABLES} == allocator_environment() == {
        "MALLOC_ARENA_MAX": "2", "MALLOC_MMAP_THRESHOLD_": "262144", "MALLOC_TRIM_THRESHOLD_": "1048576",
        "JE_MALLOC_CONF": "dirty_decay_ms:200"}


def test_dockerfile_builds_the_package_and_runs_as_non_root():
    instructions = dockerfile_instructions()
    # a build stage with a compiler makes the wheel (the Cython decoder); the image installs it
    stages = [argument for instruction, argument in instructions if instruction == "FROM"]
    assert stages == ["python:3.11-slim AS build", "python:3.11-slim"]
    runs = [argument for instruction, argument in instructions if instruction == "RUN"]
    assert any("build-essential" in run for run in runs)
    assert any(shlex.split(run)[:2] == ["pip", "wheel"] and shlex.split(run)[-1] == "."
               for run in runs)
    assert any(shlex.split(run)[:3] == ["pip", "install", "/wheels/*.whl"] for run in runs)
    users = [argument for instruction, argument in instructions if instruction == "USER"]
    assert users and users[-1].split(":")[0] == "10001"
    assert dict(instructions)["ENTRYPOINT"] == '["voucher-activity"]'
    assert dict(instructions)["CMD"].strip('[]"') in COMMANDS
    copied = [argument.split()[0] for instruction, argument in instructions
              if instruction == "COPY" and not argument.startswith("--from")]
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "voucher-activity" in pyproject["project"]["scripts"]
    packages = {pattern.rstrip("*") for pattern in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert packages <= set(copied)
    for source in copied:
        for name in source.split():
            assert (REPO / name).exists(), name
    assert any("setup.py" in argument.split() for instruction, argument in instructions
               if instruction == "COPY")
    ignored = (DEPLOY / "Dockerfile.dockerignore").read_text()
    assert all(f"!{package}/**" in ignored for package in packages)
    assert "!setup.py" in ignored


# -- postgres-init.sql on a real PostgreSQL ---------------------------------------------------


def catalog_tables() -> set[str]:
    """Every table the event catalog (mappers/catalog.toml) reads."""
    catalog = tomllib.loads((REPO / "mappers" / "catalog.toml").read_text())
    tables = set(catalog["state"])

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "table" and isinstance(value, str):
                    tables.add(value)
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(catalog)
    return tables


def run_init_script(database) -> subprocess.CompletedProcess:
    psql = database.cluster.installation.tool("psql")
    return subprocess.run(
        [psql, "-X", "-v", "ON_ERROR_STOP=1", "-d", database.dsn, "-f", str(DEPLOY / "postgres-init.sql")],
        capture_output=True, text=True, env={**os.environ, "VOUCHER_ACTIVITY_PASSWORD": "init-test-password"},
    )


def test_postgres_init_sql_prepares_the_voucher_database(voucher_db):
    try:
        for _ in range(2):  # idempotent
            result = run_init_script(voucher_db)
            assert result.returncode == 0, result.stderr
        with voucher_db.connect() as conn:
            assert conn.execute("SELECT relreplident FROM pg_class WHERE relname = 'segment_customer'").fetchone() == ("f",)
            assert conn.execute("SELECT rolcanlogin, rolreplication, rolsuper FROM pg_roles "
                                "WHERE rolname = 'voucher_activity'").fetchone() == (True, True, False)
            published = {table for (table,) in conn.execute(
                "SELECT tablename FROM pg_publication_tables WHERE pubname = 'voucher_activity'")}
            assert conn.execute("SELECT pg_get_userbyid(pubowner), pubinsert, pubupdate, pubdelete FROM pg_publication "
                                "WHERE pubname = 'voucher_activity'").fetchone() == ("voucher_activity", True, True, True)
            assert not conn.execute("SELECT has_database_privilege('voucher_activity', current_database(), 'CREATE')"
                                    ).fetchone()[0]
            writable = conn.execute(
                "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = 'public' AND c.relkind = 'r' "
                "AND has_table_privilege('voucher_activity', c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE')").fetchone()[0]
            assert writable == 0
        assert catalog_tables() <= published
        # the sidecar's own start-up checks pass for the role
        with psycopg.connect(voucher_db.cluster.dsn(voucher_db.name, user="voucher_activity")) as conn:
            run_startup_checks(conn, "voucher_activity", "voucher_activity", sorted(published))
            assert conn.execute("SELECT count(*) FROM segment_customer").fetchone() == (0,)
        # with the publication in place the engine's writes, segment deletes included, still work
        with VoucherTraffic(voucher_db.dsn, seed=2) as traffic:
            traffic.setup()
            for _ in range(400):
                traffic.step()
        assert traffic.counts["segment.delete"] > 0
    finally:
        with voucher_db.connect(autocommit=True) as conn:
            conn.execute("DROP PUBLICATION IF EXISTS voucher_activity")
            conn.execute("DROP OWNED BY voucher_activity")
            conn.execute("DROP ROLE voucher_activity")

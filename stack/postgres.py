"""A PostgreSQL cluster of the stack's own, from Debian's `postgresql` package.

`initdb` and the server refuse to run as root, and CI runs as root: as root they run as the
`postgres` user (the package creates it; else `nobody`), which then owns the cluster's folder.
The cluster is `postgres/data` in the stack's state folder when that user can reach it. Under a
home folder it cannot (`/root` is private): the cluster then goes to
`/var/tmp/mlops-stack-<hash>/`, and `postgres/data` is a link to it. The server listens on
127.0.0.1 only, with passwords (scram-sha-256), and its socket in a folder of its own.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import subprocess
from pathlib import Path

from projects.core.cli import StageError
from stack import config
from stack.processes import Daemon

DAEMON = Daemon("postgres")


def bin_dir() -> Path:
    """The newest installed PostgreSQL's programs (Debian keeps them out of the PATH)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    if not found:
        raise StageError(
            "PostgreSQL is not installed: `make postgresql` installs Debian's package "
            "(needs root or sudo)"
        )
    return found[-1].parent


def run_as() -> pwd.struct_passwd | None:
    """The unprivileged user the cluster runs as when this is root; None when it is not."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise StageError("running as root, and there is no `postgres` or `nobody` user to run "
                     "PostgreSQL as (initdb refuses root)")  # fmt: skip


def as_user(command: list[str], user: pwd.struct_passwd | None) -> list[str]:
    """`command` run as `user` (exec'd in place, so its PID is the server's)."""
    if user is None:
        return command
    return ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--init-groups",
            "--", *command]  # fmt: skip


def _reachable(path: Path, user: pwd.struct_passwd) -> bool:
    done = subprocess.run(as_user(["test", "-w", str(path)], user), capture_output=True)
    return done.returncode == 0


def data_dir(user: pwd.struct_passwd | None) -> Path:
    """The cluster's folder, made and given to `user` (see the module's docstring)."""
    link = config.postgres_dir() / "data"
    if link.exists() or link.is_symlink():
        return link.resolve()
    config.postgres_dir().mkdir(parents=True, exist_ok=True)
    if user is None:
        return link
    os.chown(config.postgres_dir(), user.pw_uid, user.pw_gid)
    if _reachable(config.postgres_dir(), user):
        return link
    digest = hashlib.sha1(str(config.state_dir().resolve()).encode()).hexdigest()[:12]
    outside = Path("/var/tmp") / f"mlops-stack-{digest}" / "data"
    outside.parent.mkdir(mode=0o700, exist_ok=True)
    os.chown(outside.parent, user.pw_uid, user.pw_gid)
    link.symlink_to(outside)
    return outside


def socket_dir(user: pwd.struct_passwd | None) -> Path:
    """A folder for the server's Unix socket and lock file that `user` can write."""
    found = data_dir(user).parent / "run"
    found.mkdir(exist_ok=True)
    if user is not None:
        os.chown(found, user.pw_uid, user.pw_gid)
    return found


def initialise(password: str) -> bool:
    """Create the cluster with `config.DATABASE_USER` as its superuser, if there is none yet;
    True if it was created."""
    user = run_as()
    data = data_dir(user)
    if (data / "PG_VERSION").exists():
        return False
    if data.exists():  # an initdb cut short: start again
        shutil.rmtree(data)
    data.parent.mkdir(parents=True, exist_ok=True)
    if user is not None:
        os.chown(data.parent, user.pw_uid, user.pw_gid)
    secret = data.parent / "initdb.pw"
    secret.write_text(password + "\n")
    secret.chmod(0o600)
    if user is not None:
        os.chown(secret, user.pw_uid, user.pw_gid)
    try:
        done = subprocess.run(
            as_user([str(bin_dir() / "initdb"), "-D", str(data), "-U", config.DATABASE_USER,
                     "--auth=scram-sha-256", f"--pwfile={secret}", "-E", "UTF8",
                     "--locale=C.UTF-8"], user),
            capture_output=True, text=True, cwd="/",
        )  # fmt: skip
    finally:
        secret.unlink(missing_ok=True)
    if done.returncode != 0:
        raise StageError(f"initdb failed:\n{done.stderr[-1500:]}")
    return True


def start(port: int) -> int:
    """Start the server on 127.0.0.1:`port` and wait until it accepts connections."""
    user = run_as()
    data = data_dir(user)
    sockets = socket_dir(user)
    command = as_user([str(bin_dir() / "postgres"), "-D", str(data), "-p", str(port),
                       "-c", f"listen_addresses={config.HOST}",
                       "-c", f"unix_socket_directories={sockets}"], user)  # fmt: skip
    ready_command = [str(bin_dir() / "pg_isready"), "-q", "-h", config.HOST, "-p", str(port)]

    def ready() -> bool:
        return subprocess.run(ready_command, capture_output=True).returncode == 0

    return DAEMON.start(command, ready, timeout=60)


def create_databases(port: int, password: str, names: list[str]) -> None:
    """Create each of `names` that does not exist yet."""
    import psycopg2

    try:
        connection = psycopg2.connect(host=config.HOST, port=port, user=config.DATABASE_USER,
                                      password=password, dbname="postgres")  # fmt: skip
    except psycopg2.OperationalError as exc:
        raise StageError(f"cannot connect to PostgreSQL on {config.HOST}:{port}: {exc}") from None
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            for name in names:
                cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                if cursor.fetchone() is None:
                    cursor.execute(f'CREATE DATABASE "{name}"')
    finally:
        connection.close()


def stop() -> bool:
    """Fast shutdown (SIGINT: sessions ended, everything written); False if not running."""
    import signal

    return DAEMON.stop(signal.SIGINT, timeout=60)

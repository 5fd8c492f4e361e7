"""Where a study lives: Optuna's own storages, opened so that many workers can share one.

A URL (``postgresql://``, ``mysql://``, ``sqlite:///``) becomes Optuna's ``RDBStorage`` with its
heartbeat switched on: each running trial records that its worker is alive, and a worker that
starts a trial first marks the trials of workers silent for longer than the grace period as
failed (Optuna's ``fail_stale_trials``) and re-queues each once (``RetryFailedTrialCallback``), so
a killed worker's trial is neither left RUNNING nor lost. ``journal:PATH`` (or a path ending in
``.log`` / ``.journal``) is Optuna's ``JournalFileBackend``, for clusters with a shared disk and no
database; Optuna's journal storage has no heartbeat. Another plain path is a SQLite file.
"""

from __future__ import annotations

import os
import time
import warnings

from optuna.storages import BaseStorage

__all__ = ["DRIVER_HINT", "open_storage", "redacted"]

#: What to install for each URL scheme whose driver is missing.
DRIVER_HINT = {
    "postgresql": "pip install 'skinestimator[postgres]' (psycopg 3, which SQLAlchemy takes for "
                  "a plain postgresql:// URL)",
    "mysql": "pip install mysqlclient, or PyMySQL with a mysql+pymysql:// URL",
}

_JOURNAL_SUFFIXES = (".log", ".journal")


def _is_journal(storage: str) -> bool:
    return storage.startswith("journal:") or (
        "://" not in storage and storage.endswith(_JOURNAL_SUFFIXES))


def _journal(storage: str) -> BaseStorage:
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    path = storage.removeprefix("journal:")
    if not path:
        raise ValueError("storage 'journal:' needs a file path, e.g. 'journal:study.log'")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ValueError(f"storage {storage!r}: the folder {folder!r} does not exist")
    return JournalStorage(JournalFileBackend(path))


def _database(url: str, heartbeat_interval: int | None) -> BaseStorage:
    import optuna

    options = {}
    if heartbeat_interval is not None:
        with warnings.catch_warnings():
            # Optuna calls its heartbeat experimental; it is what makes sharing safe.
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            options["heartbeat_interval"] = heartbeat_interval
            # Optuna 4.9 renamed the callback and its argument; older ones know only these.
            retry = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None)
            if retry is not None:
                options["heartbeat_stale_trial_callback"] = retry(max_retry=1)
            else:
                options["failed_trial_callback"] = optuna.storages.RetryFailedTrialCallback(
                    max_retry=1)
    scheme = url.split(":", 1)[0].split("+", 1)[0]
    # Workers started together race to create Optuna's tables in a new database, and the
    # loser fails with a duplicate-key error although the tables then exist: try again.
    for attempt in range(3):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(url, **options)
        except ImportError as exc:
            hint = DRIVER_HINT.get(scheme, "install the database driver SQLAlchemy names")
            raise ValueError(f"storage {redacted(url)!r}: no database driver for "
                             f"{scheme}:// ({exc}); {hint}") from exc
        except Exception as exc:  # noqa: BLE001 - SQLAlchemy's errors differ by database
            if attempt == 2 or not _is_table_race(exc):
                raise ValueError(f"storage {redacted(url)!r} cannot be opened: "
                                 f"{_first_line(exc)}") from exc
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")  # pragma: no cover


def _is_table_race(exc: Exception) -> bool:
    text = str(exc).lower()
    return "duplicate" in text or "already exists" in text or "unique" in text


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def redacted(url: str) -> str:
    """``url`` without its password, for messages."""
    head, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    credentials, _, host = rest.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"{head}://{user}:***@{host}" if ":" in credentials else url


def open_storage(storage, *, heartbeat_interval: int | None = 60) -> BaseStorage | str | None:
    """The Optuna storage ``storage`` names (None: the study lives in memory).

    Parameters
    ----------
    storage : None, str or optuna.storages.BaseStorage
        A database URL, ``journal:PATH`` / a ``.log`` or ``.journal`` path, another path (a
        SQLite file), or a storage object (returned as it is).
    heartbeat_interval : int or None, default=60
        Seconds between the heartbeats of a running trial in a database; a trial silent for
        twice as long is failed and re-queued once by the next trial any worker starts.
        None switches the heartbeat off.

    Returns
    -------
    optuna.storages.BaseStorage or None

    Examples
    --------
    >>> import tempfile, os
    >>> from skinestimator.model_selection._storage import open_storage
    >>> folder = tempfile.mkdtemp()
    >>> type(open_storage(os.path.join(folder, "search.db"))).__name__
    'RDBStorage'
    >>> type(open_storage("journal:" + os.path.join(folder, "search.log"))).__name__
    'JournalStorage'
    """
    if storage is None or isinstance(storage, BaseStorage):
        return storage
    if not isinstance(storage, str):
        raise TypeError("storage must be None, a database URL, a SQLite file path, "
                        f"'journal:PATH' or an optuna storage, got {type(storage).__name__}.")
    if _is_journal(storage):
        return _journal(storage)
    if "://" not in storage:
        storage = f"sqlite:///{os.path.abspath(storage)}"
    return _database(storage, heartbeat_interval)

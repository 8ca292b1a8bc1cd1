"""The TUI's conversation history: conversations and their messages in one SQLite file.

Why SQLite (stdlib ``sqlite3``) rather than JSON files: a chat session appends one message at a time
and may be killed at any moment (Ctrl+C, closed terminal, OOM during generation); SQLite gives us
atomic, durable appends without rewriting the whole history, and lets a worker thread write while
the UI thread reads.

Guarantees this module keeps, because the TUI relies on them:

* **Exact round trip.** Message text is stored and returned byte for byte: 100 KB pastes, NUL and
  other control characters, CR/LF, Korean, emoji. Only text that *cannot* be encoded (unpaired
  UTF-16 surrogates) is refused, with a :class:`~chatrnn.errors.ChatrnnError`, never mangled.
* **Nothing is lost silently.** A corrupt file, or one written by a newer chatrnn, is *moved aside*
  (``<name>.corrupt-<timestamp>``), never deleted, and :meth:`Store.open` returns a message saying
  where it went. A database held by another process makes the session fall back to memory, and the
  message says the session will not be saved. A database that belongs to some other program is
  refused outright rather than moved.
* **User-facing failures are ChatrnnError.** Bad arguments, missing conversations, a locked or full
  disk mid-session: one clear line, no traceback. Misuse of the sqlite3 API (a bug) still raises.
* **Thread safety.** One connection opened with ``check_same_thread=False``; every public operation
  holds a lock, and every write is one ``BEGIN IMMEDIATE`` transaction.

The schema is versioned with ``PRAGMA user_version``; :data:`MIGRATIONS` holds one function per
step (version *n* to *n + 1*), each run in its own transaction together with the version bump, so a
crash mid-migration leaves the previous version intact. ``PRAGMA application_id`` marks the file as
ours, which is how a foreign database is told apart from one written by a newer chatrnn.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chatrnn.errors import ChatrnnError

__all__ = [
    "APPLICATION_ID",
    "DEFAULT_TITLE",
    "MIGRATIONS",
    "Conversation",
    "Message",
    "Store",
    "StoreCorruptError",
    "StoreLockedError",
    "StoreTooNewError",
    "default_db_path",
    "escape_markdown",
]

#: Title a conversation gets until its first user message names it (see :meth:`Store.add_message`).
DEFAULT_TITLE = "New conversation"
#: Longest auto-generated title, in characters, so it fits a sidebar entry.
AUTO_TITLE_MAX = 40
#: ``PRAGMA application_id`` of chatrnn databases (the ASCII bytes ``cRNN``).
APPLICATION_ID = int.from_bytes(b"cRNN", "big")

ROLES = ("user", "bot")
MODES = ("chat", "generate")

_MEMORY = ":memory:"
# Primary SQLite result codes we react to (the low byte of extended codes).
_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_READONLY = 5, 6, 8
_SQLITE_CORRUPT, _SQLITE_CANTOPEN, _SQLITE_NOTADB = 11, 14, 26


@dataclass
class Message:
    """One turn of a conversation, exactly as stored.

    ``meta`` carries whatever the TUI wants to keep with a reply (attention summary, the decoding
    settings actually used, ``"cancelled": True`` when generation was interrupted).
    """

    id: int
    conversation_id: int
    role: str
    text: str
    created: float
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Conversation:
    """A conversation's header; its messages come from :meth:`Store.messages`."""

    id: int
    title: str
    created: float
    updated: float
    mode: str
    checkpoint: str | None
    settings: dict[str, Any] = field(default_factory=dict)


class StoreCorruptError(ChatrnnError):
    """The database file is not SQLite, or is damaged. :meth:`Store.open` moves it aside."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"the conversation history at {path} is unreadable ({reason})")


class StoreTooNewError(ChatrnnError):
    """The database was written by a newer chatrnn. :meth:`Store.open` moves it aside."""

    def __init__(self, path: Path, version: int) -> None:
        self.path = path
        self.version = version
        super().__init__(
            f"the conversation history at {path} was written by a newer chatrnn "
            f"(schema version {version}; this chatrnn understands up to {Store.SCHEMA_VERSION})"
        )


class StoreLockedError(ChatrnnError):
    """Another process holds the database beyond the busy timeout. :meth:`Store.open` falls back
    to memory."""

    def __init__(self, path: Path) -> None:
        self.path = path
        super().__init__(f"the conversation history at {path} is locked by another process")


def default_db_path() -> Path:
    """Where the TUI keeps its history: ``$CHATRNN_DB`` if set, else the per-user data folder.

    The environment variable exists so tests, demos and people with several setups can point the
    TUI elsewhere without a flag on every command; ``CHATRNN_DB=:memory:`` gives a throwaway
    session.
    """
    override = os.environ.get("CHATRNN_DB", "").strip()
    if override:
        return Path(override).expanduser()
    import platformdirs  # imported here: only the TUI needs it, and `chatrnn --help` stays cheap

    return platformdirs.user_data_path("chatrnn") / "chatrnn.sqlite3"


# --------------------------------------------------------------------------------------------
# Schema and migrations


def _migrate_0_to_1(conn: sqlite3.Connection) -> None:
    """Version 1: conversations and messages.

    AUTOINCREMENT so ids are never reused: a TUI widget still holding the id of a deleted
    conversation gets "no such conversation" instead of silently addressing a newer one.
    """
    conn.execute(
        """
        CREATE TABLE conversations (
            id         INTEGER PRIMARY KEY AUTOINCREMENT,
            title      TEXT NOT NULL,
            created    REAL NOT NULL,
            updated    REAL NOT NULL,
            mode       TEXT NOT NULL CHECK (mode IN ('chat', 'generate')),
            checkpoint TEXT,
            settings   TEXT NOT NULL DEFAULT '{}'
        )
        """
    )
    conn.execute(
        """
        CREATE TABLE messages (
            id              INTEGER PRIMARY KEY AUTOINCREMENT,
            conversation_id INTEGER NOT NULL
                            REFERENCES conversations(id) ON DELETE CASCADE,
            role            TEXT NOT NULL CHECK (role IN ('user', 'bot')),
            text            TEXT NOT NULL,
            created         REAL NOT NULL,
            meta            TEXT NOT NULL DEFAULT '{}'
        )
        """
    )
    conn.execute("CREATE INDEX messages_by_conversation ON messages (conversation_id, id)")
    conn.execute("CREATE INDEX conversations_by_updated ON conversations (updated DESC, id DESC)")
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")


#: ``MIGRATIONS[n]`` turns a version-*n* database into version *n + 1*. Append, never edit: a
#: released step has already run on users' files.
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_migrate_0_to_1]


# --------------------------------------------------------------------------------------------
# Helpers


def _error_code(error: sqlite3.Error) -> int | None:
    """Primary SQLite result code of ``error`` (Python >= 3.11), else a guess from its message."""
    code = getattr(error, "sqlite_errorcode", None)
    if code is not None:
        return int(code) & 0xFF
    text = str(error).lower()
    for needle, guess in (
        ("not a database", _SQLITE_NOTADB),
        ("malformed", _SQLITE_CORRUPT),
        ("is locked", _SQLITE_BUSY),
        ("readonly", _SQLITE_READONLY),
        ("unable to open", _SQLITE_CANTOPEN),
    ):
        if needle in text:
            return guess
    return None


def _check_text(value: object, what: str) -> str:
    """Refuse what SQLite cannot store exactly, with a message instead of a UnicodeEncodeError."""
    if not isinstance(value, str):
        raise ChatrnnError(f"{what} must be text, not {type(value).__name__}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:
        raise ChatrnnError(
            f"{what} contains an unpaired surrogate (U+{ord(value[error.start]):04X} at position "
            f"{error.start}) and cannot be stored; it is not valid Unicode text"
        ) from None
    return value


def _check_keys(value: object, what: str) -> None:
    """JSON would turn non-string keys into strings: refuse instead of changing the data."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ChatrnnError(f"{what} keys must be strings, got {key!r}")
            _check_keys(item, what)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _check_keys(item, what)


def _to_json(value: dict[str, Any] | None, what: str) -> str:
    """Serialise settings/meta. ASCII escapes keep even odd strings (surrogates) exact."""
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise ChatrnnError(f"{what} must be a dict, not {type(value).__name__}")
    try:  # first, so a circular structure is reported before _check_keys walks it
        encoded = json.dumps(value, ensure_ascii=True, allow_nan=True)
    except (TypeError, ValueError) as error:
        raise ChatrnnError(f"{what} must be JSON-serialisable: {error}") from None
    _check_keys(value, what)
    return encoded


def _from_json(raw: str | None) -> dict[str, Any]:
    """Parse stored JSON. A hand-damaged value is kept visible under ``_unparsed``, not dropped."""
    try:
        value = json.loads(raw) if raw else {}
    except ValueError:
        return {"_unparsed": raw}
    return value if isinstance(value, dict) else {"_unparsed": raw}


def _check_id(cid: object) -> int:
    if isinstance(cid, bool) or not isinstance(cid, int):
        raise ChatrnnError(f"a conversation id must be an integer, not {cid!r}")
    return cid


def _auto_title(text: str) -> str | None:
    """A one-line title from a user message: whitespace collapsed, control characters dropped,
    at most :data:`AUTO_TITLE_MAX` characters (ending in an ellipsis when cut)."""
    cleaned = "".join(ch for ch in text if ch.isprintable() or ch.isspace())
    words = cleaned.split()
    if not words:
        return None
    title = " ".join(words)
    if len(title) > AUTO_TITLE_MAX:
        title = title[: AUTO_TITLE_MAX - 1].rstrip() + "…"
    return title


def _conversation(row: sqlite3.Row) -> Conversation:
    return Conversation(
        id=row["id"],
        title=row["title"],
        created=row["created"],
        updated=row["updated"],
        mode=row["mode"],
        checkpoint=row["checkpoint"],
        settings=_from_json(row["settings"]),
    )


def _message(row: sqlite3.Row) -> Message:
    return Message(
        id=row["id"],
        conversation_id=row["conversation_id"],
        role=row["role"],
        text=row["text"],
        created=row["created"],
        meta=_from_json(row["meta"]),
    )


def _move_aside(path: Path) -> Path:
    """Rename ``path`` (and any -wal/-shm/-journal beside it) to ``<name>.corrupt-<timestamp>``.

    Never overwrites: a second failure in the same second gets ``-2``, ``-3``... The sidecars move
    with it under matching names so that SQLite can still open the pair later for recovery.
    """
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    sidecars = ("-wal", "-shm", "-journal")
    n = 1
    while target.exists() or any(Path(f"{target}{s}").exists() for s in sidecars):
        n += 1
        target = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
    os.rename(path, target)
    for suffix in sidecars:
        sidecar = Path(f"{path}{suffix}")
        if sidecar.exists():
            os.rename(sidecar, Path(f"{target}{suffix}"))
    return target


# --------------------------------------------------------------------------------------------
# Markdown export

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
# Characters that start inline constructs (emphasis, code, links, HTML, entities, GFM tables,
# strikethrough, math, GitHub issue references). Backslash-escaping any ASCII punctuation is
# valid CommonMark.
_INLINE = re.compile(r"([\\`*_\[\]<>|~&$#])")
# Block constructs recognised at the start of a line (after indentation).
_BLOCK_START = re.compile(r"^([+\-=])|^(\d{1,9})([.)])")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def _control_picture(match: re.Match[str]) -> str:
    code = ord(match.group())
    return "\u2421" if code == 0x7F else chr(0x2400 + code)


def _escape_line(line: str) -> str:
    line = _CONTROL.sub(_control_picture, line)
    body = line.lstrip(" \t")
    indent = line[: len(line) - len(body)]
    body = _INLINE.sub(r"\\\1", body)
    body = _BLOCK_START.sub(
        lambda m: "\\" + m.group(1) if m.group(1) else m.group(2) + "\\" + m.group(3), body, count=1
    )
    # Indentation as non-breaking spaces: keeps it visible and can never start a code block.
    return indent.replace("\t", "    ").replace(" ", "&nbsp;") + body


def escape_markdown(text: str) -> str:
    """Render ``text`` as Markdown that displays as that literal text.

    Every character Markdown would interpret is backslash-escaped, line starts that would open a
    heading/list/quote are neutralised, indentation becomes ``&nbsp;`` (so it cannot turn into a
    code block), line breaks become hard breaks, and control characters become their visible
    Unicode "control pictures" (NUL shows as ``␀``) rather than vanishing. Runs of blank lines
    collapse to one paragraph break when rendered; the database keeps the exact text.
    """
    lines = [_escape_line(line) for line in _LINE_BREAK.split(text)]
    out: list[str] = []
    for i, line in enumerate(lines):
        hard_break = line and i + 1 < len(lines) and lines[i + 1]
        out.append(line + "\\" if hard_break else line)
    return "\n".join(out)


def _one_line(text: str) -> str:
    return " ".join(text.split())


# --------------------------------------------------------------------------------------------
# The store


class Store:
    """Conversations and messages in one SQLite database (a file, or ``":memory:"``).

    Use :meth:`open` from the TUI: it never fails on a bad file, it moves it aside and says so.
    The constructor is strict and raises :class:`StoreCorruptError`, :class:`StoreTooNewError`,
    :class:`StoreLockedError` or a plain :class:`~chatrnn.errors.ChatrnnError`.
    """

    SCHEMA_VERSION = len(MIGRATIONS)

    def __init__(self, path: Path | str, *, busy_timeout: float = 5.0) -> None:
        """Open (creating if needed) the database at ``path``, migrating it to the current schema.

        ``busy_timeout`` is how many seconds to wait for another process's lock before giving up:
        long enough to ride over another chatrnn's write, short enough not to hang the TUI.
        """
        self._lock = threading.RLock()
        self._closed = False
        self.in_memory = str(path) == _MEMORY
        self.path: Path | None = None if self.in_memory else Path(path).expanduser()
        if self.path is not None:
            if self.path.is_dir():
                raise ChatrnnError(f"{self.path} is a folder, not a database file")
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise ChatrnnError(
                    f"cannot create the folder for the conversation history {self.path}: {error.strerror or error}"
                ) from None
        try:
            self._conn = sqlite3.connect(
                _MEMORY if self.path is None else self.path,
                timeout=busy_timeout,
                isolation_level=None,  # we issue BEGIN/COMMIT ourselves
                check_same_thread=False,  # guarded by self._lock instead
            )
        except sqlite3.Error as error:
            raise self._translate(error, "open") from None
        self._conn.row_factory = sqlite3.Row
        try:
            self._setup()
        except BaseException:
            self._conn.close()
            raise

    @classmethod
    def open(cls, path: Path | str, *, busy_timeout: float = 5.0) -> tuple[Store, str | None]:
        """Open ``path`` whatever state it is in; return the store and a message for the user.

        * corrupt or from a newer schema: the file is moved to ``<name>.corrupt-<timestamp>``
          (never deleted), a fresh database is created, and the message names the old file;
        * locked by another process: an in-memory store, and a message that nothing will be saved;
        * otherwise the message is ``None``.

        Other problems (a database belonging to another program, an unwritable folder) still raise
        :class:`~chatrnn.errors.ChatrnnError`: guessing there could hide or misplace user data.
        """
        try:
            return cls(path, busy_timeout=busy_timeout), None
        except StoreLockedError as error:
            return cls(_MEMORY), (
                f"{error.path} is locked by another chatrnn (or another program); this session will not be saved."
            )
        except (StoreCorruptError, StoreTooNewError) as error:
            problem = str(error)
            try:
                moved = _move_aside(error.path)
            except OSError as move_error:
                return cls(_MEMORY), (
                    f"{problem[0].upper()}{problem[1:]}, and it could not be moved aside "
                    f"({move_error.strerror or move_error}); this session will not be saved."
                )
        fresh = cls(path, busy_timeout=busy_timeout)
        return fresh, (
            f"{problem[0].upper()}{problem[1:]}. It was moved to {moved} (nothing was deleted) "
            "and a new, empty history was started."
        )

    # ---- connection plumbing -----------------------------------------------------------------

    def _setup(self) -> None:
        """Pragmas, sanity checks and migrations; every failure becomes a typed ChatrnnError."""
        conn = self._conn
        try:
            conn.execute("PRAGMA foreign_keys = ON")
            version = conn.execute("PRAGMA user_version").fetchone()[0]  # first read of the file
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            if self.path is not None:
                problems = [row[0] for row in conn.execute("PRAGMA quick_check")]
                if problems != ["ok"]:
                    raise StoreCorruptError(self.path, "; ".join(problems[:3]))
            self._check_ownership(version, app_id)
            if version > self.SCHEMA_VERSION:
                raise StoreTooNewError(self._where, version)
            if self.path is not None:
                conn.execute("PRAGMA journal_mode = WAL")  # readers never block the writer
            self._migrate()
            # Fail now, not at the first message, if another process is holding the write lock.
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")
        except sqlite3.Error as error:
            raise self._translate(error, "open") from None

    @property
    def _where(self) -> Path:
        return self.path if self.path is not None else Path(_MEMORY)

    def _check_ownership(self, version: int, app_id: int) -> None:
        """Refuse other programs' databases: moving them aside would be wrong, using them worse."""
        if app_id == APPLICATION_ID:
            return
        if app_id == 0 and version == 0:
            tables = self._conn.execute(
                "SELECT name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' LIMIT 3"
            ).fetchall()
            if not tables:
                return  # empty: a new file, or one created by `sqlite3 file.db` (version 0)
            names = ", ".join(row[0] for row in tables)
            detail = f"it has tables such as {names}"
        else:
            detail = f"application id {app_id}, user version {version}"
        raise ChatrnnError(
            f"{self._where} is an SQLite database that does not belong to chatrnn ({detail}); "
            "leaving it alone. Point CHATRNN_DB at another file."
        )

    def _migrate(self) -> None:
        """Run pending migrations, each in its own transaction with its version bump.

        The version is re-read inside the write transaction because another chatrnn may have
        migrated the same file between our first read and acquiring the lock.
        """
        while True:
            with self._write("open") as conn:
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                if version >= self.SCHEMA_VERSION:
                    return
                MIGRATIONS[version](conn)
                conn.execute(f"PRAGMA user_version = {version + 1}")

    def _translate(self, error: sqlite3.Error, action: str) -> ChatrnnError:
        """Turn an environmental sqlite3 failure into a ChatrnnError that says what to do."""
        where = self._where
        code = _error_code(error)
        if code in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
            if action == "open":
                return StoreCorruptError(where, str(error))
            return ChatrnnError(
                f"the conversation history at {where} is damaged ({error}); restart chatrnn to "
                "move it aside and start a fresh one"
            )
        if code in (_SQLITE_BUSY, _SQLITE_LOCKED):
            if action == "open":
                return StoreLockedError(where)
            return ChatrnnError(
                f"could not {action}: the conversation history at {where} is locked by another "
                "process; try again, or close the other chatrnn"
            )
        if code == _SQLITE_READONLY:
            return ChatrnnError(f"could not {action}: {where} is read-only")
        if code == _SQLITE_CANTOPEN or action == "open":
            return ChatrnnError(f"cannot open the conversation history {where}: {error}")
        return ChatrnnError(f"could not {action} in the conversation history {where}: {error}")

    @contextmanager
    def _guard(self, action: str) -> Iterator[sqlite3.Connection]:
        """Hold the lock, refuse a closed store, translate environmental sqlite3 errors.

        sqlite3 errors that mean a bug (misuse of the API, constraint violations our own checks
        should have prevented) propagate unchanged so they keep their traceback.
        """
        with self._lock:
            if self._closed:
                raise ChatrnnError("the conversation store is closed")
            try:
                yield self._conn
            except (sqlite3.ProgrammingError, sqlite3.InterfaceError, sqlite3.IntegrityError):
                raise
            except sqlite3.Error as error:
                raise self._translate(error, action) from None

    @contextmanager
    def _write(self, action: str = "save") -> Iterator[sqlite3.Connection]:
        """One write transaction: BEGIN IMMEDIATE takes the write lock up front (no deadlock
        between two readers upgrading), COMMIT on success, ROLLBACK on any exception."""
        with self._guard(action) as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                self._rollback(conn)
                raise
            conn.execute("COMMIT")

    @contextmanager
    def _read(self, action: str = "read") -> Iterator[sqlite3.Connection]:
        """A read transaction, so multi-query reads (export) see one consistent snapshot."""
        with self._guard(action) as conn:
            conn.execute("BEGIN")
            try:
                yield conn
            except BaseException:
                self._rollback(conn)
                raise
            conn.execute("COMMIT")

    @staticmethod
    def _rollback(conn: sqlite3.Connection) -> None:
        """Roll back without masking the error that got us here: SQLite may already have rolled
        back by itself (disk full, I/O error), and a failing ROLLBACK must not replace the cause."""
        if conn.in_transaction:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass

    @staticmethod
    def _row(conn: sqlite3.Connection, cid: int) -> sqlite3.Row:
        row = conn.execute("SELECT * FROM conversations WHERE id = ?", (cid,)).fetchone()
        if row is None:
            raise ChatrnnError(f"there is no conversation with id {cid}")
        return row

    @staticmethod
    def _now(conn: sqlite3.Connection) -> float:
        """A timestamp strictly later than every stored ``updated``.

        Sorting "newest first" must not depend on clock resolution (two writes in the same tick)
        or on the wall clock never stepping back (NTP, suspend); a microsecond past the newest
        stored value keeps the order the user saw things happen.
        """
        newest = conn.execute("SELECT MAX(updated) FROM conversations").fetchone()[0]
        now = time.time()
        return now if newest is None or now > newest else newest + 1e-6

    # ---- conversations -----------------------------------------------------------------------

    def create_conversation(
        self,
        title: str = DEFAULT_TITLE,
        mode: str = "chat",
        checkpoint: str | Path | None = None,
        settings: dict[str, Any] | None = None,
    ) -> Conversation:
        """Start a conversation. ``checkpoint`` is whatever identifies the model (a path)."""
        title = self._check_title(title)
        if mode not in MODES:
            raise ChatrnnError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        if checkpoint is not None:
            checkpoint = _check_text(str(checkpoint), "the checkpoint")
        settings_json = _to_json(settings, "settings")
        with self._write("create a conversation") as conn:
            now = self._now(conn)
            cursor = conn.execute(
                "INSERT INTO conversations (title, created, updated, mode, checkpoint, settings) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (title, now, now, mode, checkpoint, settings_json),
            )
            return _conversation(self._row(conn, cursor.lastrowid))

    def list_conversations(self) -> list[Conversation]:
        """All conversations, most recently active first (ties: newest created first)."""
        with self._read("list conversations") as conn:
            rows = conn.execute("SELECT * FROM conversations ORDER BY updated DESC, id DESC")
            return [_conversation(row) for row in rows]

    def get_conversation(self, cid: int) -> Conversation:
        """The conversation ``cid``; ChatrnnError if it does not exist (e.g. deleted meanwhile)."""
        with self._read("read a conversation") as conn:
            return _conversation(self._row(conn, _check_id(cid)))

    def rename(self, cid: int, title: str) -> None:
        """Retitle. Does not bump ``updated``: renaming should not reorder the list under the
        cursor, and a user-chosen title is never replaced by the auto-title (unless it is the
        default title itself)."""
        title = self._check_title(title)
        with self._write("rename the conversation") as conn:
            self._row(conn, _check_id(cid))
            conn.execute("UPDATE conversations SET title = ? WHERE id = ?", (title, cid))

    def delete(self, cid: int) -> None:
        """Delete a conversation and (by ON DELETE CASCADE) its messages."""
        with self._write("delete the conversation") as conn:
            self._row(conn, _check_id(cid))
            conn.execute("DELETE FROM conversations WHERE id = ?", (cid,))

    def update_settings(self, cid: int, settings: dict[str, Any]) -> None:
        """Replace (not merge) the conversation's decoding settings, so what is stored is exactly
        what the settings panel shows. Does not bump ``updated``."""
        settings_json = _to_json(settings, "settings")
        with self._write("save the settings") as conn:
            self._row(conn, _check_id(cid))
            conn.execute("UPDATE conversations SET settings = ? WHERE id = ?", (settings_json, cid))

    @staticmethod
    def _check_title(title: object) -> str:
        title = _check_text(title, "the title")
        if not title.strip():
            raise ChatrnnError("a conversation title cannot be empty")
        return title

    # ---- messages ----------------------------------------------------------------------------

    def add_message(self, cid: int, role: str, text: str, meta: dict[str, Any] | None = None) -> Message:
        """Append a message and bump the conversation's ``updated`` in the same transaction.

        A user message also names a conversation still titled :data:`DEFAULT_TITLE` (its first
        ~40 characters, on one line), so the sidebar shows something recognisable.
        """
        if role not in ROLES:
            raise ChatrnnError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
        text = _check_text(text, "the message")
        meta_json = _to_json(meta, "message meta")
        with self._write("save the message") as conn:
            row = self._row(conn, _check_id(cid))
            now = self._now(conn)
            cursor = conn.execute(
                "INSERT INTO messages (conversation_id, role, text, created, meta) VALUES (?, ?, ?, ?, ?)",
                (cid, role, text, now, meta_json),
            )
            title = row["title"]
            if role == "user" and title == DEFAULT_TITLE:
                title = _auto_title(text) or title
            conn.execute("UPDATE conversations SET updated = ?, title = ? WHERE id = ?", (now, title, cid))
            stored = conn.execute("SELECT * FROM messages WHERE id = ?", (cursor.lastrowid,))
            return _message(stored.fetchone())

    def messages(self, cid: int) -> list[Message]:
        """The conversation's messages in the order they were added."""
        with self._read("read the messages") as conn:
            self._row(conn, _check_id(cid))
            rows = conn.execute("SELECT * FROM messages WHERE conversation_id = ? ORDER BY id", (cid,))
            return [_message(row) for row in rows]

    # ---- export ------------------------------------------------------------------------------

    def export_markdown(self, cid: int) -> str:
        """The conversation as a Markdown document for reading or sharing.

        Message text is escaped (:func:`escape_markdown`) so it renders as what was typed, not as
        accidental headings, lists or HTML. Cancelled replies are marked as such.
        """
        with self._read("export the conversation") as conn:
            conversation = _conversation(self._row(conn, _check_id(cid)))
            rows = conn.execute("SELECT * FROM messages WHERE conversation_id = ? ORDER BY id", (cid,)).fetchall()
        messages = [_message(row) for row in rows]
        title = escape_markdown(_one_line(conversation.title) or DEFAULT_TITLE)
        model = _one_line(conversation.checkpoint or "") or "none"
        if conversation.settings:
            settings = ", ".join(
                f"{key}={json.dumps(value, ensure_ascii=False)}" for key, value in conversation.settings.items()
            )
        else:
            settings = "defaults"
        info = escape_markdown(_one_line(f"model: {model}, mode: {conversation.mode}, settings: {settings}"))
        parts = [f"# {title}", f"_{info}_"]
        for message in messages:
            speaker = "You" if message.role == "user" else "Bot"
            body = escape_markdown(message.text)
            if message.meta.get("cancelled"):
                body += " _(cancelled)_"
            parts.append(f"**{speaker}:** {body}")
        return "\n\n".join(parts) + "\n"

    def export_to_file(self, cid: int, path: Path | str) -> Path:
        """Write :meth:`export_markdown` to ``path`` atomically and return the path written.

        Atomic (temporary file in the same folder, fsync, ``os.replace``) so an existing export is
        never left half-overwritten. The folder must exist: creating folders from a mistyped path
        would scatter files silently.
        """
        document = self.export_markdown(cid)
        target = Path(path).expanduser()
        if target.is_dir():
            raise ChatrnnError(f"cannot export to {target}: it is a folder")
        if not target.parent.is_dir():
            raise ChatrnnError(f"cannot export to {target}: the folder {target.parent} does not exist")
        tmp = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        try:
            # os.open with 0o666 lets the umask decide permissions, as for any new file.
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
                handle.write(document)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        except OSError as error:
            tmp.unlink(missing_ok=True)
            raise ChatrnnError(f"cannot export to {target}: {error.strerror or error}") from None
        return target

    # ---- lifetime ----------------------------------------------------------------------------

    def close(self) -> None:
        """Close the connection (idempotent). Later calls raise ChatrnnError, not crash."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

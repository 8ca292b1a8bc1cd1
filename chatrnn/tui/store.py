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

A conversation is a tree (schema version 2): every message has a ``parent_id``, and the
conversation remembers where its active branch ends (``active_id``). Regenerating a reply or
editing a message adds a sibling instead of replacing anything, so every branch stays reachable;
:meth:`Store.messages` and the export give the active branch, :meth:`Store.set_active` switches.

The schema is versioned with ``PRAGMA user_version``; :data:`MIGRATIONS` holds one function per
step (version *n* to *n + 1*), each run in its own transaction together with the version bump, so a
crash mid-migration leaves the previous version intact. ``PRAGMA application_id`` marks the file as
ours, which is how a foreign database is told apart from one written by a newer chatrnn.
"""

from __future__ import annotations

import errno
import json
import os
import re
import secrets
import sqlite3
import struct
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
    #: the message this one answers or follows (None: the conversation's first message); messages
    #: with the same parent are alternatives (regenerated replies, edited messages)
    parent_id: int | None = None


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


def _migrate_1_to_2(conn: sqlite3.Connection) -> None:
    """Version 2: conversations become trees (regenerate and edit branch them).

    Each message gets a ``parent_id`` (None: a first message) and each conversation the id of the
    message its active branch ends at, ``active_id``. A version-1 conversation was one straight
    line, so each message's parent is the one stored just before it and the branch ends at the
    last one: every message stays, in the same order, on the active branch.
    """
    conn.execute("ALTER TABLE messages ADD COLUMN parent_id INTEGER REFERENCES messages(id) ON DELETE CASCADE")
    conn.execute("ALTER TABLE conversations ADD COLUMN active_id INTEGER")
    conn.execute(
        """
        UPDATE messages SET parent_id = (
            SELECT MAX(p.id) FROM messages AS p
            WHERE p.conversation_id = messages.conversation_id AND p.id < messages.id
        )
        """
    )
    conn.execute(
        "UPDATE conversations SET active_id = (SELECT MAX(id) FROM messages WHERE conversation_id = conversations.id)"
    )
    conn.execute("CREATE INDEX messages_by_parent ON messages (parent_id, id)")


def _migrate_2_to_3(conn: sqlite3.Connection) -> None:
    """Version 3: each message remembers when its branch was last the active one (``used``).

    Switching branches descends, at each fork, to the child used last, so flipping to reply 2/3,
    editing the message above and flipping back finds 2/3 again (version 2 took the newest child,
    3/3). Existing messages start at 0, where the newest child still wins: nothing changes on
    screen until a branch is used.
    """
    conn.execute("ALTER TABLE messages ADD COLUMN used INTEGER NOT NULL DEFAULT 0")


#: ``MIGRATIONS[n]`` turns a version-*n* database into version *n + 1*. Append, never edit: a
#: released step has already run on users' files.
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_migrate_0_to_1, _migrate_1_to_2, _migrate_2_to_3]


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
        parent_id=row["parent_id"] if "parent_id" in row.keys() else None,
    )


def _open_damaged(path: Path) -> sqlite3.Connection:
    """A read-only connection to a damaged database: it is the user's copy, never written to.

    ``immutable`` creates no ``-wal``/``-shm`` beside it; only when a ``-wal`` was moved aside with
    it (changes not yet in the main file) is it opened ``mode=ro``, which reads the WAL too.
    """
    uri = path.resolve().as_uri()
    if Path(f"{path}-wal").exists():
        conn = sqlite3.connect(f"{uri}?mode=ro", uri=True)
    else:
        conn = sqlite3.connect(f"{uri}?immutable=1", uri=True)
    # a damaged page can hold bytes that are not UTF-8: keep the row, mark the bad bytes
    conn.text_factory = lambda raw: raw.decode("utf-8", "replace")
    return conn


def _readable_rows(src: sqlite3.Connection, table: str) -> Iterator[tuple[Any, ...]]:
    """Every row of ``table`` that can still be read, in rowid order.

    A damaged page stops a table scan; the scan then resumes at the first rowid it can reach
    again (found by an exponential then a binary search on ``rowid >= x``: the B-tree descent for
    a rowid past the damaged leaf never touches it), so one bad page costs only its own rows.
    """
    quoted = '"' + table.replace('"', '""') + '"'
    scan = f"SELECT rowid, * FROM {quoted} WHERE rowid >= ? ORDER BY rowid"
    probe = f"SELECT rowid FROM {quoted} WHERE rowid >= ? ORDER BY rowid LIMIT 1"

    def reachable(x: int) -> bool:
        try:
            src.execute(probe, (x,)).fetchone()
            return True
        except sqlite3.DatabaseError:
            return False

    try:
        top = src.execute(f"SELECT max(rowid) FROM {quoted}").fetchone()[0]
    except sqlite3.DatabaseError:
        top = None
    start = -(1 << 63)
    while True:
        try:
            for row in src.execute(scan, (start,)):
                start = row[0] + 1
                yield row[1:]
            return
        except sqlite3.OperationalError as error:
            if "rowid" in str(error):  # a WITHOUT ROWID table: what a plain scan reaches
                try:
                    yield from src.execute(f"SELECT * FROM {quoted}")
                except sqlite3.DatabaseError:
                    pass
                return
        except sqlite3.DatabaseError:
            pass
        bad, step = start, 1  # `bad` is unreachable; find the first reachable start above it
        while not reachable(bad + step):
            if step > 1 << 62 or (top is not None and bad + step > top):
                return
            step *= 2
        good = bad + step
        while good - bad > 1:
            mid = (bad + good) // 2
            bad, good = (bad, mid) if reachable(mid) else (mid, good)
        start = good


def _varint(data: bytes, i: int) -> tuple[int, int]:
    """SQLite's big-endian varint at ``data[i]``: (value, next offset)."""
    value = 0
    for k in range(9):
        byte = data[i + k]
        if k == 8:
            return (value << 8) | byte, i + 9
        value = (value << 7) | (byte & 0x7F)
        if byte < 0x80:
            return value, i + k + 1
    raise ValueError("bad varint")  # pragma: no cover - the loop always returns


def _record(payload: bytes) -> list[Any]:
    """The column values of one SQLite record (the file format's serial types)."""
    header_size, i = _varint(payload, 0)
    types = []
    while i < header_size:
        serial, i = _varint(payload, i)
        types.append(serial)
    values: list[Any] = []
    pos = header_size
    for t in types:
        if t == 0:
            values.append(None)
        elif 1 <= t <= 6:
            n = (1, 2, 3, 4, 6, 8)[t - 1]
            values.append(int.from_bytes(payload[pos : pos + n], "big", signed=True))
            pos += n
        elif t == 7:
            values.append(struct.unpack(">d", payload[pos : pos + 8])[0])
            pos += 8
        elif t in (8, 9):
            values.append(t - 8)
        elif t >= 12:
            n = (t - 12) // 2
            raw = payload[pos : pos + n]
            values.append(raw.decode("utf-8", "replace") if t % 2 else bytes(raw))
            pos += n
        else:
            raise ValueError("reserved serial type")
        if pos > len(payload):
            raise ValueError("record runs past its payload")
    return values


def _leaf_cells(data: bytes, skip: set[int]) -> Iterator[tuple[int, list[Any]]]:
    """``(rowid, values)`` of every cell on every table-leaf page of a database file's bytes.

    What ``.recover`` adds to a table scan: rows on pages the B-tree no longer reaches (a damaged
    interior or root page cuts off every leaf below it) are still in the file. Pages in ``skip``
    (other tables' intact pages) and free pages (deleted rows stay deleted) are left out; a cell
    that does not parse is skipped.
    """
    page_size = int.from_bytes(data[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    if page_size < 512 or page_size & (page_size - 1):
        return
    usable = page_size - data[20]
    pages = len(data) // page_size
    skip = set(skip)
    trunk, trunks = int.from_bytes(data[32:36], "big"), 0
    while 1 < trunk <= pages and trunk not in skip and trunks < pages:  # free pages: deleted rows
        skip.add(trunk)
        base = (trunk - 1) * page_size
        count = min(int.from_bytes(data[base + 4 : base + 8], "big"), (usable - 8) // 4)
        skip.update(int.from_bytes(data[base + 8 + 4 * j : base + 12 + 4 * j], "big") for j in range(count))
        trunk, trunks = int.from_bytes(data[base : base + 4], "big"), trunks + 1
    for number in range(2, pages + 1):  # page 1 holds the schema
        if number in skip:
            continue
        base = (number - 1) * page_size
        page = data[base : base + page_size]
        if page[0] != 13:  # a table B-tree leaf
            continue
        for k in range(int.from_bytes(page[3:5], "big")):
            try:
                ptr = int.from_bytes(page[8 + 2 * k : 10 + 2 * k], "big")
                size, i = _varint(page, ptr)
                rowid, i = _varint(page, i)
                rowid = rowid - (1 << 64) if rowid >= 1 << 63 else rowid
                most = usable - 35
                if size <= most:
                    payload = page[i : i + size]
                else:  # the rest is on a chain of overflow pages
                    least = (usable - 12) * 32 // 255 - 23
                    local = least + (size - least) % (usable - 4)
                    local = local if local <= most else least
                    parts = [page[i : i + local]]
                    nxt, have, seen = int.from_bytes(page[i + local : i + local + 4], "big"), local, set()
                    while have < size and 1 < nxt <= pages and nxt not in seen:
                        seen.add(nxt)
                        over = data[(nxt - 1) * page_size : nxt * page_size]
                        parts.append(over[4 : 4 + min(usable - 4, size - have)])
                        have += len(parts[-1])
                        nxt = int.from_bytes(over[:4], "big")
                    payload = b"".join(parts)
                if len(payload) != size:
                    continue
                yield rowid, _record(payload)
            except (ValueError, IndexError, struct.error):
                continue


def _fits(values: list[Any], columns: list[tuple[str, str, int]]) -> bool:
    """Whether a record found loose on a page can be a row of a table with these columns
    (name, declared type, primary-key position): same count, each value of the column's type."""
    if len(values) != len(columns):
        return False
    for value, (_name, declared, _pk) in zip(values, columns):
        kind = declared.upper()
        if value is None or not kind:
            continue
        if "INT" in kind and not isinstance(value, int):
            return False
        if any(t in kind for t in ("CHAR", "CLOB", "TEXT")) and not isinstance(value, str):
            return False
        if any(t in kind for t in ("REAL", "FLOA", "DOUB")) and not isinstance(value, (int, float)):
            return False
    return True


def _recover_loose_rows(
    src: sqlite3.Connection, dst: sqlite3.Connection, damaged: Path, tables: list[str], copied: dict[str, int]
) -> None:
    """Add rows that only a page scan finds (see :func:`_leaf_cells`) to the one table they fit.

    Intact tables' pages (from ``dbstat``, which cannot walk a damaged tree) are skipped, and a
    row already copied (same rowid) is not copied twice; a record that fits several tables, or
    none, is left in the old file.
    """
    columns = {
        name: [(row[1], row[2] or "", row[5]) for row in src.execute(f'PRAGMA table_info("{name}")')] for name in tables
    }
    skip: set[int] = set()
    for name in tables:
        try:
            skip.update(row[0] for row in src.execute("SELECT pageno FROM dbstat WHERE name = ?", (name,)))
        except sqlite3.DatabaseError:
            pass  # the damaged table (or no dbstat): its pages are scanned
    have = {name: {row[0] for row in dst.execute(f'SELECT rowid FROM "{name}"')} for name in tables}
    data = damaged.read_bytes()
    for rowid, values in _leaf_cells(data, skip):
        fits = [name for name in tables if _fits(values, columns[name])]
        if len(fits) != 1 or rowid in have[fits[0]]:
            continue
        name, cols = fits[0], columns[fits[0]]
        alias = [i for i, (_n, declared, pk) in enumerate(cols) if pk == 1 and declared.upper() == "INTEGER"]
        if alias and sum(1 for c in cols if c[2]) == 1:
            values[alias[0]] = rowid  # the rowid alias is stored as NULL in the record
        names = ", ".join('"' + c[0].replace('"', '""') + '"' for c in cols)
        try:
            dst.execute(
                f'INSERT INTO "{name}" (rowid, {names}) VALUES (?, {", ".join("?" * len(cols))})', (rowid, *values)
            )
        except sqlite3.DatabaseError:
            continue
        have[name].add(rowid)
        copied[name] += 1


def _recover(damaged: Path, target: Path) -> dict[str, int] | None:
    """Copy whatever can be read from ``damaged`` into a new database at ``target``.

    What SQLite's ``.recover`` does, in Python: the schema as it was (so the file opens at its own
    version and the normal migrations run on it), every readable row of every table (unreadable
    ones skipped), AUTOINCREMENT counters, then indexes and triggers built afresh. Returns rows
    copied per table, or None when nothing could be read (``target`` is then not created).
    ``damaged`` is only read.
    """
    tmp = target.with_name(f".{target.name}.recover-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        src = _open_damaged(damaged)
        try:
            version = src.execute("PRAGMA user_version").fetchone()[0]
            app_id = src.execute("PRAGMA application_id").fetchone()[0]
            schema = src.execute(
                "SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY rowid"
            ).fetchall()
            tables = [(name, sql) for kind, name, sql in schema if kind == "table" and not name.startswith("sqlite_")]
            if not tables:
                return None
            dst = sqlite3.connect(tmp, isolation_level=None)
            try:
                copied: dict[str, int] = {}
                dst.execute("BEGIN")
                for name, sql in tables:
                    dst.execute(sql)
                    columns = [row[1] for row in src.execute(f'PRAGMA table_info("{name}")')]
                    insert = 'INSERT INTO "{}" ({}) VALUES ({})'.format(
                        name.replace('"', '""'),
                        ", ".join('"' + c.replace('"', '""') + '"' for c in columns),
                        ", ".join("?" * len(columns)),
                    )
                    copied[name] = 0
                    for row in _readable_rows(src, name):
                        try:
                            dst.execute(insert, row)
                            copied[name] += 1
                        except sqlite3.DatabaseError:  # a garbled row breaks a constraint: skip it
                            pass
                try:
                    _recover_loose_rows(src, dst, damaged, [name for name, _sql in tables], copied)
                except (sqlite3.DatabaseError, OSError, MemoryError):
                    pass  # what the table scans found is kept
                try:  # AUTOINCREMENT counters: ids are never reused, even past the last row kept
                    for name, seq in src.execute("SELECT name, seq FROM sqlite_sequence"):
                        dst.execute("UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = ?", (seq, name))
                        if not dst.execute("SELECT 1 FROM sqlite_sequence WHERE name = ?", (name,)).fetchone():
                            dst.execute("INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)", (name, seq))
                except sqlite3.DatabaseError:
                    pass
                for kind, _name, sql in schema:
                    if kind in ("index", "trigger", "view"):
                        try:
                            dst.execute(sql)
                        except sqlite3.IntegrityError:  # a unique index over garbled rows: migrations rebuild
                            pass
                dst.execute(f"PRAGMA user_version = {int(version)}")
                dst.execute(f"PRAGMA application_id = {int(app_id)}")
                dst.execute("COMMIT")
                if dst.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
                    return None
            finally:
                dst.close()
        finally:
            src.close()
        if not any(copied.values()):
            return None
        os.replace(tmp, target)
        return copied
    except (sqlite3.Error, OSError, ValueError):
        return None
    finally:
        for suffix in ("", "-journal", "-wal", "-shm"):
            Path(f"{tmp}{suffix}").unlink(missing_ok=True)


def _recovered_text(copied: dict[str, int]) -> str:
    """``20 conversations and 582 messages`` (the tables in schema order)."""
    parts = [
        f"{n} {name.replace('_', ' ').removesuffix('s') if n == 1 else name.replace('_', ' ')}"
        for name, n in copied.items()
    ]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


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


def _publish_new(tmp: Path, target: Path, tries: int = 1000) -> Path:
    """Hard-link ``tmp`` at ``target``, or at the first free ``<stem>-N<suffix>``; never replaces.

    A hard link fails if the name exists, even if it appeared a moment ago, so two exports can
    never overwrite each other. Filesystems without hard links get an exclusive create and copy.
    """
    for n in range(1, tries + 1):
        candidate = target if n == 1 else target.with_name(f"{target.stem}-{n}{target.suffix}")
        try:
            os.link(tmp, candidate)
            return candidate
        except FileExistsError:
            continue
        except OSError as error:
            if error.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
                raise
        try:
            fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            continue
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(tmp.read_bytes())
                out.flush()
                os.fsync(out.fileno())
        except BaseException:
            candidate.unlink(missing_ok=True)
            raise
        return candidate
    raise ChatrnnError(f"cannot export to {target}: {tries} files with that name already exist")


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
    if not line.strip():
        # A line of only (Unicode) spaces is blank to a Markdown renderer, which trims it; keeping
        # it would leave the previous line's hard-break backslash showing as a literal "\\".
        return ""
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
            corrupt = isinstance(error, StoreCorruptError)
            try:
                moved = _move_aside(error.path)
            except OSError as move_error:
                return cls(_MEMORY), (
                    f"{problem[0].upper()}{problem[1:]}, and it could not be moved aside "
                    f"({move_error.strerror or move_error}); this session will not be saved."
                )
        problem = f"{problem[0].upper()}{problem[1:]}. It was moved to {moved} (nothing was deleted)"
        # A damaged file: first copy what is still readable into the new one (a newer chatrnn's
        # file is not damaged, only not ours to read: it stays aside whole).
        copied = _recover(moved, Path(path).expanduser()) if corrupt else None
        if copied is not None:
            try:
                return cls(path, busy_timeout=busy_timeout), (
                    f"{problem}; {_recovered_text(copied)} were recovered from it into a new history "
                    "(anything unreadable is only in the old file)."
                )
            except ChatrnnError:  # the copy is no better: our own file, the original is aside
                for suffix in ("", "-wal", "-shm", "-journal"):
                    Path(f"{Path(path).expanduser()}{suffix}").unlink(missing_ok=True)
        fresh = cls(path, busy_timeout=busy_timeout)
        return fresh, f"{problem} and a new, empty history was started."

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

    def add_message(
        self,
        cid: int,
        role: str,
        text: str,
        meta: dict[str, Any] | None = None,
        *,
        parent_id: int | None | object = ...,
    ) -> Message:
        """Add a message and make it the end of the active branch; bump ``updated`` in the same
        transaction.

        ``parent_id`` is the message it follows; left out, the end of the active branch (so a
        conversation that never branches is a straight line). Given, it starts or extends another
        branch: a regenerated reply is a second child of the same user message, an edited message
        a second child of the message before it (``None``: a new first message).

        A user message also names a conversation still titled :data:`DEFAULT_TITLE` (its first
        ~40 characters, on one line), so the sidebar shows something recognisable.
        """
        if role not in ROLES:
            raise ChatrnnError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
        text = _check_text(text, "the message")
        meta_json = _to_json(meta, "message meta")
        with self._write("save the message") as conn:
            row = self._row(conn, _check_id(cid))
            if parent_id is ...:
                parent_id = row["active_id"]
            elif parent_id is not None:
                self._message_row(conn, cid, parent_id)
            now = self._now(conn)
            cursor = conn.execute(
                "INSERT INTO messages (conversation_id, role, text, created, meta, parent_id) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (cid, role, text, now, meta_json, parent_id),
            )
            title = row["title"]
            if role == "user" and title == DEFAULT_TITLE:
                title = _auto_title(text) or title
            conn.execute(
                "UPDATE conversations SET updated = ?, title = ?, active_id = ? WHERE id = ?",
                (now, title, cursor.lastrowid, cid),
            )
            self._mark_used(conn, cid, cursor.lastrowid)
            stored = conn.execute("SELECT * FROM messages WHERE id = ?", (cursor.lastrowid,))
            return _message(stored.fetchone())

    @staticmethod
    def _message_row(conn: sqlite3.Connection, cid: int, mid: object) -> sqlite3.Row:
        if isinstance(mid, bool) or not isinstance(mid, int):
            raise ChatrnnError(f"a message id must be an integer, not {mid!r}")
        row = conn.execute("SELECT * FROM messages WHERE id = ? AND conversation_id = ?", (mid, cid)).fetchone()
        if row is None:
            raise ChatrnnError(f"conversation {cid} has no message with id {mid}")
        return row

    @staticmethod
    def _path(conn: sqlite3.Connection, cid: int, leaf: int | None) -> list[Message]:
        """The messages from the first one down to ``leaf`` (the active branch), in order.

        Robust to a file recovered from damage (rows lost): a missing ``leaf`` means the newest
        message, and a missing parent means the newest message stored before the child, so the
        rows that survived still show, in order, instead of the branch ending at the hole.
        """
        rows = conn.execute("SELECT * FROM messages WHERE conversation_id = ? ORDER BY id", (cid,)).fetchall()
        if not rows:
            return []
        by_id = {row["id"]: row for row in rows}
        ids = [row["id"] for row in rows]
        at = leaf if leaf in by_id else ids[-1]
        path: list[sqlite3.Row] = []
        seen: set[int] = set()
        while at is not None and at not in seen:
            seen.add(at)
            row = by_id[at]
            path.append(row)
            parent = row["parent_id"]
            if parent is None:
                break
            if parent not in by_id:  # lost: the newest message before this one
                below = [i for i in ids if i < at]
                parent = below[-1] if below else None
            at = parent
        return [_message(row) for row in reversed(path)]

    def messages(self, cid: int) -> list[Message]:
        """The conversation's active branch: from its first message to the end of the branch the
        user last chose (for a conversation that never branched: every message, in order)."""
        with self._read("read the messages") as conn:
            row = self._row(conn, _check_id(cid))
            return self._path(conn, cid, row["active_id"])

    def all_messages(self, cid: int) -> list[Message]:
        """Every message of every branch, in the order they were added (``parent_id`` links them)."""
        with self._read("read the messages") as conn:
            self._row(conn, _check_id(cid))
            rows = conn.execute("SELECT * FROM messages WHERE conversation_id = ? ORDER BY id", (cid,))
            return [_message(row) for row in rows]

    def get_message(self, cid: int, mid: int) -> Message:
        """Message ``mid`` of conversation ``cid``; ChatrnnError if there is none."""
        with self._read("read the message") as conn:
            return _message(self._message_row(conn, _check_id(cid), mid))

    def branches(self, cid: int) -> dict[int, tuple[int, int]]:
        """For every message that has alternatives: its place among them and how many there are
        (``{id: (1, 3)}`` is the first of three), what the chat shows as "1/3"."""
        by_parent: dict[int | None, list[int]] = {}
        for m in self.all_messages(cid):
            by_parent.setdefault(m.parent_id, []).append(m.id)
        return {mid: (i + 1, len(ids)) for ids in by_parent.values() if len(ids) > 1 for i, mid in enumerate(ids)}

    def siblings(self, cid: int, mid: int) -> list[Message]:
        """``mid`` and its alternatives (the messages with the same parent), oldest first."""
        with self._read("read the messages") as conn:
            row = self._message_row(conn, _check_id(cid), mid)
            rows = conn.execute(
                "SELECT * FROM messages WHERE conversation_id = ? AND parent_id IS ? ORDER BY id",
                (cid, row["parent_id"]),
            )
            return [_message(r) for r in rows]

    def set_active(self, cid: int, mid: int) -> list[Message]:
        """Make the branch through message ``mid`` the active one and return it.

        The branch goes on below ``mid`` the way it was last used: at each fork the child whose
        branch was active last (the newest, for branches never switched to), so flipping to an
        alternative and back finds the conversation as it was.
        Does not bump ``updated`` (looking at another branch is not a new message).
        """
        with self._write("switch branches") as conn:
            self._row(conn, _check_id(cid))
            self._message_row(conn, cid, mid)
            leaf = mid
            while True:
                child = conn.execute(
                    "SELECT id FROM messages WHERE parent_id = ? ORDER BY used DESC, id DESC LIMIT 1", (leaf,)
                ).fetchone()
                if child is None:
                    break
                leaf = child[0]
            conn.execute("UPDATE conversations SET active_id = ? WHERE id = ?", (leaf, cid))
            self._mark_used(conn, cid, leaf)
            return self._path(conn, cid, leaf)

    def _mark_used(self, conn: sqlite3.Connection, cid: int, leaf: int) -> None:
        """Stamp every message on the branch ending at ``leaf`` as used now (a counter, not the
        clock: two switches in one clock tick must still order)."""
        ids = [m.id for m in self._path(conn, cid, leaf)]
        if ids:
            conn.execute(
                f"UPDATE messages SET used = (SELECT MAX(used) + 1 FROM messages WHERE conversation_id = ?) "
                f"WHERE id IN ({', '.join('?' * len(ids))})",
                (cid, *ids),
            )

    # ---- search ------------------------------------------------------------------------------

    def search(self, query: str, limit: int = 50) -> list[tuple[Conversation, Message]]:
        """Messages containing ``query`` (case-insensitive, every word of it), newest first, with
        their conversations.

        With SQLite's FTS5 (most Python builds have it) the words are looked up in a trigram index
        kept in a TEMP table: it lives with this connection only, so the file's schema (and the
        recovery of a damaged file) never depends on what the Python that opened it was built
        with; it is filled on the first search and topped up with newer messages at each one.
        Without FTS5, or for words under three characters (trigrams), a LIKE scan does the same.
        """
        query = _check_text(query, "the search")
        words = query.split()
        if not words:
            return []
        with self._write("search the conversations") as conn:
            if all(len(w) >= 3 for w in words) and self._fts_ready(conn):
                match = " ".join('"' + w.replace('"', '""') + '"' for w in words)
                rows = conn.execute(
                    "SELECT m.* FROM temp.message_search AS f JOIN messages AS m ON m.id = f.rowid "
                    "WHERE f.text MATCH ? ORDER BY m.id DESC LIMIT ?",
                    (match, limit),
                ).fetchall()
            else:
                like = " AND ".join("m.text LIKE ? ESCAPE '\\'" for _ in words)
                args = ["%" + re.sub(r"([%_\\])", r"\\\1", w) + "%" for w in words]
                rows = conn.execute(
                    f"SELECT m.* FROM messages AS m WHERE {like} ORDER BY m.id DESC LIMIT ?", (*args, limit)
                ).fetchall()
            out = []
            for row in rows:
                out.append((_conversation(self._row(conn, row["conversation_id"])), _message(row)))
            return out

    def _fts_ready(self, conn: sqlite3.Connection) -> bool:
        """Create or top up the TEMP trigram index; False when this SQLite has no FTS5."""
        if getattr(self, "_fts", None) is False:
            return False
        try:
            if getattr(self, "_fts", None) is None:
                conn.execute(
                    "CREATE VIRTUAL TABLE IF NOT EXISTS temp.message_search USING fts5(text, tokenize='trigram')"
                )
                self._fts = True
                self._fts_upto = 0
            new = conn.execute(
                "INSERT INTO temp.message_search (rowid, text) SELECT id, text FROM messages WHERE id > ?",
                (self._fts_upto,),
            )
            if new.rowcount:
                self._fts_upto = conn.execute("SELECT COALESCE(MAX(rowid), 0) FROM temp.message_search").fetchone()[0]
            return True
        except sqlite3.OperationalError:  # no fts5 module, or no trigram tokenizer (SQLite < 3.34)
            self._fts = False
            return False

    # ---- export ------------------------------------------------------------------------------

    def export_markdown(self, cid: int) -> str:
        """The conversation (its active branch) as a Markdown document for reading or sharing.

        Message text is escaped (:func:`escape_markdown`) so it renders as what was typed, not as
        accidental headings, lists or HTML. Cancelled replies are marked as such.
        """
        with self._read("export the conversation") as conn:
            conversation_row = self._row(conn, _check_id(cid))
            conversation = _conversation(conversation_row)
            messages = self._path(conn, cid, conversation_row["active_id"])  # the active branch
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

    def export_to_file(self, cid: int, path: Path | str, *, overwrite: bool = False) -> Path:
        """Write :meth:`export_markdown` to ``path`` and return the path actually written.

        An existing file is never replaced silently: unless ``overwrite``, the export goes to the
        first free name ``<stem>-2<suffix>``, ``-3``... (the caller says which). The file is
        private (mode 0600, like the history it comes from); an overwritten file keeps its mode.
        Written to a temporary file in the same folder, fsynced, then published with ``os.link``
        (which fails rather than replace a file created meanwhile) or ``os.replace`` when
        overwriting, so no reader ever sees half an export. The folder must exist: creating
        folders from a mistyped path would scatter files silently.
        """
        document = self.export_markdown(cid)
        target = Path(path).expanduser()
        if target.is_dir():
            raise ChatrnnError(f"cannot export to {target}: it is a folder")
        if not target.parent.is_dir():
            raise ChatrnnError(f"cannot export to {target}: the folder {target.parent} does not exist")
        mode = 0o600
        if overwrite and target.exists():
            mode = target.stat().st_mode & 0o777
        tmp = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
                os.fchmod(handle.fileno(), mode)  # exactly this mode, whatever the umask
                handle.write(document)
                handle.flush()
                os.fsync(handle.fileno())
            if overwrite:
                os.replace(tmp, target)
                return target
            return _publish_new(tmp, target)
        except OSError as error:
            raise ChatrnnError(f"cannot export to {target}: {error.strerror or error}") from None
        finally:
            tmp.unlink(missing_ok=True)

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

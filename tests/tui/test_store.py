"""Tests for the TUI conversation store, on real SQLite files under tmp_path (no mocks)."""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatrnn.errors import ChatrnnError
from chatrnn.tui import store as store_module
from chatrnn.tui.store import (
    APPLICATION_ID,
    DEFAULT_TITLE,
    Store,
    StoreCorruptError,
    StoreLockedError,
    StoreTooNewError,
    default_db_path,
    escape_markdown,
)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "chatrnn.sqlite3"


@pytest.fixture
def store(db_path: Path):
    with Store(db_path) as s:
        yield s


def aside_files(path: Path) -> list[Path]:
    return sorted(p for p in path.parent.iterdir() if p.name.startswith(f"{path.name}.corrupt-"))


def raw(path: Path) -> sqlite3.Connection:
    """A plain sqlite3 connection, to look at or tamper with the file behind the store's back."""
    return sqlite3.connect(path, isolation_level=None)


# ---- CRUD ------------------------------------------------------------------------------------


def test_creates_parent_folders_and_uses_wal(db_path: Path, store: Store) -> None:
    assert db_path.is_file()
    assert store.path == db_path and not store.in_memory
    conn = raw(db_path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == Store.SCHEMA_VERSION
    assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    conn.close()


def test_crud(store: Store) -> None:
    conv = store.create_conversation(
        mode="generate", checkpoint="runs/char_lstm.safetensors", settings={"temperature": 0.7}
    )
    assert conv.title == DEFAULT_TITLE
    assert (conv.mode, conv.checkpoint, conv.settings) == (
        "generate",
        "runs/char_lstm.safetensors",
        {"temperature": 0.7},
    )
    assert conv.created == conv.updated
    assert store.get_conversation(conv.id) == conv

    store.rename(conv.id, "Poems")
    store.update_settings(conv.id, {"top_k": 5, "beam": 3})
    got = store.get_conversation(conv.id)
    assert got.title == "Poems"
    assert got.settings == {"top_k": 5, "beam": 3}  # replaced, not merged
    assert got.updated == conv.updated  # rename/settings do not reorder the list

    msg = store.add_message(conv.id, "user", "hi", meta={"k": [1, 2]})
    assert (msg.conversation_id, msg.role, msg.text) == (conv.id, "user", "hi")
    assert msg.meta == {"k": [1, 2]}
    assert store.messages(conv.id) == [msg]

    store.delete(conv.id)
    assert store.list_conversations() == []
    for call in (
        lambda: store.get_conversation(conv.id),
        lambda: store.messages(conv.id),
        lambda: store.rename(conv.id, "x"),
        lambda: store.delete(conv.id),
        lambda: store.update_settings(conv.id, {}),
        lambda: store.add_message(conv.id, "user", "x"),
        lambda: store.export_markdown(conv.id),
    ):
        with pytest.raises(ChatrnnError, match=f"no conversation with id {conv.id}"):
            call()


def test_ids_are_not_reused_after_delete(store: Store) -> None:
    first = store.create_conversation()
    store.delete(first.id)
    assert store.create_conversation().id > first.id


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda s, c: s.add_message(c, "assistant", "x"), "role must be one of user, bot"),
        (lambda s, c: s.add_message(c, "user", b"bytes"), "message must be text"),
        (lambda s, c: s.add_message(c, "user", "x", meta=[1]), "meta must be a dict"),
        (lambda s, c: s.add_message(c, "user", "x", meta={"w": object()}), "JSON-serialisable"),
        (lambda s, c: s.add_message(c, "user", "x", meta={"a": {1: 2}}), "keys must be strings"),
        (lambda s, c: s.add_message(c, "user", "bad \ud800 half"), "unpaired surrogate"),
        (lambda s, c: s.create_conversation(mode="poem"), "mode must be one of chat, generate"),
        (lambda s, c: s.create_conversation(title="  "), "title cannot be empty"),
        (lambda s, c: s.rename(c, ""), "title cannot be empty"),
        (lambda s, c: s.update_settings(c, {"t": float}), "JSON-serialisable"),
        (lambda s, c: s.get_conversation("1"), "must be an integer"),
    ],
)
def test_bad_input_is_a_clear_error(store: Store, call, message: str) -> None:
    conv = store.create_conversation()
    with pytest.raises(ChatrnnError, match=message):
        call(store, conv.id)
    assert store.messages(conv.id) == []  # nothing half-written


def test_circular_meta_is_a_clear_error(store: Store) -> None:
    conv = store.create_conversation()
    loop: dict = {}
    loop["self"] = loop
    with pytest.raises(ChatrnnError, match="JSON-serialisable"):
        store.add_message(conv.id, "bot", "x", meta=loop)


def test_in_memory_store(tmp_path: Path) -> None:
    with Store(":memory:") as s:
        assert s.in_memory and s.path is None
        conv = s.create_conversation()
        s.add_message(conv.id, "user", "hello")
        assert [m.text for m in s.messages(conv.id)] == ["hello"]
    assert not (tmp_path / ":memory:").exists()


def test_closed_store_is_a_clear_error(db_path: Path) -> None:
    s = Store(db_path)
    conv = s.create_conversation()
    s.close()
    s.close()  # idempotent
    with pytest.raises(ChatrnnError, match="store is closed"):
        s.add_message(conv.id, "user", "late reply from a worker")


def test_path_that_is_a_folder(tmp_path: Path) -> None:
    with pytest.raises(ChatrnnError, match="is a folder"):
        Store.open(tmp_path)


def test_default_db_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CHATRNN_DB", str(tmp_path / "elsewhere.db"))
    assert default_db_path() == tmp_path / "elsewhere.db"
    monkeypatch.setenv("CHATRNN_DB", "~/x.db")
    assert default_db_path() == Path.home() / "x.db"
    monkeypatch.delenv("CHATRNN_DB")
    path = default_db_path()
    assert path.name == "chatrnn.sqlite3" and "chatrnn" in path.parent.parts[-1]


# ---- ordering, cascade, auto title -------------------------------------------------------------


def test_list_is_newest_updated_first(store: Store) -> None:
    a = store.create_conversation(title="a")
    b = store.create_conversation(title="b")
    store.create_conversation(title="c")
    assert [x.title for x in store.list_conversations()] == ["c", "b", "a"]
    store.add_message(a.id, "user", "bump")
    assert [x.title for x in store.list_conversations()] == ["a", "c", "b"]
    store.add_message(b.id, "bot", "bump")
    assert [x.title for x in store.list_conversations()] == ["b", "a", "c"]
    updated = [x.updated for x in store.list_conversations()]
    assert updated == sorted(updated, reverse=True) and len(set(updated)) == 3


def test_order_survives_a_clock_that_steps_back(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    a = store.create_conversation(title="a")
    store.create_conversation(title="b")
    monkeypatch.setattr(store_module.time, "time", lambda: 1000.0)  # NTP jumped back
    store.add_message(a.id, "user", "latest")
    assert [x.title for x in store.list_conversations()] == ["a", "b"]


def test_messages_keep_insertion_order(store: Store) -> None:
    conv = store.create_conversation()
    for i in range(30):
        store.add_message(conv.id, "user" if i % 2 == 0 else "bot", f"m{i}")
    assert [m.text for m in store.messages(conv.id)] == [f"m{i}" for i in range(30)]


def test_delete_cascades_to_messages(db_path: Path, store: Store) -> None:
    keep = store.create_conversation(title="keep")
    gone = store.create_conversation(title="gone")
    store.add_message(keep.id, "user", "stay")
    for i in range(5):
        store.add_message(gone.id, "user", f"bye {i}")
    store.delete(gone.id)
    conn = raw(db_path)
    rows = conn.execute("SELECT conversation_id, text FROM messages").fetchall()
    assert rows == [(keep.id, "stay")]
    conn.close()
    assert [m.text for m in store.messages(keep.id)] == ["stay"]


def test_auto_title(store: Store) -> None:
    conv = store.create_conversation()
    store.add_message(conv.id, "bot", "Hello! I am a bot and this should not be the title.")
    assert store.get_conversation(conv.id).title == DEFAULT_TITLE
    store.add_message(conv.id, "user", "   \n\t ")  # nothing to make a title of
    assert store.get_conversation(conv.id).title == DEFAULT_TITLE
    store.add_message(conv.id, "user", "What is\nthe   capital\x00 of France, and why is it Paris? Explain.")
    title = store.get_conversation(conv.id).title
    assert title == "What is the capital of France, and why…"
    assert len(title) <= 40
    store.add_message(conv.id, "user", "second question")
    assert store.get_conversation(conv.id).title == title  # only the first one names it


def test_short_auto_title_is_not_cut(store: Store) -> None:
    conv = store.create_conversation()
    store.add_message(conv.id, "user", "안녕하세요 😀")
    assert store.get_conversation(conv.id).title == "안녕하세요 😀"


def test_chosen_title_is_never_replaced(store: Store) -> None:
    named = store.create_conversation(title="My title")
    store.add_message(named.id, "user", "something else")
    assert store.get_conversation(named.id).title == "My title"
    renamed = store.create_conversation()
    store.rename(renamed.id, "Renamed first")
    store.add_message(renamed.id, "user", "something else")
    assert store.get_conversation(renamed.id).title == "Renamed first"


def test_add_message_bumps_updated(store: Store) -> None:
    conv = store.create_conversation()
    msg = store.add_message(conv.id, "user", "x")
    after = store.get_conversation(conv.id)
    assert after.updated > conv.updated
    assert msg.created == after.updated


# ---- persistence and exact round trip ---------------------------------------------------------


def test_settings_and_meta_persist_across_reopen(db_path: Path) -> None:
    decoding = {"temperature": 0.85, "top_k": 40, "top_p": 0.9, "beam": 1, "max_len": 200}
    decoding["note"] = "한글"
    meta = {"attention": {"max": 0.61, "entropy": 1.2}, "settings": decoding, "cancelled": True}
    with Store(db_path) as s:
        conv = s.create_conversation(checkpoint="ckpt/seq2seq.safetensors", settings={"temperature": 1.0})
        s.update_settings(conv.id, decoding)
        msg = s.add_message(conv.id, "bot", "partial repl", meta=meta)
    with Store(db_path) as s:
        got = s.get_conversation(conv.id)
        assert got.settings == decoding
        assert got.checkpoint == "ckpt/seq2seq.safetensors"
        assert s.messages(conv.id) == [msg]
        assert s.messages(conv.id)[0].meta == meta


ODD_TEXTS = [
    "",
    "\x00",
    "before\x00after\x00",
    "".join(chr(i) for i in range(32)) + "\x7f\x85\u2028\u2029",
    "line1\r\nline2\rline3\n",
    "한국어 텍스트입니다. 안녕하세요!",
    "emoji 😀👩‍👩‍👧‍👦🏳️‍🌈 and combining é",
    "\ufeffBOM and \ufffd replacement",
    "x" * 100_000,
    ("paste 한 😀\x00\t" * 10_000)[:100_000],
]


def test_odd_and_huge_text_round_trips_exactly(db_path: Path) -> None:
    with Store(db_path) as s:
        conv = s.create_conversation()
        stored = [s.add_message(conv.id, "user", text).text for text in ODD_TEXTS]
        assert stored == ODD_TEXTS
    with Store(db_path) as s:
        assert [m.text for m in s.messages(conv.id)] == ODD_TEXTS


def test_meta_keeps_odd_strings_exactly(store: Store) -> None:
    conv = store.create_conversation()
    meta = {"lone": "\ud800", "nul": "\x00", "ko": "한", "nested": {"list": [None, True, 1.5]}}
    store.add_message(conv.id, "bot", "x", meta=meta)
    assert store.messages(conv.id)[0].meta == meta


def test_any_text_round_trips_exactly(db_path: Path) -> None:
    with Store(db_path) as s:
        conv = s.create_conversation()

        @settings(max_examples=200, deadline=None)
        @given(text=st.text(alphabet=st.characters(codec="utf-8"), max_size=300))
        def check(text: str) -> None:
            msg = s.add_message(conv.id, "user", text)
            assert msg.text == text
            assert s.messages(conv.id)[-1].text == text

        check()


def test_concurrent_writers_from_threads(store: Store) -> None:
    conv = store.create_conversation()
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(40):
                store.add_message(conv.id, "bot", f"{n}:{i}")
                store.list_conversations()
        except BaseException as error:  # surfaced by the assert below
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    texts = [m.text for m in store.messages(conv.id)]
    assert sorted(texts) == sorted(f"{n}:{i}" for n in range(4) for i in range(40))
    for n in range(4):  # each worker's messages stay in its order
        assert [t for t in texts if t.startswith(f"{n}:")] == [f"{n}:{i}" for i in range(40)]


def test_two_stores_on_one_file(db_path: Path) -> None:
    with Store(db_path) as first, Store(db_path) as second:
        conv = first.create_conversation()
        second.add_message(conv.id, "user", "from the other process")
        assert [m.text for m in first.messages(conv.id)] == ["from the other process"]


# ---- export ------------------------------------------------------------------------------------


def test_export_markdown(store: Store) -> None:
    conv = store.create_conversation(checkpoint="runs/my_model.safetensors", settings={"temperature": 0.8, "top_k": 40})
    store.add_message(conv.id, "user", "Hello *there*")
    store.add_message(conv.id, "bot", "# not a heading\n1. not a list\n  <b>raw</b> & co")
    store.add_message(conv.id, "bot", "half a sent", meta={"cancelled": True})
    assert store.export_markdown(conv.id) == (
        "# Hello \\*there\\*\n"
        "\n"
        "_model: runs/my\\_model.safetensors, mode: chat, settings: temperature=0.8, top\\_k=40_\n"
        "\n"
        "**You:** Hello \\*there\\*\n"
        "\n"
        "**Bot:** \\# not a heading\\\n"
        "1\\. not a list\\\n"
        "&nbsp;&nbsp;\\<b\\>raw\\</b\\> \\& co\n"
        "\n"
        "**Bot:** half a sent _(cancelled)_\n"
    )


def test_export_without_model_or_messages(store: Store) -> None:
    conv = store.create_conversation(title="Empty #1")
    assert store.export_markdown(conv.id) == ("# Empty \\#1\n\n_model: none, mode: chat, settings: defaults_\n")


def _rendered_text(markdown: str) -> str:
    """What a CommonMark renderer shows for ``markdown``; fails if anything but plain paragraphs
    (a heading, list, code, emphasis, link, HTML...) comes out."""
    markdown_it = pytest.importorskip("markdown_it")
    out: list[str] = []
    for token in markdown_it.MarkdownIt("commonmark").parse(markdown):
        if token.type in ("paragraph_open", "paragraph_close"):
            out.append("\n")
            continue
        assert token.type == "inline", f"escaped text produced a {token.type}: {markdown!r}"
        for child in token.children or []:
            if child.type == "text":
                out.append(child.content)
            elif child.type in ("softbreak", "hardbreak"):
                out.append("\n")
            else:
                raise AssertionError(f"escaped text produced a {child.type}: {markdown!r}")
    return "".join(out)


def _visible(text: str) -> str:
    pictures = {i: chr(0x2400 + i) for i in range(32) if chr(i) not in "\t\n\r"}
    pictures[0x7F] = "\u2421"
    return " ".join(text.translate(pictures).replace("\xa0", " ").split())


MARKDOWNISH = st.lists(
    st.one_of(
        st.sampled_from(list("#*_`[]()<>!|~&$\\-+=.:;0123456789 \t\n\r\x00aZ한😀")),
        st.sampled_from(["```", "***", "---", "1. ", "- ", "> ", "    ", "&amp;", "<b>", "[x](y)"]),
        st.characters(codec="utf-8"),
    ),
    max_size=40,
).map("".join)


@settings(max_examples=300, deadline=None)
@given(MARKDOWNISH)
def test_escaped_text_renders_as_itself(text: str) -> None:
    assert _visible(_rendered_text(escape_markdown(text))) == _visible(text)


def test_export_to_file_is_atomic(tmp_path: Path, store: Store) -> None:
    conv = store.create_conversation(title="Saved")
    store.add_message(conv.id, "user", "한국어 😀")
    target = tmp_path / "out" / "chat.md"
    target.parent.mkdir()
    target.write_text("old export", encoding="utf-8")
    target.chmod(0o600)
    # an existing file is never replaced silently: the export takes the next free name
    written = store.export_to_file(conv.id, target)
    assert written == target.with_name("chat-2.md")
    assert target.read_text(encoding="utf-8") == "old export" and target.stat().st_mode & 0o777 == 0o600
    assert written.read_text(encoding="utf-8") == store.export_markdown(conv.id)
    assert store.export_to_file(conv.id, target) == target.with_name("chat-3.md")
    assert sorted(p.name for p in target.parent.iterdir()) == ["chat-2.md", "chat-3.md", "chat.md"]  # no temp
    old = os.umask(0o022)
    try:  # private like the history, whatever the umask
        new = store.export_to_file(conv.id, tmp_path / "out" / "new.md")
    finally:
        os.umask(old)
    assert new.stat().st_mode & 0o777 == 0o600
    # overwriting only when asked, and then the file keeps its mode
    target.chmod(0o640)
    assert store.export_to_file(conv.id, target, overwrite=True) == target
    assert target.read_text(encoding="utf-8") == store.export_markdown(conv.id)
    assert target.stat().st_mode & 0o777 == 0o640
    assert len(list(target.parent.iterdir())) == 4


def test_export_to_bad_path(tmp_path: Path, store: Store) -> None:
    conv = store.create_conversation()
    with pytest.raises(ChatrnnError, match="does not exist"):
        store.export_to_file(conv.id, tmp_path / "missing" / "x.md")
    with pytest.raises(ChatrnnError, match="is a folder"):
        store.export_to_file(conv.id, tmp_path)
    assert list(tmp_path.iterdir()) == [tmp_path / "data"]


# ---- robust open: corrupt, newer, locked, foreign, migrations ------------------------------------


def test_garbage_file_is_moved_aside(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    garbage = b"this is not a database\x00\xff" * 300
    db_path.write_bytes(garbage)
    with pytest.raises(StoreCorruptError):
        Store(db_path)
    assert db_path.read_bytes() == garbage  # the strict constructor touches nothing

    fresh, message = Store.open(db_path)
    with fresh:
        [moved] = aside_files(db_path)
        assert moved.read_bytes() == garbage
        assert message is not None
        assert str(db_path) in message and str(moved) in message and "not a database" in message
        assert fresh.path == db_path and not fresh.in_memory
        conv = fresh.create_conversation()
        fresh.add_message(conv.id, "user", "works again")
    with Store(db_path) as again:
        assert [c.title for c in again.list_conversations()] == ["works again"]


def test_malformed_database_is_moved_aside(db_path: Path) -> None:
    with Store(db_path) as s:
        conv = s.create_conversation()
        for i in range(400):
            s.add_message(conv.id, "user", f"message number {i} " * 5)
    data = bytearray(db_path.read_bytes())
    page = raw(db_path).execute("PRAGMA page_size").fetchone()[0]
    assert len(data) > 6 * page
    data[3 * page : 4 * page] = b"\xde\xad\xbe\xef" * (page // 4)
    db_path.write_bytes(bytes(data))

    fresh, message = Store.open(db_path)
    with fresh:
        [moved] = aside_files(db_path)
        assert moved.read_bytes() == bytes(data)
        assert message and "malformed" in message and str(moved) in message
        # what is still readable is copied into the new history (tests/tui/test_store_recovery.py)
        assert "recovered" in message and [c.id for c in fresh.list_conversations()] == [conv.id]
        assert len(fresh.messages(conv.id)) == 400  # the damaged page was the root: a page scan finds every row


def test_two_corrupt_files_in_one_second_do_not_overwrite(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    for payload in (b"first garbage" * 10, b"second garbage" * 10):
        db_path.write_bytes(payload)
        Store.open(db_path)[0].close()
        db_path.unlink()
        for suffix in ("-wal", "-shm"):
            Path(f"{db_path}{suffix}").unlink(missing_ok=True)
    assert sorted(p.read_bytes() for p in aside_files(db_path)) == [
        b"first garbage" * 10,
        b"second garbage" * 10,
    ]


def test_newer_schema_is_moved_aside(db_path: Path) -> None:
    with Store(db_path) as s:
        s.create_conversation(title="from the future")
    conn = raw(db_path)
    conn.execute(f"PRAGMA user_version = {Store.SCHEMA_VERSION + 5}")
    conn.close()
    with pytest.raises(StoreTooNewError):
        Store(db_path)

    fresh, message = Store.open(db_path)
    with fresh:
        [moved] = aside_files(db_path)
        assert message and "newer chatrnn" in message and str(moved) in message
        assert fresh.list_conversations() == []
    old = raw(moved)  # the data is all there, readable by the newer chatrnn
    assert old.execute("PRAGMA user_version").fetchone()[0] == Store.SCHEMA_VERSION + 5
    assert old.execute("SELECT title FROM conversations").fetchall() == [("from the future",)]
    old.close()


@pytest.mark.parametrize("journal_mode", ["wal", "delete"])
def test_locked_database_falls_back_to_memory(db_path: Path, journal_mode: str) -> None:
    with Store(db_path) as s:
        s.create_conversation(title="kept")
    holder = raw(db_path)
    holder.execute(f"PRAGMA journal_mode = {journal_mode}")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StoreLockedError):
            Store(db_path, busy_timeout=0.1)
        fallback, message = Store.open(db_path, busy_timeout=0.1)
        with fallback:
            assert fallback.in_memory and fallback.path is None
            assert message == (
                f"{db_path} is locked by another chatrnn (or another program); this session will not be saved."
            )
            conv = fallback.create_conversation()
            fallback.add_message(conv.id, "user", "only in memory")
            assert [m.text for m in fallback.messages(conv.id)] == ["only in memory"]
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert aside_files(db_path) == []
    reopened, message = Store.open(db_path)
    with reopened:
        assert message is None
        assert [c.title for c in reopened.list_conversations()] == ["kept"]


def test_lock_taken_mid_session_is_a_clear_error(db_path: Path) -> None:
    with Store(db_path, busy_timeout=0.1) as s:
        conv = s.create_conversation()
        holder = raw(db_path)
        holder.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(ChatrnnError, match="locked by another process"):
                s.add_message(conv.id, "user", "cannot be saved right now")
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        s.add_message(conv.id, "user", "saved now")
        assert [m.text for m in s.messages(conv.id)] == ["saved now"]


@pytest.mark.parametrize(
    "tamper",
    [
        "CREATE TABLE moz_places (id INTEGER PRIMARY KEY, url TEXT)",
        "PRAGMA user_version = 7",
        "PRAGMA application_id = 1234",
    ],
)
def test_foreign_database_is_refused_and_left_alone(db_path: Path, tamper: str) -> None:
    db_path.parent.mkdir(parents=True)
    conn = raw(db_path)
    conn.execute("CREATE TABLE t (x)")
    conn.execute("DROP TABLE t")  # a real, non-empty SQLite file
    conn.execute(tamper)
    conn.close()
    before = db_path.read_bytes()
    with pytest.raises(ChatrnnError, match="does not belong to chatrnn"):
        Store.open(db_path)
    assert db_path.read_bytes() == before
    assert aside_files(db_path) == []


def test_migration_from_version_0(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    conn = raw(db_path)
    conn.execute("CREATE TABLE t (x)")
    conn.execute("DROP TABLE t")  # a valid, empty, version-0 SQLite database
    conn.close()
    assert raw(db_path).execute("PRAGMA user_version").fetchone()[0] == 0

    s, message = Store.open(db_path)
    with s:
        assert message is None
        conv = s.create_conversation()
        s.add_message(conv.id, "user", "migrated")
    conn = raw(db_path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == Store.SCHEMA_VERSION == len(store_module.MIGRATIONS)
    assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    conn.close()


def test_zero_byte_file_is_a_version_0_database(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    db_path.touch()
    s, message = Store.open(db_path)
    with s:
        assert message is None
        s.create_conversation()
    assert aside_files(db_path) == []


def test_later_migrations_run_in_order_each_in_a_transaction(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with Store(db_path) as s:
        conv = s.create_conversation(title="old data")

    def add_pinned(conn: sqlite3.Connection) -> None:
        conn.execute("ALTER TABLE conversations ADD COLUMN pinned INTEGER NOT NULL DEFAULT 0")

    def broken(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE half_done (x)")
        raise RuntimeError("bug in the last migration")

    n = len(store_module.MIGRATIONS)  # the current version
    monkeypatch.setattr(store_module, "MIGRATIONS", [*store_module.MIGRATIONS, add_pinned, broken])
    monkeypatch.setattr(Store, "SCHEMA_VERSION", n + 2)
    with pytest.raises(RuntimeError, match="bug in the last migration"):
        Store(db_path)
    conn = raw(db_path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == n + 1  # add_pinned committed
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert "half_done" not in tables  # the broken step rolled back whole
    assert conn.execute("SELECT title, pinned FROM conversations").fetchall() == [("old data", 0)]
    conn.close()

    monkeypatch.setattr(store_module, "MIGRATIONS", [*store_module.MIGRATIONS[: n + 1]])
    monkeypatch.setattr(Store, "SCHEMA_VERSION", n + 1)
    with Store(db_path) as s:
        assert s.get_conversation(conv.id).title == "old data"


# ---------------------------------------------------------------------------------------------
# conversations as trees (schema version 2): regenerate, edit, n-best picks are siblings

#: The version-1 schema exactly as chatrnn wrote it before conversations became trees (captured
#: here so the test keeps checking the real upgrade path even after later migrations).
SCHEMA_V1 = [
    """CREATE TABLE conversations (
        id INTEGER PRIMARY KEY AUTOINCREMENT, title TEXT NOT NULL, created REAL NOT NULL,
        updated REAL NOT NULL, mode TEXT NOT NULL CHECK (mode IN ('chat', 'generate')),
        checkpoint TEXT, settings TEXT NOT NULL DEFAULT '{}')""",
    """CREATE TABLE messages (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
        role TEXT NOT NULL CHECK (role IN ('user', 'bot')), text TEXT NOT NULL,
        created REAL NOT NULL, meta TEXT NOT NULL DEFAULT '{}')""",
    "CREATE INDEX messages_by_conversation ON messages (conversation_id, id)",
    "CREATE INDEX conversations_by_updated ON conversations (updated DESC, id DESC)",
    f"PRAGMA application_id = {APPLICATION_ID}",
    "PRAGMA user_version = 1",
]


def test_version_1_database_migrates_into_trees_losing_nothing(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    conn = raw(db_path)
    for ddl in SCHEMA_V1:
        conn.execute(ddl)
    texts: dict[int, list[tuple[str, str, str]]] = {}
    for c in range(3):
        cur = conn.execute(
            "INSERT INTO conversations (title, created, updated, mode, settings) VALUES (?, ?, ?, 'chat', '{}')",
            (f"conv {c}", 1.0 + c, 2.0 + c),
        )
        cid = cur.lastrowid
        texts[cid] = []
        for i in range(5 + c):
            role = "user" if i % 2 == 0 else "bot"
            text = f"{c}:{i} 안녕 😀 \x00 line\nbreak"
            meta = '{"attention": [[0.5, 0.5]], "cancelled": true}' if role == "bot" else "{}"
            conn.execute(
                "INSERT INTO messages (conversation_id, role, text, created, meta) VALUES (?, ?, ?, ?, ?)",
                (cid, role, text, 10.0 + i, meta),
            )
            texts[cid].append((role, text, meta))
    # interleave a little: messages of conversation 1 added after conversation 2's
    conn.execute("INSERT INTO messages (conversation_id, role, text, created) VALUES (1, 'user', 'late one', 99.0)")
    texts[1].append(("user", "late one", "{}"))
    conn.commit()
    conn.close()

    with Store(db_path) as s:
        assert raw(db_path).execute("PRAGMA user_version").fetchone()[0] == Store.SCHEMA_VERSION
        for cid, expected in texts.items():
            got = s.messages(cid)
            assert [(m.role, m.text) for m in got] == [(r, t) for r, t, _ in expected]
            assert [m.meta for m in got] == [store_module._from_json(meta) for _, _, meta in expected]
            assert got[0].parent_id is None
            assert [m.parent_id for m in got[1:]] == [m.id for m in got[:-1]]  # a straight line
            assert s.all_messages(cid) == got and s.branches(cid) == {}
        # and the conversation goes on where it was
        new = s.add_message(1, "bot", "after the upgrade")
        assert new.parent_id == s.messages(1)[-2].id
        assert s.export_markdown(1).rstrip().endswith("after the upgrade")


def test_regenerated_replies_are_siblings_and_the_active_branch_is_remembered(db_path: Path) -> None:
    with Store(db_path) as s:
        conv = s.create_conversation()
        u = s.add_message(conv.id, "user", "hello")
        b1 = s.add_message(conv.id, "bot", "first reply")
        u2 = s.add_message(conv.id, "user", "and then")
        b2 = s.add_message(conv.id, "bot", "second reply", parent_id=u.id)  # regenerate
        assert [m.text for m in s.messages(conv.id)] == ["hello", "second reply"]
        assert [m.id for m in s.siblings(conv.id, b1.id)] == [b1.id, b2.id]
        assert s.branches(conv.id) == {b1.id: (1, 2), b2.id: (2, 2)}
        # back to the first reply: the branch below it comes back as it was
        assert [m.id for m in s.set_active(conv.id, b1.id)] == [u.id, b1.id, u2.id]
    with Store(db_path) as s:  # remembered in the file
        assert [m.text for m in s.messages(conv.id)] == ["hello", "first reply", "and then"]
        with pytest.raises(ChatrnnError, match="no message with id"):
            s.set_active(conv.id, 12345)
        with pytest.raises(ChatrnnError, match="no message with id"):
            s.add_message(conv.id, "bot", "x", parent_id=12345)


def test_switching_back_finds_the_alternative_last_used_not_the_newest(db_path: Path) -> None:
    """Flip to reply 2/3, edit the message above it, flip back: 2/3 again (was 3/3, the newest)."""
    with Store(db_path) as s:
        conv = s.create_conversation()
        u = s.add_message(conv.id, "user", "hello")
        replies = [s.add_message(conv.id, "bot", f"reply {i}", parent_id=u.id) for i in range(3)]
        s.set_active(conv.id, replies[1].id)  # 2/3
        edited = s.add_message(conv.id, "user", "hello again", parent_id=None)
        s.add_message(conv.id, "bot", "to the edit")
        assert [m.text for m in s.set_active(conv.id, u.id)] == ["hello", "reply 1"]
        assert [m.text for m in s.set_active(conv.id, edited.id)] == ["hello again", "to the edit"]
        # a new reply added while a branch is active is the one that branch continues with
        s.set_active(conv.id, replies[2].id)
        late = s.add_message(conv.id, "user", "below 3/3")
        s.set_active(conv.id, edited.id)
        assert [m.id for m in s.set_active(conv.id, u.id)] == [u.id, replies[2].id, late.id]
    with Store(db_path) as s:  # remembered in the file
        assert [m.id for m in s.messages(conv.id)] == [u.id, replies[2].id, late.id]


def test_version_2_database_migrates_keeping_every_branch(db_path: Path) -> None:
    """The migration to version 3 adds the ``used`` stamps; a version-2 tree reads as it did."""
    db_path.parent.mkdir(parents=True)
    conn = raw(db_path)
    for ddl in SCHEMA_V1:
        conn.execute(ddl)
    store_module.MIGRATIONS[1](conn)  # version 1 -> 2, as chatrnn 2 wrote it
    conn.execute("PRAGMA user_version = 2")
    conn.execute("INSERT INTO conversations (title, created, updated, mode) VALUES ('t', 1, 1, 'chat')")
    rows = [(1, None, "user", "hi"), (2, 1, "bot", "a"), (3, 1, "bot", "b"), (4, 2, "user", "more")]
    for mid, parent, role, text in rows:
        conn.execute(
            "INSERT INTO messages (id, conversation_id, role, text, created, parent_id) VALUES (?, 1, ?, ?, 1, ?)",
            (mid, role, text, parent),
        )
    conn.execute("UPDATE conversations SET active_id = 4")
    conn.commit()
    conn.close()
    with Store(db_path) as s:
        assert raw(db_path).execute("PRAGMA user_version").fetchone()[0] == Store.SCHEMA_VERSION == 3
        assert [m.text for m in s.messages(1)] == ["hi", "a", "more"]
        assert s.branches(1) == {2: (1, 2), 3: (2, 2)}
        assert [m.text for m in s.set_active(1, 3)] == ["hi", "b"]
        assert [m.text for m in s.set_active(1, 2)] == ["hi", "a", "more"]
        assert [m.text for m in s.set_active(1, 1)] == ["hi", "a", "more"]  # the one used last


def test_an_edited_first_message_is_a_new_root_and_export_writes_the_active_branch() -> None:
    with Store(":memory:") as s:
        conv = s.create_conversation()
        s.add_message(conv.id, "user", "original question")
        s.add_message(conv.id, "bot", "original answer")
        edited = s.add_message(conv.id, "user", "edited question", parent_id=None)
        s.add_message(conv.id, "bot", "new answer")
        md = s.export_markdown(conv.id)
        body = md.split("\n\n", 2)[2]  # after the title (named after the first message) and the info line
        assert "edited question" in body and "new answer" in body and "original" not in body
        assert len(s.all_messages(conv.id)) == 4  # the old branch is kept
        s.set_active(conv.id, s.siblings(conv.id, edited.id)[0].id)
        body = s.export_markdown(conv.id).split("\n\n", 2)[2]
        assert "original question" in body and "original answer" in body and "edited" not in body


def test_a_branch_with_a_lost_message_still_shows_what_survived(db_path: Path) -> None:
    """A file recovered from damage can lose rows in the middle of a branch, or its end."""
    with Store(db_path) as s:
        conv = s.create_conversation()
        ids = [s.add_message(conv.id, "user" if i % 2 == 0 else "bot", f"m{i}").id for i in range(6)]
    conn = raw(db_path)
    conn.execute("DELETE FROM messages WHERE id IN (?, ?)", (ids[2], ids[5]))  # a middle one and the end
    conn.commit()
    conn.close()
    with Store(db_path) as s:
        assert [m.text for m in s.messages(conv.id)] == ["m0", "m1", "m3", "m4"]


@pytest.mark.parametrize("fts", [True, False])
def test_search_finds_messages_in_every_conversation(fts: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    with Store(":memory:") as s:
        if not fts:  # the LIKE path: what a Python built without FTS5 uses
            monkeypatch.setattr(s, "_fts", False, raising=False)
        a = s.create_conversation()
        s.add_message(a.id, "user", "Where is the Kitchen?")
        s.add_message(a.id, "bot", "the kitchen is downstairs")
        b = s.create_conversation()
        s.add_message(b.id, "user", "부엌은 어디에 있나요")
        s.add_message(b.id, "user", "100% sure_thing")
        hits = s.search("KITCHEN")
        assert [(c.id, m.text) for c, m in hits] == [
            (a.id, "the kitchen is downstairs"),
            (a.id, "Where is the Kitchen?"),
        ]
        assert [m.text for _, m in s.search("kitchen where")] == ["Where is the Kitchen?"]  # every word
        assert [m.text for _, m in s.search("어디에")] == ["부엌은 어디에 있나요"]
        assert [m.text for _, m in s.search("0% sure_")] == ["100% sure_thing"]  # no wildcards
        assert s.search("is") and s.search("   ") == [] and s.search("nowhere") == []
        s.add_message(b.id, "bot", "a kitchen later")  # found by the next search (index topped up)
        assert s.search("kitchen")[0][1].text == "a kitchen later"
        s.delete(a.id)
        assert [m.text for _, m in s.search("kitchen")] == ["a kitchen later"]
        assert s.search('"quoted" OR NEAR(x') == []  # FTS syntax is searched for, not run

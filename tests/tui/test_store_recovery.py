"""A damaged history file: what can still be read is copied into the new one (as SQLite's
``.recover`` would), and the damaged file itself is kept aside, byte for byte, as before.

Real SQLite files, damaged by overwriting one page with garbage.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from chatrnn.tui.store import Store

PAGE = 4096


def aside_files(path: Path) -> list[Path]:
    return sorted(p for p in path.parent.iterdir() if p.name.startswith(f"{path.name}.corrupt-"))


def build(path: Path, conversations: int = 12, messages: int = 30, deleted: int | None = None) -> dict[int, list[str]]:
    """A history with several pages of messages; returns {conversation id: texts} (after deletes)."""
    kept: dict[int, list[str]] = {}
    with Store(path) as s:
        for c in range(conversations):
            conv = s.create_conversation(title=f"talk {c}")
            kept[conv.id] = []
            for m in range(messages):
                text = f"conversation {c} message {m}: " + "한국어 😀 " * 20
                s.add_message(conv.id, "user" if m % 2 == 0 else "bot", text)
                kept[conv.id].append(text)
        if deleted is not None:
            s.delete(deleted)
            kept.pop(deleted)
    return kept


def pages_of(path: Path, table: str) -> tuple[int, list[int]]:
    """(root page, leaf pages) of ``table``, read before the damage."""
    conn = sqlite3.connect(path)
    try:
        root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (table,)).fetchone()[0]
        leaves = [
            r[0] for r in conn.execute("SELECT pageno FROM dbstat WHERE name = ? AND pagetype = 'leaf'", (table,))
        ]
    finally:
        conn.close()
    return root, leaves


def damage(path: Path, page: int) -> bytes:
    data = bytearray(path.read_bytes())
    data[(page - 1) * PAGE : page * PAGE] = b"\xde\xad\xbe\xef" * (PAGE // 4)
    path.write_bytes(bytes(data))
    return bytes(data)


def everything(store: Store) -> dict[int, list[str]]:
    return {c.id: [m.text for m in store.messages(c.id)] for c in store.list_conversations()}


def test_one_bad_leaf_page_loses_only_its_own_rows(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite3"
    before = build(path)
    _, leaves = pages_of(path, "messages")
    assert len(leaves) > 10
    damaged = damage(path, leaves[len(leaves) // 2])

    store, message = Store.open(path)
    with store:
        [moved] = aside_files(path)
        assert moved.read_bytes() == damaged  # the original, untouched, kept aside
        assert message and str(moved) in message and "12 conversations" in message and "recovered" in message
        after = everything(store)
        assert after.keys() == before.keys()
        lost = sum(len(v) for v in before.values()) - sum(len(v) for v in after.values())
        assert 0 < lost <= 20  # one page of ~300-byte messages
        for cid, texts in after.items():
            assert all(t in before[cid] for t in texts)  # nothing garbled, nothing invented
        # the recovered history is a working one: ids are never reused, writes work
        conv = store.create_conversation(title="after")
        assert conv.id > max(before)
        store.add_message(conv.id, "user", "still works")
    assert not [p for p in tmp_path.iterdir() if ".recover-" in p.name]  # no temp file left


def test_a_bad_root_page_still_recovers_every_row(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite3"
    before = build(path, conversations=3, messages=60)
    root, _ = pages_of(path, "messages")
    damage(path, root)  # the B-tree no longer reaches any message: a page scan does
    store, message = Store.open(path)
    with store:
        assert everything(store) == before
        assert "180 messages" in message


def test_deleted_conversations_stay_deleted(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite3"
    before = build(path, conversations=6, messages=40, deleted=3)
    root, _ = pages_of(path, "messages")
    damage(path, root)
    store, _ = Store.open(path)
    with store:
        assert everything(store) == before  # the deleted conversation's rows are not resurrected


def test_nothing_readable_gives_an_empty_history_and_keeps_the_file(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite3"
    build(path, conversations=2, messages=5)
    damaged = damage(path, 1)  # the header and schema page: nothing to go on
    store, message = Store.open(path)
    with store:
        assert store.list_conversations() == []
        assert message and "new, empty history" in message
        [moved] = aside_files(path)
        assert moved.read_bytes() == damaged
    assert not [p for p in tmp_path.iterdir() if ".recover-" in p.name]

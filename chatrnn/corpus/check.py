"""``chatrnn corpus check``: what training would read from a corpus, without training.

A dialog corpus gets the same reading, normalisation, deduplication and report as
:func:`chatrnn.corpus.dialogs.load_pairs` (format, pairs read, kept, dropped with reasons, where
the malformed records are); a text corpus the figures the char LM sees (files, characters, lines,
vocabulary). Reading once and reporting everything is the point: a 30% loss of rows is visible
before an hour of training, not after.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chatrnn.corpus import dialogs
from chatrnn.corpus.text import TEXT_SUFFIXES, collect_sources, iter_text
from chatrnn.errors import ChatrnnError

KINDS = ("auto", "dialog", "text")


@dataclass
class CorpusCheck:
    path: str
    kind: str  # "dialog" or "text"
    format: str  # a dialog format, or "text"
    detected: bool  # the format was guessed (not given with --format)
    figures: dict[str, Any] = field(default_factory=dict)
    report: str = ""  # the dialog ReadReport's summary, as training prints it

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "kind": self.kind, "format": self.format, "detected": self.detected, **self.figures}

    def lines(self) -> list[str]:
        how = "detected" if self.detected else "given"
        out = [str(self.path), f"  format        {self.format} ({how})"]
        f = self.figures
        if self.kind == "dialog":
            out.append(f"  conversations {f['conversations']:,} ({f['turns']:,} turns)")
            out += [
                f"  pairs         {line}" if i == 0 else f"  {line}" for i, line in enumerate(self.report.splitlines())
            ]
            if f.get("example"):
                prompt, reply = f["example"]
                out.append(f"  first pair    {prompt!r} -> {reply!r}")
            out.append("  (training also drops pairs longer than --max-len tokens, after tokenizing)")
        else:
            out.append(f"  files         {f['files']:,}")
            out.append(f"  characters    {f['chars']:,} in {f['lines']:,} lines")
            out.append(f"  vocabulary    {f['vocab_size']:,} distinct characters")
            if f.get("non_ascii"):
                out.append(f"  non-ASCII     {f['non_ascii']:,} distinct (e.g. {''.join(f['non_ascii_examples'])})")
        return out


def _guess_kind(path: Path) -> str:
    """Dialog when a dialog format can be told from the name (or a transcript from the text), else
    text when the char LM can read it (a .txt file, a folder of them)."""
    try:
        dialogs.detect_format(path)
        return "dialog"
    except ChatrnnError:
        texty = path.is_dir() or path.suffix.lower() in TEXT_SUFFIXES
        if texty and path.exists():
            return "text"
        raise


def check_corpus(
    path: str | Path,
    kind: str = "auto",
    fmt: str | None = None,
    columns: tuple[str, str] | None = None,
    encoding: str | None = None,
    context_turns: int = 0,
) -> CorpusCheck:
    path = Path(path)
    if not path.exists():
        raise ChatrnnError(f"{path} does not exist")
    if kind not in KINDS:
        raise ChatrnnError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    if kind == "auto":
        kind = "dialog" if fmt is not None else _guess_kind(path)
    if kind == "text":
        return _check_text(path, encoding or "utf-8")
    return _check_dialog(path, fmt, columns, encoding, context_turns)


def _check_dialog(
    path: Path, fmt: str | None, columns: tuple[str, str] | None, encoding: str | None, context_turns: int
) -> CorpusCheck:
    detected = fmt is None
    fmt = dialogs.detect_format(path) if fmt is None else fmt.strip().lower()
    report = dialogs.ReadReport()
    convs = dialogs.read_conversations(path, fmt, columns, encoding, report)
    # the rest of load_pairs, on what was just read: the same normalisation, filters and counts
    normalised = [[dialogs.normalize_text(t) for t in c] for c in convs]
    pairs = dialogs._filter_pairs(dialogs.make_pairs(normalised, context_turns), None, report)
    figures: dict[str, Any] = {
        "conversations": len(convs),
        "turns": sum(len(c) for c in convs),
        "read": report.read,
        "kept": report.kept,
        "dropped": dict(report.dropped),
        "malformed_examples": [dialogs._locate(*m) for m in report.malformed_lines[:3]],
        "example": [pairs[0].prompt, pairs[0].reply] if pairs else None,
    }
    return CorpusCheck(str(path), "dialog", fmt, detected, figures, report.summary())


def _check_text(path: Path, encoding: str) -> CorpusCheck:
    sources = collect_sources([path])
    chars: set[str] = set()
    total = lines = 0
    for src in sources:
        last = ""
        for chunk in iter_text(src, encoding):
            chars.update(chunk)
            total += len(chunk)
            lines += chunk.count("\n")
            last = chunk
        if last and not last.endswith("\n"):
            total, lines = total + 1, lines + 1  # training adds the newline that separates files
            chars.add("\n")
    if total == 0 or not (chars - {"\n"}):
        raise ChatrnnError(f"corpus {path} is empty")
    non_ascii = sorted(c for c in chars if ord(c) > 127)
    figures = {
        "files": len(sources),
        "chars": total,
        "lines": lines,
        "vocab_size": len(chars),
        "non_ascii": len(non_ascii),
        "non_ascii_examples": non_ascii[:8],
    }
    return CorpusCheck(str(path), "text", "text", True, figures)

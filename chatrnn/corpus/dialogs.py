"""Dialog corpora in the shapes people actually have, read into conversations and prompt/reply pairs.

A conversation is a list of turn strings, oldest first. Every reader returns conversations with the
text as written (only line-joining for multi-line turns); :func:`load_pairs` does normalisation,
deduplication and length filtering in one place so every format is treated the same.

Bad records never abort a read: they are counted in a :class:`ReadReport` with file and line, so a
corpus with three broken rows out of ten thousand still trains and the user is told where to look.
Unusable *files* (missing, empty, binary, wrong encoding, unknown format) raise
:class:`~chatrnn.errors.ChatrnnError` with a one-line fix.
"""

from __future__ import annotations

import ast
import codecs
import csv
import io
import json
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from chatrnn.corpus import chatterbot
from chatrnn.errors import ChatrnnError
from chatrnn.terminal import shown_path

FORMATS = ("csv", "tsv", "jsonl", "cornell", "chatterbot", "transcript")
FORMAT_HINT = f"pass --format with one of: {', '.join(FORMATS)}"

# Header names that mean "question column, answer column", tried in order (case-insensitive).
QA_COLUMNS = (
    ("q", "a"),
    ("question", "answer"),
    ("prompt", "response"),
    ("prompt", "completion"),
    ("input", "output"),
    ("context", "response"),
)
MAX_EXAMPLES = 20
#: Longest CSV/TSV field read (characters). Python's csv refuses fields over 131,072 characters
#: and that used to reject a whole file for one long cell; longer than this is not a chat turn,
#: so such a row is dropped with a reason, bounded so a file with no closing quote cannot make
#: one field of the whole file.
MAX_FIELD_CHARS = 16 << 20
CORNELL_LINES = "movie_lines.txt"
CORNELL_CONVERSATIONS = "movie_conversations.txt"
CORNELL_SEP = "+++$+++"

# A speaker line in a play/transcript: "First Citizen:", "KING RICHARD III:", "Senators, &C:".
_SPEAKER = re.compile(r"^[^\W\d_](?:[^\W\d_]|[ '.,&-])*:$")
_BLANK_LINE = re.compile(r"\n[ \t\r]*\n")


@dataclass(slots=True)
class Pair:
    """One training example: reply to ``prompt``, optionally seeing earlier ``context`` turns."""

    context: list[str]
    prompt: str
    reply: str


@dataclass
class ReadReport:
    """What happened to every record, so a silent 30% loss of data cannot go unnoticed.

    ``read`` counts records seen: pairs produced by readers plus malformed records (which could
    not become pairs). Every record read is either kept or dropped, so
    ``read == kept + sum(dropped.values())`` holds after each step; use :meth:`drop` (not a bare
    ``dropped[...] += 1``) when filtering later so the counts stay balanced.
    """

    read: int = 0
    kept: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    malformed_lines: list[tuple[str, int, str]] = field(default_factory=list)

    def add_read(self, n: int) -> None:
        """Record ``n`` freshly read pairs, all kept until a filter drops them."""
        self.read += n
        self.kept += n

    def add_malformed(self, file: str | Path, line: int, why: str) -> None:
        """Record an unusable record; only the first few are kept as examples to keep memory flat."""
        self.read += 1
        self.dropped["malformed"] = self.dropped.get("malformed", 0) + 1
        if len(self.malformed_lines) < MAX_EXAMPLES:
            self.malformed_lines.append((shown_path(file), line, why))

    def drop(self, reason: str, n: int = 1) -> None:
        """Move ``n`` kept pairs to ``dropped[reason]``."""
        self.kept -= n
        self.dropped[reason] = self.dropped.get(reason, 0) + n

    def first_problem(self) -> str:
        """The first malformed record as ``file:line: why`` (empty if none), for one-line errors."""
        return _locate(*self.malformed_lines[0]) if self.malformed_lines else ""

    def summary(self) -> str:
        """A line of counts, then up to three malformed examples so the user knows where to look."""
        text = f"read {self.read} pair{'' if self.read == 1 else 's'}, kept {self.kept}"
        reasons = [f"{n} {reason}" for reason, n in sorted(self.dropped.items(), key=lambda kv: -kv[1]) if n]
        if reasons:
            text += "; dropped: " + ", ".join(reasons)
        for example in self.malformed_lines[:3]:
            text += "\n  " + _locate(*example)
        return text


def _locate(file: str, line: int, why: str) -> str:
    """``file:line: why`` like compilers print, so editors can jump there (line 0 = unknown)."""
    return f"{file}:{line}: {why}" if line else f"{file}: {why}"


def normalize_text(s: str) -> str:
    """NFKC plus whitespace collapsing, so that visually identical turns dedup and tokenize alike.

    NFKC folds compatibility forms (full-width Latin, ligatures, NBSP) without touching Hangul
    syllables, CJK, emoji or punctuation; nothing non-ASCII is ever removed. Newlines and tabs
    become single spaces because a turn is one line of text downstream.
    """
    return " ".join(unicodedata.normalize("NFKC", s).split())


# ---------------------------------------------------------------- file reading


def _check_regular(path: Path) -> None:
    """Refuse what only looks like a file: a link to ``/dev/zero`` reads until memory runs out, and
    a FIFO blocks the reader forever."""
    import stat

    try:
        mode = path.stat().st_mode
    except OSError as e:
        raise ChatrnnError(f"cannot read {path}: {e.strerror or e}") from None
    if not stat.S_ISREG(mode):
        raise ChatrnnError(f"{path} is not a regular file (a device, FIFO or socket); give a corpus file")


def _read_bytes(path: Path) -> bytes:
    if not path.exists():
        raise ChatrnnError(f"{path} does not exist")
    if path.is_dir():
        raise ChatrnnError(f"{path} is a folder; give a file, or a Cornell or chatterbot folder")
    _check_regular(path)
    try:
        data = path.read_bytes()
    except MemoryError:
        raise ChatrnnError(f"{path} does not fit in the memory available to this process") from None
    except OSError as e:
        raise ChatrnnError(f"cannot read {path}: {e.strerror or e}") from None
    if not data.strip():
        raise ChatrnnError(f"{path} is empty")
    return data


def _legacy_fallback(err: UnicodeError) -> tuple[str, int]:
    # cp1252 leaves five bytes undefined; Latin-1 maps every byte, so nothing is ever lost.
    if not isinstance(err, UnicodeDecodeError):
        raise err
    return err.object[err.start : err.end].decode("latin-1"), err.end


codecs.register_error("chatrnn-latin1", _legacy_fallback)


def _decode(path: Path, data: bytes, encoding: str | None, *, legacy: bool = False) -> str:
    """Decode strictly: a wrong guess corrupts training text silently, an error costs one flag.

    ``legacy`` (Cornell) tries UTF-8 and falls back to cp1252 (a superset of ISO-8859-1's
    printable range: the real files use cp1252 curly quotes and ellipses).
    """
    if encoding is not None:
        try:
            name = codecs.lookup(encoding).name
        except LookupError as e:
            raise ChatrnnError(f"unknown encoding {encoding!r}; try --encoding utf-8, cp1252 or latin-1") from e
    else:
        name = "utf-8"
    nul = data.find(b"\x00")
    if nul >= 0 and not name.startswith(("utf-16", "utf-32")):
        raise ChatrnnError(
            f"{path} looks binary (NUL byte at offset {nul}); "
            "give a text corpus, or pass --encoding utf-16 if it is UTF-16 text"
        )
    if encoding is None and legacy:
        try:
            return data.decode("utf-8-sig")
        except UnicodeDecodeError:
            return data.decode("cp1252", errors="chatrnn-latin1")
    try:
        text = data.decode("utf-8-sig" if name == "utf-8" else encoding)
    except UnicodeDecodeError as e:
        bad = data[e.start : e.start + 1].hex()
        what = "valid UTF-8" if encoding is None else f"valid {encoding}"
        raise ChatrnnError(
            f"{path} is not {what} (byte 0x{bad} at offset {e.start}); pass --encoding, e.g. --encoding cp1252"
        ) from e
    return text.removeprefix("\ufeff")


def _read_text(path: Path, encoding: str | None, *, legacy: bool = False) -> str:
    return _decode(path, _read_bytes(path), encoding, legacy=legacy)


# ---------------------------------------------------------------- CSV / TSV


def _pick_columns(path: Path, header: list[str], columns: tuple[str, str] | None) -> tuple[int, int]:
    names = [h.strip().lower() for h in header]
    shown = ", ".join(h.strip() for h in header)
    if columns is not None:
        idx = []
        for col in columns:
            if col.strip().lower() not in names:
                raise ChatrnnError(f"{path}: no column {col!r}; the header has: {shown}")
            idx.append(names.index(col.strip().lower()))
        return idx[0], idx[1]
    for q, a in QA_COLUMNS:
        if q in names and a in names:
            return names.index(q), names.index(a)
    known = ", ".join(f"{q}/{a}" for q, a in QA_COLUMNS)
    raise ChatrnnError(
        f"{path}: no question/answer columns in the header ({shown}); expected {known}, "
        "or name them with --columns QCOL,ACOL"
    )


def _read_delimited(
    path: Path, text: str, delimiter: str, columns: tuple[str, str] | None, report: ReadReport
) -> list[list[str]]:
    old_limit = csv.field_size_limit(MAX_FIELD_CHARS)  # process-wide: put back when done
    try:
        return _read_rows(path, text, delimiter, columns, report)
    finally:
        csv.field_size_limit(old_limit)


def _read_rows(
    path: Path, text: str, delimiter: str, columns: tuple[str, str] | None, report: ReadReport
) -> list[list[str]]:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header: list[str] | None = None
    qi = ai = 0
    convs: list[list[str]] = []
    while True:
        line = reader.line_num + 1  # where the next record starts (records may span lines)
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            if "field larger than field limit" in str(e) and header is not None:
                # the reader resumes at the next line: drop this row only, say why
                report.add_malformed(path, line, f"a field is longer than {MAX_FIELD_CHARS:,} characters")
                continue
            raise ChatrnnError(
                f"{shown_path(path)}:{line}: unreadable {'TSV' if delimiter == chr(9) else 'CSV'} ({e})"
            ) from e
        if not any(cell.strip() for cell in row):
            continue
        if header is None:
            header = row
            qi, ai = _pick_columns(path, header, columns)
            continue
        if len(row) != len(header):
            report.add_malformed(path, line, f"expected {len(header)} fields, found {len(row)}")
            continue
        empty = next((header[i].strip() for i in (qi, ai) if not normalize_text(row[i])), None)
        if empty is not None:
            report.add_malformed(path, line, f"empty {empty!r} field")
            continue
        convs.append([row[qi], row[ai]])
    if header is None:
        raise ChatrnnError(f"{path} has no rows")
    return convs


# ---------------------------------------------------------------- JSON lines


def _content_text(content: object) -> str | None:
    """Message content as text: a string, or OpenAI-style ``[{"type": "text", "text": ...}]`` parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, dict) for p in content):
        texts = [p.get("text") for p in content if p.get("type", "text") == "text"]
        if texts and all(isinstance(t, str) for t in texts):
            return " ".join(texts)
    return None


def _json_record(obj: object, columns: tuple[str, str] | None) -> list[str] | str:
    """A conversation from one JSON value, or a string saying why it is unusable."""
    if isinstance(obj, list) and obj and all(isinstance(t, str) for t in obj):
        return obj  # ["turn 1", "turn 2", ...]
    if not isinstance(obj, dict):
        return f"expected a JSON object, found {type(obj).__name__}"
    messages = obj.get("messages", obj.get("conversations"))
    if messages is not None and columns is None:
        if not isinstance(messages, list) or not messages:
            return "'messages' is not a non-empty list"
        turns = []
        for m in messages:
            if not isinstance(m, dict):
                return "a message is not an object"
            role = m.get("role", m.get("from"))
            if role == "system":
                continue
            text = _content_text(m.get("content", m.get("value")))
            if text is None:
                return "a message has no text 'content'"
            turns.append(text)
        return turns
    keys = {str(k).lower(): k for k in obj}
    candidates = [columns] if columns is not None else [(q, a) for q, a in QA_COLUMNS if q not in ("q", "context")]
    for q, a in candidates:
        if q.lower() in keys and a.lower() in keys:
            values = [obj[keys[q.lower()]], obj[keys[a.lower()]]]
            if not all(isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in values):
                return f"{q!r}/{a!r} values are not text"
            return [str(v) for v in values]
    wanted = " or ".join(f"{q}/{a}" for q, a in candidates)
    return f"no {wanted} keys (and no 'messages')"


def _parse_json(text: str) -> object:
    """``json.loads`` whose only failure is :class:`ValueError` with a short reason.

    The C parser recurses once per nesting level: ``[[[[...`` 100,000 deep raises RecursionError,
    which is bad input, not a bug.
    """
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"invalid JSON ({e.msg})") from None
    except RecursionError:
        raise ValueError("invalid JSON (nested too deeply)") from None


def _lines(text: str) -> Iterable[tuple[int, str]]:
    """``(line number, line)`` without ``text.split``: one line in memory at a time, not a second
    copy of the file. Split on ``\\n`` only (not splitlines(): U+2028 may sit inside a string)."""
    start, lineno, end_of_text = 0, 0, len(text)
    while start < end_of_text:
        end = text.find("\n", start)
        if end < 0:
            end = end_of_text
        lineno += 1
        yield lineno, text[start:end]
        start = end + 1


def _read_jsonl(path: Path, text: str, columns: tuple[str, str] | None, report: ReadReport) -> list[list[str]]:
    """JSON lines, or one JSON array of records (a ``.json`` file).

    Each record becomes a conversation as soon as it is parsed and its JSON is dropped, so a
    corpus never sits in memory twice (parsed objects and conversations).
    """
    convs: list[list[str]] = []

    def take(lineno: int, n: int, obj: object) -> None:
        conv = _json_record(obj, columns)
        if isinstance(conv, str):
            report.add_malformed(path, lineno, conv if lineno else f"item {n}: {conv}")
        else:
            convs.append(conv)

    body = text.strip()
    if body.startswith("["):
        # A whole-file array of records; but a one-line ``["hi", "hello"]`` is a JSONL
        # conversation, not an array of two records, and several lines starting with ``[`` are
        # JSON lines (the whole text then fails to parse: "extra data").
        try:
            value = _parse_json(body)
        except ValueError:
            value = None
        if isinstance(value, list) and value and all(isinstance(v, (dict, list)) for v in value):
            for n in range(len(value)):
                item, value[n] = value[n], None  # free each record's JSON once converted
                take(0, n + 1, item)
            return convs
        if value is not None and "\n" not in body:
            lineno = text.count("\n", 0, text.index(body[0])) + 1
            take(lineno, 1, value)
            return convs
        del value
    del body
    for lineno, line in _lines(text):
        if not line.strip():
            continue
        try:
            obj = _parse_json(line)
        except ValueError as e:
            report.add_malformed(path, lineno, str(e))
            continue
        take(lineno, lineno, obj)
    return convs


# ---------------------------------------------------------------- Cornell Movie-Dialogs


def _cornell_files(path: Path) -> tuple[Path, Path]:
    folder = path if path.is_dir() else path.parent
    lines, conversations = folder / CORNELL_LINES, folder / CORNELL_CONVERSATIONS
    for f in (lines, conversations):
        if not f.is_file():
            raise ChatrnnError(f"Cornell corpus needs {f.name} in {folder}; it is missing")
    return lines, conversations


def _parse_ids(field_text: str) -> list[str] | None:
    try:
        ids = ast.literal_eval(field_text.strip())
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None
    if isinstance(ids, (list, tuple)) and all(isinstance(i, str) for i in ids):
        return list(ids)
    return None


def _read_cornell(path: Path, encoding: str | None, report: ReadReport) -> list[list[str]]:
    lines_path, convs_path = _cornell_files(path)
    utterances: dict[str, str] = {}
    text = _read_text(lines_path, encoding, legacy=True)
    for lineno, line in enumerate(text.split("\n"), 1):  # not splitlines(): cp1252 text may hold U+0085
        if not line.strip():
            continue
        fields = [f.strip() for f in line.split(CORNELL_SEP, 4)]
        if len(fields) != 5:
            report.add_malformed(
                lines_path, lineno, f"expected 5 fields separated by {CORNELL_SEP}, found {len(fields)}"
            )
            continue
        utterances[fields[0]] = fields[4]
    convs: list[list[str]] = []
    text = _read_text(convs_path, encoding, legacy=True)
    for lineno, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        fields = line.split(CORNELL_SEP, 3)
        ids = _parse_ids(fields[3]) if len(fields) == 4 else None
        if ids is None:
            report.add_malformed(convs_path, lineno, "expected 4 fields ending in a list like ['L194', 'L195']")
            continue
        missing = [i for i in ids if i not in utterances]
        if missing:
            report.add_malformed(convs_path, lineno, f"line id {missing[0]} is not in {CORNELL_LINES}")
        run: list[str] = []
        for i in ids:  # a missing line breaks adjacency, so split the conversation there
            if i in utterances:
                run.append(utterances[i])
            elif run:
                convs.append(run)
                run = []
        if run:
            convs.append(run)
    return convs


# ---------------------------------------------------------------- chatterbot YAML


def _yaml_files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.suffix in chatterbot.YAML_SUFFIXES and p.is_file())
    return [path]


def _read_chatterbot(path: Path, encoding: str | None, report: ReadReport) -> list[list[str]]:
    convs: list[list[str]] = []
    for f in _yaml_files(path):
        parsed = chatterbot.parse_chatterbot_yaml(_read_text(f, encoding))
        for line, why in parsed.problems:
            report.add_malformed(f, line, why)
        convs.extend(parsed.conversations)
    return convs


# ---------------------------------------------------------------- play / transcript text


def _is_speaker(line: str) -> bool:
    line = line.strip()
    return len(line) <= 60 and bool(_SPEAKER.match(line))


def _read_transcript(text: str) -> list[list[str]]:
    """Turns are blocks opening with a ``NAME:`` line; any other block (a scene heading, stage
    direction) ends the current conversation, since the speakers around it are not replying."""
    convs: list[list[str]] = []
    current: list[str] = []
    for block in _BLANK_LINE.split(text.replace("\r\n", "\n")):
        lines = [ln.strip() for ln in block.strip("\n").split("\n")]
        if lines and _is_speaker(lines[0]):
            current.append(" ".join(ln for ln in lines[1:] if ln))
        elif any(lines):
            if current:
                convs.append(current)
            current = []
    if current:
        convs.append(current)
    return convs


def _looks_like_transcript(text: str) -> bool:
    blocks = [b for b in _BLANK_LINE.split(text.replace("\r\n", "\n")) if b.strip()][:200]
    speakers = sum(_is_speaker(b.strip("\n").split("\n")[0]) for b in blocks)
    return speakers >= 2 and speakers * 2 >= len(blocks)


# ---------------------------------------------------------------- dispatch


def detect_format(path: Path) -> str:
    """Guess the format from the name (and, for ``.txt``, the first 64 KiB), so most users need no flag."""
    path = Path(path)
    if not path.exists():
        raise ChatrnnError(f"{path} does not exist")
    if path.is_dir():
        if (path / CORNELL_LINES).exists() or (path / CORNELL_CONVERSATIONS).exists():
            return "cornell"
        if _yaml_files(path):
            return "chatterbot"
        raise ChatrnnError(
            f"{path} has neither {CORNELL_LINES} (Cornell) nor .yml files (chatterbot); give a corpus file"
        )
    _check_regular(path)  # before a .txt's first bytes are read: a FIFO would block here
    if path.name in (CORNELL_LINES, CORNELL_CONVERSATIONS):
        return "cornell"
    suffix = path.suffix.lower()
    by_suffix = {
        ".csv": "csv",
        ".tsv": "tsv",
        ".jsonl": "jsonl",
        ".json": "jsonl",
        ".yml": "chatterbot",
        ".yaml": "chatterbot",
    }
    if suffix in by_suffix:
        return by_suffix[suffix]
    if suffix == ".txt":
        with path.open("rb") as f:
            raw = f.read(65536)
        if not raw.strip():
            raise ChatrnnError(f"{path} is empty")
        nul = raw.find(b"\x00")
        if nul >= 0:
            raise ChatrnnError(f"{path} looks binary (NUL byte at offset {nul}); give a text corpus")
        if _looks_like_transcript(raw.decode("utf-8", errors="replace")):
            return "transcript"
        raise ChatrnnError(
            f"{path} does not look like a transcript (NAME: lines, each followed by the speech); {FORMAT_HINT}"
        )
    raise ChatrnnError(f"cannot tell the format of {path}; {FORMAT_HINT}")


def read_conversations(
    path: Path,
    fmt: str | None = None,
    columns: tuple[str, str] | None = None,
    encoding: str | None = None,
    report: ReadReport | None = None,
) -> list[list[str]]:
    """Read one corpus file or folder into conversations (turn text as written, not normalised).

    ``columns`` names the question/answer columns (CSV/TSV) or keys (JSONL). Counts go into
    ``report``; a source that yields no conversation at all is an error, because training on
    nothing would only fail later and more obscurely.
    """
    path = Path(path)
    report = report if report is not None else ReadReport()
    fmt = detect_format(path) if fmt is None else fmt.strip().lower()
    if fmt not in FORMATS:
        raise ChatrnnError(f"unknown format {fmt!r}; {FORMAT_HINT}")
    if not path.exists():
        raise ChatrnnError(f"{path} does not exist")
    before = len(report.malformed_lines), report.dropped.get("malformed", 0)
    if fmt == "cornell":
        convs = _read_cornell(path, encoding, report)
    elif fmt == "chatterbot":
        convs = _read_chatterbot(path, encoding, report)
    else:
        text = _read_text(path, encoding)
        if fmt in ("csv", "tsv"):
            convs = _read_delimited(path, text, "," if fmt == "csv" else "\t", columns, report)
        elif fmt == "jsonl":
            convs = _read_jsonl(path, text, columns, report)
        else:
            convs = _read_transcript(text)
    convs = [c for c in convs if c]
    report.add_read(sum(len(c) - 1 for c in convs))
    if not convs:
        bad = report.dropped.get("malformed", 0) - before[1]
        first = report.malformed_lines[before[0]] if len(report.malformed_lines) > before[0] else None
        why = f"; {bad} malformed, first: {_locate(*first)}" if first else ""
        raise ChatrnnError(f"no conversations found in {path} (read as {fmt}){why}")
    return convs


def bundled_languages() -> list[str]:
    """Languages of the installed chatterbot-corpus, usable as ``lang``."""
    return chatterbot.bundled_languages()


def bundled_conversations(lang: str = "english", report: ReadReport | None = None) -> list[list[str]]:
    """The chatterbot-corpus conversations for ``lang``: a small corpus that works with no download."""
    report = report if report is not None else ReadReport()
    convs: list[list[str]] = []
    for f in chatterbot.bundled_files(lang):
        convs.extend(read_conversations(f, "chatterbot", report=report))
    return convs


# ---------------------------------------------------------------- pairs


def _check_context_turns(context_turns: int) -> None:
    if context_turns < 0:
        raise ChatrnnError(f"context turns must be 0 or more, not {context_turns}")


def _turn_triples(conv: list[str], context_turns: int) -> Iterable[tuple[list[str], str, str]]:
    for i in range(1, len(conv)):
        yield conv[max(0, i - 1 - context_turns) : i - 1], conv[i - 1], conv[i]


def make_pairs(conversations: list[list[str]], context_turns: int = 0) -> list[Pair]:
    """Each turn becomes the reply to the turn before it, with up to ``context_turns`` earlier turns."""
    _check_context_turns(context_turns)
    return [Pair(list(c), p, r) for conv in conversations for c, p, r in _turn_triples(conv, context_turns)]


class _PairFilter:
    """Drops empty, too long and duplicate pairs as they are made, one conversation at a time.

    Streaming matters for memory: building every pair first and filtering after held each pair
    twice, plus every turn raw and normalised (a 16 MB line of short turns took 0.8-1.25 GB).
    """

    def __init__(self, max_chars: int | None, report: ReadReport) -> None:
        self.max_chars = max_chars
        self.report = report
        self.seen: set[tuple[tuple[str, ...], str, str]] = set()
        self.kept: list[Pair] = []

    def add(self, triples: Iterable[tuple[list[str], str, str]]) -> None:
        report, max_chars = self.report, self.max_chars
        for context, prompt, reply in triples:
            if not prompt or not reply:
                report.drop("empty")
                continue
            if max_chars is not None and max(len(prompt), len(reply)) > max_chars:
                report.drop("too long")
                continue
            context = [t for t in context if t]
            key = (tuple(context), prompt, reply)
            if key in self.seen:
                report.drop("duplicate")
                continue
            self.seen.add(key)
            self.kept.append(Pair(context, prompt, reply))


def _filter_pairs(pairs: Iterable[Pair], max_chars: int | None, report: ReadReport) -> list[Pair]:
    f = _PairFilter(max_chars, report)
    f.add((p.context, p.prompt, p.reply) for p in pairs)
    return f.kept


def load_pairs(
    paths: list[Path] | None,
    fmt: str | None = None,
    columns: tuple[str, str] | None = None,
    encoding: str | None = None,
    lang: str = "english",
    context_turns: int = 0,
    max_chars: int | None = None,
) -> tuple[list[Pair], ReadReport]:
    """Everything a chatbot trainer needs from corpora: normalised, deduplicated, length-capped pairs.

    No paths means the bundled corpus for ``lang``. Order is preserved (file order, then
    conversation order) so that fixed validation splits stay fixed across runs. Each file's
    conversations are normalised and turned into pairs one at a time, each raw conversation
    released as soon as its pairs exist, so the peak is about the pairs kept, not several copies.
    """
    if max_chars is not None and max_chars < 1:
        raise ChatrnnError(f"max chars must be at least 1, not {max_chars}")
    _check_context_turns(context_turns)
    report = ReadReport()
    if isinstance(paths, (str, Path)):
        paths = [Path(paths)]
    keep = _PairFilter(max_chars, report)

    def take(convs: list[list[str]]) -> None:
        for i in range(len(convs)):
            conv, convs[i] = convs[i], []  # ours alone now: normalised in place, each raw turn freed
            for j, turn in enumerate(conv):
                conv[j] = normalize_text(turn)
            keep.add(_turn_triples(conv, context_turns))

    if paths:
        for p in paths:
            take(read_conversations(Path(p), fmt, columns, encoding, report))
        where = ", ".join(shown_path(p) for p in paths)
    else:
        take(bundled_conversations(lang, report))
        where = f"the bundled {lang} corpus"
    pairs = keep.kept
    if not pairs:
        first = report.first_problem()
        detail = f"; first malformed: {first}" if first else ""
        raise ChatrnnError(f"no usable pairs in {where}: {report.summary().splitlines()[0]}{detail}")
    return pairs, report


def conversations_to_text(conversations: list[list[str]]) -> str:
    """Training text for the char LM: one normalised turn per line, a blank line between conversations."""
    blocks = []
    for conv in conversations:
        turns = [t for t in (normalize_text(t) for t in conv) if t]
        if turns:
            blocks.append("\n".join(turns))
    return "\n\n".join(blocks) + "\n" if blocks else ""

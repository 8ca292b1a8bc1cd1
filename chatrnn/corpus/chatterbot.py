"""chatterbot-corpus YAML: parsing and the bundled per-language data.

The YAML is walked as a node tree (``yaml.compose``) instead of being constructed with
``safe_load``: every scalar then stays the exact string the author wrote (``22`` stays ``"22"``,
``yes`` stays ``"yes"`` rather than becoming ``True``), and each conversation keeps its line
number, so a bad entry can be reported where it is instead of silently coerced. This module
knows nothing about files or reports; :mod:`chatrnn.corpus.dialogs` does the I/O and counting.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from chatrnn.errors import ChatrnnError

YAML_SUFFIXES = (".yml", ".yaml")


class _NoAliasLoader(yaml.SafeLoader):
    """SafeLoader that refuses anchors and aliases (``&a`` / ``*a``).

    An alias repeats a whole subtree: a 96 KB "billion laughs" file of nested aliases expands to
    gigabytes of turns. The chatterbot corpus never uses them, so refusing is simpler and safer
    than capping the expansion.
    """

    def compose_node(self, parent, index):  # type: ignore[no-untyped-def]
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise yaml.composer.ComposerError(
                None, None, "YAML anchors and aliases (&name, *name) are not allowed in a corpus", event.start_mark
            )
        return super().compose_node(parent, index)


@dataclass
class ParsedYaml:
    """Conversations found in one YAML text, plus ``(line, why)`` for entries that were unusable."""

    conversations: list[list[str]] = field(default_factory=list)
    problems: list[tuple[int, str]] = field(default_factory=list)


def parse_chatterbot_yaml(text: str) -> ParsedYaml:
    """Read the ``conversations:`` list of lists; ``categories`` and other keys are ignored.

    A conversation that is not a list (a common indentation slip in the published corpus: the
    prompt and reply end up as one string) or that holds a nested list/mapping is reported,
    not guessed at.
    """
    out = ParsedYaml()
    try:
        root = yaml.compose(text, Loader=_NoAliasLoader)
    except RecursionError:  # the composer recurses once per nesting level
        out.problems.append((0, "invalid YAML: nested too deeply"))
        return out
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        line = mark.line + 1 if mark is not None else 0
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        out.problems.append((line, f"invalid YAML: {problem}"))
        return out
    if not isinstance(root, yaml.MappingNode):
        out.problems.append((1, "not a chatterbot file: expected a mapping with a 'conversations:' key"))
        return out
    convs = next((v for k, v in root.value if isinstance(k, yaml.ScalarNode) and k.value == "conversations"), None)
    if convs is None:
        out.problems.append((1, "no 'conversations:' key"))
        return out
    if not isinstance(convs, yaml.SequenceNode):
        out.problems.append((convs.start_mark.line + 1, "'conversations:' is not a list"))
        return out
    for item in convs.value:
        line = item.start_mark.line + 1
        if not isinstance(item, yaml.SequenceNode):
            out.problems.append((line, "conversation is not a list of turns (check the '- - ' indentation)"))
            continue
        if not all(isinstance(turn, yaml.ScalarNode) for turn in item.value):
            out.problems.append((line, "conversation has a nested list or mapping as a turn"))
            continue
        out.conversations.append([turn.value for turn in item.value])
    return out


def _data_dir() -> Path:
    """Where the installed chatterbot_corpus package keeps its ``data/<language>/`` folders."""
    import chatterbot_corpus  # a declared dependency, imported late: only the bundled corpus needs it

    return Path(chatterbot_corpus.__file__).resolve().parent / "data"


def bundled_languages() -> list[str]:
    """Languages the installed chatterbot-corpus ships, for ``--lang`` choices and error messages."""
    root = _data_dir()
    if not root.is_dir():  # pragma: no cover - broken installation
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and any(f.suffix in YAML_SUFFIXES for f in p.iterdir()))


def bundled_files(lang: str) -> list[Path]:
    """The YAML files of one bundled language, sorted so reading order (and thus training) is stable."""
    key = lang.strip().lower()
    languages = bundled_languages()
    if key not in languages:
        raise ChatrnnError(f"no bundled corpus for language {lang!r}; available: {', '.join(languages)}")
    folder = _data_dir() / key
    return sorted(p for p in folder.iterdir() if p.suffix in YAML_SUFFIXES)

"""A griffe extension that renders pets' docstrings (prose with reST bits) as Markdown.

pets' docstrings are neither Google- nor numpy-style: they are prose with
``literals``, Sphinx roles, ``>>>`` examples, reST simple tables and ``::``
literal blocks. mkdocstrings renders docstrings as Markdown, where ``>>>`` is a
triple block quote and a table of ``=====`` borders is a heading underline, so
this extension rewrites each docstring of the package once it is loaded:

* a run of ``>>>`` lines (with their ``...`` continuations and output) becomes a
  fenced ``pycon`` block;
* a reST simple table becomes a Markdown table;
* a ``::`` literal block becomes a fenced ``text`` block;
* a ``#:`` comment above an attribute becomes its docstring;
* a role such as ``:func:`~pets.dp.audit``` becomes a cross-reference to the
  object it names, resolved the way Python resolves the name where the
  docstring is (relative names, imports, ``~`` for the last component only). A
  role naming nothing in the package is logged as a warning, so that
  ``mkdocs build --strict`` fails on it; the link itself is optional (an object
  without a page of its own renders as code).

Used from ``mkdocs.yml`` (``extensions``, with ``packages: [pets]``); it only
changes what the site shows, never the code.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from typing import Any

import griffe

__all__ = ["PetsDocstrings", "markdown_from_rest"]

_logger = griffe.get_logger("griffe_pets")

#: ``:role:`target``` or ``:role:`title <target>``` (Sphinx roles, any domain-less role)
_ROLE = re.compile(r":(?P<role>[a-z]+):`(?P<body>[^`]+)`")
_BORDER = re.compile(r"^(?P<indent> *)=+( +=+)+ *$")
_EXPLICIT = re.compile(r"^(?P<title>.*?)\s*<(?P<target>[^<>]+)>$")


class PetsDocstrings(griffe.Extension):
    """Rewrite every docstring of a loaded package from pets' reST dialect to Markdown.

    ``packages`` names the packages to rewrite (all loaded ones by default): another
    library loaded to resolve an alias keeps its docstrings, and its roles are not checked.
    """

    def __init__(self, packages: list[str] | None = None) -> None:
        super().__init__()
        self.packages = None if packages is None else set(packages)

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader,
                   **kwargs: Any) -> None:
        if self.packages is not None and pkg.name not in self.packages:
            return
        for obj in _walk(pkg):
            if obj.docstring is None and obj.is_attribute:
                _doc_comment(obj)
            if obj.docstring is not None:
                obj.docstring.value = markdown_from_rest(
                    obj.docstring.value, lambda target, o=obj: _resolve(o, target, loader)
                )


def _walk(obj: griffe.Object) -> Iterator[griffe.Object]:
    """``obj`` and every object defined under it (aliases are not followed)."""
    yield obj
    for member in obj.members.values():
        if not member.is_alias:
            yield from _walk(member)  # type: ignore[arg-type]


def _doc_comment(attribute: griffe.Object) -> None:
    """Give ``attribute`` the ``#:`` comment lines just above it as its docstring (Sphinx's
    convention, which pets uses for constants and dataclass fields; griffe reads only
    string literals after an attribute)."""
    if attribute.lineno is None or attribute.filepath is None or isinstance(
        attribute.filepath, list
    ):
        return
    if attribute.filepath not in attribute.lines_collection:
        return
    lines = attribute.lines_collection[attribute.filepath]
    comment: list[str] = []
    number = attribute.lineno - 2  # the line above, 0-based
    while number >= 0 and lines[number].strip().startswith("#:"):
        comment.insert(0, lines[number].strip()[2:].strip())
        number -= 1
    if comment:
        attribute.docstring = griffe.Docstring(
            " ".join(comment), lineno=number + 2, parent=attribute
        )


def _resolve(obj: griffe.Object, target: str, loader: griffe.GriffeLoader) -> str | None:
    """The full path ``target`` names where ``obj``'s docstring is; ``""`` for a dotted name
    outside the loaded packages (``torch.nn.Module``: shown as code), ``None`` (and a
    warning) if it names nothing."""
    written, candidates = target, []
    if target.startswith("."):  # Sphinx: relative to the package, or a name in scope
        module = obj.module
        package = module if module.is_init_module else module.parent
        if package is not None:
            candidates.append(package.path + target)
        target = target[1:]
    if target:
        first, _, rest = target.partition(".")
        try:
            scoped = obj.resolve(first)
            candidates.append(scoped + ("." + rest if rest else ""))
        except griffe.NameResolutionError:
            if rest and first not in loader.modules_collection and not candidates:
                return ""  # another library's name (pathlib.Path, torch.nn.Module)
        candidates.append(target)
    for path in candidates:
        try:
            found = loader.modules_collection.get_member(path)
        except (KeyError, ValueError, griffe.AliasResolutionError, griffe.CyclicAliasError):
            continue
        if found.is_alias:  # link to where it is defined: that is where its page has it
            try:
                return str(found.final_target.path)
            except (griffe.AliasResolutionError, griffe.CyclicAliasError):
                return path
        return path
    where = obj.docstring.lineno if obj.docstring is not None else None
    _logger.warning(
        "%s:%s: %s: the reference %r names nothing in the package; fix the docstring",
        obj.relative_filepath, where, obj.path, written,
    )
    return None


def _role(match: re.Match[str], resolve: Any) -> str:
    body = match["body"]
    explicit = _EXPLICIT.match(body)
    target = explicit["target"] if explicit else body
    short = target.startswith("~")
    target = target.lstrip("~")
    title = explicit["title"] if explicit else (
        target.rsplit(".", 1)[-1] if short else target.lstrip(".")
    )
    path = resolve(target)
    code = f"<code>{html.escape(title)}</code>"
    if not path:
        return code
    return f'<autoref identifier="{html.escape(path)}" optional>{code}</autoref>'


def _roles(text: str, resolve: Any) -> str:
    return _ROLE.sub(lambda m: _role(m, resolve), text)


def markdown_from_rest(text: str, resolve: Any = lambda target: "") -> str:
    """``text`` (pets' docstring dialect) as Markdown; ``resolve(target)`` gives a role's path.

    >>> print(markdown_from_rest(">>> 1 + 1\\n2"))
    ```pycon
    >>> 1 + 1
    2
    ```
    """
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.lstrip()
        indent = line[: len(line) - len(stripped)]
        if stripped.startswith(">>>"):
            end = i
            while end < len(lines) and lines[end].strip():
                end += 1
            _fence(out, indent, "pycon", [x[len(indent):] for x in lines[i:end]])
            i = end
        elif _BORDER.match(line):
            end = _table_end(lines, i)
            out += _table(lines[i:end], indent, resolve)
            i = end
        elif stripped.endswith("::") and not stripped.startswith(".."):
            head = stripped[:-2].rstrip()
            if head:
                out.append(_roles(indent + head + ":", resolve))
            block, i = _literal_block(lines, i + 1, len(indent))
            _fence(out, indent, "text", block)
        else:
            out.append(_roles(line, resolve))
            i += 1
    return "\n".join(out)


def _fence(out: list[str], indent: str, language: str, block: list[str]) -> None:
    if out and out[-1].strip():
        out.append("")
    out += [f"{indent}```{language}", *[indent + x if x else "" for x in block], f"{indent}```"]
    out.append("")


def _literal_block(lines: list[str], start: int, outer: int) -> tuple[list[str], int]:
    """The indented block after a ``::`` line (dedented) and the index after it."""
    i = start
    while i < len(lines) and not lines[i].strip():
        i += 1
    body: list[str] = []
    while i < len(lines) and (
        not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > outer
    ):
        body.append(lines[i])
        i += 1
    while body and not body[-1].strip():
        body.pop()
    width = min((len(x) - len(x.lstrip()) for x in body if x.strip()), default=0)
    return [x[width:] for x in body], i


def _table_end(lines: list[str], start: int) -> int:
    """Index after a simple table: its last border is followed by a blank line or the end."""
    i = start + 1
    while i < len(lines):
        if _BORDER.match(lines[i]) and (i + 1 == len(lines) or not lines[i + 1].strip()):
            return i + 1
        i += 1
    return len(lines)


def _table(block: list[str], indent: str, resolve: Any) -> list[str]:
    """A reST simple table as a Markdown table (continuation rows joined to their row)."""
    starts = [m.start() for m in re.finditer(r"=+", block[0])]
    columns = list(zip(starts, [*starts[1:], None], strict=True))
    borders = [i for i, line in enumerate(block) if _BORDER.match(line)]
    rows: list[list[str]] = []
    header: list[str] | None = None
    for i, line in enumerate(block):
        if i in borders:
            if len(borders) == 3 and i == borders[1]:
                header, rows = rows[0] if rows else None, []
            continue
        cells = [line[lo:hi].strip() for lo, hi in columns]
        if rows and not cells[0]:  # a continuation line
            rows[-1] = [f"{a} {b}".strip() for a, b in zip(rows[-1], cells, strict=True)]
        else:
            rows.append(cells)
    table = [header or [""] * len(columns), ["---"] * len(columns), *rows]
    text = [indent + "| " + " | ".join(c.replace("|", "\\|") for c in row) + " |"
            for row in table]
    return ["", *(_roles(x, resolve) for x in text), ""]

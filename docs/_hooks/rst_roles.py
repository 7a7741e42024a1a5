"""Griffe extension: render the package's reST-flavoured docstrings as Markdown.

The docstrings are Google style but use a few Sphinx constructs that Markdown does not know:

* roles ``:class:`~gmmpyro.DensityModel```, ``:func:``, ``:meth:``, ``:mod:``, ``:attr:``,
  ``:exc:``, ``:data:`` and ``:obj:``: a target that resolves to a public object of the
  package becomes a mkdocstrings cross-reference ``[DensityModel][gmmpyro.model.DensityModel]``
  (checked by ``mkdocs build --strict``), anything else inline code;
* ``:math:`...``` becomes inline math, a ``.. math::`` directive a display-math block;
* a paragraph ending in ``::`` (a reST literal block) ends in ``:``;
* an ``Example:`` section is read as ``Examples:`` (griffe takes the singular for an
  admonition and would render the doctest as prose);
* an entry naming several parameters at once (``device, dtype: ...``) in an ``Arguments:``
  or ``Attributes:`` section is repeated for each name, so that each gets its own row with
  its type and default.

The docstrings stay as they are in the source (readable in ``help()``); only the rendered
site changes.
"""

from __future__ import annotations

import re
import textwrap

import griffe

_ROLE = re.compile(r":(?:py:)?(class|func|meth|mod|attr|exc|data|obj):`(~?)([^`]+)`")
_MATH_ROLE = re.compile(r":math:`([^`]+)`")
_MATH_DIRECTIVE = re.compile(r"^([ \t]*)\.\. math::[ \t]*(.*)$")
_EXAMPLE = re.compile(r"^([ \t]*)Example:[ \t]*$", re.MULTILINE)
_SECTION = re.compile(r"^([ \t]*)(Arguments|Args|Parameters|Attributes|Keyword Arguments|Other Parameters):[ \t]*$")
_MULTI_NAME = re.compile(r"^([ \t]+)(\w+(?:, \w+)+):(.*)$")


def _lookup(root: griffe.Module, path: str):
    """The object at ``path`` inside ``root`` (aliases resolved), or ``None``."""
    parts = path.split(".")
    if parts[0] != root.name:
        return None
    obj = root
    for part in parts[1:]:
        try:
            obj = obj.members[part]
            if obj.is_alias:
                obj = obj.final_target
        except (KeyError, griffe.AliasResolutionError, griffe.CyclicAliasError):
            return None
    return obj


def _public(obj) -> bool:
    """No private segment in its canonical path."""
    return not any(part.startswith("_") for part in obj.canonical_path.split("."))


def _anchor(obj):
    """The object whose heading a reference to ``obj`` should point at, or ``None``.

    Attributes and functions without a docstring get no heading of their own (they are
    described in their class's ``Attributes:`` section): point at the class instead.
    """
    while obj is not None and not obj.is_module and obj.docstring is None:
        obj = obj.parent
    return obj if obj is not None and _public(obj) else None


def _resolve(root: griffe.Module, scope, target: str):
    """Resolve a role's target as Sphinx would: relative to the scope, its parents, then absolute."""
    candidates = []
    node = scope
    while node is not None:
        candidates.append(f"{node.path}.{target}")
        node = node.parent
    candidates.append(target)
    for path in candidates:
        obj = _lookup(root, path)
        if obj is not None:
            return obj
    return None


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _split_multi_names(text: str) -> str:
    """Repeat ``a, b: description`` entries of parameter-like sections once per name."""
    lines = text.splitlines()
    out: list[str] = []
    section_indent = None
    i = 0
    while i < len(lines):
        line = lines[i]
        header = _SECTION.match(line)
        if header:
            section_indent = len(header.group(1))
        elif line.strip() and section_indent is not None and _indent(line) <= section_indent:
            section_indent = None
        match = _MULTI_NAME.match(line) if section_indent is not None else None
        if not match or _indent(line) <= section_indent:
            out.append(line)
            i += 1
            continue
        indent, names, rest = match.groups()
        block = [rest]
        i += 1
        while i < len(lines) and lines[i].strip() and _indent(lines[i]) > len(indent):
            block.append("\n" + lines[i])
            i += 1
        for name in names.split(", "):
            out.append(f"{indent}{name}:{''.join(block)}")
    return "\n".join(out)


def _convert(text: str, root: griffe.Module, scope) -> str:
    def role(match: re.Match) -> str:
        _kind, tilde, target = match.groups()
        target = target.strip().removesuffix("()")
        shown = target.rsplit(".", 1)[-1] if tilde else target
        obj = _resolve(root, scope, target)
        anchor = _anchor(obj) if obj is not None and _public(obj) else None
        if anchor is not None:
            return f"[`{shown}`][{anchor.canonical_path}]"
        return f"`{shown}`"

    text = _EXAMPLE.sub(r"\1Examples:", text)  # griffe reads "Example:" as an admonition
    text = _split_multi_names(text)
    text = _MATH_ROLE.sub(lambda m: f"${m.group(1)}$", text)
    text = _ROLE.sub(role, text)
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        match = _MATH_DIRECTIVE.match(lines[i])
        if not match:
            line = lines[i]
            if line.rstrip().endswith("::") and not line.strip().startswith(">>>"):
                line = line.rstrip()[:-1]
            out.append(line)
            i += 1
            continue
        indent, inline = match.groups()
        body = [inline] if inline.strip() else []
        i += 1
        block = []
        while i < len(lines) and (not lines[i].strip() or _indent(lines[i]) > len(indent)):
            block.append(lines[i])
            i += 1
        body += textwrap.dedent("\n".join(block)).strip("\n").splitlines()
        expr = " ".join(b.strip() for b in body if b.strip())
        out += ["", f"{indent}$$", f"{indent}{expr}", f"{indent}$$", ""]
    return "\n".join(out)


class RstRoles(griffe.Extension):
    """Convert every docstring of the package once it is loaded (see the module docstring)."""

    def on_package(self, *, pkg: griffe.Module, **kwargs) -> None:
        self._walk(pkg, pkg, set())

    def _walk(self, obj, root: griffe.Module, seen: set) -> None:
        if obj.path in seen:
            return
        seen.add(obj.path)
        if obj.docstring is not None:
            scope = obj if obj.is_class or obj.is_module else obj.parent
            obj.docstring.value = _convert(obj.docstring.value, root, scope)
        for member in obj.members.values():
            if member.is_alias:
                continue
            self._walk(member, root, seen)

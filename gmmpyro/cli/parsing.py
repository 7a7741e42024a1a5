"""Argument types of the ``gmmpyro`` commands and their TOML configuration files."""

from __future__ import annotations

import argparse
import math
import re
import sys

__all__ = [
    "load_toml",
    "parse_assignment",
    "parse_device",
    "parse_number",
    "parse_observable",
    "parse_prior",
    "parse_scan",
]

_PI_MULTIPLE = re.compile(r"([+-]?)(\d*\.?\d*)\*?pi(?:/(\d*\.?\d+))?")


def parse_number(text: str) -> float:
    """A number, or a multiple or fraction of π: ``0.5``, ``pi``, ``-pi``, ``2pi``, ``2*pi``, ``-pi/2``.

    Raises:
        ValueError: for anything else.

    Example:
        >>> parse_number("-pi"), parse_number("3pi/4") == 0.75 * math.pi, parse_number("1e-3")
        (-3.141592653589793, True, 0.001)
    """
    match = _PI_MULTIPLE.fullmatch(text.strip().replace(" ", ""))
    if match is None:
        return float(text)
    sign, factor, divisor = match.groups()
    value = (float(factor) if factor not in ("", ".") else 1.0) * math.pi / (float(divisor) if divisor else 1.0)
    return -value if sign == "-" else value


def parse_observable(spec: str):
    """``name``, ``name:lo:hi``, ``name:lo:hi:discrete``, each optionally ``...:f=0.3``.

    The bounds are numbers or multiples of π (:func:`parse_number`).

    Example:
        >>> parse_observable("m_ll:75:105:f=0.2")
        Observable(name='m_ll', bounds=(75.0, 105.0), discrete=False, f=0.2)
        >>> parse_observable("phi:-pi:pi").bounds == (-math.pi, math.pi)
        True
    """
    from ..observables import Observable

    parts = spec.split(":")
    name, rest = parts[0], parts[1:]
    usage = f"observable {spec!r}: use name, name:lo:hi or name:lo:hi:discrete[:f=F]"
    f, discrete = 0.5, False
    try:
        if rest and rest[-1].startswith("f="):
            f = float(rest.pop()[2:])
        if rest and rest[-1] == "discrete":
            discrete = True
            rest.pop()
        if len(rest) not in (0, 2):
            raise argparse.ArgumentTypeError(usage)
        bounds = (parse_number(rest[0]), parse_number(rest[1])) if rest else None
    except ValueError:
        raise argparse.ArgumentTypeError(f"{usage}; lo and hi are numbers or multiples of pi (e.g. -pi/2)") from None
    try:
        return Observable(name, bounds, discrete=discrete, f=f)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def parse_prior(spec: str) -> tuple[str, object]:
    """``name=uniform:lo:hi``, ``name=normal:mean:sd`` or ``name=value`` (fixed).

    Example:
        >>> parse_prior("cx=uniform:-1.5:1.5")[1]
        Uniform(low: -1.5, high: 1.5)
        >>> parse_prior("nu=0")
        ('nu', 0.0)
    """
    import pyro.distributions as dist

    name, _, value = spec.partition("=")
    kind, *args = value.split(":")
    try:
        if kind == "uniform" and len(args) == 2:
            return name, dist.Uniform(float(args[0]), float(args[1]))
        if kind == "normal" and len(args) == 2:
            return name, dist.Normal(float(args[0]), float(args[1]))
        if not args:
            return name, float(kind)
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"{spec!r}: use name=uniform:lo:hi, name=normal:mean:sd or name=value")


def parse_assignment(spec: str) -> tuple[str, float]:
    """``name=value``.

    Example:
        >>> parse_assignment("cx=0.5")
        ('cx', 0.5)
    """
    name, sep, value = spec.partition("=")
    try:
        if not sep:
            raise ValueError
        return name, float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{spec!r}: use name=value") from None


def parse_scan(spec: str) -> tuple[str, int | tuple[float, float, int]]:
    """``name=n`` (``n`` points around the MLE) or ``name=lo:hi:n`` (``n`` points from ``lo`` to ``hi``).

    Example:
        >>> parse_scan("cx=-1:1:21"), parse_scan("cy=25")
        (('cx', (-1.0, 1.0, 21)), ('cy', 25))
    """
    name, _, value = spec.partition("=")
    try:
        parts = value.split(":")
        if len(parts) == 1:
            return name, int(parts[0])
        lo, hi, n = parts
        return name, (parse_number(lo), parse_number(hi), int(n))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{spec!r}: use name=n (n points around the MLE) or name=lo:hi:n") from None


def parse_device(spec: str):
    """A ``torch.device`` that exists on this machine: ``cpu``, ``cuda``, ``cuda:1``, ``mps``...

    Example:
        >>> parse_device("cpu")
        device(type='cpu')
        >>> parse_device("gpu")
        Traceback (most recent call last):
        ...
        argparse.ArgumentTypeError: 'gpu' is not a torch device; use e.g. cpu, cuda or cuda:1
    """
    import torch

    try:
        device = torch.device(spec)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"{spec!r} is not a torch device; use e.g. cpu, cuda or cuda:1") from None
    if device.type == "cpu":
        return device
    backend = getattr(torch, device.type, None)
    if not callable(getattr(backend, "is_available", None)) or not backend.is_available():
        raise argparse.ArgumentTypeError(f"no {device.type} device on this machine (torch {torch.__version__})")
    count = backend.device_count() if callable(getattr(backend, "device_count", None)) else 1
    if device.index is not None and device.index >= count:
        raise argparse.ArgumentTypeError(
            f"{spec!r} does not exist: this machine has {count} {device.type} device(s), "
            f"{device.type}:0 to {device.type}:{count - 1}"
        )
    return device


def load_toml(path: str) -> dict:
    """The content of a TOML file (``tomllib``, or ``tomli`` before Python 3.11); syntax errors name the file."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:
        import tomli as tomllib
    with open(path, "rb") as handle:
        try:
            return tomllib.load(handle)
        except tomllib.TOMLDecodeError as error:
            raise ValueError(f"{path}: not a valid TOML file: {error}") from None

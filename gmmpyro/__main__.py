"""``python -m gmmpyro``: the ``gmmpyro`` command (:func:`gmmpyro.cli.main`)."""

from .cli import main

__all__: list[str] = []

if __name__ == "__main__":
    main()

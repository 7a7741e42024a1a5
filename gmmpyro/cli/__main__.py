"""``python -m gmmpyro.cli``: the ``gmmpyro`` command."""

from . import main

__all__: list[str] = []

if __name__ == "__main__":
    main()

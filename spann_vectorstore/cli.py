"""Command-line interface (see issue 6)."""


def main(argv=None):
    raise SystemExit("not implemented yet")

"""Command line: demo, run, statistics."""


def main(argv=None) -> int:
    raise SystemExit("not yet")

"""Torch-free deployment runner (being built)."""


def main(argv=None):
    raise SystemExit("ial-deploy: not implemented yet")

"""One readable line per event, for Loom and the servers it hosts (uvicorn, arq)."""

import logging

FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def configure(level: str) -> None:
    logging.basicConfig(level=level.upper(), format=FORMAT, datefmt="%Y-%m-%dT%H:%M:%S", force=True)
    for noisy in ("pymongo", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

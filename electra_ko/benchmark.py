"""Deprecated: `python -m electra_ko.benchmark` is now `python -m electra_ko.leaderboard`.

Kept so that existing scripts and docker-compose files that call the old name still run.
"""
import sys

from absl import app

from electra_ko.leaderboard import *  # noqa: F401,F403  (old imports keep working)
from electra_ko import leaderboard

if __name__ == "__main__":
    print("electra_ko.benchmark is now electra_ko.leaderboard", file=sys.stderr)
    leaderboard.define_flags()
    app.run(leaderboard.main)

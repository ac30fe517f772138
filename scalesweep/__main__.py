from scalesweep.cli import run

run()

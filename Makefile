# astrohpc — the two commands a user needs:
#   make demo   set up, start the local Slurm cluster, run the pipeline on the small demo, write a report
#   make test   set up, start the local Slurm cluster, run the serial and the MPI test suites, stop the cluster
SHELL := /bin/bash
.DEFAULT_GOAL := help

help:
	@echo "make setup | test | demo | skill | cluster-start | cluster-stop | doctor | bench | lint | clean"

setup:
	bash tools/setup.sh

test: setup
	bash tools/run-tests.sh

demo: setup
	bash tools/demo.sh

# the skill benchmark (long: ~1.5 h on 2 cores from nothing; not in CI): runs/skill/summary.json, docs/skill.md
skill: setup
	.venv/bin/python tools/bench_skill.py
	.venv/bin/python tools/bench_skill.py --train configs/train/skill_finetune.yaml --no-climate

cluster-start:
	bash tools/local-slurm.sh start

cluster-stop:
	bash tools/local-slurm.sh stop

doctor: setup
	eval "$$(bash tools/local-slurm.sh env)"; .venv/bin/astrohpc doctor

bench: setup
	bash tools/run-benchmarks.sh

lint: setup
	.venv/bin/ruff check astrohpc tests tools

clean:
	bash tools/local-slurm.sh stop || true
	rm -rf .state .pytest_cache

.PHONY: help setup test demo skill cluster-start cluster-stop doctor bench lint clean

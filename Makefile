# Everyday commands. `make setup` once, then `make example` / `make test`.
PY := .venv/bin/python

.PHONY: setup example test test-fast bench bench-corpus bench-rendered bench-peers clean

setup:            ## system packages + .venv + stemscribe (editable)
	bash scripts/setup

example:          ## transcribe the bundled example clip into out/example/
	.venv/bin/stemscribe example --out out/example

test:             ## the whole test suite (starts its own redis-server, fake chat APIs)
	$(PY) -m pytest -q -ra tests

test-fast:        ## skip the tests that run real models on clips
	$(PY) -m pytest -q -m "not slow" tests

bench:            ## dev-set benchmark: quality + timings vs plain basic-pitch (see README), then the corpus bench
	$(PY) bench/run_devset.py
	$(PY) bench/gt_check.py
	$(PY) bench/realset.py
	$(MAKE) bench-corpus

bench-corpus:     ## meter/tempo/pickup on 333 music21 corpus excerpts, train + validation (~1 min; first run parses ~12 min)
	nice -n 5 $(PY) bench/corpus_bench.py

bench-rendered:   ## whole pipeline (mode auto) on 45 rendered corpus pieces x 2 soundfonts (needs scripts/bench-deps)
	bash scripts/bench-deps
	nice -n 5 $(PY) bench/rendered_bench.py

clean:
	rm -rf out bench/results .pytest_cache

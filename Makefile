# The two commands of README.md. Each installs what it needs first.
.PHONY: demo test bench

demo:
	scripts/bootstrap.sh run
	.venv/bin/camstream demo

test:
	scripts/bootstrap.sh test
	scripts/test.sh

bench:
	scripts/bootstrap.sh run
	.venv/bin/python bench/ring_bench.py
	.venv/bin/python bench/rtmp_bench.py --before
	.venv/bin/python bench/worker_bench.py
	.venv/bin/python bench/recording_bench.py

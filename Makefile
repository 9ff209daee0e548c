# oom-harness: one command to set up, one to test.  Targets run as root (cgroups, /dev/kmsg, QEMU).
PY      ?= .venv/bin/python
KERNEL  ?= 6.12
PYTEST  ?= $(PY) -m pytest

.PHONY: setup test test-unit test-host test-in-vm catalogue bench bench-kbuild lint clean-debris mutants

setup:            ## system packages + .venv with the harness and its dev tools
	./scripts/setup.sh

test:             ## everything: unit, host OOMs, VM boots and the VM catalogue on $(KERNEL), Docker
	$(PYTEST) -q

test-unit:        ## parser, model, analysis, formats: no root needed
	$(PYTEST) -q -m "not root and not vm and not docker"

test-host:        ## genuine memcg OOM kills on this machine
	$(PYTEST) -q -m root

test-in-vm:       ## the VM catalogue on KERNEL (default 6.12; KERNEL=DIR builds that kernel source tree first), under QEMU
	$(PY) -m harness run --backend vm --kernel $(KERNEL)

catalogue:        ## the host catalogue on this machine's kernel
	$(PY) -m harness run --backend host

bench:            ## benchmarks; figures printed and saved under results/bench/
	$(PY) bench/bench_parser.py
	$(PY) bench/bench_model.py
	$(PY) bench/bench_host.py
	$(PY) bench/bench_watch.py
	$(PY) bench/bench_vm_boot.py -n 5
	$(PY) bench/bench_vm.py --kernels 5.10,6.1,6.12,7.2
	$(PY) bench/bench_compare.py --kernels host,5.10,6.1,6.12,7.2 --jobs 1,2

bench-kbuild:     ## kernel developer's loop on Debian's 6.12 source (first run: a full kernel build, minutes)
	$(PY) bench/bench_kbuild.py -n 3

mutants:          ## mutation testing of model, eras and analysis (mutmut; slow, not in CI); prints the score
	$(PY) -m pip install -q 'mutmut>=3.3,<4'
	rm -rf mutants
	$(PY) -m mutmut run --max-children $${MUTMUT_CHILDREN:-2} || true
	$(PY) scripts/mutation_score.py

lint:            ## ruff, and mypy (strict on harness/core)
	$(PY) -m ruff check .
	$(PY) -m mypy

clean-debris:     ## remove cgroups/VMs left by a killed run
	$(PY) -m harness cleanup

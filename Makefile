# The two commands a newcomer needs: `make demo` and `make test`.
# Both set everything up themselves: system packages (as root), the virtualenv, pip install.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test test-fast bench soak care-sim lint typecheck system-deps clean screenshots \
	broker-cluster-trial images compose-test

system-deps:
	@scripts/ensure-system-deps.sh

$(STAMP): pyproject.toml | system-deps
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: system-deps $(STAMP)
	$(BIN)/python -m simulators demo

# Tests in three runs: the unit tiers (in-process, no timing) on both cores with
# pytest-xdist; the tiers that start real brokers, hubs, edges and browsers, and the API
# fuzz, two files at a time (each test has its own broker, hub and ports; they mostly wait
# on processes, so one at a time leaves a core idle; a file stays on one worker, so the
# fuzz's generated cases share its one hub; the fuzz, the longest file, goes first so that
# it does not run alone at the end), with mypy beside them in the CPU they leave idle (its
# report and verdict come after them); then, one at a time, what asserts lateness or kills
# processes on a schedule (TIMED_TESTS, the fault campaigns). Every test folder is in
# exactly one tier list (tests/architecture/test_test_tiers.py).
UNIT_TIERS     := tests/hub tests/edge tests/contract tests/fuzz tests/architecture tests/bench \
                  tests/deploy tests/simulators
PARALLEL_TIERS := tests/api tests/integration tests/browser
SERIAL_TIERS   := tests/faults
TIMED_TESTS    := tests/integration/test_help_call.py
test: system-deps $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -p no:cacheprovider -n 2 $(UNIT_TIERS)
	typed=$$(mktemp); $(BIN)/mypy >"$$typed" 2>&1 & mypy=$$!; \
	$(BIN)/python -m pytest -q -p no:cacheprovider -n 2 --dist loadfile --durations=10 \
		$(PARALLEL_TIERS) $(addprefix --ignore=,$(TIMED_TESTS)); tests=$$?; \
	wait $$mypy; typecheck=$$?; echo "mypy:"; cat "$$typed"; rm -f "$$typed"; \
	[ $$tests -eq 0 ] && [ $$typecheck -eq 0 ]
	$(BIN)/python -m pytest -q -p no:cacheprovider --durations=10 $(TIMED_TESTS) $(SERIAL_TIERS)

test-fast: system-deps $(STAMP)
	$(BIN)/python -m pytest -q -m "not integration and not faults"

# Phone (360x740) and desktop pictures of the web pages, into docs/screenshots/ (issue #12).
screenshots: system-deps $(STAMP)
	$(BIN)/python -m simulators.screenshots

bench: system-deps $(STAMP)
	$(BIN)/python -m bench

# The full fault campaign (about 10 min): >= 100 kill -9, partitions, a 1 M-event backlog.
# FAULTS_SEED=N replays a run; its verdict and counts are printed at the end, and the
# logs and databases of the last run stay in var/soak/.
soak: system-deps $(STAMP)
	mkdir -p var
	FAULTS_SOAK=1 $(BIN)/python -m pytest tests/faults -m soak -s -q -p no:cacheprovider \
		--basetemp=var/soak

# Hub and edge on a three-node NATS cluster (MQTT + JetStream), each node killed under load
# (issue #14, docs/scaling.md "Broker cluster"); a few minutes, not part of `make test`.
# Needs Debian's nats-server. BROKER_CLUSTER_ARGS e.g. "--frames 60000 --rate 500 --seed 7".
BROKER_CLUSTER_ARGS ?=
broker-cluster-trial: $(STAMP)
	@command -v nats-server >/dev/null || { echo "install nats-server (apt-get install nats-server)"; exit 1; }
	$(BIN)/python -m bench.broker_cluster $(BROKER_CLUSTER_ARGS)

# The wellbeing watch's simulated month (issue #15; docs/care.md): 2000 residents, 30 days,
# the learnt rhythm with and without the "are you OK?" prompt against the fixed 12-hour
# rule, on two seeds; then the least false checks any silence rule could raise for the
# delay goals on the same simulated residents (care-bound). On both cores, about 20 min.
CARE_ARGS ?= --households 2000 --days 30
care-sim: $(STAMP)
	@nproc; grep -m1 "model name" /proc/cpuinfo || true
	$(BIN)/python -m simulators care $(CARE_ARGS) --seed 1
	$(BIN)/python -m simulators care $(CARE_ARGS) --seed 2
	$(BIN)/python -m simulators care-bound --households 500 --days 364 --seed 1

# Container images and the compose stack (issue #14; docs/scaling.md, "Containers"). Need
# Debian's docker.io, debootstrap and docker-compose, and a running engine; not in `make test`
# (minutes). The base image is built from Debian's packages once (docker/build-base.sh).
images: $(STAMP)
	docker/build-images.sh

# COMPOSE_TEST_DB=postgres: PostgreSQL and two hub replicas; sqlite: one hub.
compose-test: images
	$(BIN)/python docker/compose_test.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis var
